"""What a new admin meets in the first hour: the printed client configuration
with real pips, 401 for wrong credentials, a readable journal, commands run as
a normal user, a restore that asks, a re-upload's message, install output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.support import images
from tests.support.client import PASSWORD, USER, client_env, twine_upload, upload_form
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

CLIENT = "first-hour"
# Spaces, quotes and a backslash: what a .netrc must quote.
CLIENT_PASSWORD = 'two words "quoted" back\\slash'
PROJECT = "first-hour-probe"


def netrc_quoted(password: str) -> str:
    """The password as client-config's comment says to write it in ~/.netrc."""
    return '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def client_account(system, installed, tmp_path_factory):
    system.sh(
        f"pypi-appliance user remove {CLIENT} 2>/dev/null; pypi-appliance user add --password-stdin {CLIENT}",
        input=CLIENT_PASSWORD + "\n",
    )
    wheel = make_wheel(tmp_path_factory.mktemp("wheel"), "1.0", project=PROJECT)
    upload = twine_upload(system, wheel, PASSWORD)
    assert upload.returncode == 0 or "already exists" in upload.stdout + upload.stderr, upload.stdout
    yield
    system.sh(f"pypi-appliance user remove {CLIENT}")


@pytest.fixture(scope="module")
def newest_pip(system) -> str:
    """The newest pip's wheel (downloaded on the host while setting up), inside the system."""
    wheel = images.newest_pip()
    system.put(f"/root/{wheel.name}", wheel.read_bytes())
    return f"/root/{wheel.name}"


@pytest.mark.parametrize("pip", ["debian", "newest"])
def test_the_printed_configuration_works_with_debian_and_newest_pip(system, client_account, newest_pip, pip):
    """A client set up with nothing but what client-config prints (the system's
    trust store through install-ca for Debian's pip, a CA file through --cert for
    the newest), in a fresh venv, with no CA variables in the environment, and the
    password in ~/.netrc quoted as the comment says."""
    home = f"/root/client-{pip}"
    system.sh(f"rm -rf {home} && mkdir -p {home}/.config/pip")
    cert = [] if pip == "debian" else ["--cert", f"{home}/appliance-ca.pem"]
    out = system.sh(" ".join(["pypi-appliance client-config --user", CLIENT, *cert])).stdout
    assert "index-url = https://appliance:8080/simple/" in out  # the name, not an address
    assert "pypa/pip#12906" not in out
    printf = next(line for line in out.splitlines() if line.startswith("mkdir -p "))
    pip_conf = re.search(r"^\[global\]\n(?:.+\n)+", out, re.M).group(0)
    netrc = re.search(r"^# ~/\.netrc.*one line:\s+(machine .+ password) PASSWORD$", out, re.M).group(1)
    try:
        system.sh(printf)  # install-ca as root, or the CA file where --cert says
        system.sh(f"cat > {home}/.config/pip/pip.conf", input=pip_conf)
        system.sh(f"umask 077 && cat > {home}/.netrc", input=f"{netrc} {netrc_quoted(CLIENT_PASSWORD)}\n")
        if pip == "debian":
            system.sh(f"python3 -m venv --system-site-packages --without-pip {home}/venv")
        else:
            system.sh(
                f"python3 -m venv --without-pip {home}/venv && "
                f"{home}/venv/bin/python {newest_pip}/pip install -q --no-index {newest_pip}"
            )
        clean = f"env -i HOME={home} PATH=/usr/bin:/bin LANG=C.UTF-8 {home}/venv/bin/python -m pip"
        version = system.sh(f"{clean} --version").stdout
        expected = "/usr/lib/python3/dist-packages" if pip == "debian" else f"{home}/venv/"
        assert expected in version, version
        result = system.sh(f"{clean} download --no-deps --no-input -d {home}/dl {PROJECT}==1.0 2>&1", check=False)
        assert result.returncode == 0, version + result.stdout
        assert system.sh(f"ls {home}/dl").stdout.split() == [f"{PROJECT.replace('-', '_')}-1.0-py3-none-any.whl"]
    finally:
        system.sh(
            f"rm -rf {home} /usr/local/share/ca-certificates/pypi-appliance-appliance_8080.crt && "
            "update-ca-certificates --fresh >/dev/null"
        )


