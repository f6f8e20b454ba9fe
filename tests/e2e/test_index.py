"""The static index: PEP 691 JSON and PEP 503 HTML pages with PEP 700/714
fields, PEP 658 metadata files, yanking, strict freshness and uploads that
are whole or leave nothing, checked with real pip, uv and twine."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime

import pytest

from tests.dists import make_wheel
from tests.e2e.client import PASSWORD, USER, client_env, index_url, tls_args, twine_upload, upload_form

pytestmark = pytest.mark.e2e

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
PACKAGES = "/srv/pypi/packages"


def page(system, path, accept=None):
    status, body, headers = system.fetch_all(
        path, user=USER, password=PASSWORD, headers={"Accept": accept} if accept else {}
    )
    return status, body, {k.lower(): v for k, v in headers.items()}


def project_json(system, project):
    status, body, headers = page(system, f"/simple/{project}/", PIP_ACCEPT)
    assert status == 200, (status, body)
    assert headers["content-type"] == JSON
    return json.loads(body)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def unfollowed(system, path, password=PASSWORD):
    """Status and Location of one request, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=system.context))
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request = urllib.request.Request(system.url(path), headers={"Authorization": f"Basic {token}"})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location")


def upload(system, wheel):
    result = twine_upload(system, wheel, PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr


def wheel_metadata(wheel) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))


