"""Nothing stale: uploads, files changed on disk and password changes show
through within the promised time (more in test_index.py)."""

from __future__ import annotations

import time

import pytest

from tests.dists import make_wheel
from tests.e2e.client import PASSWORD, REFUSED, USER, twine_upload

pytestmark = pytest.mark.e2e

PROJECT = "fresh-probe"


def index(system, project: str = PROJECT) -> tuple[int, str]:
    status, body = system.fetch(f"/simple/{project}/", user=USER, password=PASSWORD)
    return status, body.decode(errors="replace")


def within_a_second(system, test, project: str = PROJECT) -> tuple[int, str]:
    """The page once test(body) holds; files changed on disk show within 1 s."""
    deadline = time.monotonic() + 1
    while True:
        status, body = index(system, project)
        if test(body) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.05)


def test_upload_shows_in_the_index_at_once(system, installed, tmp_path):
    assert index(system)[0] == 404  # now cached as "no such project"
    for version in ("1.0", "1.1"):
        wheel = make_wheel(tmp_path, version, project=PROJECT)
        assert twine_upload(system, wheel, PASSWORD).returncode == 0
        status, body = index(system)
        assert status == 200 and wheel.name in body, body
        status, content = system.fetch(f"/packages/{wheel.name}", user=USER, password=PASSWORD)
        assert status == 200 and content == wheel.read_bytes()


def test_package_files_need_the_password(system, installed, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project=PROJECT)
    assert system.http(f"/packages/{wheel.name}") == 401
    assert system.http(f"/packages/{wheel.name}", user=USER, password="wrong") in REFUSED
    assert system.http("/packages/../auth/htpasswd", user=USER, password=PASSWORD) in (400, 404)


def test_password_changes_apply_at_once(system, installed):
    system.sh("pypi-appliance user add --password-stdin cache-probe", input="first\n")
    for _ in range(3):  # accepted, and remembered
        assert system.http("/simple/", user="cache-probe", password="first") == 200
    system.sh("pypi-appliance user passwd --password-stdin cache-probe", input="second\n")
    assert system.http("/simple/", user="cache-probe", password="first") in REFUSED
    assert system.http("/simple/", user="cache-probe", password="second") == 200
    system.sh("pypi-appliance user remove cache-probe")
    assert system.http("/simple/", user="cache-probe", password="second") in REFUSED


def test_each_page_follows_its_own_files_in_any_spelling(system, installed, tmp_path):
    assert index(system)[0] == 200  # cached; its key is the names of fresh-probe's files
    sibling = make_wheel(tmp_path, "2.0", project="Fresh.Probe-Sibling")
    assert twine_upload(system, sibling, PASSWORD).returncode == 0
    status, listing = system.fetch("/simple/", user=USER, password=PASSWORD)
    assert status == 200 and b"fresh-probe-sibling" in listing
    status, body = index(system, "fresh-probe-sibling")
    assert status == 200 and sibling.name in body
    # Another spelling of the name, copied in by hand, is the same project.
    odd = "FRESH_probe-3.0-py3-none-any.whl"
    system.sh(
        f"cp /srv/pypi/packages/fresh_probe-1.0-py3-none-any.whl /srv/pypi/packages/{odd} "
        f"&& chown 9898:9898 /srv/pypi/packages/{odd}"
    )
    try:
        status, body = within_a_second(system, lambda body: odd in body)
        assert status == 200 and odd in body, body
    finally:
        system.sh(f"rm -f /srv/pypi/packages/{odd}")
    status, body = within_a_second(system, lambda body: odd not in body)
    assert status == 200 and odd not in body
