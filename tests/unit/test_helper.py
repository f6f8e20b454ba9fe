"""The admin helper, run as a program from src/ against a scratch data dir."""

import functools
import io
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile

import pytest
from passlib.apache import HtpasswdFile

from builder.cli import TREE
from tests.support.dists import wheel_bytes

PASSWORD = 'pä ss:"$\\wörd'
SOURCE = str(TREE / "src")


# The two differ in passlib and bcrypt (libpass and a newer bcrypt in the
# venv, Debian's python3-passlib), so what never hashes or reads a password
# runs on Debian's alone, which is what the package runs on.
ONE_PYTHON = pytest.mark.parametrize("helper", ["/usr/bin/python3"], ids=["debian"], indirect=True)


@functools.cache
def has_passlib(python: str) -> bool:
    return subprocess.run([python, "-c", "import passlib, bcrypt"], capture_output=True).returncode == 0


# The venv's Python with libpass, and Debian's own python3 with python3-passlib,
# which is what the package runs on.
@pytest.fixture(params=[sys.executable, "/usr/bin/python3"], ids=["venv", "debian"])
def helper(tmp_path, request):
    if not has_passlib(request.param):
        pytest.fail(f"{request.param} lacks passlib/bcrypt: install python3-passlib python3-bcrypt")
    data = tmp_path / "data"
    (data / "auth").mkdir(parents=True)
    # The package's host paths below a scratch root (PYPI_APPLIANCE_ROOT).
    conf = tmp_path / "etc/pypi-appliance/pypi-appliance.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"# comment\nPYPI_DATA_DIR={data}\nPYPI_PORT=9123\nPYPI_ADMIN_USER=admin\n")

    def run(*args, stdin=None, path=None):
        # The package from src/, which the .deb installs as it is (the launcher adds /usr/share/pypi-appliance).
        return subprocess.run(
            [request.param, "-m", "pypi_appliance", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(
                os.environ,
                PYTHONPATH=SOURCE,
                PYPI_APPLIANCE_ROOT=str(tmp_path),
                PYPI_AUDIT_LOG=str(tmp_path / "audit.log"),
                SUDO_USER="alice",
                PATH=f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"],
            ),
        )

    def sync():
        """What the indexer does: list the packages dir (here as root, in place)."""
        return subprocess.run(
            [
                request.param,
                "-c",
                "import sys; from pypi_appliance.services.index import Index, Syncer; "
                "Syncer(Index(sys.argv[1]), log=print).sync()",
                str(data),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONPATH=SOURCE),
        )

    run.sync = sync
    run.conf = conf
    run.tls = conf.parent / "tls"
    run.htpasswd = data / "auth" / "htpasswd"
    run.data = data
    run.audit = tmp_path / "audit.log"
    return run


def test_a_front_door_that_cannot_be_reloaded_is_an_error(helper, tmp_path):
    """A removed account must stop working: when the front door runs but its
    workers cannot be listed or signalled, the change is saved and the admin
    is told what to do, not left with credentials cached for 5 minutes."""
    for name in ("admin", "ci"):
        assert helper("user", "add", "--password-stdin", name, stdin="pw\n").returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    # The front door runs (compose's labels find it), but docker top fails.
    docker.write_text(
        '#!/bin/sh\ncase "$*" in ps*com.docker.compose.service=proxy*) echo c0ffee;; '
        'top\\ c0ffee*) echo "Error response from daemon: boom" >&2; exit 1;; esac\n'
    )
    docker.chmod(0o755)
    result = helper("user", "remove", "ci", path=bin_dir)
    assert result.returncode == 1, result
    assert "runs, but its processes could not be listed (Error response from daemon: boom)" in result.stderr
    assert "systemctl restart pypi-appliance" in result.stderr
    assert helper("user", "list", "--names").stdout.split() == ["admin"]
    # Not running: nothing to reload (it reads the passwords when it starts).
    docker.write_text("#!/bin/sh\ncase $1 in ps) ;; *) exit 1;; esac\n")
    assert helper("user", "add", "--password-stdin", "ci", stdin="pw\n", path=bin_dir).returncode == 0


def test_user_lifecycle(helper):
    assert (
        helper("user", "add", "--role", "publish", "--password-stdin", "admin", stdin=PASSWORD + "\n").returncode == 0
    )
    assert helper("user", "add", "--password-stdin", "ci", stdin="other\n").returncode == 0
    assert helper("user", "list").stdout.splitlines() == ["admin publish *", "ci read"]
    assert helper("user", "list", "--names").stdout.splitlines() == ["admin", "ci"]

    users = HtpasswdFile(str(helper.htpasswd))
    assert users.get_hash("admin")[:7] in (b"$2y$12$", b"$2b$12$")  # bcrypt, cost 12
    assert users.check_password("admin", PASSWORD)
    assert PASSWORD.encode() not in helper.htpasswd.read_bytes()
    mode = helper.htpasswd.stat()
    assert not mode.st_mode & stat.S_IROTH
    assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_gid == 9898

    assert helper("user", "passwd", "--password-stdin", "admin", stdin="new secret\n").returncode == 0
    users = HtpasswdFile(str(helper.htpasswd))
    assert users.check_password("admin", "new secret") and not users.check_password("admin", PASSWORD)

    assert helper("user", "role", "ci", "publish").returncode == 0
    assert helper("user", "list").stdout.splitlines() == ["admin publish *", "ci publish *"]
    assert helper("user", "role", "ci", "admin", "read").returncode == 0
    assert helper("user", "list").stdout.splitlines() == ["admin read", "ci read"]
    assert helper("user", "remove", "ci").returncode == 0
    last = helper("user", "remove", "admin")
    assert last.returncode == 1 and "last user" in last.stderr
    assert helper("user", "list").stdout.splitlines() == ["admin read"]
    # A removed account's role goes with it: the same name added again may only read.
    assert (helper.data / "auth" / "roles").read_text().count("ci ") == 0

    events = [line.split()[1:] for line in helper.audit.read_text().splitlines()]
    assert events == [
        ["user-add", "by=alice", "account=admin", "role=publish", "projects=*"],
        ["user-add", "by=alice", "account=ci", "role=read"],
        ["user-passwd", "by=alice", "account=admin"],
        ["user-role", "by=alice", "account=ci", "role=publish"],
        ["user-role", "by=alice", "account=ci", "role=read"],
        ["user-role", "by=alice", "account=admin", "role=read"],
        ["user-remove", "by=alice", "account=ci"],
    ]
    assert PASSWORD not in helper.audit.read_text() and "new secret" not in helper.audit.read_text()


def test_generated_password(helper):
    helper.conf.write_text(helper.conf.read_text() + "PYPI_TLS=off\n")
    result = helper("user", "add", "--generate", "--role", "publish", "ci")
    assert result.returncode == 0, result.stderr
    password = result.stdout.splitlines()[1]
    index = next(line for line in result.stdout.splitlines() if line.startswith("export PIP_INDEX_URL="))
    assert len(password) >= 40 and f"http://ci:{password}@" in index
    assert "PIP_TRUSTED_HOST=" in result.stdout  # plain HTTP, as printed
    assert f"TWINE_PASSWORD={password}" in result.stdout
    users = HtpasswdFile(str(helper.htpasswd))
    assert users.check_password("ci", password) and password.encode() not in helper.htpasswd.read_bytes()
    assert password not in helper.audit.read_text()
    # A read account gets no twine line; another run makes another password.
    other = helper("user", "add", "--generate", "reader")
    assert "TWINE" not in other.stdout and other.stdout.splitlines()[1] != password
    both = helper("user", "add", "--generate", "--password-stdin", "x", stdin="pw\n")
    assert both.returncode == 1 and "choose one" in both.stderr
    # Where the machine reaches the index: --host, --url (a reverse proxy), PYPI_CLIENT_URL.
    hosted = helper("user", "add", "--generate", "--host", "pypi.lan:9000", "h")
    assert "export PIP_INDEX_URL=http://h:" in hosted.stdout and "@pypi.lan:9000/simple/\n" in hosted.stdout
    proxied = helper("user", "add", "--generate", "--url", "https://pypi.example.com/", "p")
    assert "@pypi.example.com/simple/\n" in proxied.stdout and "PIP_TRUSTED_HOST" not in proxied.stdout
    assert "PIP_CERT" not in proxied.stdout  # TLS ends at the proxy: its certificate, not a CA of ours
    bad = helper("user", "add", "--generate", "--url", "ftp://x", "q")
    assert bad.returncode == 1 and "client URL 'ftp://x' is not an http:// or https:// URL" in bad.stderr
    assert "q" not in helper("user", "list", "--names").stdout.split()
    lone = helper("user", "add", "--host", "x", "--password-stdin", "r", stdin="pw\n")
    assert lone.returncode == 1 and "they go with --generate" in lone.stderr


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["user", "add", "--password-stdin", "a:b"], "x\n", "invalid username 'a:b'"),
        (["user", "add", "--password-stdin", "a b"], "x\n", "invalid username 'a b'"),
        (["user", "add", "--password-stdin", "admin"], "\n", "the password is empty"),
        (["user", "add", "--password-stdin", "admin"], "x" * 73 + "\n", "72-byte limit"),
        (["user", "passwd", "--password-stdin", "nobody"], "x\n", "no user 'nobody'"),
        (["user", "remove", "nobody"], None, "no user 'nobody'"),
        (["user", "role", "nobody", "publish"], None, "no user 'nobody'"),
        (["user", "role", "publish"], None, "give NAME... then the role, read or publish"),
        (["user", "role", "admin", "owner"], None, "give NAME... then the role, read or publish"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(helper, args, stdin, message):
    result = helper(*args, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert not helper.htpasswd.exists()


def test_add_twice_is_refused(helper):
    helper("user", "add", "--password-stdin", "admin", stdin="one\n")
    before = helper.htpasswd.read_bytes()
    again = helper("user", "add", "--password-stdin", "admin", stdin="two\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert helper.htpasswd.read_bytes() == before


@ONE_PYTHON
def test_client_config_without_tls(helper):
    with helper.conf.open("a") as f:
        f.write("PYPI_TLS=off\n")
    out = helper("client-config", "--host", "pypi.example.org", "--user", "ci.bot@x").stdout
    assert "index-url = http://pypi.example.org:9123/simple/" in out
    assert "machine pypi.example.org login ci.bot@x password" in out
    assert "trusted-host = pypi.example.org" in out
    assert "repository = http://pypi.example.org:9123/" in out
    assert "username = ci.bot@x" in out
    assert "WARNING: TLS is off" in out and "cert =" not in out


@ONE_PYTHON
def test_every_command_has_help(helper):
    for args in [
        [],
        ["status"],
        ["client-config"],
        ["url"],
        ["tls"],
        ["logs"],
        ["backup"],
        ["restore"],
        ["up"],
        ["down"],
        ["user"],
        ["user", "add"],
        ["user", "passwd"],
        ["user", "remove"],
        ["user", "list"],
    ]:
        result = helper(*args, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, args


@ONE_PYTHON
def test_client_config_covers_uv(helper):
    out = helper("client-config", "--host", "10.1.2.3").stdout
    assert '[[tool.uv.index]]\nname = "pypi-appliance"\nurl = "https://10.1.2.3:9123/simple/"' in out
    assert "UV_INDEX_PYPI_APPLIANCE_PASSWORD" in out
    assert "UV_DEFAULT_INDEX=https://admin@10.1.2.3:9123/simple/" in out
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in out and "UV_NATIVE_TLS=1" in out
    assert "pypa/pip#12906" in out  # an IP address: pip 24.2+ needs a name or legacy-certs


def openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


@ONE_PYTHON
def test_tls_makes_a_ca_once_and_a_certificate_for_this_host(helper):
    first = helper("tls")
    assert first.returncode == 0, first.stderr
    assert "made a new CA" in first.stderr and "issued the server certificate for " in first.stderr
    ca, key, crt = helper.tls / "ca.crt", helper.tls / "ca.key", helper.tls / "server.crt"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((helper.tls / "server.key").stat().st_mode) == 0o600
    openssl("verify", "-CAfile", str(ca), str(crt))
    sans = openssl("x509", "-in", str(crt), "-noout", "-ext", "subjectAltName")
    assert "IP Address:127.0.0.1" in sans and "DNS:localhost" in sans
    # Idempotent: a second run (every service start) keeps both.
    before = (ca.read_bytes(), crt.read_bytes())
    again = helper("tls")
    assert again.returncode == 0 and again.stderr == ""
    assert (ca.read_bytes(), crt.read_bytes()) == before


@ONE_PYTHON
def test_tls_renews_a_certificate_near_expiry_with_the_same_ca(helper, tmp_path):
    helper("tls")
    ca = (helper.tls / "ca.crt").read_bytes()
    csr = tmp_path / "near.csr"
    openssl("req", "-new", "-key", str(helper.tls / "server.key"), "-subj", "/CN=near", "-out", str(csr))
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(helper.tls / "ca.crt"),
        "-CAkey",
        str(helper.tls / "ca.key"),
        "-days",
        "3",
        "-out",
        str(helper.tls / "server.crt"),
    )
    result = helper("tls")
    assert "issued a new server certificate (it expires on" in result.stderr
    end = openssl("x509", "-in", str(helper.tls / "server.crt"), "-noout", "-checkend", str(300 * 86400))
    assert "will not expire" in end
    assert (helper.tls / "ca.crt").read_bytes() == ca


def signed_by_the_ca(helper, tmp_path, san):
    """A certificate for san that the CA's key signs (what a thief of the key would make)."""
    key, csr, crt, ext = (tmp_path / f"other.{x}" for x in ("key", "csr", "crt", "cnf"))
    ext.write_text(f"subjectAltName={san}\n")
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-subj",
        "/CN=other",
        "-out",
        str(csr),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(helper.tls / "ca.crt"),
        "-CAkey",
        str(helper.tls / "ca.key"),
        "-days",
        "3",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(helper.tls / "ca.crt"), str(crt)], capture_output=True, text=True
    )


@ONE_PYTHON
def test_the_ca_vouches_for_this_host_only(helper, tmp_path):
    """Clients put the CA in their system store: its name constraints keep
    its key from vouching for any other site."""
    helper("tls")
    constraints = openssl("x509", "-in", str(helper.tls / "ca.crt"), "-noout", "-ext", "nameConstraints")
    assert "critical" in constraints and "DNS:localhost" in constraints, constraints
    for san in ("DNS:pypi.org", "DNS:www.example.com", "IP:8.8.8.8"):
        refused = signed_by_the_ca(helper, tmp_path, san)
        assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr, san
    # Its own names, names under them and local addresses it may sign for.
    for san in ("DNS:localhost", "IP:127.0.0.1", "IP:192.168.7.7", "IP:fd00::1"):
        assert signed_by_the_ca(helper, tmp_path, san).returncode == 0, san
    shown = helper("tls").stdout
    assert re.search(r"^ca_may_sign\s+.*localhost.*127\.0\.0\.0/8", shown, re.M), shown


@ONE_PYTHON
def test_tls_covers_names_the_admin_adds(helper):
    helper("tls")
    ca = (helper.tls / "ca.crt").read_bytes()
    with helper.conf.open("a") as f:
        f.write("PYPI_TLS_NAMES=pypi.example.org, 10.9.8.7\n")
    # A local address: covered by the same CA. A new name: outside what the
    # CA may sign for, so left out (with what to do) until the admin makes a new CA.
    result = helper("tls")
    assert result.returncode == 0, result.stderr
    assert "does not cover 10.9.8.7" in result.stderr
    assert "the CA may not sign for pypi.example.org" in result.stderr and "tls --new-ca" in result.stderr
    sans = openssl("x509", "-in", str(helper.tls / "server.crt"), "-noout", "-ext", "subjectAltName")
    assert "IP Address:10.9.8.7" in sans and "pypi.example.org" not in sans
    assert (helper.tls / "ca.crt").read_bytes() == ca
    result = helper("tls", "--new-ca")
    assert result.returncode == 0 and "made a new CA" in result.stderr, result.stderr
    assert (helper.tls / "ca.crt").read_bytes() != ca
    sans = openssl("x509", "-in", str(helper.tls / "server.crt"), "-noout", "-ext", "subjectAltName")
    assert "DNS:pypi.example.org" in sans and "IP Address:10.9.8.7" in sans
    openssl("verify", "-CAfile", str(helper.tls / "ca.crt"), str(helper.tls / "server.crt"))
    assert helper("tls").stderr == ""


@ONE_PYTHON
def test_a_ca_made_before_name_constraints_is_kept_and_named(helper, tmp_path):
    """A CA from 0.6 or older (no constraints) stays: clients trust it. It
    keeps covering new names, and tls says what it may sign for."""
    helper("tls")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(helper.tls / "ca.key"),
        "-days",
        "30",
        "-subj",
        "/CN=old CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        str(helper.tls / "ca.crt"),
    )
    with helper.conf.open("a") as f:
        f.write("PYPI_TLS_NAMES=pypi.example.org\n")
    result = helper("tls")
    assert "made a new CA" not in result.stderr and "issued a new server certificate" in result.stderr, result.stderr
    assert "DNS:pypi.example.org" in openssl(
        "x509", "-in", str(helper.tls / "server.crt"), "-noout", "-ext", "subjectAltName"
    )
    assert re.search(r"^ca_may_sign\s+any name \(a CA made before 0\.7\.0; .*tls --new-ca", result.stdout, re.M), (
        result.stdout
    )


