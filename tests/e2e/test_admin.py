"""Day-2 operations with the installed helper: users, status, logs, backup and restore."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import threading
import time
import zipfile

import pytest

from tests.support.client import PASSWORD, REFUSED, USER, pip_install, preseed, twine_upload, upload_form
from tests.support.dists import make_wheel

# Its own project, so these tests and the core ones do not depend on each other's order.
PROJECT = "restore-probe"

pytestmark = pytest.mark.e2e


def started_at(system) -> str:
    return system.sh("docker inspect -f '{{.State.StartedAt}}' pypi-appliance-pypiserver-1").stdout.strip()


def test_users_change_without_a_restart(system, installed):
    before = started_at(system)
    system.sh("pypi-appliance user add --password-stdin ci-bot", input="ci secret ü\n")
    assert system.sh("pypi-appliance user list").stdout.splitlines() == sorted([f"{USER} publish *", "ci-bot read"])
    assert system.http("/simple/", user="ci-bot", password="ci secret ü") == 200

    system.sh("pypi-appliance user passwd --password-stdin ci-bot", input="rotated\n")
    assert system.http("/simple/", user="ci-bot", password="rotated") == 200
    assert system.http("/simple/", user="ci-bot", password="ci secret ü") in REFUSED

    system.sh("pypi-appliance user remove ci-bot")
    assert system.http("/simple/", user="ci-bot", password="rotated") in REFUSED
    assert started_at(system) == before, "a user change restarted the server"


def test_user_commands_refuse_bad_input(system, installed):
    for script, stdin, message in [
        ("pypi-appliance user add --password-stdin 'bad:name'", "x\n", "invalid username 'bad:name'"),
        ("pypi-appliance user add --password-stdin 'bad name'", "x\n", "invalid username 'bad name'"),
        ("pypi-appliance user add --password-stdin someone", "\n", "the password is empty"),
        (f"pypi-appliance user add --password-stdin {USER}", "x\n", "already exists"),
        (f"pypi-appliance user remove {USER}", None, "last user"),
        ("pypi-appliance user passwd --password-stdin ghost", "x\n", "no user 'ghost'"),
    ]:
        result = system.sh(script, input=stdin, check=False)
        assert result.returncode == 1 and message in result.stderr, (script, result.stderr)
    assert system.sh("pypi-appliance user list").stdout.splitlines() == [f"{USER} publish *"]
    assert system.http("/simple/", user=USER, password=PASSWORD) == 200


def test_interactive_password_prompt_asks_twice(system, installed):
    # A real terminal through script(1): getpass reads from the tty, not argv.
    code, out = system.interact("pypi-appliance user add tty-user", ["one", "two"])
    assert code == 1 and "do not match" in out, out
    assert "one" not in out and "two" not in out, "the password was echoed"
    code, out = system.interact("pypi-appliance user add tty-user", ["same pw", "same pw"])
    assert code == 0 and "Repeat the password" in out, out
    assert system.http("/simple/", user="tty-user", password="same pw") == 200
    system.sh("pypi-appliance user remove tty-user")


def test_status_json_and_table(system, installed, tmp_path):
    upload = twine_upload(system, make_wheel(tmp_path, "1.0", project="status-probe"), PASSWORD)
    assert upload.returncode == 0, upload.stdout + upload.stderr
    report = json.loads(system.report("--json"))
    assert report["healthy"] is True and report["service"] == "active"
    assert {c["name"] for c in report["containers"]} == {
        "pypi-appliance-proxy-1",
        "pypi-appliance-pypiserver-1",
        "pypi-appliance-indexer-1",
        "pypi-appliance-auth-1",
        "pypi-appliance-upstream-1",
    }
    assert report["upstream"] is None
    assert report["data_dir"] == "/srv/pypi" and report["disk_free_bytes"] > 0
    sizes = system.sh("find /srv/pypi/packages -type f ! -name '.*' -printf '%s\\n'").stdout.split()
    assert sizes, "no package files: the counts below would prove nothing"
    assert report["files"] == len(sizes) and report["packages_bytes"] == sum(map(int, sizes))
    assert report["urls"][0] == "https://appliance:8080/simple/"
    assert all(url.endswith(":8080/simple/") for url in report["urls"])
    table = system.report()
    for key in ("service", "container", "health", "url", "packages", "throttled", "upstream", "data dir"):
        assert key in table
    assert "MiB used" in table and "GiB free" in table


def test_logs_are_readable_text(system, installed):
    result = system.sh("pypi-appliance logs -n 200")
    assert "Listening at: http://0.0.0.0:8080" in result.stdout
    assert "\x1b" not in result.stdout and "blob data" not in result.stdout


def test_help_man_page_and_completion(system, installed):
    for args in [
        "",
        "status",
        "client-config",
        "url",
        "tls",
        "logs",
        "backup",
        "restore",
        "up",
        "down",
        "user",
        "user add",
        "user passwd",
        "user remove",
        "user list",
    ]:
        result = system.sh(f"pypi-appliance {args} --help")
        assert "usage: pypi-appliance" in result.stdout, args
    system.sh("test -s /usr/share/man/man8/pypi-appliance.8.gz")

    # bash completes commands, and account names from the password file.
    def complete(line: str) -> list[str]:
        return system.sh(
            "bash -c '. /usr/share/bash-completion/completions/pypi-appliance; IFS= read -r line; "
            'read -ra COMP_WORDS <<< "$line"; [ "${line% }" = "$line" ] || COMP_WORDS+=(""); '
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$line; COMP_POINT=${#line}; "
            '_shtab_pypi_appliance; printf "%s\\n" "${COMPREPLY[@]}"\'',
            input=line + "\n",
            timeout=30,
        ).stdout.split()

    assert {"status", "client-config", "restore", "user"} <= set(complete("pypi-appliance "))
    assert complete("pypi-appliance user remove ") == [USER]
    assert "--with-ca" in complete("pypi-appliance backup --")


def read_archive(raw: bytes) -> dict[str, bytes]:
    """Members of a backup, after checking every one against the manifest."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        members = {m.name.split("/", 1)[1]: archive.extractfile(m).read() for m in archive if m.isfile()}
    manifest = dict(reversed(line.split("  ", 1)) for line in members.pop("MANIFEST.sha256").decode().splitlines())
    assert manifest == {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    return members


def test_backup_during_an_upload_is_consistent(system, installed, tmp_path):
    # A large, incompressible wheel keeps the server writing while backups run.
    big = make_wheel(tmp_path, "1.0", project="bulky", payload=48 * 2**20)
    body, content_type = upload_form(big)
    # Once refused now and then with 400 "Missing ':action' field!": bottle's
    # request was shared between gevent's greenlets (pypiserver runs threads now).
    statuses = []
    upload = threading.Thread(
        target=lambda: statuses.append(
            system.fetch(
                "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
            )
        )
    )
    upload.start()
    taken = 0
    deadline = time.monotonic() + 120
    while (upload.is_alive() or not taken) and time.monotonic() < deadline:
        system.sh(f"pypi-appliance backup /root/during-{taken}.tar.gz")
        taken += 1
    upload.join(timeout=120)
    assert statuses and statuses[0][0] == 200, statuses
    # Read only now: copying archives out while the upload runs starves the client on a busy host.
    archives = [system.sh(f"base64 /root/during-{n}.tar.gz").stdout for n in range(taken)]
    for encoded in archives:
        members = read_archive(base64.b64decode(encoded))
        assert "auth/htpasswd" in members and "config/pypi-appliance.conf" in members
        for name, data in members.items():
            if name.endswith(".whl"):
                assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None, name
    print(f"\n[e2e] {len(archives)} backups taken during one 48 MiB upload, all consistent")
    system.sh("rm -f /srv/pypi/packages/bulky-1.0-py3-none-any.whl /root/during-*.tar.gz")


def test_backup_purge_reinstall_restore(system, installed, tmp_path):
    for version in ("2.4", "2.5"):
        upload = twine_upload(system, make_wheel(tmp_path, version, project=PROJECT), PASSWORD)
        assert upload.returncode == 0, upload.stdout
    system.sh(f"pypi-appliance yank {PROJECT}==2.4 --reason 'too old'")
    # A team's subfolder of the packages dir: listed and served like the top level.
    team = make_wheel(tmp_path, "1.0", project="team-probe")
    system.sh("mkdir -p /srv/pypi/packages/team")
    system.put(f"/srv/pypi/packages/team/{team.name}", team.read_bytes())
    system.sh("chown -R 9898:9898 /srv/pypi/packages/team")
    system.wait_http("/simple/team-probe/", 200, timeout=30, user=USER, password=PASSWORD)
    index = index_json(system, PASSWORD)
    ca = system.sh("cat /etc/pypi-appliance/tls/ca.crt").stdout
    # A setting of the site's (the fresh install below has the default, 300).
    system.sh("pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=120")
    # The site's decisions: a project's state and an upstream rule.
    system.sh("pypi-appliance project-status team-probe deprecated --reason 'use team-probe-ng'")
    system.sh("pypi-appliance upstream deny 'bad-*' --reason 'not from upstream'")
    system.sh("pypi-appliance backup --with-ca /root/site.tar.gz")
    system.sh("apt-get purge -y pypi-appliance && rm -rf /srv/pypi")
    assert system.sh("test -e /srv/pypi", check=False).returncode != 0

    system.sh("debconf-set-selections", input=preseed(USER, "fresh install password"))
    system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb")
    assert system.sh("cat /etc/pypi-appliance/tls/ca.crt").stdout != ca  # a new host, a new CA
    system.wait_http("/simple/", 200, user=USER, password="fresh install password")

    corrupt = system.sh(
        "head -c 2000 /root/site.tar.gz > /root/cut.tar.gz && pypi-appliance restore --yes /root/cut.tar.gz",
        check=False,
    )
    assert corrupt.returncode == 1 and "nothing was restored" in corrupt.stderr
    missing = system.sh("pypi-appliance restore --yes /root/none.tar.gz", check=False)
    assert missing.returncode == 1 and "/root/none.tar.gz: no such file; nothing was restored" in missing.stderr
    # A package uploaded since the backup: the restore names it, asks, and keeps it.
    later = make_wheel(tmp_path, "3.0", project=PROJECT)
    assert twine_upload(system, later, "fresh install password").returncode == 0
    code, out = system.interact("pypi-appliance restore /root/site.tar.gz", ["n"])
    assert code == 1 and f"{later.name} (added " in out and "nothing was restored" in out, out
    assert later.name in system.sh("ls /srv/pypi/packages").stdout
    code, out = system.interact("pypi-appliance restore /root/site.tar.gz", ["y", "y"])
    assert code == 0 and "and the CA from /root/site.tar.gz" in out, out
    # It says what it brings back and what not, and asks before taking the backup's settings.
    assert "its audit lines are added to this host's. Not restored: settings (below), the upstream's cache" in out, out
    assert "The backup's settings differ from this host's (a restore keeps this host's):" in out, out
    assert "PYPI_UPSTREAM_PAGE_SECONDS=120 (here: 300)" in out and "Use the backup's settings? [y/N]" in out, out
    assert "PYPI_UPSTREAM_PAGE_SECONDS=120\n" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    assert (
        " settings by=root keys=PYPI_UPSTREAM_PAGE_SECONDS why=restore\n"
        in system.sh("tail -n 5 /var/log/pypi-appliance/audit.log").stdout
    )
    kept = re.search(r"kept in (/srv/pypi/before-restore-\S+\.tar\.gz)", out).group(1)
    assert f"packages/{later.name}" in system.sh(f"tar -tzf {kept}").stdout

    # The old CA is back: clients that trusted it trust the restored appliance.
    assert system.sh("cat /etc/pypi-appliance/tls/ca.crt").stdout == ca
    system.trust()
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    assert system.http("/simple/", user=USER, password="fresh install password") in REFUSED
    assert pip_install(system, tmp_path, PASSWORD, project=PROJECT) == "2.5"
    assert later.name not in system.sh("ls /srv/pypi/packages").stdout
    # Upload times and yanks came back with the files, the subfolder's too, and the audit log's lines.
    assert index_json(system, PASSWORD) == index
    assert pip_install(system, tmp_path / "team", PASSWORD, project="team-probe") == "1.0"
    log = system.sh("cat /var/log/pypi-appliance/audit.log").stdout
    assert f'yank by=root release={PROJECT}==2.4 reason="too old"' in log
    assert log.index("yank by=root") < log.index(" restore by=root"), log
    # The state and the rule came back, and the page says the state.
    assert "team-probe  deprecated: use team-probe-ng" in system.sh("pypi-appliance project-status team-probe").stdout
    assert "deny   bad-*" in system.sh("pypi-appliance upstream rules").stdout
    status, body = system.fetch(
        "/simple/team-probe/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200 and json.loads(body)["project-status"]["status"] == "deprecated", body
    system.sh("pypi-appliance project-status team-probe active && pypi-appliance upstream deny 'bad-*' --remove")
    system.sh("pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=300")


def index_json(system, password):
    """The project's files as the JSON page lists them: upload time and yank each."""
    status, body = system.fetch(
        f"/simple/{PROJECT}/", user=USER, password=password, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, body
    return {f["filename"]: (f["upload-time"], f["yanked"]) for f in json.loads(body)["files"]}
