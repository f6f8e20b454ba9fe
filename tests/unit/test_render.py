"""What the templates render to, read back as the tools that consume them would."""

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.cli import TREE
from builder.config import USERNAME_PATTERN, Config, ConfigError, check_data_dir, check_port
from builder.docs import leaves
from builder.services import BY_NAME, FRONT_PORT, SERVICES
from builder.settings import ACCESS_MODES, DURATION_PATTERN, SETTINGS, TLS_LISTENERS, markdown_table
from builder.stage import render, stage
from pypi_appliance.admin import compose as compose_module
from pypi_appliance.admin.cli import parser
from pypi_appliance.admin.settings import KEYS, USERNAME, Fail, Settings, read_conf, upstream_refusal
from pypi_appliance.admin.users import check_password
from pypi_appliance.core import policy


@pytest.fixture
def staged(tmp_path):
    def render(**overrides):
        config = Config(version="1.2.3", source_date_epoch=1_700_000_000, **overrides)
        return stage(config, TREE, tmp_path / "staging")

    return render


def compose(tree):
    return yaml.safe_load((tree / "root/etc/pypi-appliance/compose.yaml").read_text())


def test_compose_file_defaults(staged):
    doc = compose(staged())
    assert "version" not in doc
    server = doc["services"]["pypiserver"]
    assert server["image"] == "pypiserver/pypiserver:v2.4.2"
    assert server["init"] is True
    assert server["restart"] == "unless-stopped"
    assert "ports" not in server, "pypiserver is reached only through the proxy"
    command = server["command"]
    assert command[0] == "run" and "--server=gunicorn" in command
    # The front door checks every credential; pypiserver takes the account it names.
    assert "--authenticate=." in command and "--backend=simple-dir" in command
    assert "--passwords=." in command
    assert "--disable-fallback" in command
    assert command[-1] == "/data/packages"
    assert "/health" in " ".join(server["healthcheck"]["test"])
    assert "curl" not in " ".join(server["healthcheck"]["test"])
    assert "${PYPI_DATA_DIR:-/srv/pypi}/packages:/data/packages" in server["volumes"]
    assert not any("/auth:" in v for v in server["volumes"]), "pypiserver reads no credentials"
    assert "/run/pypi-appliance/oidc:/run/oidc:ro" in doc["services"]["proxy"]["volumes"]
    proxy = doc["services"]["proxy"]
    assert proxy["ports"] == [{"target": 8080, "published": "${PYPI_PORT:-8080}", "host_ip": "${PYPI_BIND_ADDRESS:-}"}]
    assert doc["services"]["upstream"]["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert proxy["init"] is True and proxy["restart"] == "unless-stopped"


def test_builder_options_reach_the_compose_file(staged):
    doc = compose(staged(port=9000, data_dir="/data/pypi", image="registry.local/pypiserver:v9"))
    server = doc["services"]["pypiserver"]
    assert server["image"] == "registry.local/pypiserver:v9"
    assert doc["services"]["upstream"]["image"] == "registry.local/pypiserver:v9"
    assert "--authenticate=." in server["command"]
    assert "${PYPI_DATA_DIR:-/data/pypi}/packages:/data/packages" in server["volumes"]
    assert doc["services"]["proxy"]["ports"][0]["published"] == "${PYPI_PORT:-9000}"


def test_debconf_templates_and_defaults(staged):
    tree = staged(port=9000)
    templates = (tree / "debian/templates").read_text()
    for name in ["admin-username", "admin-password", "admin-password-again", "port", "data-dir", "purge-data"]:
        assert f"Template: pypi-appliance/{name}\n" in templates
    assert re.search(r"Template: pypi-appliance/port\nType: string\nDefault: 9000\n", templates)
    assert "Type: password" in templates


def test_changelog_carries_version_and_fixed_date(staged):
    changelog = (staged() / "debian/changelog").read_text()
    assert changelog.startswith("pypi-appliance (1.2.3) unstable; urgency=medium")
    assert "Tue, 14 Nov 2023 22:13:20 +0000" in changelog


def test_unit_runs_compose_through_the_helper(staged):
    tree = staged()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((tree / "debian/pypi-appliance.service").read_text())
    # The helper holds the one compose command line and keeps the journal plain text.
    assert unit["Service"]["ExecStart"] == "/usr/sbin/pypi-appliance up"
    assert unit["Service"]["ExecStop"] == "/usr/sbin/pypi-appliance down"
    assert compose_module.compose(read_conf("/nonexistent"), "up") == [
        "docker",
        "compose",
        "--ansi",
        "never",
        "--project-name",
        "pypi-appliance",
        "--env-file",
        "/etc/pypi-appliance/pypi-appliance.conf",
        "--file",
        "/etc/pypi-appliance/compose.yaml",
        "up",
    ]
    assert "docker compose" not in (tree / "debian/pypi-appliance.service").read_text().replace("# docker compose", "")
    assert unit["Unit"]["PartOf"] == "docker.service"
    assert unit["Install"]["WantedBy"] == "multi-user.target docker.service"


def test_username_rule_is_the_same_in_shell_and_python(staged):
    tree = staged()
    assert USERNAME_PATTERN in (tree / "debian/config").read_text()
    assert USERNAME.pattern == USERNAME_PATTERN
    for name, ok in [
        ("admin", True),
        ("ci.bot@example.com", True),
        ("a:b", False),
        ("a b", False),
        ("", False),
        ("-x", False),
        ("x" * 65, False),
    ]:
        grep = subprocess.run(["grep", "-Eqx", USERNAME_PATTERN], input=name + "\n", text=True)
        assert (grep.returncode == 0) is ok, name
        assert bool(re.fullmatch(USERNAME_PATTERN, name)) is ok, name


def test_scripts_stay_executable(staged):
    tree = staged()
    for path in ["debian/rules", "debian/config", "debian/postinst", "debian/postrm", "root/usr/sbin/pypi-appliance"]:
        assert (tree / path).stat().st_mode & 0o111, path


def nginx_locations(tree):
    text = (tree / "root/etc/pypi-appliance/nginx.conf").read_text()
    blocks = re.findall(r"location ([^{]+)\{(.*?)\n        \}", text, flags=re.S)
    return {where.strip(): body for where, body in blocks}


def test_front_door_enforces_the_configured_reading_rights(staged):
    tree = staged()
    locations = nginx_locations(tree)
    # Reading rights come from PYPI_ACCESS at run time (access/<mode>.conf, mounted by compose).
    for where in (
        "/packages/",
        "/simple/",
        "= /packages/",
        r"~ ^/_index/(?<format>json|html)/(?<page>.*)$",
        r"~ ^/packages/(?<file>.+\.whl)\.metadata$",
    ):
        assert "include /etc/nginx/access.conf;" in locations[where], where
    assert "alias /data/packages/;" in locations["/packages/"]
    assert "auth_request /_auth;" in locations["/"]  # uploads always need a password
    access = tree / "root/usr/share/pypi-appliance/access"
    assert sorted(p.stem for p in access.iterdir()) == ["private", "public-read"]
    assert "auth_request /_auth;" in (access / "private.conf").read_text()
    assert "auth_request off;" in (access / "public-read.conf").read_text()
    proxy = compose(tree)["services"]["proxy"]
    assert "/usr/share/pypi-appliance/access/${PYPI_ACCESS:-private}.conf:/etc/nginx/access.conf:ro" in proxy["volumes"]
    assert "auth_request" not in locations["= /health"]
    assert "$passwords_version" in locations["= /_auth"]
    # Index pages are the indexer's files; both kinds of page are reached only through a rewrite.
    pages = locations[r"~ ^/_index/(?<format>json|html)/(?<page>.*)$"]
    assert "try_files /simple/${page}index.$format =404;" in pages
    assert "application/vnd.pypi.simple.v1+json json;" in pages and "text/html html;" in pages
    for where in ("= /simple/", r"~ ^/simple/(?<project>[^/]+)/$"):
        assert "rewrite ^ /_index/$simple_format/" in locations[where], where


def test_man_page_and_completion_come_from_the_parser(staged):
    tree = staged()
    commands = [" ".join(words) for words, _ in leaves(parser())]
    assert {"status", "client-config", "url", "restore", "up", "down", "user list", "user remove"} <= set(commands)
    completion = (tree / "root/usr/share/bash-completion/completions/pypi-appliance").read_text()
    man = (tree / "debian/pypi-appliance.8").read_text()
    assert man.startswith(".TH PYPI-APPLIANCE 8")
    for command in commands:
        assert f".B {command}".replace("-", "\\-") in man, command
        assert f"_shtab_pypi_appliance_{command.replace(' ', '_').replace('-', '_')}_option_strings" in completion
    # Each command's description and each option's help reach the man page.
    assert "Exits 0 when the index and every container answer their health checks" in " ".join(man.split())
    assert "\\-\\-with\\-ca" in man and "\\-\\-password\\-stdin" in man
    # Every setting, from the model, with what it means (the PYPI_AUTH_* ones were once left out).
    flat = " ".join(man.replace("\\-", "-").split())
    for setting in SETTINGS:
        assert f"{setting.key}: {' '.join(setting.meaning.replace('`', '').split())}" in flat, setting.key
    # Account names complete from the password file.
    assert "_shtab_pypi_appliance_user_remove_pos_0_COMPGEN=_pypi_appliance_users" in completion
    assert "pypi-appliance user list" in completion
    man_page = subprocess.run(
        ["man", "--warnings", "-l", "-"],
        input=man,
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert man_page.returncode == 0 and man_page.stderr == "", man_page.stderr


def vermin(path) -> subprocess.CompletedProcess:
    tool = str(Path(sys.executable).with_name("vermin"))
    return subprocess.run(
        [tool, "--no-tips", "--violations", "-t=3.10-", "--eval-annotations", str(path)], capture_output=True, text=True
    )


def test_helper_runs_on_python_3_10(tmp_path):
    """Ubuntu 22.04's Python: vermin finds the newest feature the helper uses
    (the helper imports core and the indexer's services.index too)."""
    package = TREE / "src" / "pypi_appliance"
    result = vermin(package)
    assert result.returncode == 0, result.stdout + result.stderr
    newer = tmp_path / "newer.py"
    newer.write_text("import tomllib\n")  # Python 3.11: the check can fail
    assert vermin(newer).returncode != 0
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "F,E9",
            "--target-version",
            "py310",
            str(package),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# The config script runs before the package is unpacked, so the data-dir rule
# lives in shell too; the builder must never make a default that rule refuses.
DATA_DIRS = [
    "/srv/pypi",
    "/srv/pypi/",
    "/srv//pypi",
    "/opt/pypi",
    "/home/pypi",
    "/var/lib/pypi",
    "/data",
    "/usr/local/pypi",
    "/usr",
    "/etc/pypi",
    "/tmp/pypi",
    "/run/pypi",
    "/var/tmp/x",
    "/var/run/x",
    "/var/lock/x",
    "/lib64/x",
    "/proc",
    "/var",
    "/",
    "//srv",
    "/srv/./pypi",
    "/srv/../pypi",
    "relative",
    "",
    "/srv/my pypi",
    "/srv/$HOME",
]


def test_data_dir_rule_is_the_same_in_shell_and_python(tmp_path):
    config = Config(version="1.0")
    checks = tmp_path / "_checks.sh"
    checks.write_text(render(config, TREE / "debian", "_checks.sh"))
    for value in DATA_DIRS:
        shell = subprocess.run(
            ["sh", "-c", '. "$1"; check_data_dir "$2"', "sh", str(checks), value], capture_output=True, text=True
        )
        try:
            check_data_dir(value)
            python = None
        except ConfigError as err:
            python = str(err)
        assert (shell.returncode == 0) == (python is None), (value, shell.stdout, python)
        if python:
            assert repr(value) in python and f"'{value}'" in shell.stdout, (value, shell.stdout, python)


def test_access_modes_are_one_list(staged, tmp_path):
    tree = staged()
    templates = (tree / "debian/templates").read_text()
    assert f"Template: pypi-appliance/access\nType: select\nChoices: {', '.join(ACCESS_MODES)}\n" in templates
    checks = tmp_path / "_checks.sh"
    checks.write_text(render(Config(version="1.0"), TREE / "debian", "_checks.sh"))
    for value, ok in [*((mode, True) for mode in ACCESS_MODES), ("public", False), ("", False), ("private x", False)]:
        shell = subprocess.run(
            ["sh", "-c", '. "$1"; check_access "$2"', "sh", str(checks), value], capture_output=True, text=True
        )
        assert (shell.returncode == 0) is ok, (value, shell.stdout)
    assert sorted(p.stem for p in (tree / "root/usr/share/pypi-appliance/access").iterdir()) == sorted(ACCESS_MODES)
    assert json.loads((tree / "root/usr/share/pypi-appliance/defaults.json").read_text())["access_modes"] == list(
        ACCESS_MODES
    )


def test_settings_are_declared_once(staged):
    """builder/settings.py: the manual's table, the debconf defaults and choices,
    the helper's keys and defaults, and the TLS listeners all follow it."""
    reference = (TREE / "docs/reference.md").read_text()
    assert markdown_table() in reference, "docs/reference.md's settings table differs from builder/settings.py"
    tree = staged(port=9123, data_dir="/data/pypi")
    templates = (tree / "debian/templates").read_text()
    expected = {s.key: s.default for s in SETTINGS} | {"PYPI_PORT": "9123", "PYPI_DATA_DIR": "/data/pypi"}
    for s in SETTINGS:
        if s.question and expected[s.key]:
            block = templates.split(f"Template: pypi-appliance/{s.question}\n")[1].split("\n\n")[0]
            assert f"\nDefault: {expected[s.key]}\n" in block, s.key
            if s.choices:
                assert f"Choices: {', '.join(s.choices)}\n" in block, s.key
    assert json.loads((tree / "root/usr/share/pypi-appliance/defaults.json").read_text())["settings"] == expected
    assert sorted(KEYS) == sorted(s.key for s in SETTINGS)
    assert sorted(KEYS.values()) == sorted(Settings.__dataclass_fields__)
    assert read_conf("/nonexistent") == Settings(**{KEYS[s.key]: s.default for s in SETTINGS})
    links = (tree / "debian/links").read_text().split("\n")
    for mode, listener in TLS_LISTENERS.items():
        assert f"usr/share/pypi-appliance/listen/{listener}.conf usr/share/pypi-appliance/listen/{mode}.conf" in links


def shell_check(tmp_path, function: str, *args: str) -> subprocess.CompletedProcess:
    checks = tmp_path / "_checks.sh"
    if not checks.exists():
        checks.write_text(render(Config(version="1.0"), TREE / "debian", "_checks.sh"))
    return subprocess.run(
        ["sh", "-c", f'. "$1"; shift; {function} "$@"', "sh", str(checks), *args], capture_output=True, text=True
    )


def test_port_rule_is_the_same_in_shell_and_python(tmp_path):
    # 8080 would be refused by the shell if something on this machine listens there.
    for value in ["1", "80", "65535", "49152", "0", "65536", "70000", "-1", "http", "", "08x", "123456"]:
        shell = shell_check(tmp_path, "check_port", value)
        try:
            check_port(int(value))
            python = True
        except (ValueError, ConfigError):
            python = False
        assert (shell.returncode == 0) is python, (value, shell.stdout)


def test_password_length_rule_is_the_same_in_shell_and_python(tmp_path):
    for password in ["x" * 72, "x" * 73, "ä" * 36, "ä" * 37, "€" * 24, "€" * 25, "pass phrase"]:
        shell = shell_check(tmp_path, "check_passwords", password, password)
        try:
            check_password(password)
            python = True
        except Fail:
            python = False
        assert (shell.returncode == 0) is python, (len(password.encode()), shell.stdout)


def test_the_services_table_drives_compose_nginx_and_the_helper(staged):
    """builder/services.py is the one place a container's name, port, memory
    limit and health check are written; the rendered files follow it."""
    tree = staged()
    doc = compose(tree)
    assert sorted(doc["services"]) == sorted(s.name for s in SERVICES)
    nginx = (tree / "root/etc/pypi-appliance/nginx.conf").read_text()
    defaults = json.loads((tree / "root/usr/share/pypi-appliance/defaults.json").read_text())
    for service in SERVICES:
        rendered = doc["services"][service.name]
        assert rendered["mem_limit"] == service.mem_limit
        assert rendered["healthcheck"]["test"][-1].endswith(f"127.0.0.1:{service.port}/health', timeout=4)") or (
            rendered["healthcheck"]["test"][-1] == f"http://127.0.0.1:{service.port}/health"
        )
        assert defaults["services"][service.name] == {"port": service.port}
        if service.module:
            assert rendered["entrypoint"][:3] == ["python", "-m", f"pypi_appliance.services.{service.module}"]
            assert rendered["entrypoint"][-1] == str(service.port)
            assert (TREE / "src/pypi_appliance/services" / f"{service.module}.py").is_file()
        if service.name != "proxy":
            assert f"server {service.name}:{service.port};" in nginx or service.name == "indexer"
    assert f"listen 127.0.0.1:{BY_NAME['proxy'].port};" in nginx
    assert doc["services"]["proxy"]["ports"][0]["target"] == FRONT_PORT
    assert doc["services"]["pypiserver"]["environment"]["PYPI_INDEXER"] == f"http://indexer:{BY_NAME['indexer'].port}"


def test_no_port_literal_outside_the_model():
    """The containers' ports are the services table's alone (the host's port
    is the PYPI_PORT setting's)."""
    ports = {str(s.port) for s in SERVICES} | {str(FRONT_PORT)}
    found = []
    for top in ("templates", "src", "debian"):
        for path in sorted((TREE / top).rglob("*")):
            if path.is_file() and path.suffix not in (".po", ".pot", ".pyc"):
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if set(re.findall(r"(?<![0-9])([0-9]{4})(?![0-9])", line)) & ports:
                        found.append(f"{path.relative_to(TREE)}:{n}: {line.strip()}")
    assert found == []


# An edited 0.3.0 nginx.conf: it asks the checker but has no upstream.
NGINX_0_3 = "location = /_auth { proxy_pass http://auth/check; }\n"
# An edited 0.6.0 one: it serves the upstream, but sends the containers no key.
NGINX_0_6 = NGINX_0_3 + "include /data/upstream/settings.conf;\n"
# An edited 0.7.0 one: the key, but upstream files served without the rules.
NGINX_0_7 = NGINX_0_6 + "include /etc/nginx/internal-key.conf;\n"
# An edited 0.8.0 one: the rules, but pypiserver is not told the uploader's scope.
NGINX_0_8 = NGINX_0_7 + "proxy_pass http://upstream_index/gate/$uproject;\n"


@pytest.mark.parametrize(
    "services, nginx_text, message",
    [
        ("proxy\npypiserver\n", None, "compose.yaml has no auth, upstream, indexer service: it is an edited copy"),
        (
            "proxy\nauth\nupstream\nindexer\npypiserver\n",
            "location = /_auth { proxy_pass http://pypiserver/; }\n",
            "nginx.conf does not ask the credential checker and does not serve the upstream and does not send",
        ),
        (
            "proxy\nauth\nupstream\nindexer\npypiserver\n",
            NGINX_0_3,
            "nginx.conf does not serve the upstream and does not send the containers' key and does not apply",
        ),
        (
            "proxy\nauth\nupstream\nindexer\npypiserver\n",
            NGINX_0_6,
            "nginx.conf does not send the containers' key and does not apply the upstream rules",
        ),
        (
            "proxy\nauth\nupstream\nindexer\npypiserver\n",
            NGINX_0_7,
            r"nginx.conf does not apply the upstream rules to files \(cooldown, deny\) and does not tell",
        ),
        (
            "proxy\nauth\nupstream\nindexer\npypiserver\n",
            NGINX_0_8,
            r"nginx.conf does not tell pypiserver the uploader's scope: it is",
        ),
        ("proxy\nauth\nupstream\nindexer\npypiserver\n", None, None),
    ],
)
def test_up_refuses_conffiles_kept_from_an_older_version(staged, tmp_path, monkeypatch, services, nginx_text, message):
    tree = staged()
    nginx = tmp_path / "nginx.conf"
    current = (tree / "root/etc/pypi-appliance/nginx.conf").read_text()
    nginx.write_text(nginx_text or current)
    assert all(line in current for line in compose_module.NEEDED)
    monkeypatch.setattr(compose_module, "NGINX_FILE", str(nginx))
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text((tree / "root/etc/pypi-appliance/compose.yaml").read_text())
    assert all(line in compose_file.read_text() for line in compose_module.COMPOSE_NEEDED)
    monkeypatch.setattr(compose_module, "COMPOSE_FILE", str(compose_file))
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(f"#!/bin/sh\nprintf '{services}'\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}:/usr/bin:/bin")
    if message is None:
        compose_module.check_conffiles(read_conf("/nonexistent"))
    else:
        with pytest.raises(Fail, match=message) as refused:
            compose_module.check_conffiles(read_conf("/nonexistent"))
        assert ".dpkg-dist into it" in str(refused.value)


# An edited 0.7.0 compose.yaml: every service, but the code by its old names.
COMPOSE_0_7 = """services:
  auth:
    entrypoint: ["python", "-m", "pypi_appliance.auth", "serve", "/data", "8083"]
"""


def test_up_refuses_a_compose_file_from_before_the_services_moved(staged, tmp_path, monkeypatch):
    tree = staged()
    monkeypatch.setattr(compose_module, "NGINX_FILE", str(tree / "root/etc/pypi-appliance/nginx.conf"))
    old = tmp_path / "compose.yaml"
    old.write_text(COMPOSE_0_7)
    monkeypatch.setattr(compose_module, "COMPOSE_FILE", str(old))
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\nprintf 'proxy\\nauth\\nupstream\\nindexer\\npypiserver\\n'\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}:/usr/bin:/bin")
    with pytest.raises(Fail) as refused:
        compose_module.check_conffiles(read_conf("/nonexistent"))
    assert str(refused.value) == (
        f"{old} runs the services' code by its names from before 0.8.0 and does not tell pypiserver where the "
        f"indexer is and does not give the upstream service its rules and has pypiserver check passwords itself "
        f"(since 0.9.0 the front door names the account): it is an edited copy from an older version, "
        f"which dpkg kept. Merge {old}.dpkg-dist into it "
        "(or replace it with that), then systemctl restart pypi-appliance"
    )


def test_upstream_rule_is_the_same_in_shell_and_python(tmp_path):
    values = [
        "",
        "none",
        "https://pypi.org/simple/",
        "https://pypi.org/simple",
        "http://mirror.example:8080/root/pypi/+simple/",
        "https://user:secret@private.example/simple/",
        "ftp://pypi.org/simple/",
        "pypi.org/simple/",
        "https://pypi.org/simple/ x",
        "https://",
        "https://pypi.org/simple/?x=1",
        "https://pypi.org/s$(id)/",
    ]
    for value in values:
        shell = shell_check(tmp_path, "check_upstream", value)
        python = upstream_refusal(value)
        assert (shell.returncode == 0) is (python is None), (value, shell.stdout, python)
        assert shell.stdout.strip() == (python or ""), (value, shell.stdout, python)
        assert "secret" not in shell.stdout + (python or "")


@pytest.mark.parametrize("script", ["config", "preinst", "postinst", "postrm", "images/load"])
def test_rendered_maintainer_scripts_pass_shellcheck(shipped_tree, script):
    """The fast tier's shellcheck, before debhelper adds its snippets (the
    package tier checks the scripts as built)."""
    result = subprocess.run(
        ["shellcheck", "--shell=sh", "--exclude=SC1091", str(shipped_tree / "debian" / script)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_script_asks_in_the_models_order_and_priorities():
    """debian/config.j2 is shell with checks between the questions, so it is
    not generated: its questions, their order and priorities are the model's."""
    script = (TREE / "debian/config.j2").read_text()
    pattern = (
        r"^\s*(?:ask|ask_choice) (high|medium|low|critical) \{\{ config.package \}\}/([a-z-]+)"
        r"|^\s*db_input (high|medium|low) \{\{ config.package \}\}/(tls-key)\b"
    )
    asked = [(m.group(1) or m.group(3), m.group(2) or m.group(4)) for m in re.finditer(pattern, script, re.M)]
    model = [s for s in SETTINGS if s.question]
    assert [q for _, q in asked] == [s.question for s in model]
    assert [p for p, _ in asked] == [s.priority for s in model]


def test_the_cooldown_rule_is_the_same_in_shell_and_python(tmp_path):
    """PYPI_UPSTREAM_MIN_AGE: the config script's check_duration and the helper's and
    upstream service's parse (core.policy), one pattern, one message."""
    assert DURATION_PATTERN == policy.DURATION.pattern
    checks = tmp_path / "_checks.sh"
    checks.write_text(render(Config(version="1.0"), TREE / "debian", "_checks.sh"))
    for value in ["0", "7d", "36h", "1d12h", "90m", "2w", "7", "7 d", " 7d", "-1d", "1.5d", "", "d", "7d;", "0d"]:
        shell = subprocess.run(
            ["sh", "-c", '. "$1"; check_duration "$2"', "sh", str(checks), value], capture_output=True, text=True
        )
        try:
            policy.parse_duration(value)
            python = None
        except ValueError as err:
            python = str(err)
        assert (shell.returncode == 0) == (python is None), (value, shell.stdout, python)
        if python:
            assert shell.stdout.strip() == python, (value, shell.stdout, python)