def test_wrong_or_missing_credentials_get_401_with_a_challenge(system, client_account):
    for credentials in [{}, {"user": USER, "password": "wrong"}, {"user": "nobody", "password": PASSWORD}]:
        for path in ["/simple/", f"/simple/{PROJECT}/", "/packages/x.whl", "/"]:
            status, body, headers = system.fetch_all(path, **credentials)
            assert status == 401, (path, credentials, status)
            assert headers.get("WWW-Authenticate") == 'Basic realm="pypi-appliance"', (path, headers)
    # pip on a terminal asks for credentials on a 401, and names wrong ones
    # (a 403 only ever gave "from versions: none").
    code, out = system.interact(
        "python3 -m pip download --no-deps -d /tmp/401 --cert /etc/pypi-appliance/tls/ca.crt "
        f"--index-url https://appliance:8080/simple/ {PROJECT}==1.0",
        [CLIENT, "wrong password"],
    )
    assert code != 0
    assert "User for appliance:8080:" in out and "401 Error, Credentials not correct for" in out, out


def test_a_reupload_is_explained_in_the_appliance_terms(system, client_account, tmp_path):
    # Other contents under a stored file's name (the same bytes again are accepted: test_writes).
    wheel = make_wheel(tmp_path, "1.0", project=PROJECT, metadata="Keywords: rebuilt\n")
    twine = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--verbose",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            system.url("/"),
            "--cert",
            system.ca_file,
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD),
    )
    out = twine.stdout + twine.stderr
    assert twine.returncode != 0 and "400" in out  # twine's convention for "exists"
    message = f"{wheel.name} already exists on this index, with other contents. Published files never change"
    assert message in " ".join(out.split()), out
    assert "--overwrite" not in out
    body, content_type = upload_form(wheel)
    status, text, headers = system.fetch_all(
        "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
    )
    assert status == 409 and message in text.decode() and "--overwrite" not in text.decode()
    assert headers["Content-Type"].startswith("text/plain")
    # Other refusals keep pypiserver's own words.
    body, content_type = upload_form(wheel, filename="no-version.whl")
    status, text, _ = system.fetch_all(
        "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
    )
    assert status == 400 and text.decode() == "Bad filename: no-version.whl\n"


def test_the_journal_is_plain_text(system, installed):
    assert system.http("/simple/", user=USER, password=PASSWORD) == 200
    journal = system.sh("journalctl -u pypi-appliance --no-pager -o cat").stdout
    assert "pypiserver-1  | " in journal and "Listening at: http://0.0.0.0:8080" in journal
    assert "blob data" not in journal and "\x1b" not in journal
    assert "error reading bcrypt version" not in journal  # passlib's probe of bcrypt 4: noise, silenced
    status = system.sh("systemctl status pypi-appliance --no-pager -n 20", check=False).stdout
    assert "blob data" not in status and " | " in status


@pytest.fixture
def as_user(system, installed):
    return lambda command: system.sh(f"runuser -u nobody -- {command}", check=False)


@pytest.mark.parametrize(
    "command, name",
    [
        ("user list", "user list"),
        ("user add x --password-stdin", "user add"),
        ("user passwd admin", "user passwd"),
        ("user remove admin", "user remove"),
        ("backup /tmp/b.tar.gz", "backup"),
        ("restore /tmp/b.tar.gz", "restore"),
        ("logs -n 1", "logs"),
        ("tls", "tls"),
        ("up", "up"),
        ("down", "down"),
    ],
)
def test_commands_that_need_root_say_so(as_user, command, name):
    result = as_user(f"pypi-appliance {command}")
    assert result.returncode == 4, (command, result.stdout, result.stderr)
    assert f"'{name}' must be run as root: sudo pypi-appliance {name}" in result.stderr, result.stderr
    assert result.stdout == ""


