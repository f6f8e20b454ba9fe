"""What the index does that needs the installed package on a systemd host:
yanking logged to the journal, a full disk, and a restart in the middle of an
upload (the rest of the index is the stack tier's: tests/stack/test_index.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.support.client import PASSWORD, USER, client_env, index_url, tls_args, twine_upload, upload_form
from tests.support.dists import make_wheel
from tests.support.pages import page, project_json, upload

pytestmark = pytest.mark.e2e

PACKAGES = "/srv/pypi/packages"


def test_pip_and_uv_resolve_from_metadata_files_and_skip_yanked_releases(system, installed, tmp_path):
    for version in ("1.0", "1.1"):
        upload(system, make_wheel(tmp_path, version, project="yank-probe"))
    result = system.sh("pypi-appliance yank 'Yank_Probe==1.1' --reason 'broken build'")
    assert "yanked yank-probe==1.1: broken build" in result.stderr
    item = next(f for f in project_json(system, "yank-probe")["files"] if "1.1" in f["filename"])
    assert item["yanked"] == "broken build"
    status, body, _ = page(system, "/simple/yank-probe/")
    assert b'data-yanked="broken build"' in body

    def pip_report(spec):
        report = tmp_path / f"report-{spec}.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--no-deps",
                "--report",
                str(report),
                "-v",
                *tls_args(system),
                spec,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=client_env(PIP_INDEX_URL=index_url(system, USER, PASSWORD)),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(report.read_text())["install"][0]["metadata"]["version"], result.stdout + result.stderr

    version, out = pip_report("yank-probe")
    assert version == "1.0", out  # the yanked release is skipped...
    version, out = pip_report("yank-probe==1.1")
    assert version == "1.1" and "broken build" in out  # ...unless pinned, with the reason shown
    # uv sees the same, through the JSON pages.
    uv = [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "compile",
        "--no-cache",
        "--index-url",
        index_url(system, USER, PASSWORD),
        "-",
    ]
    env = client_env(SSL_CERT_FILE=system.ca_file, UV_NO_CONFIG="1")
    compiled = subprocess.run(uv, input="yank-probe\n", capture_output=True, text=True, timeout=180, env=env)
    assert compiled.returncode == 0 and "yank-probe==1.0" in compiled.stdout, compiled.stdout + compiled.stderr

    system.sh("pypi-appliance unyank yank-probe==1.1")
    assert pip_report("yank-probe")[0] == "1.1"
    compiled = subprocess.run(uv, input="yank-probe\n", capture_output=True, text=True, timeout=180, env=env)
    assert compiled.returncode == 0 and "yank-probe==1.1" in compiled.stdout, compiled.stdout + compiled.stderr

    # Bad input names the value; nothing changes.
    bad = system.sh("pypi-appliance yank yank-probe==9.9", check=False)
    assert bad.returncode == 1 and "no release yank-probe==9.9 on this index (it has 1.0, 1.1)" in bad.stderr
    bad = system.sh("pypi-appliance yank yank-probe", check=False)
    assert bad.returncode == 1 and "'yank-probe' is not PROJECT==VERSION" in bad.stderr
    journal = system.sh("journalctl -t pypi-appliance --no-pager -o cat").stdout
    assert "yanked yank-probe==1.1: broken build" in journal and "unyanked yank-probe==1.1" in journal
    audit = [line.split(" ", 1)[1] for line in system.sh("pypi-appliance audit -n 2").stdout.splitlines()]
    assert audit == [
        'yank by=root release=yank-probe==1.1 reason="broken build"',
        "unyank by=root release=yank-probe==1.1",
    ]


@pytest.fixture
def small_packages_dir(system, installed):
    """The packages dir on a 24 MiB tmpfs for one test; the real one back afterwards."""
    system.sh(
        "systemctl stop pypi-appliance && mv /srv/pypi/packages /srv/pypi/packages.real && "
        "mkdir /srv/pypi/packages && mount -t tmpfs -o size=24m,mode=0755,uid=9898,gid=9898 tmpfs "
        "/srv/pypi/packages && systemctl start pypi-appliance"
    )
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    try:
        yield PACKAGES
    finally:
        system.sh(
            "systemctl stop pypi-appliance && umount /srv/pypi/packages && rmdir /srv/pypi/packages && "
            "mv /srv/pypi/packages.real /srv/pypi/packages && systemctl start pypi-appliance"
        )
        system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def test_a_full_disk_answers_507_and_keeps_nothing(system, small_packages_dir, tmp_path):
    big = make_wheel(tmp_path, "1.0", project="full-probe", payload=30 * 2**20)
    body, ctype = upload_form(big)  # twine says "507 Insufficient Storage", retrying 5 times
    status, answer, _ = system.fetch_all(
        "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": ctype}
    )
    assert status == 507 and b"no space left on the appliance's data dir" in answer, answer
    assert system.sh(f"ls -A {PACKAGES}").stdout.strip() == ""  # not even a hidden piece
    assert page(system, "/simple/full-probe/")[0] == 404
    status = system.report()
    assert "MiB free on the data dir" in status, status
    # Uploads work again as soon as there is room.
    small = make_wheel(tmp_path, "1.1", project="full-probe", payload=2**20)
    upload(system, small)
    assert [f["filename"] for f in project_json(system, "full-probe")["files"]] == [small.name]


def test_a_restart_in_the_middle_of_an_upload_leaves_nothing(system, installed, tmp_path):
    big = make_wheel(tmp_path, "1.0", project="restart-probe", payload=150 * 2**20)
    # Kill pypiserver the moment it starts writing the file into the packages dir.
    killed = []
    watcher = threading.Thread(
        target=lambda: killed.append(
            system.sh(
                f"for i in $(seq 1 3000); do if ls -A {PACKAGES} | grep -q '^.upload-'; then "
                "docker kill pypi-appliance-pypiserver-1; exit 0; fi; sleep 0.01; done; exit 1",
                check=False,
                timeout=120,
            ).returncode
        )
    )
    watcher.start()
    result = twine_upload(system, big, PASSWORD)
    watcher.join()
    assert killed == [0] and result.returncode != 0, "pypiserver was not killed while writing the file"
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD, timeout=120)
    system.sh("systemctl is-active pypi-appliance")
    assert "restart" not in system.sh(f"ls -A {PACKAGES}").stdout
    assert page(system, "/simple/restart-probe/")[0] == 404
