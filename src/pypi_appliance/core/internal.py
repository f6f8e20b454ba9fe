"""Who may ask the containers' own ports (pypiserver, the credential checker,
the indexer, the upstream service): the front door and the other containers,
which send the key the helper writes at each start, and the container itself
(its health check, the helper's docker exec). A local user on the host can
reach the compose network's addresses, but holds no key: pypiserver would
otherwise list and serve every package to it, and the checker take its
guesses unthrottled. Standard library only."""

from __future__ import annotations

import hmac
import http.server
import os
from typing import TYPE_CHECKING

HEADER = "X-Appliance-Key"
# Inside the containers (compose.yaml mounts it); the helper writes it on the host.
KEY_FILE = os.environ.get("PYPI_INTERNAL_KEY_FILE", "/run/internal-key")
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
REFUSAL = (
    b"pypi-appliance: this port is the appliance's own; clients use the front door (pypi-appliance url prints it)\n"
)
_cached: tuple[float, bytes] = (-1.0, b"")


def key() -> bytes:
    """The key of this start (read again when the file changes); empty when
    there is none, which nothing matches."""
    global _cached
    try:
        mtime = os.stat(KEY_FILE).st_mtime
        if mtime != _cached[0]:
            with open(KEY_FILE, "rb") as f:
                _cached = (mtime, f.read().strip())
    except OSError:
        _cached = (-1.0, b"")
    return _cached[1]


def allowed(sent: str | None, peer: str) -> bool:
    if peer in LOOPBACK:
        return True
    expected = key()
    return bool(expected) and hmac.compare_digest((sent or "").encode("latin-1", "replace"), expected)


# For the type checker, what Guarded is mixed into.
if TYPE_CHECKING:
    _Handler = http.server.BaseHTTPRequestHandler
else:
    _Handler = object


class Guarded(_Handler):
    """For the containers' http.server handlers: a request without the key
    (and not from the container itself) gets 403 before any handler runs."""

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if allowed(self.headers.get(HEADER), self.client_address[0]):
            return True
        self.close_connection = True
        self.send_response(403)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(REFUSAL)))
        self.end_headers()
        self.wfile.write(REFUSAL)
        return False