def test_status_as_a_normal_user_tells_a_permission_problem_from_a_down_service(system, as_user):
    result = as_user("pypi-appliance status")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "permission denied on Docker's socket" in result.stdout + result.stderr
    assert "docker is not answering" not in result.stdout
    assert re.search(r"^service\s+active$", result.stdout, re.M)
    assert re.search(r"^health\s+ok: ", result.stdout, re.M)
    report = json.loads(as_user("pypi-appliance status --json").stdout)
    assert report["healthy"] is True and report["containers"] is None
    assert report["containers_error"].startswith("permission denied")
    # What needs no secret works as anyone.
    assert "index-url = https://appliance:8080/simple/" in as_user("pypi-appliance client-config").stdout
    assert as_user("pypi-appliance url").stdout == "https://appliance:8080/simple/\n"


def test_status_says_starting_while_the_containers_start(system, installed):
    system.sh("systemctl restart pypi-appliance")
    seen = []
    for _ in range(120):
        result = system.sh("pypi-appliance status", check=False)
        health = re.search(r"^health\s+(.*)$", result.stdout, re.M).group(1)
        seen.append((result.returncode, health))
        if result.returncode == 0:
            break
        system.sh("sleep 0.5")
    assert seen[-1][0] == 0, seen
    assert seen[0][0] == 3 and seen[0][1].startswith("starting"), seen
    assert all(code in (0, 3) for code, _ in seen), seen
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def test_status_shows_the_version_and_fails_on_an_unhealthy_container(system, installed):
    result = system.sh("pypi-appliance status", check=False)
    system.report()
    version = system.sh("dpkg-query -W -f '${Version}' pypi-appliance").stdout
    assert re.search(rf"^version\s+pypi-appliance {re.escape(version)}$", result.stdout, re.M), result.stdout
    assert json.loads(system.report("--json"))["version"] == version
    # The indexer stops answering its health check (stopped, not killed: compose would restart all).
    pids = [line.split()[1] for line in system.sh("docker top pypi-appliance-indexer-1").stdout.splitlines()[1:]]
    system.sh(f"kill -STOP {' '.join(pids)}")
    try:
        seen = []
        for _ in range(90):
            result = system.sh("pypi-appliance status", check=False)
            seen.append(result.returncode)
            if result.returncode == 1:
                break
            system.sh("sleep 1")
        assert seen[-1] == 1 and set(seen) <= {0, 1}, seen
        assert re.search(
            r"^health\s+FAILING: .*, but pypi-appliance-indexer-1 fails its health check; "
            r"'pypi-appliance logs' says why$",
            result.stdout,
            re.M,
        ), result.stdout
    finally:
        system.sh(f"kill -CONT {' '.join(pids)}")
    for _ in range(60):
        if system.sh("pypi-appliance status", check=False).returncode == 0:
            break
        system.sh("sleep 1")
    assert system.sh("pypi-appliance status", check=False).returncode == 0


def test_install_output_names_the_url_and_the_next_step(installed):
    assert "pypi-appliance: the index is starting at https://appliance:8080/simple/" in installed
    assert "pypi-appliance client-config" in installed


def reconfigure(system, port: int = 8080, access: str = "private", upstream: str = "", min_age: str = "") -> str:
    """dpkg-reconfigure as an admin does it: user, empty passwords (keep), port,
    TLS mode, access, upstream (and its cooldown when one is given: empty keeps
    it), data dir; its output with the terminal's wrapping undone."""
    cooldown = [min_age] if upstream not in ("", "none") else []
    code, out = system.interact(
        "DEBIAN_FRONTEND=teletype dpkg-reconfigure pypi-appliance",
        [USER, "", "", str(port), "self-signed", access, upstream, *cooldown, "/srv/pypi"],
        timeout=180,
    )
    assert code == 0, out
    return " ".join(out.split())