@ONE_PYTHON
def test_tls_refuses_a_ca_without_its_key(helper):
    helper("tls")
    (helper.tls / "ca.key").unlink()
    result = helper("tls")
    assert result.returncode == 1 and "ca.key is missing" in result.stderr


@ONE_PYTHON
def test_client_config_prints_the_ca_and_an_install_ca_line(helper, tmp_path):
    helper("tls")
    out = helper("client-config", "--host", "pypi.example.org:443").stdout
    ca = (helper.tls / "ca.crt").read_text().strip()
    assert ca in out
    assert "index-url = https://pypi.example.org:443/simple/" in out
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    assert f"cert = {bundle}" in out and f"ca_cert = {bundle}" in out and "trusted-host" not in out
    assert "pypa/pip#12906" not in out
    assert "Clients must reach this host as" not in out  # the admin named the host
    line = next(x for x in out.splitlines() if x.startswith("mkdir -p "))
    target = "/usr/local/share/ca-certificates/pypi-appliance-pypi.example.org_443.crt"
    assert line.startswith("mkdir -p /usr/local/share/ca-certificates && printf ")
    assert line.endswith(f"> {target} && update-ca-certificates")
    copy = tmp_path / "installed.crt"
    subprocess.run(
        [
            "sh",
            "-c",
            line.replace(f"{target} && update-ca-certificates", str(copy)).replace(
                "/usr/local/share/ca-certificates", str(tmp_path)
            ),
        ],
        check=True,
    )
    assert copy.read_text().strip() == ca


