"""The static index: PEP 691 JSON and PEP 503 HTML pages with PEP 700/714
fields, PEP 658 metadata files, removal, strict freshness and uploads that
are whole or leave nothing, checked with real pip, uv and twine (yanking, a
full disk and a restart mid-upload: tests/e2e/test_index_host.py)."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime

import pytest

from tests.support.client import PASSWORD, USER, client_env, tls_args, twine_upload, upload_form
from tests.support.dists import make_wheel
from tests.support.pages import JSON, PIP_ACCEPT, page, project_json, upload

pytestmark = pytest.mark.stack


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def unfollowed(stack, path, password=PASSWORD):
    """Status and Location of one request, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=stack.context))
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request = urllib.request.Request(stack.url(path), headers={"Authorization": f"Basic {token}"})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location")


def wheel_metadata(wheel) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))


def check_pep_691_file(item):
    """One file of a PEP 691 (PEP 700, PEP 714) project page: names and types."""
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


def test_pages_follow_pep_691_700_714_658_and_792(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="Pep-Probe", metadata="Requires-Python: >=3.8, <4\n")
    before = datetime.utcnow()
    upload(stack, wheel)
    data = project_json(stack, "pep-probe")
    assert data["meta"] == {"api-version": "1.4"} and data["name"] == "pep-probe"
    assert data["project-status"] == {"status": "active"}  # PEP 792 (1.4)
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
    status, body, _ = page(stack, f"/simple/pep-probe/{item['url']}.metadata".replace("/simple/pep-probe/../../", "/"))
    assert status == 200 and body == meta
    assert stack.http(f"/packages/{wheel.name}.metadata") == 401  # the same rights as the wheel

    # HTML, the default: PEP 503 links with PEP 592/658/714 attributes.
    status, body, headers = page(stack, "/simple/pep-probe/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "accept" in headers["vary"].lower()
    html = body.decode()
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert '<meta name="pypi:project-status" content="active">' in html
    assert f'href="../../packages/{wheel.name}#sha256={digest}"' in html
    assert 'data-requires-python="&gt;=3.8, &lt;4"' in html
    assert f'data-core-metadata="sha256={hashlib.sha256(meta).hexdigest()}"' in html
    assert f'data-dist-info-metadata="sha256={hashlib.sha256(meta).hexdigest()}"' in html

    # The project list in both formats.
    status, body, headers = page(stack, "/simple/", PIP_ACCEPT)
    assert status == 200 and headers["content-type"] == JSON
    root = json.loads(body)
    assert root["meta"] == {"api-version": "1.4"} and {"name": "pep-probe"} in root["projects"]
    status, body, _ = page(stack, "/simple/")
    assert status == 200 and b'<a href="pep-probe/">pep-probe</a>' in body

    # Negotiation by q-value (PEP 691), other spellings of the name, unknown names.
    for accept, kind in [
        (f"{JSON};q=0.5, text/html", "text/html"),
        (f"text/html;q=0.1, {JSON};q=0.9", JSON),
        (f"{JSON};q=0", "text/html"),
        ("*/*", "text/html"),
        (None, "text/html"),
    ]:
        status, _, headers = page(stack, "/simple/pep-probe/", accept)
        assert status == 200 and headers["content-type"].startswith(kind), (accept, headers["content-type"])
    assert unfollowed(stack, "/simple/Pep_Probe/") == (301, "/simple/pep-probe/")
    assert unfollowed(stack, "/simple/Pep_Probe/", password="wrong")[0] == 401  # no name is told
    status, body, headers = page(stack, "/simple/Pep_Probe/", PIP_ACCEPT)  # followed
    assert status == 200 and json.loads(body)["name"] == "pep-probe"
    status, body, _ = page(stack, "/simple/no-such-probe/", PIP_ACCEPT)
    assert status == 404 and b"no project no-such-probe" in body


def test_remove_and_reindex(stack, tmp_path):
    for version in ("1.0", "2.0"):
        upload(stack, make_wheel(tmp_path, version, project="remove-probe"))
    times = {f["filename"]: f["upload-time"] for f in project_json(stack, "remove-probe")["files"]}
    refused = stack.sh("pypi-appliance remove remove-probe==2.0 </dev/null", check=False)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    assert stack.sh(f"ls {stack.packages}").stdout.count("remove_probe-") == 2
    stack.sh("pypi-appliance remove --yes remove-probe==2.0")
    files = [f["filename"] for f in project_json(stack, "remove-probe")["files"]]
    assert files == ["remove_probe-1.0-py3-none-any.whl"]
    assert "remove_probe-2.0" not in stack.sh(f"ls {stack.packages}").stdout
    assert stack.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "remove",
        "by=root",
        "release=remove-probe==2.0",
        "file=remove_probe-2.0-py3-none-any.whl",
    ]
    result = stack.sh("pypi-appliance reindex")
    assert "reindexed" in result.stderr
    again = {f["filename"]: f["upload-time"] for f in project_json(stack, "remove-probe")["files"]}
    assert again == {name: t for name, t in times.items() if name in again}  # upload times survive

    # A removed file's name never gets other bytes (pip's caches may hold the old ones).
    (tmp_path / "rebuilt").mkdir()
    rebuilt = make_wheel(tmp_path / "rebuilt", "2.0", project="remove-probe", metadata="Keywords: rebuilt\n")
    status, text, _ = stack.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=upload_form(rebuilt)[0],
        headers={"Content-Type": upload_form(rebuilt)[1]},
    )
    assert status == 400 and "a file of this name was on this index with other contents" in text.decode(), text
    assert "remove_probe-2.0" not in stack.sh(f"ls {stack.packages}").stdout

    # With its last release gone, the name is still this index's: an empty page, until released.
    stack.sh("pypi-appliance remove --yes remove-probe==1.0")
    assert project_json(stack, "remove-probe")["files"] == []
    assert "with no files still this index's (" in stack.report()
    assert "remove-probe" in json.loads(stack.report("--json"))["index"]["held-without-files"]
    refused = stack.sh("pypi-appliance release-name remove-probe </dev/null", check=False)
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    stack.sh("pypi-appliance release-name --yes remove-probe")
    assert stack.http("/simple/remove-probe/", user=USER, password=PASSWORD) == 404  # no upstream here
    assert stack.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "release-name",
        "by=root",
        "project=remove-probe",
    ]
    again = stack.sh("pypi-appliance release-name --yes remove-probe", check=False)
    assert again.returncode == 1 and "remove-probe is not held by this index" in again.stderr


