"""The credential checker on its own, over HTTP as the front door asks it:
roles, throttling per account and address (429 without bcrypt work, growing
while failures go on), a spray of names slowed, good credentials from a
throttled account, clean addresses first."""

from __future__ import annotations

import base64
import http.server
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml
from passlib.apache import HtpasswdFile
from passlib.hash import bcrypt

from pypi_appliance.core import audit, credentials
from pypi_appliance.services import auth
from tests.support.serving import serving


def basic(name, password):
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture
def checker(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "LOG", str(tmp_path / "audit.log"))
    (tmp_path / "auth").mkdir()
    users = HtpasswdFile(str(tmp_path / "auth" / "htpasswd"), new=True)
    # Low-cost hashes: the test is about who is answered, not bcrypt's speed.
    for name, password in (("admin", "right"), ("ci", "ci-pw")):
        users.set_hash(name, bcrypt.using(rounds=4).hash(password))
    users.save()
    (tmp_path / "auth" / "roles").write_text("admin publish\n")
    throttle = auth.Throttle(max_failures=3, period=2, period_max=8)
    check = auth.Checker(auth.Accounts(str(tmp_path / "auth")), throttle, workers=2)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), auth.handler(check))

    def ask(header, client="10.0.0.1", need="read"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/check",
            headers={"Authorization": header, "X-Real-IP": client, "X-Appliance-Need": need},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers)

    ask.check = check
    ask.auth_dir = tmp_path / "auth"
    ask.audit = tmp_path / "audit.log"
    ask.url = f"http://127.0.0.1:{server.server_port}"
    with serving(server):
        yield ask


def test_roles(checker):
    status, headers = checker(basic("admin", "right"), need="publish")
    assert status == 200 and headers["X-Appliance-Role"] == "publish" and headers["X-Appliance-User"] == "admin"
    assert checker(basic("ci", "ci-pw"))[0] == 200
    status, headers = checker(basic("ci", "ci-pw"), need="publish")
    assert status == 403 and headers["X-Appliance-User"] == "ci" and headers["X-Appliance-Role"] == "read"
    # A role change is seen on the next check, even for a remembered credential.
    (checker.auth_dir / "roles").write_text("admin publish\nci publish\n")
    assert checker(basic("ci", "ci-pw"), need="publish")[0] == 200


def test_wrong_credentials_and_throttle(checker):
    for n in range(3):
        status, headers = checker(basic("ci", f"guess{n}"))
        assert status == 401 and headers["X-Appliance-Refusal"] == "wrong"
    # Throttled: refused before any bcrypt work, with when to come back.
    started = time.monotonic()
    status, headers = checker(basic("ci", "guess3"))
    assert status == 401 and headers["X-Appliance-Refusal"] == "throttled" and headers["Retry-After"] == "2"
    # Even the right password is not checked for that account from there now...
    assert checker(basic("ci", "ci-pw"))[1]["X-Appliance-Refusal"] == "throttled"
    # ...but other accounts from there, never checked before, and the same
    # account from another address go on.
    assert checker(basic("admin", "right"))[0] == 200
    assert checker(basic("ci", "ci-pw"), client="10.0.0.2")[0] == 200
    assert time.monotonic() - started < 0.5
    state = checker.check.throttle.state(time.monotonic())
    assert [(t["client"], t["account"]) for t in state] == [("10.0.0.1", "ci")]

    # After it, one more failure throttles again, for twice as long.
    time.sleep(2.1)
    assert checker(basic("ci", "guess4"))[1]["X-Appliance-Refusal"] == "wrong"
    assert checker(basic("ci", "guess5"))[1]["Retry-After"] == "4"

    lines = checker.audit.read_text().splitlines()
    failed = [line for line in lines if " login-failed " in line]
    assert len(failed) == 4 and all("client=10.0.0.1 account=ci" in line for line in failed)
    assert [line.split()[1:] for line in lines if " throttled " in line] == [
        ["throttled", "client=10.0.0.1", "account=ci", "seconds=2"],
        ["throttled", "client=10.0.0.1", "account=ci", "seconds=4"],
    ]
    assert "guess" not in checker.audit.read_text()