@ONE_PYTHON
def test_client_config_with_a_cert_path_writes_the_ca_there(helper, tmp_path):
    helper("tls")
    target = tmp_path / "clients" / "appliance-ca.pem"  # a folder the client does not have yet
    out = helper("client-config", "--host", "pypi.example.org", "--cert", str(target)).stdout
    assert f"cert = {target}" in out and f"ca_cert = {target}" in out and f"SSL_CERT_FILE={target}" in out
    # Every line points at the one path: no system bundle, no update-ca-certificates.
    assert "ca-certificates" not in out and "UV_NATIVE_TLS" not in out
    line = next(x for x in out.splitlines() if x.startswith("mkdir -p "))
    subprocess.run(["sh", "-c", line], check=True)
    assert target.read_text().strip() == (helper.tls / "ca.crt").read_text().strip()


@ONE_PYTHON
def test_client_config_defaults_to_a_name_the_certificate_covers(helper):
    helper("tls")
    out = helper("client-config").stdout
    url = re.search(r"^index-url = https://([^:/]+):9123/simple/$", out, re.M)
    name = url.group(1)
    assert name in (socket.getfqdn(), socket.gethostname())
    assert "pypa/pip#12906" not in out and f"Clients must reach this host as {name}" in out
    sans = openssl("x509", "-in", str(helper.tls / "server.crt"), "-noout", "-ext", "subjectAltName")
    assert f"DNS:{name}" in sans
    assert helper("url").stdout == f"https://{name}:9123/simple/\n"


