"""Who may do what at the front door: no password or a wrong one is 401, a
read account's upload 403 (roles change at once), a credential checker that
does not answer 503 with Retry-After, /health and the internal locations
(throttling, a reverse proxy and the host's local users: tests/e2e/test_access.py)."""

from __future__ import annotations

import re

import pytest

from builder.services import BY_NAME
from tests.support.client import PASSWORD, PROJECT, REFUSED, USER, pip_install, twine_upload, upload_form
from tests.support.dists import make_wheel

pytestmark = pytest.mark.stack


def test_roles_and_generated_credentials(stack, tmp_path):
    password, out = stack.add_generated("reader", "read")
    assert "PIP_INDEX_URL=" in out and "TWINE" not in out
    assert {f"{USER} publish *", "reader read"} <= set(stack.sh("pypi-appliance user list").stdout.splitlines())
    assert (
        password
        not in stack.sh(f"find {stack.root}{stack.data_dir}/auth {stack.audit_log} -type f -exec cat {{}} +").stdout
    )
    try:
        wheel = make_wheel(tmp_path, "1.0", project="role-probe")
        # A read account lists and downloads...
        assert twine_upload(stack, wheel, PASSWORD).returncode == 0
        assert pip_install(stack, tmp_path, password, user="reader", project="role-probe") == "1.0"
        # ...and may not publish: 403, saying so, and nothing is stored.
        body, content_type = upload_form(make_wheel(tmp_path, "2.0", project="role-probe"))
        upload = {"method": "POST", "data": body, "headers": {"Content-Type": content_type}}
        status, text, _ = stack.fetch_all("/", user="reader", password=password, **upload)
        assert status == 403, (status, text)
        assert b"the account reader may list and download but not publish" in text
        assert b"pypi-appliance user role reader publish" in text
        stored = stack.sh(f"ls {stack.packages}").stdout.split()
        assert [name for name in stored if name.startswith("role_probe-")] == [wheel.name]

        # Role changes apply at once, to a credential the front door has cached.
        stack.sh("pypi-appliance user role reader publish")
        status, text, _ = stack.fetch_all("/", user="reader", password=password, **upload)
        assert status == 200, text
        stack.sh("pypi-appliance user role reader read")
        body3, content_type3 = upload_form(make_wheel(tmp_path, "3.0", project="role-probe"))
        assert (
            stack.fetch_all(
                "/",
                user="reader",
                password=password,
                method="POST",
                data=body3,
                headers={"Content-Type": content_type3},
            )[0]
            == 403
        )
        stack.sh("pypi-appliance user remove reader")
        assert stack.http("/simple/", user="reader", password=password) == 401

        # Each upload and change is in the audit log, with the account and address.
        uploads = stack.audit_lines("upload")
        assert [re.search(r"account=(\S+) file=(\S+)", line).groups() for line in uploads[-2:]] == [
            (USER, wheel.name),
            ("reader", "role_probe-2.0-py3-none-any.whl"),
        ]
        assert all(re.search(r" client=\d+\.\d+\.\d+\.\d+ ", line) for line in uploads)
        changes = [line.split()[1:] for line in stack.audit_lines() if line.split()[1].startswith("user-")]
        assert changes[-4:] == [
            ["user-add", "by=root", "account=reader", "role=read"],
            ["user-role", "by=root", "account=reader", "role=publish"],
            ["user-role", "by=root", "account=reader", "role=read"],
            ["user-remove", "by=root", "account=reader"],
        ]
        tail = stack.sh("pypi-appliance audit -n 2").stdout.splitlines()
        assert tail == stack.audit_lines()[-2:]
    finally:
        stack.sh(
            "pypi-appliance user remove reader 2>/dev/null; rm -f {stack.packages}/role_probe-*; "
            "pypi-appliance reindex >/dev/null 2>&1",
            check=False,
        )


