"""Lifecycle, faults and bad input: upgrade, downgrade, crashes, remove, purge,
unattended installs, no Docker, bad answers, and secrets.

Each test leaves the session's appliance installed with the session password."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.client import PASSWORD, REFUSED, USER, pip_install, preseed, twine_upload, upload_form
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

DEB = "/root/pypi-appliance.deb"
OLD_DEB = "/root/pypi-appliance-old.deb"
OLD_VERSION = "0.0.1"
PROJECT = "lifecycle-probe"


def not_installed(system) -> bool:
    """No trace in dpkg: unknown, or only apt's wish to install it ('in')."""
    return system.status()[1:2] in ("", "n")


def purge_all(system) -> None:
    system.sh(
        "apt-get purge -y pypi-appliance >/dev/null 2>&1 || true; rm -rf /srv/pypi /srv/other /var/log/pypi-appliance"
    )
    assert not_installed(system)


def install(system, answers: str | None = None, deb: str = DEB, check: bool = True):
    if answers:
        system.sh("debconf-set-selections", input=answers)
    return system.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades {deb} 2>&1", check=check)


def serving(system, password: str = PASSWORD) -> float:
    return system.wait_http("/simple/", 200, timeout=120, user=USER, password=password)


@pytest.fixture
def leaves_installed(system, installed):
    """Put the session's appliance back, however the test left the system."""
    yield
    system.sh("systemctl unmask --runtime docker.service docker.socket; systemctl start docker", check=False)
    try:
        healthy = system.status() == "ii" and system.http("/simple/", user=USER, password=PASSWORD) == 200
    except OSError:
        healthy = False
    if not healthy:
        purge_all(system)
        install(system, preseed(USER, PASSWORD))
        serving(system)


@pytest.fixture(scope="module")
def old_deb(system, tmp_path_factory):
    """The same tree built at an older version, as `make deb VERSION=0.0.1` would."""
    out = tmp_path_factory.mktemp("old")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "builder",
            "build",
            "--version",
            OLD_VERSION,
            "--output-dir",
            str(out),
            "--build-dir",
            str(out / "build"),
        ],
        check=True,
        capture_output=True,
    )
    system.put(OLD_DEB, (out / f"pypi-appliance_{OLD_VERSION}_all.deb").read_bytes())
    return OLD_DEB


# The last released package, as users have it installed (built from the commit
# that released it, aa72c27, with its own builder).
RELEASED = Path(__file__).resolve().parents[1] / "fixtures" / "pypi-appliance_0.1.0_all.deb"