def test_a_file_the_index_refused_is_named_in_status_and_removed_by_the_helper(stack, tmp_path):
    upload(stack, make_wheel(tmp_path, "1.0", project="listed-probe"))
    stray = f"{stack.packages}/stray-1.0-py3-none-any.whl"
    stack.sh(f"printf 'not a wheel' > {stray} && chown {stack.server_id}:{stack.server_id} {stray}")
    deadline = time.monotonic() + 30
    while "stray-1.0-py3-none-any.whl: not a whole zip archive" not in (report := stack.report()):
        assert time.monotonic() < deadline, report
        time.sleep(0.5)
    assert "('pypi-appliance remove FILE' deletes one)" in report
    listed = stack.sh("pypi-appliance remove --yes listed_probe-1.0-py3-none-any.whl", check=False)
    assert listed.returncode == 1 and "is listed: remove its release with PROJECT==VERSION" in listed.stderr
    outside = stack.sh("pypi-appliance remove --yes ../auth/htpasswd", check=False)
    assert outside.returncode == 1 and "is not a file name in the packages dir" in outside.stderr
    stack.sh("pypi-appliance remove --yes stray-1.0-py3-none-any.whl")
    assert "stray" not in stack.sh(f"ls {stack.packages}").stdout
    assert "not listed" not in stack.report()
    assert stack.sh("pypi-appliance audit -n 1").stdout.split()[1:] == [
        "remove",
        "by=root",
        "file=stray-1.0-py3-none-any.whl",
    ]


