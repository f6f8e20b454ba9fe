"""A local OpenID Connect issuer for the trusted-publishing tests: its own CA
and HTTPS certificate, RSA signing keys published as a JWKS (rotatable),
and ID tokens signed like a CI's (GitLab's claims by default).

The keys and the tokens are the test's (Issuer, on the test's side); what
the exchange fetches is two static files served over HTTPS by serve() below,
which also runs on its own (python3 oidc.py DIR PORT) where the appliance
is, so the exchange reaches its issuer on its own loopback."""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import json
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path

AUDIENCE = "https://pypi.test"
CLAIMS = {
    "sub": "project_path:group/team-a:ref_type:branch:ref:main",
    "project_path": "group/team-a",
    "ref_protected": "true",
}


def _pem_pair(common_name: str, issuer_key=None, issuer_name=None, ca: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    # Python 3.13's strict verification wants both key identifiers.
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_key or key).public_key()), critical=False
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, cert, cert.public_bytes(serialization.Encoding.PEM), key_pem


class Issuer:
    def __init__(self, directory: Path, url: str):
        self.dir, self.url = Path(directory), url
        self.keys: dict[str, object] = {}
        self.published: list[str] = []
        ca_key, ca_cert, ca_pem, _ = _pem_pair("pypi-appliance test issuer CA", ca=True)
        _, _, cert_pem, key_pem = _pem_pair("localhost", ca_key, ca_cert.subject)
        (self.dir / "tls").mkdir(parents=True, exist_ok=True)
        (self.dir / "tls" / "ca.crt").write_bytes(ca_pem)
        (self.dir / "tls" / "server.crt").write_bytes(cert_pem)
        (self.dir / "tls" / "server.key").write_bytes(key_pem)
        self.add_key()

    @property
    def ca(self) -> Path:
        return self.dir / "tls" / "ca.crt"

    def add_key(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import rsa

        kid = f"key-{len(self.keys) + 1}"
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)
        self.write()
        return kid

    def rotate(self) -> str:
        """A new key published, every older one dropped."""
        kid = self.add_key()
        self.published = [kid]
        self.write()
        return kid

    def write(self) -> None:
        from jwt.algorithms import RSAAlgorithm

        web = self.dir / "web"
        (web / ".well-known").mkdir(parents=True, exist_ok=True)
        config = {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}
        (web / ".well-known" / "openid-configuration").write_text(json.dumps(config))
        keys = []
        for kid in self.published:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        tmp = web / ".jwks"
        tmp.write_text(json.dumps({"keys": keys}))
        tmp.replace(web / "jwks")

    def token(self, kid: str | None = None, lifetime: int = 300, **claims) -> str:
        import jwt

        kid = kid or self.published[-1]
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            **CLAIMS,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def forged(self, **claims) -> str:
        """A token that names a published key but is signed by another."""
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        genuine = jwt.decode(self.token(**claims), options={"verify_signature": False})
        return jwt.encode(genuine, other, algorithm="RS256", headers={"kid": self.published[-1]})


def server(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """The issuer's two files over HTTPS on 127.0.0.1 (serve_forever to run)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Quiet, directory=str(Path(directory) / "web"))
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(Path(directory) / "tls" / "server.crt", Path(directory) / "tls" / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    return httpd


def serve_in_thread(directory: Path) -> http.server.ThreadingHTTPServer:
    httpd = server(directory)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


if __name__ == "__main__":
    server(Path(sys.argv[1]), int(sys.argv[2])).serve_forever()