def test_upgrade_from_the_released_version_asks_only_the_new_question(system, leaves_installed, tmp_path):
    purge_all(system)
    # Its images, as its users pulled them (stand-ins under the names it pins).
    missing = [
        ref
        for ref in images.compose_images(RELEASED)
        if system.sh(f"docker image inspect {ref}", check=False).returncode != 0
    ]
    if missing:
        system.load_images([images.stand_in(ref) for ref in missing])
    system.put("/root/released.deb", RELEASED.read_bytes())
    install(system, preseed(USER, PASSWORD), deb="/root/released.deb")
    serving(system)
    assert "access.conf" not in system.sh("cat /etc/pypi-appliance/nginx.conf").stdout
    system.sh("pypi-appliance user add --password-stdin old-ci", input="old ci pw\n")
    system.sh("echo '# admin note: kept across upgrades' >> /etc/pypi-appliance/pypi-appliance.conf")

    # Interactively, at medium priority: the new questions (access, upstream) and nothing else.
    code, out = system.interact(
        f"DEBIAN_FRONTEND=teletype DEBIAN_PRIORITY=medium apt-get install -y {DEB}", ["1", ""], timeout=180
    )
    assert code == 0, out
    assert "Access for listing and downloading (private, public-read) [private]:" in out, out
    assert "Upstream index for the names this one does not hold [none]:" in out, out
    for old in ("Administrator", "TCP port", "HTTPS for the package index", "Directory for packages"):
        assert old not in out, (old, out)
    # The changed conffile arrived (nobody had edited it), the admin's config file kept its note.
    assert "include /etc/nginx/access.conf;" in system.sh("cat /etc/pypi-appliance/nginx.conf").stdout
    conf = system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    assert "# admin note: kept across upgrades" in conf and "PYPI_ACCESS=private\n" in conf
    serving(system)
    assert system.http("/simple/") == 401
    # 0.6 and older made the data and log dirs 0755: no other user's now.
    assert system.sh("stat -c '%g %a' /srv/pypi /var/log/pypi-appliance").stdout.splitlines() == ["9898 750"] * 2
    # Accounts made before roles existed keep publishing (NEWS); new ones only read.
    assert system.sh("pypi-appliance user list").stdout.splitlines() == [f"{USER} publish *", "old-ci publish *"]
    body, content_type = upload_form(make_wheel(tmp_path, "1.0", project="old-ci-probe"))
    status, text, _ = system.fetch_all(
        "/", user="old-ci", password="old ci pw", method="POST", data=body, headers={"Content-Type": content_type}
    )
    assert status == 200, text
    system.sh("pypi-appliance user remove old-ci; rm -f /srv/pypi/packages/old_ci_probe-*")


def file_listed(system, password: str, filename: str) -> bool:
    return system.http(f"/packages/{filename}", user=USER, password=password) == 200


def test_upgrade_keeps_packages_passwords_and_edits(system, leaves_installed, old_deb, tmp_path, timings):
    purge_all(system)
    install(system, preseed(USER, PASSWORD), deb=old_deb)
    serving(system)
    wheel = make_wheel(tmp_path, "1.0", project=PROJECT)
    assert twine_upload(system, wheel, PASSWORD).returncode == 0
    system.sh("sed -i '1i # admin edit: kept across upgrades' /etc/pypi-appliance/compose.yaml")
    system.sh("echo '# admin note: kept across upgrades' >> /etc/pypi-appliance/pypi-appliance.conf")
    htpasswd = system.sh("sha256sum /srv/pypi/auth/htpasswd").stdout
    before = system.sh("systemctl show -p InvocationID --value pypi-appliance").stdout

    # On a terminal with nothing typed: a question would block, then fail.
    started = time.monotonic()
    code, out = system.interact(f"DEBIAN_FRONTEND=teletype apt-get install -y {DEB}", [], timeout=180)
    assert code == 0, out
    serving(system)
    timings.append(("upgrade: apt install to serving", time.monotonic() - started))
    assert "Administrator" not in out and "TCP port" not in out, "a question was asked on upgrade"
    assert system.sh("dpkg-query -W -f '${Version}' pypi-appliance").stdout != OLD_VERSION
    assert "# admin edit: kept across upgrades" in system.sh("cat /etc/pypi-appliance/compose.yaml").stdout
    assert "# admin note" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    assert system.sh("sha256sum /srv/pypi/auth/htpasswd").stdout == htpasswd
    assert system.sh("systemctl show -p InvocationID --value pypi-appliance").stdout != before, "not restarted"
    assert pip_install(system, tmp_path, PASSWORD, project=PROJECT) == "1.0"

    # Downgrade works, and leaves everything in place.
    install(system, deb=old_deb)
    serving(system)
    assert system.status() == "ii"
    assert system.sh("dpkg-query -W -f '${Version}' pypi-appliance").stdout == OLD_VERSION
    assert file_listed(system, PASSWORD, wheel.name)
    install(system)
    serving(system)
    assert file_listed(system, PASSWORD, wheel.name)


