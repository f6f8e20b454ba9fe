"""The helper's modules, imported directly from the staged tree."""

import os
import re
import subprocess
import sys
import time

import pytest

from builder.cli import TREE
from builder.config import Config
from builder.stage import render
from pypi_appliance.admin.host import endpoint, index_url
from pypi_appliance.admin.settings import KEYS, Fail, Settings, read_conf, write_conf
from pypi_appliance.admin.status import STARTING_SECONDS, starting
from pypi_appliance.admin.users import ensure_version, new_version, version_path
from pypi_appliance.core import audit


def test_settings_are_typed_and_default_to_the_build(tmp_path):
    conf = tmp_path / "pypi-appliance.conf"
    conf.write_text("# a comment\nPYPI_PORT=9443\nPYPI_TLS=off\nSOMETHING_ELSE=x\n")
    settings = read_conf(str(conf))
    assert isinstance(settings, Settings)
    assert (settings.port, settings.tls, settings.data_dir, settings.admin_user) == (
        "9443",
        "off",
        "/srv/pypi",
        "admin",
    )
    assert read_conf(str(tmp_path / "missing")).port == "8080"


def test_endpoint_adds_the_port_and_brackets():
    conf = read_conf("/nonexistent")
    assert endpoint("pypi.example.org", conf) == "pypi.example.org:8080"
    assert endpoint("pypi.example.org:443", conf) == "pypi.example.org:443"
    assert endpoint("2001:db8::1", conf) == "[2001:db8::1]:8080"
    assert endpoint("[2001:db8::1]:9000", conf) == "[2001:db8::1]:9000"
    assert index_url(conf, "10.0.0.1") == "https://10.0.0.1:8080/simple/"


def test_a_failing_health_check_is_starting_only_while_the_service_comes_up():
    healthy = [{"name": "proxy", "state": "running", "health": "healthy"}]
    assert starting("activating", None, None)
    assert starting("active", 5, [])
    assert starting("active", STARTING_SECONDS * 2, [{"name": "proxy", "state": "running", "health": "starting"}])
    assert not starting("active", STARTING_SECONDS * 2, healthy)
    assert not starting("inactive", 1, [])
    assert not starting("failed", 1, healthy)


TRICKY = {"PYPI_TLS_CERT": "/etc/ssl/a&b|c\\d e.pem", "PYPI_TLS_KEY": "/etc/ssl/k=1 #x.key", "PYPI_PORT": "9443"}


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    monkeypatch.setattr(audit, "LOG", str(path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    path.touch()
    return path


def test_the_config_writer_keeps_other_lines_and_any_value(tmp_path, audit_log):
    conf = tmp_path / "pypi-appliance.conf"
    conf.write_text("# the admin's note\nPYPI_PORT=8080\nEXTRA=kept\nPYPI_PORT=8081\n")
    write_conf(TRICKY, str(conf), why="test")
    lines = conf.read_text().splitlines()
    assert lines[:3] == ["# the admin's note", "PYPI_PORT=8080", "EXTRA=kept"]
    assert "PYPI_PORT=9443" in lines and lines.count("PYPI_PORT=8081") == 0
    settings = read_conf(str(conf))
    assert (settings.tls_cert, settings.tls_key, settings.port) == tuple(TRICKY.values())
    before = conf.read_text()
    for bad in ({"PYPI_PORT": "1\nPYPI_TLS=off"}, {"NOT_A_SETTING": "x"}, {"PYPI_PORT": " 9443"}):
        try:
            write_conf(bad, str(conf), why="test")
            raise AssertionError(f"accepted {bad}")
        except Fail:
            pass
    assert conf.read_text() == before and not list(tmp_path.glob(".settings.*"))
    write_conf({"PYPI_PORT": "8080"}, str(tmp_path / "new.conf"), why="test")
    assert (tmp_path / "new.conf").read_text().startswith("# pypi-appliance settings")
    # Each write that changed something is one audit line naming the keys, never their values.
    write_conf({"PYPI_PORT": "9443", "PYPI_TLS_KEY": TRICKY["PYPI_TLS_KEY"]}, str(conf), why="test")  # unchanged
    events = [line.split()[1:] for line in audit_log.read_text().splitlines()]
    assert events == [
        ["settings", "by=root", "keys=PYPI_TLS_CERT,PYPI_TLS_KEY,PYPI_PORT", "why=test"],
        ["settings", "by=root", "keys=PYPI_PORT", "why=test"],
    ]


def test_shell_and_python_read_the_config_file_alike(tmp_path, audit_log):
    """The config script (before unpacking) reads the file with conf_get; the helper with read_conf."""
    conf = tmp_path / "pypi-appliance.conf"
    conf.write_text("PYPI_TLS=off\n# PYPI_TLS=provided\nPYPI_DATA_DIR=/srv/one\nPYPI_DATA_DIR=/srv/two\n")
    write_conf(TRICKY, str(conf), why="test")
    checks = tmp_path / "_checks.sh"
    checks.write_text(render(Config(version="1.0"), TREE / "debian", "_checks.sh"))
    settings = read_conf(str(conf))
    for key, field in KEYS.items():
        shell = subprocess.run(
            ["sh", "-c", f'. "$1"; CONF="$2"; conf_get {key}', "sh", str(checks), str(conf)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.rstrip("\n")
        if shell:  # an unset key: the helper has its default, the config script asks debconf's
            assert shell == getattr(settings, field), key


def test_the_password_version_is_the_file_the_front_door_includes(shipped_tree, tmp_path):
    conf_file = tmp_path / "pypi-appliance.conf"
    conf_file.write_text(f"PYPI_DATA_DIR={tmp_path}\n")
    conf = read_conf(str(conf_file))
    (tmp_path / "auth").mkdir()
    nginx = (shipped_tree / "root/etc/pypi-appliance/nginx.conf").read_text()
    compose = (shipped_tree / "root/etc/pypi-appliance/compose.yaml").read_text()
    assert "/auth:/data/auth:ro" in compose
    assert f"include /data/auth/{os.path.basename(version_path(conf))};" in nginx
    ensure_version(conf)
    first = open(version_path(conf)).read()
    assert re.fullmatch(r'map "" \$passwords_version \{ default "[0-9a-f]{16}"; \}\n', first)
    ensure_version(conf)  # there already: kept
    assert open(version_path(conf)).read() == first
    new_version(conf)
    assert open(version_path(conf)).read() != first


def test_the_service_s_own_processes_are_started_again_until_it_stops(monkeypatch, capsys):
    from pypi_appliance.admin import compose as compose_module

    monkeypatch.setattr(compose_module.Supervised, "RESTART_SECONDS", 0.05)
    started = []

    def dies_at_once():
        started.append(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
        return started[-1]

    supervised = compose_module.Supervised("the probe", dies_at_once)
    deadline = time.monotonic() + 10
    while len(started) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    supervised.stop()
    count = len(started)
    assert count >= 3 and "the probe ended (3); started again" in capsys.readouterr().err
    time.sleep(0.2)
    assert len(started) == count, "nothing is started once stopped"

    lasting = compose_module.Supervised(
        "the sleeper", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    )
    began = time.monotonic()
    lasting.stop()
    assert lasting.proc.poll() is not None and time.monotonic() - began < 5