def test_parallel_uploads_all_listed_with_their_hashes(stack, tmp_path):
    wheels = [make_wheel(tmp_path, f"1.{n}", project="parallel-probe") for n in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda w: twine_upload(stack, w, PASSWORD), wheels))
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results if r.returncode]
    listed = {f["filename"]: f["hashes"]["sha256"] for f in project_json(stack, "parallel-probe")["files"]}
    assert listed == {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}


def test_each_upload_is_listed_by_the_next_request(stack, tmp_path):
    for n in range(5):
        wheel = make_wheel(tmp_path, f"0.{n}", project="next-probe")
        upload(stack, wheel)
        assert wheel.name in page(stack, "/simple/next-probe/")[1].decode()
        assert wheel.name in [f["filename"] for f in project_json(stack, "next-probe")["files"]]


def test_files_copied_or_deleted_on_disk_within_a_second(stack, tmp_path, timings):
    whole = make_wheel(tmp_path, "3.0", project="disk-probe")
    data = whole.read_bytes()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / whole.name).write_bytes(data)
    upload(stack, make_wheel(tmp_path, "1.0", project="disk-probe"))
    # A copy being written is not listed until it is whole.
    stack.sh(f"head -c {len(data) // 2} {copy}/{whole.name} > {stack.packages}/{whole.name}")
    time.sleep(1)
    assert whole.name not in page(stack, "/simple/disk-probe/")[1].decode()
    statuses = []

    def wait_for(listed: bool) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 5:
            status, body, _ = page(stack, "/simple/disk-probe/")
            statuses.append(status)
            if (whole.name in body.decode()) == listed:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{whole.name} {'not listed' if listed else 'still listed'} after 5 s")

    stack.sh(f"cat {copy}/{whole.name} > {stack.packages}/{whole.name}")
    seconds = wait_for(True)
    timings.append(("file copied on disk listed (after it was whole)", seconds))
    assert seconds < 1
    stack.sh(f"rm {stack.packages}/{whole.name}")
    seconds = wait_for(False)
    timings.append(("file deleted on disk unlisted", seconds))
    assert seconds < 1 and set(statuses) == {200}, statuses
    status = stack.report()
    assert re.search(r"index\s+\d+ files listed in \d+ projects", status), status


def test_a_broken_upload_is_refused_and_leaves_nothing(stack, tmp_path):
    # A member whose bytes do not match its CRC: twine reads only METADATA and sends it.
    wheel = make_wheel(tmp_path, "1.0", project="broken-probe")
    wheel.write_bytes(wheel.read_bytes().replace(b'VERSION = "1.0"', b'VERSION = "1.X"'))
    result = twine_upload(stack, wheel, PASSWORD)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "400" in out, out
    # A truncated file (its zip directory missing), sent as any other client would.
    body, ctype = upload_form(wheel, "broken_probe-1.1-py3-none-any.whl")
    cut = body.index(b"PK\x05\x06")  # the end of central directory record
    status, answer, _ = stack.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=body[:cut] + body[cut + 22 :],
        headers={"Content-Type": ctype},
    )
    assert status == 400 and b"not a whole zip archive" in answer, answer
    assert "broken_probe" not in stack.sh(f"ls -A {stack.packages}").stdout
    assert page(stack, "/simple/broken-probe/")[0] == 404
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
            stack.url("/"),
            *tls_args(stack),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(TWINE_USERNAME=USER, TWINE_PASSWORD=PASSWORD),
    )
    said = " ".join(twine_verbose.stdout.split())  # rich wraps lines
    assert "was not stored: member broken_probe/__init__.py is corrupt" in said, said