def test_recovers_from_crashes_and_restarts(system, leaves_installed, tmp_path, timings):
    # A version of its own: an earlier test's upload of the same file would answer 400.
    wheel = make_wheel(tmp_path, "2.0.1", project=PROJECT)
    upload = twine_upload(system, wheel, PASSWORD)
    assert upload.returncode == 0, upload.stdout + upload.stderr

    def recovered(label: str, started: float) -> None:
        deadline = started + 180
        while time.monotonic() < deadline:
            try:
                # /health is answered by pypiserver itself, through the front door, never cached.
                if system.http("/health") == 200 and file_listed(system, PASSWORD, wheel.name):
                    timings.append((f"recovery after {label}", time.monotonic() - started))
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the index did not come back after {label}")

    started = time.monotonic()
    system.sh("docker kill pypi-appliance-pypiserver-1")
    try:
        assert system.http("/health") != 200, "the kill did not take the server down"
    except OSError:
        pass  # the front door is going down with it
    recovered("killing the pypiserver container", started)
    started = time.monotonic()
    system.sh("systemctl restart docker")
    recovered("restarting docker.service", started)
    started = time.monotonic()
    system.sh("systemctl stop docker.socket docker.service && systemctl start docker")
    recovered("stopping, then starting docker.service", started)
    started = time.monotonic()
    subprocess.run(["docker", "restart", system.name], check=True, capture_output=True, timeout=120)
    system.refresh_port()
    system.wait_booted()
    recovered("restarting the whole host (system container)", started)
    assert system.sh("systemctl is-active pypi-appliance").stdout.strip() == "active"


def test_remove_keeps_data_and_purge_removes_config(system, leaves_installed, tmp_path):
    upload = twine_upload(system, make_wheel(tmp_path, "3.0", project=PROJECT), PASSWORD)
    assert upload.returncode == 0
    system.sh("apt-get remove -y pypi-appliance")
    assert system.status() == "rc"
    system.sh("test -s /etc/pypi-appliance/pypi-appliance.conf && test -s /srv/pypi/auth/htpasswd")
    system.sh("ls /srv/pypi/packages | grep -q lifecycle_probe-3.0")
    assert system.sh("ss -Hltn 'sport = :8080'").stdout == ""
    assert system.sh("docker ps -aq").stdout == ""

    # The purge question names what goes and what may stay; Enter keeps the
    # data (the default, shown), and dpkg has nothing to warn about.
    code, out = system.interact("DEBIAN_FRONTEND=teletype apt-get purge -y pypi-appliance", [""], timeout=120)
    assert code == 0, out
    out = " ".join(out.split())
    assert "Delete the packages, passwords and audit log too (yes, no) [no]:" in out
    assert (
        "The data directory /srv/pypi, with the uploaded packages and the password file, and the audit log in "
        "/var/log/pypi-appliance are kept unless you choose to delete them here." in out
    )
    assert "the appliance's own CA in /etc/pypi-appliance/tls" in out
    assert "pypi-appliance: kept the data dir /srv/pypi and the audit log in /var/log/pypi-appliance" in out
    assert "warning" not in out.lower(), out
    # The audit log stays with the data: the incident's record survives a purge.
    assert "upload " in system.sh("cat /var/log/pypi-appliance/audit.log").stdout
    assert not_installed(system)
    system.sh("test ! -e /etc/pypi-appliance")
    system.sh("test ! -e /etc/systemd/system/multi-user.target.wants/pypi-appliance.service")
    system.sh("test ! -e /etc/systemd/system/docker.service.wants/pypi-appliance.service")
    assert system.sh("debconf-show pypi-appliance").stdout == ""
    # Nothing preseeded for purge-data: the uploads stay.
    system.sh("ls /srv/pypi/packages | grep -q lifecycle_probe-3.0")

    # Deleting the data dir is refused when it holds what the appliance did not make.
    install(system, preseed(USER, PASSWORD))
    serving(system)
    system.sh("echo mine > /srv/pypi/notes.txt")
    system.sh("debconf-set-selections", input="pypi-appliance pypi-appliance/purge-data boolean true\n")
    out = system.sh("apt-get purge -y pypi-appliance 2>&1").stdout
    assert (
        "pypi-appliance: not deleting the data dir (nor the audit log): '/srv/pypi' also holds notes.txt, which "
        "pypi-appliance did not make; delete it yourself if you mean to"
    ) in out, out
    system.sh("test -s /srv/pypi/notes.txt && test -s /srv/pypi/auth/htpasswd")
    system.sh("rm /srv/pypi/notes.txt")

    install(system, preseed(USER, PASSWORD))
    serving(system)
    system.sh("debconf-set-selections", input="pypi-appliance pypi-appliance/purge-data boolean true\n")
    system.sh("apt-get purge -y pypi-appliance")
    system.sh("test ! -e /srv/pypi && test ! -e /var/log/pypi-appliance")
    assert system.sh("ss -Hltn 'sport = :8080'").stdout == ""
    assert system.sh("docker ps -aq").stdout == ""