def check_pep_691_file(item):
    """One file of a PEP 691 (api 1.1: PEP 700, PEP 714) project page: names and types."""
    assert set(item) >= {"filename", "url", "hashes", "size", "upload-time", "yanked", "core-metadata"}
    assert isinstance(item["filename"], str) and isinstance(item["url"], str)
    assert isinstance(item["hashes"], dict) and re.fullmatch(r"[0-9a-f]{64}", item["hashes"]["sha256"])
    assert isinstance(item["size"], int) and not isinstance(item["size"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", item["upload-time"])
    assert item["yanked"] is False or item["yanked"] is True or (isinstance(item["yanked"], str) and item["yanked"])
    assert item["core-metadata"] is False or set(item["core-metadata"]) == {"sha256"}
    assert "dist-info-metadata" not in item  # PEP 714: the old name is for HTML only (pip 22.3-23.1 crash on it)
    if "requires-python" in item:
        assert isinstance(item["requires-python"], str)


def test_pages_follow_pep_691_700_714_and_658(system, installed, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="Pep-Probe", metadata="Requires-Python: >=3.8, <4\n")
    before = datetime.utcnow()
    upload(system, wheel)
    data = project_json(system, "pep-probe")
    assert data["meta"] == {"api-version": "1.1"} and data["name"] == "pep-probe"
    assert data["versions"] == ["1.0"]
    [item] = data["files"]
    check_pep_691_file(item)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert item["filename"] == wheel.name and item["hashes"]["sha256"] == digest
    assert item["size"] == wheel.stat().st_size and item["requires-python"] == ">=3.8, <4"
    uploaded = datetime.strptime(item["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((uploaded - before).total_seconds()) < 60
    # The metadata file: the wheel's METADATA, byte for byte, at <file URL>.metadata.
    meta = wheel_metadata(wheel)
    assert item["core-metadata"] == {"sha256": hashlib.sha256(meta).hexdigest()}
    status, body, _ = page(system, f"/simple/pep-probe/{item['url']}.metadata".replace("/simple/pep-probe/../../", "/"))
    assert status == 200 and body == meta
    assert system.http(f"/packages/{wheel.name}.metadata") == 401  # the same rights as the wheel

    # HTML, the default: PEP 503 links with PEP 592/658/714 attributes.
    status, body, headers = page(system, "/simple/pep-probe/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "accept" in headers["vary"].lower()
    html = body.decode()
    assert '<meta name="pypi:repository-version" content="1.1">' in html
    assert f'href="../../packages/{wheel.name}#sha256={digest}"' in html
    assert 'data-requires-python="&gt;=3.8, &lt;4"' in html
    assert f'data-core-metadata="sha256={hashlib.sha256(meta).hexdigest()}"' in html
    assert f'data-dist-info-metadata="sha256={hashlib.sha256(meta).hexdigest()}"' in html

    # The project list in both formats.
    status, body, headers = page(system, "/simple/", PIP_ACCEPT)
    assert status == 200 and headers["content-type"] == JSON
    root = json.loads(body)
    assert root["meta"] == {"api-version": "1.1"} and {"name": "pep-probe"} in root["projects"]
    status, body, _ = page(system, "/simple/")
    assert status == 200 and b'<a href="pep-probe/">pep-probe</a>' in body

    # Negotiation by q-value (PEP 691), other spellings of the name, unknown names.
    for accept, kind in [
        (f"{JSON};q=0.5, text/html", "text/html"),
        (f"text/html;q=0.1, {JSON};q=0.9", JSON),
        (f"{JSON};q=0", "text/html"),
        ("*/*", "text/html"),
        (None, "text/html"),
    ]:
        status, _, headers = page(system, "/simple/pep-probe/", accept)
        assert status == 200 and headers["content-type"].startswith(kind), (accept, headers["content-type"])
    assert unfollowed(system, "/simple/Pep_Probe/") == (301, "/simple/pep-probe/")
    assert unfollowed(system, "/simple/Pep_Probe/", password="wrong")[0] == 401  # no name is told
    status, body, headers = page(system, "/simple/Pep_Probe/", PIP_ACCEPT)  # followed
    assert status == 200 and json.loads(body)["name"] == "pep-probe"
    status, body, _ = page(system, "/simple/no-such-probe/", PIP_ACCEPT)
    assert status == 404 and b"no project no-such-probe" in body


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


def test_remove_and_reindex(system, installed, tmp_path):
    for version in ("1.0", "2.0"):
        upload(system, make_wheel(tmp_path, version, project="remove-probe"))
    times = {f["filename"]: f["upload-time"] for f in project_json(system, "remove-probe")["files"]}
    refused = system.sh("pypi-appliance remove remove-probe==2.0 </dev/null", check=False)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    assert system.sh(f"ls {PACKAGES}").stdout.count("remove_probe-") == 2
    system.sh("pypi-appliance remove --yes remove-probe==2.0")
    files = [f["filename"] for f in project_json(system, "remove-probe")["files"]]
    assert files == ["remove_probe-1.0-py3-none-any.whl"]
    assert "remove_probe-2.0" not in system.sh(f"ls {PACKAGES}").stdout
    assert system.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "remove",
        "by=root",
        "release=remove-probe==2.0",
        "file=remove_probe-2.0-py3-none-any.whl",
    ]
    result = system.sh("pypi-appliance reindex")
    assert "reindexed" in result.stderr
    again = {f["filename"]: f["upload-time"] for f in project_json(system, "remove-probe")["files"]}
    assert again == {name: t for name, t in times.items() if name in again}  # upload times survive

    # A removed file's name never gets other bytes (pip's caches may hold the old ones).
    (tmp_path / "rebuilt").mkdir()
    rebuilt = make_wheel(tmp_path / "rebuilt", "2.0", project="remove-probe", metadata="Keywords: rebuilt\n")
    status, text, _ = system.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=upload_form(rebuilt)[0],
        headers={"Content-Type": upload_form(rebuilt)[1]},
    )
    assert status == 400 and "a file of this name was on this index with other contents" in text.decode(), text
    assert "remove_probe-2.0" not in system.sh(f"ls {PACKAGES}").stdout

    # With its last release gone, the name is still this index's: an empty page, until released.
    system.sh("pypi-appliance remove --yes remove-probe==1.0")
    assert project_json(system, "remove-probe")["files"] == []
    assert "with no files still this index's (" in system.report()
    assert "remove-probe" in json.loads(system.report("--json"))["index"]["held-without-files"]
    refused = system.sh("pypi-appliance release-name remove-probe </dev/null", check=False)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    system.sh("pypi-appliance release-name --yes remove-probe")
    assert system.http("/simple/remove-probe/", user=USER, password=PASSWORD) == 404  # no upstream here
    assert system.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "release-name",
        "by=root",
        "project=remove-probe",
    ]
    again = system.sh("pypi-appliance release-name --yes remove-probe", check=False)
    assert again.returncode == 1 and "remove-probe is not held by this index" in again.stderr


def test_a_file_the_index_refused_is_named_in_status_and_removed_by_the_helper(system, installed, tmp_path):
    upload(system, make_wheel(tmp_path, "1.0", project="listed-probe"))
    system.sh(f"printf 'not a wheel' > {PACKAGES}/stray-1.0-py3-none-any.whl && chown 9898:9898 {PACKAGES}/stray-*")
    deadline = time.monotonic() + 30
    while "stray-1.0-py3-none-any.whl: not a whole zip archive" not in (report := system.report()):
        assert time.monotonic() < deadline, report
        time.sleep(0.5)
    assert "('pypi-appliance remove FILE' deletes one)" in report
    listed = system.sh("pypi-appliance remove --yes listed_probe-1.0-py3-none-any.whl", check=False)
    assert listed.returncode == 1 and "is listed: remove its release with PROJECT==VERSION" in listed.stderr
    outside = system.sh("pypi-appliance remove --yes ../auth/htpasswd", check=False)
    assert outside.returncode == 1 and "is not a file name in the packages dir" in outside.stderr
    system.sh("pypi-appliance remove --yes stray-1.0-py3-none-any.whl")
    assert "stray" not in system.sh(f"ls {PACKAGES}").stdout
    assert "not listed" not in system.report()
    assert system.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "remove",
        "by=root",
        "file=stray-1.0-py3-none-any.whl",
    ]


def test_parallel_uploads_all_listed_with_their_hashes(system, installed, tmp_path):
    wheels = [make_wheel(tmp_path, f"1.{n}", project="parallel-probe") for n in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda w: twine_upload(system, w, PASSWORD), wheels))
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results if r.returncode]
    listed = {f["filename"]: f["hashes"]["sha256"] for f in project_json(system, "parallel-probe")["files"]}
    assert listed == {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}


