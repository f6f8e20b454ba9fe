"""What may change the index from outside: the same file again is accepted
and changes nothing (a CI job run twice), other bytes under its name are
refused, removals are the helper's, and a browser cannot be made to write for
another site's page."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.client import PASSWORD, USER, client_env, index_url, twine_upload, upload_form
from tests.support.dists import make_wheel

pytestmark = pytest.mark.stack

IDENTICAL = "is already on this index with these contents; nothing changed"
PROBES = ("retry_probe", "uv_retry_probe", "keep_probe", "csrf_probe", "same_origin_probe", "after_bomb_probe")


@pytest.fixture(scope="module", autouse=True)
def leaves_no_probes(stack):
    yield
    stack.sh(
        "rm -f " + " ".join(f"{stack.packages}/{p}-*" for p in PROBES) + " && pypi-appliance reindex >/dev/null 2>&1",
        check=False,
    )


def stored(stack, name: str) -> str:
    """The stored file's inode, size and mtime: what a rewrite would change."""
    return stack.sh(f"stat -c '%i %s %Y' {stack.packages}/{name}").stdout


def audit_events(stack, name: str) -> list[str]:
    return [
        line.split()[1] for line in stack.sh(f"cat {stack.audit_log}").stdout.splitlines() if f"file={name}" in line
    ]


def upload(stack, wheel, headers=None):
    body, content_type = upload_form(wheel)
    return stack.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=body,
        headers={"Content-Type": content_type, **(headers or {})},
    )


def uv_publish(stack, wheel):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "publish",
            "--publish-url",
            stack.url("/"),
            "--check-url",
            index_url(stack, USER, PASSWORD),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(
            SSL_CERT_FILE=stack.ca_file, UV_NO_CONFIG="1", UV_PUBLISH_USERNAME=USER, UV_PUBLISH_PASSWORD=PASSWORD
        ),
    )


def test_the_same_file_again_is_accepted_once_stored(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="retry-probe")
    assert twine_upload(stack, wheel, PASSWORD).returncode == 0
    before = stored(stack, wheel.name)
    # A re-run CI job: twine (6.2 has no --skip-existing here) and curl-like clients get 200.
    again = twine_upload(stack, wheel, PASSWORD)
    assert again.returncode == 0, again.stdout + again.stderr
    status, text, headers = upload(stack, wheel)
    assert status == 200 and text.decode() == f"{wheel.name} {IDENTICAL}\n", (status, text)
    assert stored(stack, wheel.name) == before
    assert audit_events(stack, wheel.name) == ["upload", "upload-identical", "upload-identical"]

    # Other bytes under the name: refused as before, in the appliance's words.
    (tmp_path / "rebuilt").mkdir()
    rebuilt = make_wheel(tmp_path / "rebuilt", "1.0", project="retry-probe", metadata="Keywords: rebuilt\n")
    status, text, _ = upload(stack, rebuilt)
    assert status == 409, (status, text)
    assert (
        f"{wheel.name} already exists on this index, with other contents. Published files never change" in text.decode()
    )
    assert stored(stack, wheel.name) == before


def test_uv_publish_with_check_url_twice(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="uv-retry-probe")
    for _ in range(2):
        done = uv_publish(stack, wheel)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "already exists" in done.stderr.lower(), done.stderr  # the second run skips it
    assert stack.sh(f"ls {stack.packages}").stdout.split().count(wheel.name) == 1


def test_removal_through_the_index_is_refused(stack, tmp_path):
    """pypiserver's remove_pkg form action: removal is the helper's (asked, audited)."""
    wheel = make_wheel(tmp_path, "1.0", project="keep-probe")
    assert twine_upload(stack, wheel, PASSWORD).returncode == 0
    status, text, _ = stack.fetch_all(
        "/",
        user=USER,
        password=PASSWORD,
        method="POST",
        data=b":action=remove_pkg&name=keep-probe&version=1.0",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403, (status, text)
    assert text.decode() == (
        "Removing files through the index is turned off: an admin removes them on the host "
        "with 'pypi-appliance remove NAME==VERSION' (asked, audited).\n"
    )
    assert wheel.name in stack.sh(f"ls {stack.packages}").stdout
    assert stack.http("/simple/keep-probe/", user=USER, password=PASSWORD) == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},  # a browser without Sec-Fetch-Site
    ],
    ids=["cross-site", "same-site", "origin-only"],
)
def test_a_browser_write_for_another_site_is_refused(stack, tmp_path, headers):
    wheel = make_wheel(tmp_path, "1.0", project="csrf-probe")
    status, text, _ = upload(stack, wheel, headers)
    assert status == 403, (status, text)
    assert text.decode() == (
        "pypi-appliance: a browser sent this write for a page of another site "
        "(Sec-Fetch-Site or Origin); uploads come from twine, uv or curl\n"
    )
    assert wheel.name not in stack.sh(f"ls {stack.packages}").stdout
    # Reads from a browser are not writes.
    assert stack.http("/simple/", user=USER, password=PASSWORD, headers=headers) == 200