def test_purge_succeeds_when_the_debconf_questions_are_gone(system, leaves_installed):
    """A damaged debconf database, or its entries purged by hand: nothing can
    be asked, so the data and the audit log are kept, and the purge ends."""
    purge_all(system)
    install(system, preseed(USER, PASSWORD))
    serving(system)
    system.sh("echo PURGE | debconf-communicate pypi-appliance")
    result = system.sh("apt-get purge -y pypi-appliance 2>&1", check=False)
    assert result.returncode == 0, result.stdout
    assert "pypi-appliance: kept the data dir /srv/pypi and the audit log in /var/log/pypi-appliance" in result.stdout
    assert not_installed(system)
    system.sh("test -s /srv/pypi/auth/htpasswd && test -e /var/log/pypi-appliance/audit.log")
    system.sh("test ! -e /etc/pypi-appliance")
    purge_all(system)


def test_a_service_that_cannot_start_gives_up_and_status_says_why(system, leaves_installed):
    # A host that can never start it: here a config the start refuses at once (a
    # missing image fails the same way, only each try takes longer).
    conf = system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    system.sh("sed -i 's/^PYPI_TLS=.*/PYPI_TLS=sometimes/' /etc/pypi-appliance/pypi-appliance.conf")
    # Fewer tries than the unit's 30, so the test takes seconds: the mechanism is the unit's own.
    system.sh(
        "mkdir -p /run/systemd/system/pypi-appliance.service.d && printf '[Unit]\\nStartLimitBurst=3\\n' "
        "> /run/systemd/system/pypi-appliance.service.d/test.conf && systemctl daemon-reload"
    )
    try:
        system.sh("systemctl restart pypi-appliance", check=False)
        # Restart=always: it is "failed" only once systemd stopped retrying.
        system.wait_unit("failed", timeout=120)
        assert "Start request repeated too quickly" in system.sh("journalctl -u pypi-appliance -n 20 -o cat").stdout
        status = system.sh("pypi-appliance status", check=False)
        assert status.returncode == 1
        text = " ".join(status.stdout.split())
        assert "the service gave up after failing to start again and again" in text, text
        assert "systemctl reset-failed pypi-appliance && systemctl start pypi-appliance" in text
    finally:
        system.sh("cat > /etc/pypi-appliance/pypi-appliance.conf", input=conf)
        system.sh(
            "rm -rf /run/systemd/system/pypi-appliance.service.d && systemctl daemon-reload && "
            "systemctl reset-failed pypi-appliance; systemctl start pypi-appliance",
            check=False,
        )
    serving(system)


