"""Nothing stale: uploads, files changed on disk and password changes show
through within the promised time (more in test_index.py)."""

from __future__ import annotations

import time

import pytest

from tests.support.client import PASSWORD, REFUSED, USER, twine_upload
from tests.support.dists import make_wheel

pytestmark = pytest.mark.stack

PROJECT = "fresh-probe"


def index(stack, project: str = PROJECT) -> tuple[int, str]:
    status, body = stack.fetch(f"/simple/{project}/", user=USER, password=PASSWORD)
    return status, body.decode(errors="replace")


def within_a_second(stack, test, project: str = PROJECT) -> tuple[int, str]:
    """The page once test(body) holds; files changed on disk show within 1 s."""
    deadline = time.monotonic() + 1
    while True:
        status, body = index(stack, project)
        if test(body) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.05)


def test_upload_shows_in_the_index_at_once(stack, tmp_path):
    assert index(stack)[0] == 404  # now cached as "no such project"
    for version in ("1.0", "1.1"):
        wheel = make_wheel(tmp_path, version, project=PROJECT)
        assert twine_upload(stack, wheel, PASSWORD).returncode == 0
        status, body = index(stack)
        assert status == 200 and wheel.name in body, body
        status, content = stack.fetch(f"/packages/{wheel.name}", user=USER, password=PASSWORD)
        assert status == 200 and content == wheel.read_bytes()


def test_package_files_need_the_password(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project=PROJECT)
    assert stack.http(f"/packages/{wheel.name}") == 401
    assert stack.http(f"/packages/{wheel.name}", user=USER, password="wrong") in REFUSED
    assert stack.http("/packages/../auth/htpasswd", user=USER, password=PASSWORD) in (400, 404)


def test_password_changes_apply_at_once(stack):
    stack.sh("pypi-appliance user add --password-stdin cache-probe", input="first\n")
    for _ in range(3):  # accepted, and remembered
        assert stack.http("/simple/", user="cache-probe", password="first") == 200
    stack.sh("pypi-appliance user passwd --password-stdin cache-probe", input="second\n")
    assert stack.http("/simple/", user="cache-probe", password="first") in REFUSED
    assert stack.http("/simple/", user="cache-probe", password="second") == 200
    stack.sh("pypi-appliance user remove cache-probe")
    assert stack.http("/simple/", user="cache-probe", password="second") in REFUSED


def test_each_page_follows_its_own_files_in_any_spelling(stack, tmp_path):
    project = "spelling-probe"
    first = make_wheel(tmp_path, "1.0", project=project)
    assert twine_upload(stack, first, PASSWORD).returncode == 0
    assert index(stack, project)[0] == 200  # cached; its key is the names of spelling-probe's files
    sibling = make_wheel(tmp_path, "2.0", project="Spelling.Probe-Sibling")
    assert twine_upload(stack, sibling, PASSWORD).returncode == 0
    status, listing = stack.fetch("/simple/", user=USER, password=PASSWORD)
    assert status == 200 and b"spelling-probe-sibling" in listing
    status, body = index(stack, "spelling-probe-sibling")
    assert status == 200 and sibling.name in body
    # Another spelling of the name, copied in by hand, is the same project.
    odd = "SPELLING_probe-3.0-py3-none-any.whl"
    stack.sh(
        f"cp {stack.packages}/{first.name} {stack.packages}/{odd} "
        f"&& chown {stack.server_id}:{stack.server_id} {stack.packages}/{odd}"
    )
    try:
        status, body = within_a_second(stack, lambda body: odd in body, project)
        assert status == 200 and odd in body, body
    finally:
        stack.sh(f"rm -f {stack.packages}/{odd}")
    status, body = within_a_second(stack, lambda body: odd not in body, project)
    assert status == 200 and odd not in body