def test_a_browser_write_on_this_site_and_tools_without_the_headers_pass(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="same-origin-probe")
    status, text, _ = upload(stack, wheel, {"Sec-Fetch-Site": "same-origin", "Origin": stack.url("")})
    assert status == 200, (status, text)
    other = make_wheel(tmp_path, "2.0", project="same-origin-probe")
    assert twine_upload(stack, other, PASSWORD).returncode == 0
    assert {wheel.name, other.name} <= set(stack.sh(f"ls {stack.packages}").stdout.split())


MiB = 2**20
INDEXER_PROCESSES = r"""
import glob, re
for status in glob.glob("/proc/[0-9]*/status"):
    try:
        text = open(status).read()
        command = open(status.replace("status", "cmdline"), "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        continue
    peak = re.search(r"VmHWM:\s+(\d+) kB", text)
    if peak and "pypi_appliance" in command:
        print("inspector" if "inspector()" in command else "indexer", int(peak.group(1)) * 1024)
"""


def indexer_memory(stack) -> dict[str, int]:
    """Peak resident bytes (VmHWM) of the indexer and its inspector process."""
    out = stack.sh("docker exec -i pypi-appliance-indexer-1 python -", input=INDEXER_PROCESSES).stdout
    return {kind: int(size) for kind, size in (line.split() for line in out.splitlines())}


def test_upload_bombs_are_refused_and_the_next_upload_is_listed(stack, tmp_path):
    """The review's bombs, at its sizes: each refused with the bound it breaks,
    nothing kept, the indexer's memory small; one past every check (a pax
    header read whole) stopped by the inspector's own limit."""
    from tests.support import bombs

    made = [
        (bombs.sparse_sdist(tmp_path, hole="4G"), "member bomb_sparse-1.0/PKG-INFO is a sparse file"),
        (bombs.bzip2_wheel(tmp_path, size=512 * MiB), "is compressed with method 12"),
        (bombs.huge_metadata_wheel(tmp_path, size=200 * MiB), "is 200 MiB, more than the 8 MiB the index reads"),
        (bombs.overlapping_wheel(tmp_path, copies=16, size=64 * MiB), "overlap"),
        (bombs.pax_sdist(tmp_path, size=768 * MiB), "checking it needs more than 256 MiB of memory"),
    ]
    (tmp_path / "good").mkdir()
    for n, (bomb, reason) in enumerate(made):
        if n == len(made) - 1:
            before = indexer_memory(stack)
            print(f"indexer memory after the review's bombs: {before}")
            assert before["indexer"] < 96 * MiB and before["inspector"] < 96 * MiB, before
        status, text, _ = upload(stack, bomb)
        assert status == 400 and text.decode().startswith(f"{bomb.name} was not stored: "), (status, text)
        assert reason in text.decode(), text
        assert bomb.name not in stack.sh(f"ls {stack.packages}").stdout
        good = make_wheel(tmp_path / "good", f"1.{n}", project="after-bomb-probe")
        assert twine_upload(stack, good, PASSWORD).returncode == 0
        status, body, _ = stack.fetch_all("/simple/after-bomb-probe/", user=USER, password=PASSWORD)
        assert status == 200 and good.name in body.decode()
    after = indexer_memory(stack)
    print(f"indexer memory after the pax bomb: {after}")
    assert after["indexer"] < 96 * MiB and after["inspector"] <= 256 * MiB, after
    assert "not listed" not in stack.report()