def test_each_upload_is_listed_by_the_next_request(system, installed, tmp_path):
    for n in range(5):
        wheel = make_wheel(tmp_path, f"0.{n}", project="next-probe")
        upload(system, wheel)
        assert wheel.name in page(system, "/simple/next-probe/")[1].decode()
        assert wheel.name in [f["filename"] for f in project_json(system, "next-probe")["files"]]


def test_files_copied_or_deleted_on_disk_within_a_second(system, installed, tmp_path, timings):
    whole = make_wheel(tmp_path, "3.0", project="disk-probe")
    data = whole.read_bytes()
    system.put(f"/root/{whole.name}", data)
    upload(system, make_wheel(tmp_path, "1.0", project="disk-probe"))
    # A copy being written is not listed until it is whole.
    system.sh(f"head -c {len(data) // 2} /root/{whole.name} > {PACKAGES}/{whole.name}")
    time.sleep(1)
    assert whole.name not in page(system, "/simple/disk-probe/")[1].decode()
    statuses = []

    def wait_for(listed: bool) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 5:
            status, body, _ = page(system, "/simple/disk-probe/")
            statuses.append(status)
            if (whole.name in body.decode()) == listed:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{whole.name} {'not listed' if listed else 'still listed'} after 5 s")

    system.sh(f"cat /root/{whole.name} > {PACKAGES}/{whole.name}")
    seconds = wait_for(True)
    timings.append(("file copied on disk listed (after it was whole)", seconds))
    assert seconds < 1
    system.sh(f"rm {PACKAGES}/{whole.name}")
    seconds = wait_for(False)
    timings.append(("file deleted on disk unlisted", seconds))
    assert seconds < 1 and set(statuses) == {200}, statuses
    status = system.report()
    assert re.search(r"index\s+\d+ files listed in \d+ projects", status), status


def test_a_broken_upload_is_refused_and_leaves_nothing(system, installed, tmp_path):
    # A member whose bytes do not match its CRC: twine reads only METADATA and sends it.
    wheel = make_wheel(tmp_path, "1.0", project="broken-probe")
    wheel.write_bytes(wheel.read_bytes().replace(b'VERSION = "1.0"', b'VERSION = "1.X"'))
    result = twine_upload(system, wheel, PASSWORD)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "400" in out, out
    # A truncated file (its zip directory missing), sent as any other client would.
    body, ctype = upload_form(wheel, "broken_probe-1.1-py3-none-any.whl")
    cut = body.index(b"PK\x05\x06")  # the end of central directory record
    status, answer, _ = system.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=body[:cut] + body[cut + 22 :],
        headers={"Content-Type": ctype},
    )
    assert status == 400 and b"not a whole zip archive" in answer, answer
    assert "broken_probe" not in system.sh(f"ls -A {PACKAGES}").stdout
    assert page(system, "/simple/broken-probe/")[0] == 404
    twine_verbose = subprocess.run(
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
            *tls_args(system),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD),
    )
    said = " ".join(twine_verbose.stdout.split())  # rich wraps lines
    assert "was not stored: member broken_probe/__init__.py is corrupt" in said, said


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
