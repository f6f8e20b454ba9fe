"""The core path: install the real .deb with preseeded answers in a systemd +
Docker host, then upload with twine and install with pip from this host.

The tests share one installed system; each uploads what it reads, so any
one runs alone or in any order."""

from __future__ import annotations

import base64

import pytest

from tests.support.client import (
    NEW_PASSWORD,
    PASSWORD,
    REFUSED,
    USER,
    pip_install,
    preseed,
    twine_upload,
    upload_form,
)
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e


def test_install_output_keeps_the_password_secret(installed):
    assert "Setting up pypi-appliance" in installed
    assert PASSWORD not in installed


def test_data_dir_layout_and_permissions(system, installed):
    out = system.sh("stat -c '%n %u:%g %a' /srv/pypi/packages /srv/pypi/auth /srv/pypi/auth/htpasswd").stdout
    assert "/srv/pypi/packages 9898:9898 755" in out
    assert "/srv/pypi/auth 0:9898 750" in out
    assert "/srv/pypi/auth/htpasswd 0:9898 640" in out  # not world-readable
    htpasswd = system.sh("cat /srv/pypi/auth/htpasswd").stdout
    assert htpasswd.startswith(f"{USER}:$2y$12$")
    conf = system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    assert "PYPI_PORT=8080" in conf and "PYPI_ADMIN_USER=admin" in conf and "PYPI_DATA_DIR=/srv/pypi" in conf


def test_debconf_database_holds_no_password(system, installed):
    db = system.sh("cat /var/cache/debconf/*.dat").stdout
    assert PASSWORD not in db
    shown = system.sh("debconf-show pypi-appliance").stdout
    assert PASSWORD not in shown


def test_installed_unit_passes_systemd_analyze_verify(system, installed):
    # The image has no man-db; the page the unit points to is checked as a file.
    result = system.sh("systemd-analyze verify --man=no pypi-appliance.service 2>&1", check=False)
    assert result.returncode == 0, result.stdout
    assert system.sh("zcat /usr/share/man/man8/pypi-appliance.8.gz").stdout.startswith(".TH PYPI-APPLIANCE 8")
    assert system.sh("systemctl is-enabled pypi-appliance").stdout.strip() == "enabled"
    assert system.sh("systemctl is-active pypi-appliance").stdout.strip() == "active"


def test_twine_upload_then_conflict(system, installed, tmp_path):
    wheel = make_wheel(tmp_path)
    first = twine_upload(system, wheel, PASSWORD)
    assert first.returncode == 0, first.stdout + first.stderr
    assert wheel.name in system.sh("ls /srv/pypi/packages").stdout.split()
    # Other bytes under its name (the same bytes again are accepted: test_writes).
    (tmp_path / "rebuilt").mkdir()
    rebuilt = make_wheel(tmp_path / "rebuilt", metadata="Keywords: rebuilt\n")
    again = twine_upload(system, rebuilt, PASSWORD)
    assert again.returncode != 0
    # pypiserver answers twine 400 (twine's --skip-existing expects pypi.org's code), others 409.
    assert "400 Bad Request" in again.stdout + again.stderr
    body, content_type = upload_form(rebuilt)
    status = system.http(
        "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
    )
    assert status == 409
    assert system.sh(f"cmp /srv/pypi/packages/{wheel.name} -", input=wheel.read_bytes()).returncode == 0


def test_pip_installs_through_the_appliance(system, installed, tmp_path):
    (tmp_path / "dist").mkdir()
    wheel = make_wheel(tmp_path / "dist", "1.0", project="pip-probe")
    uploaded = twine_upload(system, wheel, PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert pip_install(system, tmp_path, PASSWORD, project="pip-probe") == "1.0"


def test_status_reports_healthy(system, installed):
    result = system.settled_status()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "active" in result.stdout
    files = len(system.sh("ls /srv/pypi/packages").stdout.split())
    assert f"{files} file{'s' if files != 1 else ''} in" in result.stdout, result.stdout
    assert "https://" in result.stdout and ":8080/simple/" in result.stdout
    assert "self-signed, certificate valid until" in result.stdout and "WARNING" not in result.stdout


def test_client_config_names_this_host(system, installed):
    out = system.sh("pypi-appliance client-config --host pypi.internal").stdout
    assert "index-url = https://pypi.internal:8080/simple/" in out
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in out and "trusted-host" not in out
    assert "[pypi-appliance]\nrepository = https://pypi.internal:8080/\nusername = admin" in out
    default = system.sh("pypi-appliance client-config").stdout
    assert ":8080/simple/" in default and PASSWORD not in default


def test_status_fails_when_the_index_is_down(system, installed):
    system.sh("systemctl stop pypi-appliance")
    try:
        down = system.sh("pypi-appliance status", check=False)
        assert down.returncode == 1
        assert "FAILING" in down.stdout
    finally:
        system.sh("systemctl start pypi-appliance")
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def test_reconfigure_rotates_the_password(system, installed):
    system.sh("debconf-set-selections", input=preseed(USER, NEW_PASSWORD))
    result = system.sh("DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance 2>&1")
    assert NEW_PASSWORD not in result.stdout
    system.wait_http("/simple/", 200, user=USER, password=NEW_PASSWORD)
    assert system.http("/simple/", user=USER, password=PASSWORD) in REFUSED
    # Packages survive, and the new secret is gone from debconf and the journal too.
    assert "appliance_probe-1.0-py3-none-any.whl" in system.sh("ls /srv/pypi/packages").stdout.split()
    assert NEW_PASSWORD not in system.sh("cat /var/cache/debconf/*.dat").stdout
    journal = system.sh("journalctl --all --no-pager -o cat").stdout
    logs = system.sh("cat /var/log/apt/term.log /var/log/dpkg.log 2>/dev/null || true").stdout
    for secret in (PASSWORD, NEW_PASSWORD):
        assert secret not in journal and secret not in logs
    # Back to the session's password, for the tests that follow.
    system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    system.sh("DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance")
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def test_credentials_never_reach_a_disk(system, installed):
    # The credential cache is keyed by the Authorization header; it lives in memory.
    for encoding in ("utf-8", "latin-1"):
        assert system.http("/simple/", user=USER, password=PASSWORD, encoding=encoding) == 200
    mounts = system.sh("docker exec pypi-appliance-proxy-1 cat /proc/mounts").stdout.splitlines()
    assert any(line.split()[1:3] == ["/tmp", "tmpfs"] for line in mounts), mounts
    for encoding in ("utf-8", "latin-1"):
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode(encoding)).decode()
        found = system.sh(f"grep -rlF '{token}' /var/lib/docker /var/log /srv /etc 2>/dev/null || true").stdout
        assert found == "", found
