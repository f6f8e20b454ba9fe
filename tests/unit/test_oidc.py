"""Trusted publishing's exchange (admin/oidc.py) against a local issuer over
HTTPS (tests/support/oidc.py): what it mints, every refusal the issue names,
and its routes on the Unix socket the front door asks."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from pypi_appliance.admin import oidc
from pypi_appliance.core import audit, credentials, internal
from tests.support.oidc import AUDIENCE, Issuer, serve_in_thread


@pytest.fixture
def issuer(tmp_path):
    found = Issuer(tmp_path / "issuer", "https://127.0.0.1:0")
    httpd = serve_in_thread(tmp_path / "issuer")
    found.url = f"https://127.0.0.1:{httpd.server_port}"
    found.write()
    yield found
    httpd.shutdown()


@pytest.fixture
def exchange(tmp_path, issuer, monkeypatch):
    monkeypatch.setattr(audit, "LOG", str(tmp_path / "audit.log"))
    data = tmp_path / "data"
    (data / "auth" / "state").mkdir(parents=True)
    (data / "auth" / "token-key").write_text("k" * 64 + "\n")
    trusts = {
        "audience": AUDIENCE,
        "trusts": {
            "team-a": {
                "issuer": issuer.url,
                "audience": AUDIENCE,
                "claims": {"project_path": "group/team-a", "ref_protected": "true"},
                "projects": ["team-a-*"],
            }
        },
    }
    (data / "auth" / "trusts.json").write_bytes(
        oidc.trusts_json(
            {
                **trusts,
                "trusts": {
                    n: {**t, "projects": credentials.parse_scope(",".join(t["projects"]))}
                    for n, t in trusts["trusts"].items()
                },
            }
        )
    )
    context = ssl.create_default_context(cafile=str(issuer.ca))
    found = oidc.Exchange(str(data), keys=oidc.Keys(context=context))
    found.data = data
    found.audit = tmp_path / "audit.log"
    return found


def test_a_good_token_mints_a_scoped_short_lived_publish_token(exchange, issuer):
    answer = exchange.mint(issuer.token(), "10.0.0.9")
    assert answer["success"] is True and credentials.TOKEN.fullmatch(answer["token"])
    assert 895 <= answer["expires"] - time.time() <= 900  # PEP 807: 15 minutes at least
    minted = credentials.read_tokens(str(exchange.data / "auth" / "state" / "minted.json"))
    ((name, record),) = minted.items()
    key = credentials.read_key(str(exchange.data / "auth" / "token-key"))
    assert record["digest"] == credentials.digest(key, answer["token"]) and record["role"] == "publish"
    assert record["projects"] == ("team-a-*",) and record["subject"].startswith("project_path:group/team-a")
    line = exchange.audit.read_text()
    assert "oidc-mint client=10.0.0.9" in line and "trust=team-a" in line and f"token={name}" in line
    assert "claims=project_path=group/team-a,ref_protected=true" in line
    assert answer["token"] not in line


@pytest.mark.parametrize(
    "make, code, why",
    [
        (lambda i: i.token(iss="https://127.0.0.1:1"), "invalid-publisher", "no trust names the issuer"),
        (lambda i: i.token(aud="https://other.index"), "invalid-token", "for another audience"),
        (lambda i: i.token(lifetime=-120), "invalid-token", "expired"),
        (lambda i: i.token(project_path="group/team-b"), "invalid-publisher", "project_path=group/team-a"),
        (lambda i: i.token(ref_protected=False), "invalid-publisher", "ref_protected=true (the token has false)"),
        (lambda i: i.forged(), "invalid-token", "signature does not verify"),
        (lambda i: i.token(iat=int(time.time()) + 600, nbf=None), "invalid-token", "(iat"),
        (lambda i: "not.a.jwt", "invalid-token", "not a signed JWT"),
        (lambda i: i.token(exp=None), "invalid-token", "exp"),
    ],
)
def test_refusals_say_why_in_the_audit_log(exchange, issuer, make, code, why):
    with pytest.raises(oidc.Refused) as refused:
        exchange.mint(make(issuer), "10.0.0.9")
    assert refused.value.code == code and why in refused.value.description
    assert "oidc-refused client=10.0.0.9" in exchange.audit.read_text()
    assert not (exchange.data / "auth" / "state" / "minted.json").exists()


def test_a_token_is_traded_once(exchange, issuer):
    token = issuer.token()
    exchange.mint(token, "c")
    with pytest.raises(oidc.Refused, match="used before"):
        exchange.mint(token, "c")
    # Kept on disk: a restart of the exchange still refuses it.
    again = oidc.Exchange(str(exchange.data), keys=exchange.keys)
    with pytest.raises(oidc.Refused, match="used before"):
        again.mint(token, "c")


def test_key_rotation(exchange, issuer, monkeypatch):
    old_kid = issuer.published[-1]
    exchange.mint(issuer.token(), "c")  # the JWKS is fetched and kept
    new_kid = issuer.rotate()
    monkeypatch.setattr(oidc, "REFETCH_SECONDS", 0)
    # A token of the new key: not known, so the JWKS is fetched again.
    exchange.mint(issuer.token(kid=new_kid), "c")
    # The old key is gone from the issuer's JWKS: refused from that fetch on.
    with pytest.raises(oidc.Refused) as refused:
        exchange.mint(issuer.token(kid=old_kid), "c")
    assert refused.value.code == "unknown-key"


def test_an_unreachable_issuer_is_a_503_not_a_mint(tmp_path, exchange, issuer):
    trusts = oidc.read_trusts(str(exchange.data / "auth" / "trusts.json"))
    trusts["trusts"]["team-a"]["issuer"] = issuer.url.rsplit(":", 1)[0] + ":9"  # nobody there
    (exchange.data / "auth" / "trusts.json").write_bytes(oidc.trusts_json(trusts))
    with pytest.raises(oidc.Refused) as refused:
        exchange.mint(issuer.token(iss=trusts["trusts"]["team-a"]["issuer"]), "c")
    assert refused.value.code == "issuer-unreachable"


def test_routes_on_the_socket(tmp_path, exchange, issuer, monkeypatch):
    key_file = tmp_path / "internal-key"
    key_file.write_text("the-key\n")
    monkeypatch.setattr(internal, "KEY_FILE", str(key_file))
    path = str(tmp_path / "exchange.sock")
    server = oidc.UnixServer(path, oidc.handler(exchange))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def ask(method, url, body=None, key="the-key", accept=None):
        conn = http.client.HTTPConnection("localhost")
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(path)
        headers = {"Host": "pypi.test:8443", "X-Forwarded-Proto": "https", "X-Real-IP": "10.1.1.1"}
        if key:
            headers["X-Appliance-Key"] = key
        if accept:
            headers["Accept"] = accept
        conn.request(method, url, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    try:
        key = hashlib.sha256(b"/").hexdigest()
        assert ask("GET", f"/.well-known/pytp/{key}") == (
            200,
            {
                "audience-endpoint": "https://pypi.test:8443/_/oidc/audience",
                "mint-token-endpoint": "https://pypi.test:8443/_/oidc/mint-token",
            },
        )
        assert ask("GET", f"/.well-known/pytp/{hashlib.sha256(b'/legacy/').hexdigest()}")[0] == 404
        assert ask("GET", f"/.well-known/pytp/{key}", accept="text/html")[0] == 406
        assert ask("GET", "/_/oidc/audience") == (200, {"audience": AUDIENCE})
        assert ask("GET", "/_/oidc/audience", key="wrong")[0] == 403
        status, answer = ask("POST", "/_/oidc/mint-token", json.dumps({"token": issuer.token()}))
        assert status == 200 and answer["token"].startswith("pypia-")
        status, answer = ask("POST", "/_/oidc/mint-token", json.dumps({"token": issuer.forged()}))
        assert status == 422 and answer["errors"][0]["code"] == "invalid-token"
        assert ask("POST", "/_/oidc/mint-token", "{not json")[0] == 400
        assert "client=10.1.1.1" in exchange.audit.read_text()
    finally:
        server.shutdown()
        server.server_close()
