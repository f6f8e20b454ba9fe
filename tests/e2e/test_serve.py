"""The core path: install the real .deb with preseeded answers in a systemd +
Docker host, then upload with twine and install with pip from this host.

The tests run in file order and share one installed system."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

USER = "admin"
# Breaks naive shell quoting, and non-ASCII: pip and twine send it Latin-1, curl UTF-8.
PASSWORD = 'pä ss:"$\\wörd'
NEW_PASSWORD = "n€w pass 'word' `x` \\ ; $(id)"
PROJECT = "appliance-probe"
REFUSED = (401, 403)  # pypiserver answers a wrong password with 403


def preseed(user: str, password: str, port: int | None = None) -> str:
    lines = [
        f"pypi-appliance pypi-appliance/admin-username string {user}",
        f"pypi-appliance pypi-appliance/admin-password password {password}",
        f"pypi-appliance pypi-appliance/admin-password-again password {password}",
    ]
    if port:
        lines.append(f"pypi-appliance pypi-appliance/port string {port}")
    return "\n".join(lines) + "\n"


def make_wheel(directory: Path, version: str = "1.0") -> Path:
    """A minimal, valid pure-Python wheel, built without any network."""
    name = PROJECT.replace("-", "_")
    path = directory / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version}\n"
                                 "Summary: probe package for pypi-appliance tests\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for arcname, text in files.items():
            wheel.writestr(arcname, text)
        record = "".join(f"{arcname},,\n" for arcname in files) + f"{dist_info}/RECORD,,\n"
        wheel.writestr(f"{dist_info}/RECORD", record)
    return path


def upload_form(wheel: Path, filename: str | None = None) -> tuple[bytes, str]:
    """The multipart body of a legacy-API upload, as any non-twine client sends it."""
    boundary = "pypi-appliance-test-boundary"
    fields = {":action": "file_upload", "protocol_version": "1", "name": PROJECT, "version": "1.0"}
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{filename or wheel.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + wheel.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def client_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_"))}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def twine_upload(system, wheel: Path, password: str) -> subprocess.CompletedProcess:
    # Credentials through the environment, as a CI job would: never in argv.
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", system.url("/"), str(wheel)],
        capture_output=True, text=True, timeout=120,
        env=client_env(TWINE_USERNAME=USER, TWINE_PASSWORD=password),
    )


def index_url(system, user: str, password: str) -> str:
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return f"http://{quote(user)}:{quote(password)}@127.0.0.1:{system.port}/simple/"


@pytest.fixture(scope="module")
def installed(system, deb):
    system.put("/root/pypi-appliance.deb", deb.read_bytes())
    system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    started = time.monotonic()
    result = system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb 2>&1")
    seconds = system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
    print(f"\n[e2e] apt install to first authenticated 200: {time.monotonic() - started:.1f} s "
          f"(serving {seconds:.1f} s after install returned)")
    return result.stdout


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


def test_anonymous_listing_and_upload_are_refused(system, installed, tmp_path):
    assert system.http("/simple/") == 401
    assert system.http(f"/simple/{PROJECT}/") == 401
    body, content_type = upload_form(make_wheel(tmp_path))
    status = system.http("/", method="POST", data=body, headers={"Content-Type": content_type})
    assert status in REFUSED
    assert system.sh("ls -A /srv/pypi/packages").stdout == ""


def test_wrong_credentials_are_refused(system, installed):
    assert system.http("/simple/", user=USER, password="wrong") in REFUSED
    assert system.http("/simple/", user="nobody", password=PASSWORD) in REFUSED


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_password_works_in_either_client_encoding(system, installed, encoding):
    assert system.http("/simple/", user=USER, password=PASSWORD, encoding=encoding) == 200


def test_twine_upload_then_conflict(system, installed, tmp_path):
    wheel = make_wheel(tmp_path)
    first = twine_upload(system, wheel, PASSWORD)
    assert first.returncode == 0, first.stdout + first.stderr
    assert system.sh("ls /srv/pypi/packages").stdout.split() == [wheel.name]
    again = twine_upload(system, wheel, PASSWORD)
    assert again.returncode != 0
    # pypiserver answers twine 400 (twine's --skip-existing expects pypi.org's code), others 409.
    assert "400 Bad Request" in again.stdout + again.stderr
    body, content_type = upload_form(wheel)
    status = system.http("/", user=USER, password=PASSWORD, method="POST", data=body,
                         headers={"Content-Type": content_type})
    assert status == 409
    assert system.sh("ls /srv/pypi/packages").stdout.split() == [wheel.name]


def test_pip_installs_through_the_appliance(system, installed, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), PROJECT],
        capture_output=True, text=True, timeout=180,
        env=client_env(PIP_INDEX_URL=index_url(system, USER, PASSWORD)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    probe = subprocess.run([sys.executable, "-c", "import appliance_probe; print(appliance_probe.VERSION)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(target)))
    assert probe.stdout.strip() == "1.0", probe.stderr


def test_unknown_project_is_not_redirected(system, installed):
    assert system.http("/simple/requests/", user=USER, password=PASSWORD) == 404


def test_status_reports_healthy(system, installed):
    result = system.sh("pypi-appliance status", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "active" in result.stdout
    assert "1 files in 1 projects" in result.stdout
    assert ":8080/simple/" in result.stdout


def test_client_config_names_this_host(system, installed):
    out = system.sh("pypi-appliance client-config --host pypi.internal").stdout
    assert "index-url = http://admin@pypi.internal:8080/simple/" in out
    assert "trusted-host = pypi.internal" in out
    assert "[pypi-appliance]\nrepository = http://pypi.internal:8080/\nusername = admin" in out
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
    assert system.sh("ls /srv/pypi/packages").stdout.split() == ["appliance_probe-1.0-py3-none-any.whl"]
    assert NEW_PASSWORD not in system.sh("cat /var/cache/debconf/*.dat").stdout
    journal = system.sh("journalctl --all --no-pager -o cat").stdout
    logs = system.sh("cat /var/log/apt/term.log /var/log/dpkg.log 2>/dev/null || true").stdout
    for secret in (PASSWORD, NEW_PASSWORD):
        assert secret not in journal and secret not in logs
