"""Trusted publishing: a CI job trades the OpenID Connect ID token its CI gives
it (GitHub Actions' id-token: write, GitLab CI's id_tokens:) for a publish
token that lives 15 minutes and covers the projects an admin registered for
that CI identity ('pypi-appliance trust add'). PEP 807's discovery and
exchange, at the routes PyPI's exchange has (/_/oidc/audience,
/_/oidc/mint-token), which existing CI actions call.

It runs on the host, in a process of its own that 'pypi-appliance up' starts
as the containers' user, because the containers' Python has no JOSE library
and the host's has: signatures, expiry and audience are checked by PyJWT
(python3-jwt) with python3-cryptography, never by code of ours. The front
door passes the three routes to its Unix socket (nginx.conf: upstream oidc).

For each ID token, in order (the first failure refuses it, in the audit log
with the issuer, subject and why):
  1. it is a JWT of at most 16 kB, signed with an asymmetric algorithm;
  2. its issuer (iss) is one a trust names, exactly;
  3. the signing key (kid) is in the issuer's JWKS, fetched over HTTPS from
     its OpenID configuration and kept 5 minutes; a key not known is fetched
     again at most every 10 s (rotation), so a key the issuer dropped is
     refused from the next fetch on;
  4. the signature, exp, nbf, iat (60 s of clock skew), iss and aud
     (the trust's audience) hold;
  5. every claim the trust names matches (a glob; true/false as JSON spells them);
  6. the token was not used before (its jti, else its hash, kept until it expires);
then a token is minted: publish, the matching trusts' projects, 15 minutes
(or the trust's --lifetime, up to 6 hours as PEP 807 allows), kept hashed in
DATA_DIR/auth/state/minted.json, which the credential checker reads."""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import http.server
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

from pypi_appliance.core import audit, credentials, internal
from pypi_appliance.core.fsutil import read_json, write_atomic
from pypi_appliance.core.policy import UNREADABLE, Watched

LEEWAY = 60
LIFETIME, MIN_LIFETIME, MAX_LIFETIME = 900, 900, 6 * 3600
MAX_TOKEN = 16 * 1024
MAX_DOCUMENT = 1 << 20
JWKS_SECONDS, REFETCH_SECONDS = 300, 10
FETCH_TIMEOUT = 5
# Asymmetric only (RFC 8725 3.1): an HMAC "signature" made with a public key is never accepted.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MEDIA_TYPE = "application/vnd.pypi.pytp.v1+json"
# Upload URLs this index serves (PEP 807 discovery keys: the SHA-256 of the path).
UPLOAD_PATHS = ("/", "")
SOCKET_NAME = "exchange.sock"


class Refused(Exception):
    def __init__(self, code: str, description: str, claims: dict | None = None):
        super().__init__(description)
        self.code, self.description, self.claims = code, description, claims or {}


def read_trusts(path: str) -> dict:
    """{"audience": default, "trusts": {name: {...}}} ({} of each: none yet)."""
    data = read_json(path, {"audience": "", "trusts": {}})
    for name, trust in data["trusts"].items():
        if not isinstance(trust["issuer"], str) or not isinstance(trust["claims"], dict):
            raise ValueError(f"trust {name!r} has no issuer or claims")
        trust["projects"] = credentials.parse_scope(",".join(trust["projects"]))
    return data


def trusts_json(data: dict) -> bytes:
    trusts = {n: {**t, "projects": list(t["projects"])} for n, t in sorted(data["trusts"].items())}
    return (json.dumps({"version": 1, "audience": data["audience"], "trusts": trusts}, indent=1) + "\n").encode()


def claim_text(value) -> str:
    """A claim as the trust's patterns spell it: true/false/null as JSON does."""
    return value if isinstance(value, str) else json.dumps(value)


def unmatched(trust: dict, claims: dict) -> list[str]:
    """The trust's claims this token does not match: NAME=WANTED (got ...)."""
    wrong = []
    for name, pattern in sorted(trust["claims"].items()):
        got = claims.get(name)
        if got is None or not fnmatch.fnmatchcase(claim_text(got), pattern):
            wrong.append(f"{name}={pattern} (the token has {claim_text(got) if got is not None else 'none'})")
    return wrong