def test_a_port_change_tells_the_admin_to_update_clients(system, installed):
    try:
        out = reconfigure(system, port=8081)
        assert (
            "the port changed from 8080 to 8081: every client must now use https://appliance:8081/simple/"
        ) in out, out
    finally:
        out = reconfigure(system)
    assert "the port changed from 8081 to 8080" in out
    unchanged = system.sh("DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance 2>&1").stdout
    assert "the port changed" not in unchanged and "starting at https://appliance:8080/simple/" in unchanged
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def test_reading_rights_switch_at_run_time(system, client_account, tmp_path):
    """One .deb, both policies: dpkg-reconfigure opens reading to anyone and closes it again."""
    try:
        reconfigure(system, access="public-read")
        assert "PYPI_ACCESS=public-read\n" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
        system.wait_http(f"/simple/{PROJECT}/", 200)  # anonymous
        status, wheel = system.fetch(f"/packages/{PROJECT.replace('-', '_')}-1.0-py3-none-any.whl")
        assert status == 200 and wheel[:2] == b"PK"
        body, content_type = upload_form(make_wheel(tmp_path, "9.9", project=PROJECT))
        upload = system.fetch_all("/", method="POST", data=body, headers={"Content-Type": content_type})
        assert upload[0] == 401 and upload[2]["WWW-Authenticate"] == 'Basic realm="pypi-appliance"'
        # The restarted checker may still be starting: 503 until it answers.
        seen = [
            system.http(
                "/", user=USER, password="wrong", method="POST", data=body, headers={"Content-Type": content_type}
            )
        ]
        while seen[-1] == 503 and len(seen) < 60:
            time.sleep(0.5)
            seen.append(
                system.http(
                    "/", user=USER, password="wrong", method="POST", data=body, headers={"Content-Type": content_type}
                )
            )
        assert seen[-1] == 401, seen
        assert "public-read: anyone may list and download" in system.report()
    finally:
        reconfigure(system, access="private")
    system.wait_http(f"/simple/{PROJECT}/", 401)
    system.wait_http(f"/simple/{PROJECT}/", 200, user=USER, password=PASSWORD)
    assert "9.9" not in system.sh("ls /srv/pypi/packages").stdout


# An editor for debconf's editor frontend: keeps a copy of every file debconf
# shows, and answers the port question once with a value that must be refused.
EDITOR = """#!/bin/sh
n=$(ls /root/edits | wc -l)
cp "$1" "/root/edits/$(printf %02d "$n")"
if grep -q '^pypi-appliance/port="' "$1" && [ ! -e /root/edits.refused ]; then
    sed -i 's|^pypi-appliance/port=".*"|pypi-appliance/port="70000"|' "$1"
    touch /root/edits.refused
fi
"""


def test_a_refused_answer_is_not_offered_again(system, installed):
    system.put("/root/edit.sh", EDITOR)
    system.sh("chmod +x /root/edit.sh && rm -rf /root/edits /root/edits.refused && mkdir /root/edits")
    result = system.sh("DEBIAN_FRONTEND=editor EDITOR=/root/edit.sh dpkg-reconfigure pypi-appliance 2>&1", check=False)
    assert result.returncode == 0, result.stdout
    shown = [system.sh(f"cat /root/edits/{name}").stdout for name in system.sh("ls /root/edits").stdout.split()]
    ports = [re.search(r'^pypi-appliance/port="(.*)"$', text, re.M) for text in shown]
    ports = [match.group(1) for match in ports if match]
    # Asked with the current port, refused 70000, asked again with the current port.
    assert ports == ["8080", "8080"], ports
    assert any("port 70000 is outside 1-65535" in text for text in shown), shown
    assert "PYPI_PORT=8080\n" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
