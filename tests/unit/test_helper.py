"""The rendered admin helper, run as a program against a scratch data dir."""

import os
import stat
import subprocess
import sys

import pytest
from passlib.apache import HtpasswdFile

from builder.cli import TREE
from builder.config import Config
from builder.stage import stage

PASSWORD = 'pä ss:"$\\wörd'


@pytest.fixture
def helper(tmp_path):
    tree = stage(Config(version="1.0"), TREE, tmp_path / "staging")
    data = tmp_path / "data"
    (data / "auth").mkdir(parents=True)
    conf = tmp_path / "pypi-appliance.conf"
    conf.write_text(f"# comment\nPYPI_DATA_DIR={data}\nPYPI_PORT=9123\nPYPI_ADMIN_USER=admin\n")

    def run(*args, stdin=None):
        return subprocess.run(
            [sys.executable, str(tree / "root/usr/sbin/pypi-appliance"), *args],
            input=stdin, capture_output=True, text=True,
            env=dict(os.environ, PYPI_APPLIANCE_CONF=str(conf)),
        )

    run.htpasswd = data / "auth" / "htpasswd"
    return run


def test_user_lifecycle(helper):
    assert helper("user", "add", "--password-stdin", "admin", stdin=PASSWORD + "\n").returncode == 0
    assert helper("user", "add", "--password-stdin", "ci", stdin="other\n").returncode == 0
    assert helper("user", "list").stdout.split() == ["admin", "ci"]

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

    assert helper("user", "remove", "ci").returncode == 0
    last = helper("user", "remove", "admin")
    assert last.returncode == 1 and "last user" in last.stderr
    assert helper("user", "list").stdout.split() == ["admin"]


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["user", "add", "--password-stdin", "a:b"], "x\n", "invalid username 'a:b'"),
        (["user", "add", "--password-stdin", "a b"], "x\n", "invalid username 'a b'"),
        (["user", "add", "--password-stdin", "admin"], "\n", "the password is empty"),
        (["user", "add", "--password-stdin", "admin"], "x" * 73 + "\n", "72-byte limit"),
        (["user", "passwd", "--password-stdin", "nobody"], "x\n", "no user 'nobody'"),
        (["user", "remove", "nobody"], None, "no user 'nobody'"),
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


def test_client_config(helper):
    out = helper("client-config", "--host", "pypi.example.org", "--user", "ci.bot@x").stdout
    assert "index-url = http://ci.bot%40x@pypi.example.org:9123/simple/" in out
    assert "trusted-host = pypi.example.org" in out
    assert "repository = http://pypi.example.org:9123/" in out
    assert "username = ci.bot@x" in out


def test_every_command_has_help(helper):
    for args in [[], ["status"], ["client-config"], ["user"], ["user", "add"], ["user", "passwd"],
                 ["user", "remove"], ["user", "list"]]:
        result = helper(*args, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, args