def test_known_good_credentials_pass_a_throttle(checker):
    assert checker(basic("admin", "right"))[0] == 200
    for n in range(3):
        checker(basic("admin", f"wrong{n}"))
    assert checker(basic("admin", "wrong"))[1]["X-Appliance-Refusal"] == "throttled"
    assert checker(basic("admin", "right"))[0] == 200
    # Another account's change keeps what is known (no bcrypt work for it).
    users = HtpasswdFile(str(checker.auth_dir / "htpasswd"))
    users.set_hash("ci", bcrypt.using(rounds=4).hash("rotated"))
    users.save()
    assert checker(basic("admin", "right"))[0] == 200
    # A changed password forgets what was known.
    users = HtpasswdFile(str(checker.auth_dir / "htpasswd"))
    users.set_hash("admin", bcrypt.using(rounds=4).hash("new"))
    users.save()
    assert checker(basic("admin", "right"))[1]["X-Appliance-Refusal"] == "throttled"


def test_unknown_names_and_bad_headers(checker):
    assert checker(basic("nobody", "x"))[1]["X-Appliance-Refusal"] == "wrong"
    assert checker("Basic !!!")[1]["X-Appliance-Refusal"] == "wrong"
    assert checker("Bearer abc")[1]["X-Appliance-Refusal"] == "wrong"
    # A name with spaces and quotes is logged quoted, after the address; no
    # header carries a client's name back (it may hold any bytes, even CR LF).
    status, headers = checker(basic('x client=1.2.3.4 "y\r\nX-Evil ü', "x"))
    assert status == 401 and "X-Evil" not in headers and "X-Appliance-User" not in headers
    assert (
        'login-failed client=10.0.0.1 account="x client=1.2.3.4 \\"y\\r\\nX-Evil \\u00fc"' in checker.audit.read_text()
    )


def hold_bcrypt(check):
    """Make each bcrypt check wait for the gate; the passwords in the order checks began."""
    gate, started = threading.Event(), []
    real = check._bcrypt

    def gated(users, name, password):
        started.append(password)
        gate.wait(10)
        return real(users, name, password)

    check._bcrypt = gated
    return gate, started


def test_clean_addresses_are_checked_first(checker):
    """Waiting checks go cleanest address first: a failing address's guesses
    queue behind a client that has not failed."""
    check = checker.check
    check.throttle.failed("10.0.0.9", "ci", time.monotonic())
    check.throttle.failed("10.0.0.9", "ci", time.monotonic())
    gate, started = hold_bcrypt(check)
    threads = []

    def ask(password, client):
        threads.append(threading.Thread(target=checker, args=(basic("ci", password), client)))
        threads[-1].start()
        time.sleep(0.2)

    ask("busy1", "10.0.0.3")
    ask("busy2", "10.0.0.4")  # both workers taken
    ask("dirty1", "10.0.0.9")
    ask("dirty2", "10.0.0.9")
    ask("ci-pw", "10.0.0.6")  # came last, goes first
    gate.set()
    for t in threads:
        t.join(10)
    assert started[:2] == ["busy1", "busy2"] and started[2] == "ci-pw"
    assert sorted(started[3:]) == ["dirty1", "dirty2"]


def test_guesses_never_take_every_thread(checker):
    """Of the two threads, addresses with failures get one: the other waits
    for a client that has not failed."""
    check = checker.check
    for client in ("10.0.0.7", "10.0.0.8"):
        check.throttle.failed(client, "ci", time.monotonic())
    gate, started = hold_bcrypt(check)
    threads = [
        threading.Thread(target=checker, args=(basic("ci", p), c))
        for p, c in (("g1", "10.0.0.7"), ("g2", "10.0.0.8"), ("g3", "10.0.0.7"))
    ]
    for t in threads:  # one after the other: g1 is the guess that gets a thread
        t.start()
        time.sleep(0.2)
    time.sleep(0.3)
    assert started == ["g1"]
    clean = threading.Thread(target=checker, args=(basic("ci", "ci-pw"), "10.0.0.20"))
    clean.start()
    time.sleep(0.3)
    assert started == ["g1", "ci-pw"]
    gate.set()
    for t in [*threads, clean]:
        t.join(10)
    assert sorted(started) == ["ci-pw", "g1", "g2", "g3"]