@ONE_PYTHON
def test_client_config_explains_netrc_quoting(helper):
    out = helper("client-config", "--host", "pypi.example.org").stdout
    assert "machine pypi.example.org login admin password PASSWORD" in out
    assert 'password "my \\"pass\\" phrase"' in out


@pytest.fixture
def populated(helper):
    packages = helper.data / "packages"
    packages.mkdir()
    (packages / "probe-1.0-py3-none-any.whl").write_bytes(wheel_bytes())
    (packages / "probe-2.0-py3-none-any.whl").write_bytes(wheel_bytes(version="2.0"))
    helper("user", "add", "--role", "publish", "--password-stdin", "admin", stdin=PASSWORD + "\n")
    helper.sync()  # backups take what the index lists
    return helper


def test_backup_leaves_out_a_file_still_being_uploaded(populated, tmp_path):
    packages = populated.data / "packages"
    (packages / "partial-1.0-py3-none-any.whl").write_bytes(wheel_bytes("partial")[:300])
    archive = tmp_path / "b.tar.gz"
    result = populated("backup", str(archive))
    assert result.returncode == 0, result.stderr
    assert (
        "left out 1 files the index does not list" in result.stderr and "partial-1.0-py3-none-any.whl" in result.stderr
    )

    names = tarfile.open(archive).getnames()
    assert "pypi-appliance-backup/packages/probe-1.0-py3-none-any.whl" in names
    assert "pypi-appliance-backup/auth/htpasswd" in names and "pypi-appliance-backup/auth/roles" in names
    assert "pypi-appliance-backup/MANIFEST.sha256" in names
    assert not any("partial" in n for n in names)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.partial"))