def test_unattended_install_generates_a_password(system, leaves_installed):
    purge_all(system)
    out = install(system).stdout
    assert "a random one is in /etc/pypi-appliance/initial-admin-password" in out
    assert system.sh("stat -c '%a %u' /etc/pypi-appliance/initial-admin-password").stdout.strip() == "600 0"
    password = system.sh("cat /etc/pypi-appliance/initial-admin-password").stdout.strip()
    assert len(password) >= 20
    serving(system, password)
    assert system.http("/simple/") == 401
    assert system.http("/simple/", user=USER, password="") in REFUSED
    # Once the admin's password changes, the file of the generated one goes.
    out = system.sh("pypi-appliance user passwd --password-stdin admin 2>&1", input=PASSWORD + "\n").stdout
    assert "removed /etc/pypi-appliance/initial-admin-password: it no longer holds 'admin''s password" in out
    system.sh("test ! -e /etc/pypi-appliance/initial-admin-password")
    # An admin removed on purpose stays removed across an upgrade (same version again).
    system.sh("pypi-appliance user add --role publish --password-stdin keeper", input="keeper pw\n")
    system.sh("pypi-appliance user remove admin")
    out = system.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall {DEB} 2>&1").stdout
    assert "Setting up pypi-appliance" in out, out
    assert "a random one is in" not in out, out
    assert system.sh("pypi-appliance user list").stdout.splitlines() == ["keeper publish *"]
    system.sh("test ! -e /etc/pypi-appliance/initial-admin-password")


def test_install_while_docker_is_down(system, leaves_installed, timings):
    purge_all(system)
    system.sh("systemctl stop docker.socket docker.service && systemctl mask --runtime docker.service docker.socket")
    install(system, preseed(USER, PASSWORD))
    assert system.status() == "ii"
    started = time.monotonic()
    system.sh("systemctl unmask --runtime docker.service docker.socket && systemctl start docker")
    serving(system)
    timings.append(("serving after Docker came up (installed while down)", time.monotonic() - started))


UPSTREAM_SECRET = "Up5ecretPw"
BAD_ANSWERS = [
    ("pypi-appliance/admin-username string bad:name", "username 'bad:name' is invalid"),
    ("pypi-appliance/admin-username string two words", "username 'two words' is invalid"),
    ("pypi-appliance/admin-username string", "username '' is invalid"),
    ("pypi-appliance/port string 0", "port 0 is outside 1-65535"),
    ("pypi-appliance/port string 70000", "port 70000 is outside 1-65535"),
    ("pypi-appliance/port string http", "port 'http' is not a number from 1 to 65535"),
    ("pypi-appliance/port string 9999", "port 9999 is already in use by python3 (pid "),
    ("pypi-appliance/data-dir string srv/pypi", "data dir 'srv/pypi' is not an absolute path"),
    ("pypi-appliance/data-dir string /proc/pypi", "data dir '/proc/pypi' is under /proc"),
    ("pypi-appliance/data-dir string /srv/my pypi", "data dir '/srv/my pypi' may only contain"),
    ("pypi-appliance/admin-password-again password other", "do not match"),
    (
        "pypi-appliance/tls select provided\npypi-appliance pypi-appliance/tls-cert string /root/none.crt",
        "certificate '/root/none.crt' does not exist or cannot be read",
    ),
    (
        "pypi-appliance/upstream string http://up.example/simple/\n"
        "pypi-appliance pypi-appliance/upstream-min-age string 7",
        "'7' is not a duration such as 7d, 36h",
    ),
    # Refused without repeating it, and gone from debconf's database (world-readable).
    (
        f"pypi-appliance/upstream string https://mirror:{UPSTREAM_SECRET}@up.example/simple/",
        "the upstream URL holds credentials (not shown)",
    ),
]