def test_one_address_cannot_queue_without_bound(checker):
    """More concurrent unknown credentials from one address than PER_CLIENT are
    answered at once (busy), not queued."""
    check = checker.check
    gate, _ = hold_bcrypt(check)
    results = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(checker(basic("ci", f"p{n}"))))
        for n in range(check.PER_CLIENT + 2)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(results) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = [r for r in results if r[1].get("X-Appliance-Refusal") == "busy"]
    gate.set()
    for t in threads:
        t.join(10)
    assert len(busy) == 2 and all(r[1]["Retry-After"] == "1" for r in busy)


def test_throttled_list(checker):
    for n in range(3):
        checker(basic("ci", f"g{n}"), client="192.0.2.7")
    with urllib.request.urlopen(f"{checker.url}/throttled", timeout=5) as response:
        import json

        state = json.load(response)
    assert [(t["client"], t["account"], t["seconds_left"]) for t in state] == [("192.0.2.7", "ci", 2)]


def test_a_spray_of_names_is_slowed_not_shut(checker, monkeypatch):
    """Failures across accounts from one address (SPRAY x MAX_FAILURES) slow
    it to one check per PERIOD / MAX_FAILURES seconds, for any account; a
    correct password still gets in at that rate, and other addresses are
    not slowed."""
    monkeypatch.setattr(auth, "DUMMY_HASH", bcrypt.using(rounds=4).hash("unknown names' cost"))
    throttle = checker.check.throttle
    spray = throttle.SPRAY * throttle.max_failures
    answers = [checker(basic(f"name{n}", "x"), client="192.0.2.9")[1]["X-Appliance-Refusal"] for n in range(spray)]
    assert answers == ["wrong"] * spray
    # The slow-down has begun: the next check waits its turn (2/3 s here).
    status, headers = checker(basic("ci", "ci-pw"), client="192.0.2.9")
    assert status == 401 and headers["X-Appliance-Refusal"] == "throttled" and headers["Retry-After"] == "1"
    assert checker(basic("ci", "ci-pw"), client="192.0.2.10")[0] == 200
    # Known good now: no check to wait for.
    assert checker(basic("ci", "ci-pw"), client="192.0.2.9")[0] == 200
    # One check per interval, whatever the account.
    time.sleep(throttle.interval + 0.05)
    assert checker(basic("admin", "right"), client="192.0.2.9")[0] == 200
    users = HtpasswdFile(str(checker.auth_dir / "htpasswd"))
    users.set_hash("dev", bcrypt.using(rounds=4).hash("dev-pw"))
    users.save()
    assert checker(basic("dev", "dev-pw"), client="192.0.2.9")[1]["X-Appliance-Refusal"] == "throttled"
    time.sleep(throttle.interval + 0.05)
    assert checker(basic("dev", "dev-pw"), client="192.0.2.9")[0] == 200
    [state] = [t for t in throttle.state(time.monotonic()) if t["client"] == "192.0.2.9"]
    assert state["slowed"] and state["account"] is None and 0 < state["seconds_left"] <= 2
    slowed = [line.split()[1:] for line in checker.audit.read_text().splitlines() if " slowed " in line]
    assert slowed == [["slowed", "client=192.0.2.9", "seconds=2", "every=0.7"]]
    # Quiet for PERIOD: the address is not slowed any more.
    time.sleep(throttle.period + 0.1)
    assert throttle.blocked("192.0.2.9", "anyone", time.monotonic()) == 0
    assert throttle.blocked("192.0.2.9", "anyone", time.monotonic()) == 0


def test_the_checker_reads_the_settings_compose_passes(shipped_tree):
    doc = yaml.safe_load((shipped_tree / "root/etc/pypi-appliance/compose.yaml").read_text())
    passed = {k: v for k, v in doc["services"]["auth"]["environment"].items() if k.startswith("PYPI_AUTH_")}
    assert sorted(passed) == sorted(auth.SETTINGS)
    assert passed["PYPI_AUTH_MAX_FAILURES"] == "${PYPI_AUTH_MAX_FAILURES:-10}"