def test_a_checker_not_answering_gives_503_and_when_to_retry(stack):
    # Known to nginx (cached) before the checker goes away.
    assert stack.http("/simple/", user=USER, password=PASSWORD) == 200
    pid = stack.sh("docker inspect -f '{{.State.Pid}}' pypi-appliance-proxy-1").stdout.strip()
    # The proxy's connections to the checker are refused, as while it starts.
    rule = f"OUTPUT -p tcp --dport {BY_NAME['auth'].port} -j REJECT --reject-with tcp-reset"
    stack.sh(f"nsenter -t {pid} -n iptables -I {rule}")
    try:
        status, body, headers = stack.fetch_all("/simple/", user=USER, password="not-known-yet")
        assert status == 503 and headers["Retry-After"] == "5", (status, body)
        assert b"the credential checker is not answering" in body and b"pypi-appliance status" in body
        assert stack.http("/simple/", user=USER, password=PASSWORD) == 200
    finally:
        stack.sh(f"nsenter -t {pid} -n iptables -D {rule}")
    assert stack.http("/simple/", user=USER, password="not-known-yet") == 401


def test_health_reaches_only_health(stack):
    """/health needs no password: whatever path spelling nginx matched there,
    pypiserver is asked for /health alone, and only to read."""
    for path in ("/health", "/packages/x/../../health", "//health", "/simple/x/..%2f..%2fhealth"):
        status, body, _ = stack.fetch_all(path)
        # Not pypiserver's /packages/ route answering "x/../../health does not exist".
        assert status == 200 and b"does not exist" not in body, (path, status, body)
    assert stack.fetch_all("/health", method="POST", data=b"x" * 1000)[0] == 403


def test_internal_locations_need_the_password_too(stack):
    """/_index/ is internal: from outside nginx answers 404 through its
    error_page, whose handler checks the password like every read."""
    for path in ("/_index/html/Foo_Bar/", "/_index/json/nothing/?a=b", "/_upstream/json/x/"):
        assert stack.http(path) in (401, 404), path
    status, _, headers = stack.fetch_all("/_index/html/Foo_Bar/")
    assert status == 401 and "Location" not in headers, (status, headers)


def test_anonymous_listing_and_upload_are_refused(stack, tmp_path):
    assert stack.http("/simple/") == 401
    assert stack.http(f"/simple/{PROJECT}/") == 401
    before = stack.sh(f"ls -A {stack.packages}").stdout
    body, content_type = upload_form(make_wheel(tmp_path))
    status = stack.http("/", method="POST", data=body, headers={"Content-Type": content_type})
    assert status in REFUSED
    assert stack.sh(f"ls -A {stack.packages}").stdout == before


def test_wrong_credentials_are_refused(stack):
    assert stack.http("/simple/", user=USER, password="wrong") in REFUSED
    assert stack.http("/simple/", user="nobody", password=PASSWORD) in REFUSED


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_password_works_in_either_client_encoding(stack, encoding):
    assert stack.http("/simple/", user=USER, password=PASSWORD, encoding=encoding) == 200


def test_unknown_project_is_not_redirected(stack):
    assert stack.http("/simple/requests/", user=USER, password=PASSWORD) == 404


def test_an_account_guessed_at_is_throttled_with_retry_after(stack):
    """PYPI_AUTH_MAX_FAILURES wrong passwords for one account from one address:
    the next answer is 429 with Retry-After, naming the address; the admin's
    known-good credential from the same address still gets in."""
    answers = [stack.http("/simple/", user="guessed-at", password=f"guess{n}") for n in range(10)]
    assert answers == [401] * 10
    status, body, headers = stack.fetch_all("/simple/", user="guessed-at", password="guess10")
    assert status == 429 and headers["Retry-After"] == "60", (status, headers)
    assert b"too many failed or unchecked logins from " in body, body
    assert stack.http("/simple/", user=USER, password=PASSWORD) == 200
    assert "account=guessed-at" in stack.audit_lines("throttled")[-1].split()