def test_bad_preseeded_answers_change_nothing(system, leaves_installed):
    purge_all(system)
    system.sh("mkdir -p /srv/pypi/packages && echo keep > /srv/pypi/packages/precious-1.0.tar.gz")
    system.sh("systemd-run --unit=squatter python3 -m http.server 9999")
    try:
        for answer, message in BAD_ANSWERS:
            result = install(system, preseed(USER, PASSWORD) + f"pypi-appliance {answer}\n", check=False)
            assert result.returncode != 0, answer
            assert message in result.stdout, (answer, result.stdout[-2000:])
            assert not_installed(system), f"{answer}: left the package {system.status()!r}"
            debconf = system.sh("cat /var/cache/debconf/*.dat").stdout
            assert PASSWORD not in debconf and UPSTREAM_SECRET not in debconf, answer
            assert UPSTREAM_SECRET not in result.stdout
            # Reset every answer to a good one for the next case.
            system.sh(
                "debconf-set-selections",
                input=preseed(USER, PASSWORD)
                + (
                    "pypi-appliance pypi-appliance/port string 8080\n"
                    "pypi-appliance pypi-appliance/data-dir string /srv/pypi\n"
                    "pypi-appliance pypi-appliance/tls select self-signed\n"
                    "pypi-appliance pypi-appliance/upstream string\n"
                    "pypi-appliance pypi-appliance/upstream-min-age string 0\n"
                ),
            )
    finally:
        system.sh("systemctl stop squatter", check=False)
    assert system.sh("cat /srv/pypi/packages/precious-1.0.tar.gz").stdout == "keep\n"


def test_bad_interactive_answers_are_asked_again(system, leaves_installed):
    purge_all(system)
    # Who first, then where and how.
    code, out = system.interact(
        f"DEBIAN_FRONTEND=teletype apt-get install -y {DEB}",
        ["bad:name", "admin", "", "", "one", "two", "first pw", "first pw", "70000", "8080", "self-signed"],
        timeout=180,
    )
    assert code == 0, out
    for message in [
        "username 'bad:name' is invalid",
        "may not be empty",
        "the two passwords you typed do not match",
        "port 70000 is outside 1-65535",
    ]:
        assert message in out, message
    questions = [
        out.find(q)
        for q in (
            "Administrator username",
            "Administrator password",
            "TCP port for the package index",
            "HTTPS for the package index",
        )
    ]
    assert -1 not in questions and questions == sorted(questions), questions
    assert "PYPI_PORT=8080\n" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    serving(system, "first pw")

    code, out = system.interact(
        "DEBIAN_FRONTEND=teletype dpkg-reconfigure pypi-appliance",
        ["admin", "second pw", "second pw", "8080", "self-signed", "private", "", "relative/dir", "/srv/pypi"],
        timeout=180,
    )
    assert code == 0, out
    assert "data dir 'relative/dir' is not an absolute path" in out
    serving(system, "second pw")
    assert system.http("/simple/", user=USER, password="first pw") in REFUSED


def test_questions_in_traditional_chinese(system, leaves_installed):
    purge_all(system)
    code, out = system.interact(
        f"LANG=zh_TW.UTF-8 DEBIAN_FRONTEND=teletype apt-get install -y {DEB}",
        ["admin", "zh pw", "zh pw", "8080", "1"],
        timeout=180,
    )
    assert code == 0, out
    for question in [
        "套件索引的管理員帳號 [admin]：",
        "管理員密碼：",
        "再輸入一次管理員密碼：",
        "套件索引使用的 TCP 連接埠 [8080]：",
        "套件索引的 HTTPS 設定（self-signed, provided, off） [self-signed]：",
    ]:
        assert question in out, (question, out)
    assert "Administrator username" not in out and "\ufffd" not in out
    serving(system, "zh pw")


def conf_values(system) -> dict:
    text = system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    return dict(line.split("=", 1) for line in text.splitlines() if line.startswith("PYPI_"))


