"""Client-side helpers for the e2e suite: credentials, wheels, twine and pip."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from tests.support.dists import PROJECT

USER = "admin"
# Breaks naive shell quoting, and non-ASCII: pip and twine send it Latin-1, curl UTF-8.
PASSWORD = 'pä ss:"$\\wörd'
NEW_PASSWORD = "n€w pass 'word' `x` \\ ; $(id)"
REFUSED = (401,)  # wrong or missing credentials; 403 is for a known account without the right


def preseed(user: str, password: str, port: int | None = None, tls: str | None = None) -> str:
    lines = [
        f"pypi-appliance pypi-appliance/admin-username string {user}",
        f"pypi-appliance pypi-appliance/admin-password password {password}",
        f"pypi-appliance pypi-appliance/admin-password-again password {password}",
    ]
    if port:
        lines.append(f"pypi-appliance pypi-appliance/port string {port}")
    if tls:
        lines.append(f"pypi-appliance pypi-appliance/tls select {tls}")
    return "\n".join(lines) + "\n"


def upload_form(wheel: Path, filename: str | None = None) -> tuple[bytes, str]:
    """The multipart body of a legacy-API upload, as any non-twine client sends it."""
    boundary = "pypi-appliance-test-boundary"
    project, version = wheel.name.split("-")[:2]
    fields = {":action": "file_upload", "protocol_version": "1", "name": project, "version": version}
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{filename or wheel.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + wheel.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# A CA bundle in the environment overrides twine's --cert and ca_cert (requests
# prefers REQUESTS_CA_BUNDLE): clients get only the trust each test gives them.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def client_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_")) and k not in CA_VARIABLES}
    env.update({"PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra})
    return env


def tls_args(system) -> list[str]:
    return ["--cert", system.ca_file] if system.scheme == "https" else []


def twine_upload(
    system, wheel: Path, password: str, user: str = USER, attestations: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    # Credentials through the environment, as a CI job would: never in argv.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            *(["--attestations"] if attestations else []),
            "--repository-url",
            system.url("/"),
            *tls_args(system),
            str(wheel),
            *map(str, attestations),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(TWINE_USERNAME=user, TWINE_PASSWORD=password),
    )


def credentials_url(scheme: str, port: int, user: str, password: str) -> str:
    """The index URL on 127.0.0.1:port with the credentials in it, quoted."""
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return f"{scheme}://{quote(user)}:{quote(password)}@127.0.0.1:{port}/simple/"


def index_url(system, user: str, password: str) -> str:
    return credentials_url(system.scheme, system.port, user, password)


def pip_install(system, tmp_path: Path, password: str, user: str = USER, project: str = PROJECT) -> str:
    """pip install project through the appliance into a fresh dir; returns the imported VERSION."""
    target = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-cache-dir",
            *tls_args(system),
            "--target",
            str(target),
            project,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=client_env(PIP_INDEX_URL=index_url(system, user, password)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    module = project.replace("-", "_")
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.VERSION)"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(target)),
    )
    return probe.stdout.strip()


# Runs inside the system container (tests and bench): N connections per
# address (SCHEME TARGET PORT DURATION N ADDRESS...), each sending
# wrong passwords for at least DURATION seconds and until every address has
# been throttled (at most 90 s), then the counts by status.
FLOODER = r"""
import base64, collections, http.client, json, ssl, sys, threading, time
scheme, target, port, duration, per_address = sys.argv[1:6]
port, duration, per_address, addresses = int(port), float(duration), int(per_address), sys.argv[6:]
def connect(address):
    if scheme == "http":
        return http.client.HTTPConnection(target, port, source_address=(address, 0), timeout=10)
    return http.client.HTTPSConnection(target, port, context=ssl._create_unverified_context(),
                                       source_address=(address, 0), timeout=10)
counts, lock, throttled = collections.Counter(), threading.Lock(), set()
start = time.monotonic()
def running():
    now = time.monotonic()
    return now < start + 90 and (now < start + duration or len(throttled) < len(addresses))
def guess(address, n):
    i = 0
    while running():
        try:
            conn = connect(address)
            while running():
                i += 1
                token = base64.b64encode(f"ci:guess-{address}-{n}-{i}".encode()).decode()
                conn.request("GET", "/simple/", headers={"Authorization": "Basic " + token})
                response = conn.getresponse()
                response.read()
                with lock:
                    counts[response.status] += 1
                    if response.status == 429:
                        throttled.add(address)
        except OSError as err:
            with lock:
                counts[type(err).__name__] += 1
threads = [threading.Thread(target=guess, args=(a, n)) for a in addresses for n in range(per_address)]
for t in threads: t.start()
for t in threads: t.join(120)
counts["seconds"] = round(time.monotonic() - start, 1)
counts["throttled addresses"] = len(throttled)
print(json.dumps(counts))
"""


class FormatProxy:
    """A plain-HTTP proxy on 127.0.0.1 in front of the appliance that can make
    every client get HTML (a pip or uv that would ask for JSON), and notes the
    type of every page it relays: which format a client really read."""

    def __init__(self, system, force_html: bool):
        import http.server
        import threading
        import urllib.error
        import urllib.request

        self.types: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                if force_html:
                    headers["Accept"] = "text/html"
                request = urllib.request.Request(system.url(self.path), headers=headers)
                try:
                    response = urllib.request.urlopen(request, timeout=30, context=system.context)
                except urllib.error.HTTPError as err:
                    response = err
                body = response.read()
                kind = response.headers.get("Content-Type", "")
                if self.path.startswith("/simple/"):
                    outer.types.append((self.path, kind))
                self.send_response(response.status)
                for key in ("Content-Type", "WWW-Authenticate"):
                    if response.headers.get(key):
                        self.send_header(key, response.headers[key])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def index_url(self, user: str, password: str) -> str:
        return credentials_url("http", self.port, user, password)