def test_a_backup_is_root_only_from_its_first_byte(populated, tmp_path):
    """Created 0600 (O_EXCL, whatever the umask), never through a stale .partial
    left by a backup cut short, even a symlink."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    archive = tmp_path / "c.tar.gz"
    (tmp_path / "c.tar.gz.partial").symlink_to(victim)
    old = os.umask(0)
    try:
        result = populated("backup", str(archive))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "untouched\n"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600 and not archive.is_symlink()
    assert "pypi-appliance-backup/MANIFEST.sha256" in tarfile.open(archive).getnames()


def test_restore_names_what_it_replaces_and_keeps_it(populated, tmp_path):
    archive = tmp_path / "b.tar.gz"
    assert populated("backup", str(archive)).returncode == 0
    packages = populated.data / "packages"
    (packages / "probe-1.0-py3-none-any.whl").unlink()
    later = wheel_bytes("later")
    (packages / "later-1.0-py3-none-any.whl").write_bytes(later)
    populated("user", "passwd", "--password-stdin", "admin", stdin="changed\n")
    populated("user", "role", "admin", "read")

    # Not on a terminal and no --yes: it says what would be lost and changes nothing.
    asked = populated("restore", str(archive))
    assert asked.returncode == 1 and "add --yes" in asked.stderr
    assert "later-1.0-py3-none-any.whl (added " in asked.stderr and "not in the backup" in asked.stderr
    assert "the password file" in asked.stderr and "the accounts' roles" in asked.stderr
    assert (packages / "later-1.0-py3-none-any.whl").exists()

    result = populated("restore", "--yes", str(archive))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in packages.iterdir()) == ["probe-1.0-py3-none-any.whl", "probe-2.0-py3-none-any.whl"]
    assert HtpasswdFile(str(populated.htpasswd)).check_password("admin", PASSWORD)
    assert populated("user", "list").stdout == "admin publish *\n"
    assert packages.stat().st_uid == 9898
    assert stat.S_IMODE(populated.htpasswd.stat().st_mode) == 0o640
    assert not [p for p in populated.data.iterdir() if p.name.startswith(".")]

    # What it replaced is kept, root-only, and named.
    saved = list(populated.data.glob("before-restore-*.tar.gz"))
    assert len(saved) == 1 and str(saved[0]) in result.stderr
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    with tarfile.open(saved[0]) as kept:
        names = {m.name.split("/", 1)[1]: kept.extractfile(m).read() for m in kept if m.isfile()}
    assert names["packages/later-1.0-py3-none-any.whl"] == later
    assert b"admin:" in names["auth/htpasswd"] and "MANIFEST.sha256" in names


def test_backup_takes_what_the_index_lists_subfolders_and_the_audit_log(populated, tmp_path):
    packages = populated.data / "packages"
    (packages / "team").mkdir()
    deep = wheel_bytes("deep")
    (packages / "team" / "deep-1.0-py3-none-any.whl").write_bytes(deep)
    populated.sync()
    changed = packages / "probe-2.0-py3-none-any.whl"  # rewritten in place since it was listed
    changed.write_bytes(wheel_bytes(version="2.0")[:-1] + b"!")
    populated.audit.write_text("2026-01-01T00:00:00.000Z upload client=10.0.0.9 account=ci file=old.whl\n")
    archive = tmp_path / "b.tar.gz"
    result = populated("backup", str(archive))
    assert result.returncode == 0, result.stderr
    assert "left out probe-2.0-py3-none-any.whl: differs from what the index lists" in result.stderr
    names = tarfile.open(archive).getnames()
    assert "pypi-appliance-backup/packages/team/deep-1.0-py3-none-any.whl" in names
    assert "pypi-appliance-backup/packages/probe-2.0-py3-none-any.whl" not in names
    assert "pypi-appliance-backup/log/audit.log" in names
    # A disk lost, the log gone: the restore brings back the subfolder and the log's lines.
    shutil.rmtree(packages)
    packages.mkdir()
    populated.audit.write_text("2026-06-01T00:00:00.000Z user-add by=root account=new\n")
    result = populated("restore", "--yes", str(archive))
    assert result.returncode == 0, result.stderr
    assert (packages / "team" / "deep-1.0-py3-none-any.whl").read_bytes() == deep
    lines = populated.audit.read_text().splitlines()
    assert lines[0].endswith("file=old.whl") and lines[1].endswith("account=new") and " restore " in lines[-1]
    assert "audit_lines=1" in lines[-1]


def test_restore_of_a_backup_from_before_roles_keeps_publishing(populated, tmp_path):
    """Backups of 0.2 have no roles file: their accounts could all publish."""
    archive = tmp_path / "b.tar.gz"
    populated("user", "add", "--password-stdin", "ci", stdin="ci\n")
    (populated.data / "auth" / "roles").unlink()
    assert populated("backup", str(archive)).returncode == 0
    assert "pypi-appliance-backup/auth/roles" not in tarfile.open(archive).getnames()
    populated("user", "role", "admin", "ci", "read")
    assert populated("restore", "--yes", str(archive)).returncode == 0
    assert populated("user", "list").stdout == "admin publish *\nci publish *\n"
    roles = populated.data / "auth" / "roles"
    assert stat.S_IMODE(roles.stat().st_mode) == 0o640 and roles.stat().st_gid == 9898


def test_restore_of_a_missing_file_says_so(populated):
    result = populated("restore", "--yes", "/nonexistent/backup.tar.gz")
    assert result.returncode == 1
    assert "/nonexistent/backup.tar.gz: no such file; nothing was restored" in result.stderr


def test_backup_with_ca_restores_the_clients_trust(populated, tmp_path):
    assert populated("tls").returncode == 0
    ca = (populated.tls / "ca.crt").read_bytes()
    plain, with_ca = tmp_path / "plain.tar.gz", tmp_path / "ca.tar.gz"
    assert populated("backup", str(plain)).returncode == 0
    result = populated("backup", "--with-ca", str(with_ca))
    assert result.returncode == 0 and "and the CA" in result.stderr
    assert not any(n.startswith("pypi-appliance-backup/tls/") for n in tarfile.open(plain).getnames())
    assert stat.S_IMODE(with_ca.stat().st_mode) == 0o600

    # A rebuilt host: a new CA. Restoring brings the old one back and a server
    # certificate it signed.
    for f in populated.tls.iterdir():
        f.unlink()
    populated("tls")
    assert (populated.tls / "ca.crt").read_bytes() != ca
    result = populated("restore", "--yes", str(with_ca))
    assert result.returncode == 0, result.stderr
    assert "this host's CA (" in result.stderr and "and the CA from" in result.stderr
    assert (populated.tls / "ca.crt").read_bytes() == ca
    assert stat.S_IMODE((populated.tls / "ca.key").stat().st_mode) == 0o600
    openssl("verify", "-CAfile", str(populated.tls / "ca.crt"), str(populated.tls / "server.crt"))


def test_backup_with_ca_needs_a_ca(populated, tmp_path):
    result = populated("backup", "--with-ca", str(tmp_path / "x.tar.gz"))
    assert result.returncode == 1 and "ca.crt does not exist" in result.stderr
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "tamper"])
def test_restore_refuses_a_damaged_archive_and_touches_nothing(populated, tmp_path, damage):
    archive = tmp_path / "b.tar.gz"
    assert populated("backup", str(archive)).returncode == 0
    raw = archive.read_bytes()
    if damage == "truncate":
        archive.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        archive.write_bytes(raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:])
    else:  # a valid tar.gz whose member no longer matches the manifest
        out = io.BytesIO()
        with tarfile.open(archive) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
            for member in src:
                data = src.extractfile(member).read() if member.isfile() else None
                if member.name.endswith("probe-2.0-py3-none-any.whl"):
                    data = wheel_bytes("evil", "2.0")
                    member.size = len(data)
                dst.addfile(member, io.BytesIO(data) if data is not None else None)
        archive.write_bytes(out.getvalue())
    (populated.data / "packages" / "new-1.0-py3-none-any.whl").write_bytes(wheel_bytes("new"))
    before = sorted(p.name for p in (populated.data / "packages").iterdir())

    result = populated("restore", "--yes", str(archive))
    assert result.returncode == 1
    assert "nothing was restored" in result.stderr
    assert sorted(p.name for p in (populated.data / "packages").iterdir()) == before


@ONE_PYTHON
def test_a_setting_change_is_audited_by_key_only(helper):
    secret_path = "/etc/pypi-appliance/mirror-credentials"
    done = helper("write-config", "PYPI_UPSTREAM_CREDENTIALS=" + secret_path, "PYPI_PORT=9123")
    assert done.returncode == 0, done.stderr
    again = helper("write-config", "PYPI_PORT=9123")  # as it is: nothing changed, nothing logged
    assert again.returncode == 0, again.stderr
    lines = helper.audit.read_text().splitlines()
    assert [line.split()[1:] for line in lines] == [
        ["settings", "by=alice", "keys=PYPI_UPSTREAM_CREDENTIALS", "why=write-config"]
    ]
    assert secret_path not in helper.audit.read_text()


@ONE_PYTHON
def test_an_unknown_tls_mode_is_named(helper):
    with helper.conf.open("a") as f:
        f.write("PYPI_TLS=sometimes\n")
    result = helper("tls")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PYPI_TLS=sometimes in " in result.stderr and "is not one of self-signed, provided, off" in result.stderr


@ONE_PYTHON
@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5"])
def test_a_bad_credential_checker_setting_is_named(helper, value):
    with helper.conf.open("a") as f:
        f.write(f"PYPI_AUTH_WORKERS={value}\n")
    result = helper("tls")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"PYPI_AUTH_WORKERS={value} in " in result.stderr and "is not a whole number of 1 or more" in result.stderr


@ONE_PYTHON
@pytest.mark.parametrize(
    "line, message",
    [
        ("PYPI_UPSTREAM_CACHE_MAX=10gb", "PYPI_UPSTREAM_CACHE_MAX=10gb in "),
        ("PYPI_UPSTREAM=ftp://pypi.org/simple/", "upstream 'ftp://pypi.org/simple/' is not an http:// or https://"),
        ("PYPI_UPSTREAM=https://ci:hunter2@mirror.example/simple/", "the upstream URL holds credentials (not shown)"),
        ("PYPI_UPSTREAM_PAGE_SECONDS=0", "PYPI_UPSTREAM_PAGE_SECONDS=0 in "),
        ("PYPI_UPSTREAM_FILE_HOSTS=files.example,https://x/", "file host 'https://x/' is not a host name (and port)"),
        (
            "PYPI_ACCESS=public-read\nPYPI_UPSTREAM=https://mirror.example/simple/\nPYPI_UPSTREAM_CREDENTIALS=/etc/creds",
            "PYPI_ACCESS=public-read with PYPI_UPSTREAM_CREDENTIALS in ",
        ),
    ],
)
def test_a_bad_upstream_setting_is_named(helper, line, message):
    with helper.conf.open("a") as f:
        f.write(line + "\n")
    result = helper("tls")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr and "hunter2" not in result.stderr, result.stderr