@pytest.mark.parametrize("frontend", ["teletype", "readline"])
def test_enter_takes_the_shown_default_on_line_frontends(system, leaves_installed, frontend):
    """debconf without whiptail or dialog: each prompt shows what Enter keeps,
    Enter takes it (a choice too), and a reconfigure answered with Enter
    throughout changes nothing, the admin's name included."""
    purge_all(system)
    code, out = system.interact(
        f"DEBIAN_FRONTEND={frontend} apt-get install -y {DEB}", ["", "line pw", "line pw", "", ""], timeout=180
    )
    assert code == 0, out
    for prompt in [
        "Administrator username for the package index [admin]:",
        "TCP port for the package index [8080]:",
        "HTTPS for the package index (self-signed, provided, off) [self-signed]:",
    ]:
        assert prompt in out, (prompt, out)
    assert "This answer cannot be used" not in out and "unable to initialize frontend" not in out, out
    values = conf_values(system)
    assert (values["PYPI_ADMIN_USER"], values["PYPI_PORT"], values["PYPI_TLS"]) == ("admin", "8080", "self-signed")
    serving(system, "line pw")
    # A reconfigure: username, passwords (empty keeps), port, TLS, access, upstream, its cooldown, data dir.
    system.sh(
        "pypi-appliance write-config PYPI_UPSTREAM=http://host.docker.internal:9/simple/ PYPI_UPSTREAM_MIN_AGE=7d"
    )
    before = conf_values(system)
    code, out = system.interact(f"DEBIAN_FRONTEND={frontend} dpkg-reconfigure pypi-appliance", [""] * 9, timeout=180)
    assert code == 0, out
    for prompt in [
        "Access for listing and downloading (private, public-read) [private]:",
        "Upstream index for the names this one does not hold [http://host.docker.internal:9/simple/]:",
        "Cooldown for the upstream's files [7d]:",
        "Directory for packages and passwords [/srv/pypi]:",
    ]:
        assert prompt in out, (prompt, out)
    assert "This answer cannot be used" not in out, out
    assert conf_values(system) == before
    assert system.sh("pypi-appliance user list --names").stdout.split() == ["admin"]
    system.sh("pypi-appliance write-config PYPI_UPSTREAM= && systemctl restart pypi-appliance")
    serving(system, "line pw")
    purge_all(system)


def test_password_never_in_argv_during_install(system, leaves_installed):
    purge_all(system)
    # Sample every process's argv, as often as the shell can, while the install runs.
    system.sh(
        "rm -f /root/argv.log /root/stop; nohup sh -c '"
        "i=0; while [ $i -lt 100000 ] && [ ! -e /root/stop ]; do i=$((i+1)); "
        'for f in /proc/[0-9]*/cmdline; do tr "\\000" " " < $f 2>/dev/null; echo; done; '
        "done' > /root/argv.log 2>/dev/null &"
    )
    install(system, preseed(USER, PASSWORD))
    system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    system.sh("DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance")
    system.sh("touch /root/stop; sleep 1")
    sampled = system.sh("cat /root/argv.log").stdout
    assert "apt-get install" in sampled and "dpkg-reconfigure" in sampled, "the sampler saw nothing"
    assert "pypi-appliance user" in sampled, "the hashing step was not sampled"
    assert PASSWORD not in sampled
    serving(system)


def test_upload_with_path_traversal_is_refused(system, installed, tmp_path):
    wheel = make_wheel(tmp_path, "9.0", project="evil")
    for name in [
        "../evil-9.0-py3-none-any.whl",
        "../../etc/evil-9.0-py3-none-any.whl",
        "/tmp/evil-9.0-py3-none-any.whl",
        "..%2Fevil-9.0-py3-none-any.whl",
    ]:
        body, content_type = upload_form(wheel, filename=name)
        status = system.http(
            "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
        )
        assert status == 400, (name, status)
        outside = system.sh(
            "find / -xdev -name 'evil-9.0*' -not -path '/srv/pypi/packages/*' "
            "-not -path '/proc/*' -not -path '/root/*' 2>/dev/null"
        ).stdout
        assert outside == "", f"{name!r} wrote {outside}"
    system.sh("rm -f /srv/pypi/packages/evil-9.0*")