def test_publish_scopes_are_named_to_the_upload_hook(checker):
    (checker.auth_dir / "roles").write_text("admin publish\nci publish team-a-*,Shared_Utils\nbroken publish !!\n")
    status, headers = checker(basic("admin", "right"), need="publish")
    assert status == 200 and headers["X-Appliance-Projects"] == "*"  # a line from before scopes: every project
    status, headers = checker(basic("ci", "ci-pw"), need="publish")
    assert status == 200 and headers["X-Appliance-Projects"] == "team-a-*,shared-utils"


def make_token(auth_dir, name, role="publish", projects=("*",), expires_in=3600, **extra):
    """A token as 'token create' keeps it: the secret, its record in tokens.json."""
    key_file = auth_dir / "token-key"
    if not key_file.exists():
        key_file.write_text("k" * 64 + "\n")
    secret = credentials.new_token()
    path = auth_dir / "tokens.json"
    tokens = credentials.read_tokens(str(path))
    now = int(time.time())
    tokens[name] = {
        "digest": credentials.digest(credentials.read_key(str(key_file)), secret),
        "role": role,
        "projects": list(projects),
        "created": now,
        "expires": now + expires_in,
        **extra,
    }
    path.write_bytes(credentials.tokens_json(tokens))
    return secret


def test_tokens_cost_no_bcrypt_and_end_at_once(checker, monkeypatch):
    secret = make_token(checker.auth_dir, "ci-team-a", projects=("team-a-*",), expires_in=120)
    monkeypatch.setattr(auth.Checker, "_bcrypt", lambda *a: pytest.fail("a token ran bcrypt"))
    status, headers = checker(basic("__token__", secret), need="publish")
    assert status == 200
    assert headers["X-Appliance-User"] == "token:ci-team-a" and headers["X-Appliance-Projects"] == "team-a-*"
    # Cached by the front door no longer than it lives.
    assert 115 <= int(headers["X-Accel-Expires"]) <= 120
    assert "ci-team-a" in checker.check.used
    read = make_token(checker.auth_dir, "reader", role="read")
    status, headers = checker(basic("__token__", read), need="publish")
    assert status == 403 and headers["X-Appliance-Projects"] == ""
    # Wrong, expired and revoked tokens: 401, nothing throttled, the audit log says why (never the token).
    assert checker(basic("__token__", credentials.new_token()))[0] == 401
    expired = make_token(checker.auth_dir, "old", expires_in=-1)
    assert checker(basic("__token__", expired))[0] == 401
    tokens = credentials.read_tokens(str(checker.auth_dir / "tokens.json"))
    tokens["ci-team-a"]["revoked"] = int(time.time())
    (checker.auth_dir / "tokens.json").write_bytes(credentials.tokens_json(tokens))
    assert checker(basic("__token__", secret))[0] == 401
    log = checker.audit.read_text()
    assert 'account=__token__ why="unknown token"' in log
    assert 'account=token:old why="token expired"' in log and 'account=token:ci-team-a why="token revoked"' in log
    assert secret not in log and expired not in log
    assert checker.check.throttle.state(time.monotonic()) == []


def test_minted_tokens_and_a_broken_tokens_file(checker):
    (checker.auth_dir / "state").mkdir()
    key = "k" * 64
    (checker.auth_dir / "token-key").write_text(key + "\n")
    secret = credentials.new_token()
    minted = {
        "oidc-gl-abc123": {
            "digest": credentials.digest(key.encode(), secret),
            "role": "publish",
            "projects": ["team-a-*"],
            "created": int(time.time()),
            "expires": int(time.time()) + 900,
        }
    }
    (checker.auth_dir / "state" / "minted.json").write_bytes(credentials.tokens_json(minted))
    status, headers = checker(basic("__token__", secret), need="publish")
    assert status == 200 and headers["X-Appliance-User"] == "token:oidc-gl-abc123"
    # The helper's file broken: its tokens are refused, the minted ones still work.
    other = make_token(checker.auth_dir, "helper-made")
    assert checker(basic("__token__", other))[0] == 200
    (checker.auth_dir / "tokens.json").write_text("{not json")
    assert checker(basic("__token__", other))[0] == 401
    assert checker(basic("__token__", secret))[0] == 200
