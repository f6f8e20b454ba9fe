"""piuparts: install, remove and purge in a clean trixie chroot, no systemd, no Docker."""

import os
import subprocess

from tests.support.images import CACHE


def test_piuparts_install_and_purge_in_trixie(deb):
    base = CACHE / "piuparts" / "trixie.tgz"
    base.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "piuparts",
        "--distribution",
        "trixie",
        "--mirror",
        "http://deb.debian.org/debian",
        "--keyring",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
        # dpkg-preconfigure (debconf, with apt-utils) keeps this scratch dir for every
        # package that has debconf templates; no package owns it.
        "--ignore",
        "/var/cache/debconf/tmp.ci/",
        # The package ships a logrotate file, so piuparts installs logrotate (and
        # with it systemd) to run it, then purges them; systemd's tmpfiles leave these.
        "--ignore",
        "/etc/default/locale",
        "--ignore",
        "/etc/vconsole.conf",
        "--ignore",
        "/root/.ssh/",
        "--ignore-regex",
        "/var/(cache|lib|log)/private/",
        # The audit log stays on purge unless the admin deletes the data too (the
        # record of an incident must outlive the package); nothing preseeds that here.
        "--ignore",
        "/var/log/pypi-appliance/",
        "--ignore",
        "/var/log/pypi-appliance/audit.log",
    ]
    cmd += ["--basetgz", str(base)] if base.exists() else ["--save", str(base)]
    # piuparts passes its environment on to the chroot's maintainer scripts: the
    # checkout's defaults (tests/conftest.py) must not stand in for the package's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_APPLIANCE_")}
    result = subprocess.run([*cmd, str(deb)], capture_output=True, text=True, timeout=1200, env=env)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert "PASS: All tests." in result.stdout + result.stderr, tail
    # No systemd, no Docker daemon, nothing preseeded: the install still configures,
    # with a generated password rather than an open index.
    assert "a random one is in /etc/pypi-appliance/initial-admin-password" in result.stdout + result.stderr