def fetch_json(url: str, context: ssl.SSLContext | None = None) -> dict:
    """A JSON document over HTTPS, at most MAX_DOCUMENT bytes and FETCH_TIMEOUT s to connect and each read."""
    if not url.startswith("https://"):
        raise Refused("issuer-unreachable", f"{url} is not an https:// URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context) as response:
            body = response.read(MAX_DOCUMENT + 1)
    except (OSError, ValueError) as err:
        raise Refused("issuer-unreachable", f"{url} could not be fetched: {err}") from None
    if len(body) > MAX_DOCUMENT:
        raise Refused("issuer-unreachable", f"{url} is over {MAX_DOCUMENT} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise Refused("issuer-unreachable", f"{url} is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused("issuer-unreachable", f"{url} is not a JSON object")
    return doc


def discover(issuer: str, context: ssl.SSLContext | None = None) -> str:
    """The issuer's jwks_uri, from its OpenID configuration (which must name it as the issuer)."""
    doc = fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration", context)
    if doc.get("issuer") != issuer:
        raise Refused(
            "issuer-unreachable", f"{issuer}'s OpenID configuration names another issuer ({doc.get('issuer')!r})"
        )
    uri = doc.get("jwks_uri")
    if not isinstance(uri, str) or not uri.startswith("https://"):
        raise Refused("issuer-unreachable", f"{issuer}'s OpenID configuration has no https:// jwks_uri")
    return uri


class Keys:
    """Each issuer's signing keys (JWKS), fetched when first needed, again
    after JWKS_SECONDS, and when a token names a key not known (at most every
    REFETCH_SECONDS: rotation without a flood of fetches)."""

    def __init__(self, clock=time.monotonic, context: ssl.SSLContext | None = None):
        self.clock, self.context = clock, context
        self.sets: dict[str, tuple[float, object]] = {}
        self.lock = threading.Lock()

    def fetch(self, issuer: str):
        import jwt

        doc = fetch_json(discover(issuer, self.context), self.context)
        try:
            keys = jwt.PyJWKSet.from_dict(doc)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as err:
            raise Refused("issuer-unreachable", f"{issuer}'s JWKS has no usable key ({err})") from None
        self.sets[issuer] = (self.clock(), keys)
        return keys

    def get(self, issuer: str, kid):
        with self.lock:
            fetched, keys = self.sets.get(issuer, (None, None))
            if fetched is None or self.clock() - fetched > JWKS_SECONDS:
                keys = self.fetch(issuer)
            found = find_key(keys, kid)
            if found is None and self.clock() - self.sets[issuer][0] >= REFETCH_SECONDS:
                found = find_key(self.fetch(issuer), kid)
            if found is None:
                raise Refused("unknown-key", f"the signing key {kid!r} is not in {issuer}'s JWKS")
            return found


def find_key(keys, kid):
    """The key a token names; without a kid, the issuer's only key."""
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    return next((k for k in keys.keys if k.key_id == kid), None)


class Exchange:
    def __init__(self, data_dir: str, clock=time.time, keys: Keys | None = None):
        self.data_dir, self.clock = data_dir, clock
        self.trusts = Watched(credentials.trusts_path(data_dir), read_trusts)
        self.keys = keys or Keys()
        self.dir = os.path.dirname(credentials.minted_path(data_dir))
        self.seen_path = os.path.join(self.dir, "seen.json")
        self.lock = threading.Lock()
        self.seen: dict[str, int] = self._load_seen()

    def _load_seen(self) -> dict[str, int]:
        try:
            with open(self.seen_path, encoding="utf-8") as f:
                return {str(k): int(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def configured(self) -> dict:
        try:
            return self.trusts.get()
        except UNREADABLE as err:
            raise Refused("unavailable", f"the trusts cannot be read ({err})") from None

    def verify(self, token: str) -> tuple[dict, list[str], dict]:
        """(claims, names of the trusts it matches, the trusts) of a good ID token; Refused otherwise."""
        import jwt

        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
            raise Refused("invalid-token", f"no token, or one over {MAX_TOKEN} bytes")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as err:
            raise Refused("invalid-token", f"not a signed JWT ({err})") from None
        issuer = unverified.get("iss")
        context = {"iss": claim_text(issuer), "sub": claim_text(unverified.get("sub"))}
        if not isinstance(issuer, str):
            raise Refused("invalid-token", "it names no issuer (iss)", context)
        if header.get("alg") not in ALGORITHMS:
            raise Refused(
                "invalid-token", f"signed with {header.get('alg')!r}, not one of {', '.join(ALGORITHMS)}", context
            )
        trusts = self.configured()["trusts"]
        candidates = {n: t for n, t in trusts.items() if t["issuer"] == issuer}
        if not candidates:
            raise Refused("invalid-publisher", f"no trust names the issuer {issuer!r}", context)
        try:
            key = self.keys.get(issuer, header.get("kid"))
        except Refused as err:
            raise Refused(err.code, err.description, context) from None
        audiences = sorted({t["audience"] for t in candidates.values()})
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                audience=audiences,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Refused("invalid-token", "expired (exp)", context) from None
        except jwt.InvalidAudienceError:
            raise Refused(
                "invalid-token",
                f"for another audience ({unverified.get('aud')!r}, not {' or '.join(audiences)})",
                context,
            ) from None
        except jwt.InvalidSignatureError:
            raise Refused("invalid-token", "its signature does not verify", context) from None
        except jwt.PyJWTError as err:
            raise Refused("invalid-token", str(err), context) from None
        if not isinstance(claims.get("iat"), (int, float)) or claims["iat"] > self.clock() + LEEWAY:
            raise Refused("invalid-token", "not yet valid (iat in the future)", context)
        token_audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        matching, why = [], []
        for name, trust in sorted(candidates.items()):
            wrong = unmatched(trust, claims)
            if trust["audience"] not in token_audiences:
                wrong.insert(0, f"aud={trust['audience']}")
            if wrong:
                why.append(f"{name}: {', '.join(wrong)}")
            else:
                matching.append(name)
        if not matching:
            raise Refused("invalid-publisher", "no trust matches its claims: " + "; ".join(why), context)
        return claims, matching, trusts

    def once(self, token: str, claims: dict) -> None:
        """The first use of the ID token, or Refused: kept until it expires."""
        now = int(self.clock())
        key = str(claims.get("jti") or hashlib.sha256(token.encode()).hexdigest())
        key = f"{claims['iss']}|{key}"
        with self.lock:
            self.seen = {k: exp for k, exp in self.seen.items() if exp > now - LEEWAY}
            if key in self.seen:
                raise Refused(
                    "replayed",
                    "this token was used before",
                    {"iss": claims["iss"], "sub": claim_text(claims.get("sub"))},
                )
            self.seen[key] = int(claims["exp"]) + LEEWAY
            write_atomic(self.seen_path, json.dumps(self.seen).encode(), mode=0o600)

    def mint(self, token: str, client: str) -> dict:
        try:
            claims, matching, trusts = self.verify(token)
            self.once(token, claims)
        except Refused as refused:
            audit.record("oidc-refused", client=client, **refused.claims, code=refused.code, why=refused.description)
            raise
        projects = credentials.parse_scope(",".join(p for n in matching for p in trusts[n]["projects"]))
        lifetime = min(trusts[n].get("lifetime", LIFETIME) for n in matching)
        now = int(self.clock())
        secret = credentials.new_token()
        name = f"oidc-{matching[0]}-{secret[-6:]}"
        record = {
            "digest": credentials.digest(credentials.read_key(credentials.key_path(self.data_dir)), secret),
            "role": "publish",
            "projects": list(projects),
            "created": now,
            "expires": now + lifetime,
            "by": f"oidc:{','.join(matching)}",
            "issuer": claims["iss"],
            "subject": claim_text(claims.get("sub")),
        }
        add_minted(self.data_dir, name, record, now)
        decided = {k: claim_text(claims.get(k)) for n in matching for k in sorted(trusts[n]["claims"])}
        audit.record(
            "oidc-mint",
            client=client,
            iss=claims["iss"],
            sub=claim_text(claims.get("sub")),
            trust=",".join(matching),
            token=name,
            projects=credentials.format_scope(projects),
            expires=record["expires"],
            claims=",".join(f"{k}={v}" for k, v in decided.items()),
        )
        return {"success": True, "token": secret, "expires": record["expires"]}


@contextlib.contextmanager
def minted_lock(data_dir: str):
    """The exchange and the helper (token revoke, trust remove) change the file in turn."""
    path = credentials.minted_path(data_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Read-only: whoever made it (root or the exchange's user), both can lock it.
    fd = os.open(path + ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


def add_minted(data_dir: str, name: str, record: dict, now: float) -> None:
    with minted_lock(data_dir) as path:
        try:
            minted = credentials.read_tokens(path)
        except UNREADABLE:
            minted = {}  # a broken file is replaced: its tokens were refused already
        minted = credentials.prune(minted, now, keep=0)
        minted[name] = record
        write_atomic(path, credentials.tokens_json(minted), mode=0o640, durable=True)


def error_body(message: str, code: str, description: str) -> dict:
    return {"message": message, "errors": [{"code": code, "description": description}]}


def handler(exchange: Exchange) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "pypi-appliance"
        sys_version = ""

        def send(self, status: int, value: dict | None) -> None:
            body = b"" if value is None else json.dumps(value).encode() + b"\n"
            self.send_response(status)
            if value is not None:
                self.send_header("Content-Type", "application/json" if "message" in value else MEDIA_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def allowed(self) -> bool:
            if internal.allowed(self.headers.get(internal.HEADER), ""):
                return True
            self.close_connection = True
            self.send(403, error_body("not from the front door", "forbidden", internal.REFUSAL.decode().strip()))
            return False

        def base(self) -> str:
            proto = "https" if self.headers.get("X-Forwarded-Proto") == "https" else "http"
            return f"{proto}://{self.headers.get('Host', 'localhost')}"

        def do_GET(self):
            if not self.allowed():
                return
            accept = self.headers.get("Accept", MEDIA_TYPE)
            if not any(t in accept for t in (MEDIA_TYPE, "application/json", "*/*")):
                return self.send(406, error_body("not acceptable", "not-acceptable", f"ask for {MEDIA_TYPE}"))
            try:
                config = exchange.configured()
            except Refused as err:
                return self.send(503, error_body("trusted publishing is unavailable", err.code, err.description))
            if not config["trusts"]:
                return self.send(404, None)
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith("/.well-known/pytp/"):
                keys = {hashlib.sha256(p.encode()).hexdigest() for p in UPLOAD_PATHS}
                if path.rsplit("/", 1)[1] not in keys:
                    return self.send(404, None)
                return self.send(
                    200,
                    {
                        "audience-endpoint": self.base() + "/_/oidc/audience",
                        "mint-token-endpoint": self.base() + "/_/oidc/mint-token",
                    },
                )
            if path == "/_/oidc/audience":
                return self.send(200, {"audience": config["audience"]})
            self.send(404, None)

        def do_POST(self):
            if not self.allowed():
                return
            if urllib.parse.urlsplit(self.path).path != "/_/oidc/mint-token":
                return self.send(404, None)
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if not 0 < length <= 64 * 1024:
                return self.send(
                    400, error_body("Token request failed", "invalid-payload", "a JSON body of at most 64 kB")
                )
            client = self.headers.get("X-Real-IP", "")
            try:
                body = json.loads(self.rfile.read(length))
                token = body.get("token") if isinstance(body, dict) else None
                self.send(200, exchange.mint(token, client))
            except ValueError:
                self.send(
                    400, error_body("Token request failed", "invalid-payload", 'the body is not JSON {"token": "..."}')
                )
            except Refused as err:
                status = 503 if err.code in ("issuer-unreachable", "unavailable") else 422
                self.send(status, error_body("Token request failed", err.code, err.description))

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
            """The audit log has each exchange."""

    return Handler


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("", 0)


def serve(data_dir: str, directory: str) -> None:
    """Serve the exchange on DIRECTORY/exchange.sock until stopped."""
    path = os.path.join(directory, SOCKET_NAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = UnixServer(path, handler(Exchange(data_dir)), bind_and_activate=False)
    old = os.umask(0o111)  # the front door's nginx user connects; the key keeps others out
    try:
        server.server_bind()
    finally:
        os.umask(old)
    server.server_activate()
    print(f"trusted publishing: the token exchange listens on {path}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: python3 -m pypi_appliance.admin.oidc serve DATA_DIR SOCKET_DIR")
    socket.setdefaulttimeout(60)
    serve(sys.argv[2], sys.argv[3])
