"""The one small HTTP server of the containers' services (credential checker,
indexer, upstream service): threads, keep-alive, quiet logs, the internal
key asked of every request. Standard library only."""

from __future__ import annotations

import http.server
import json
import sys
from collections.abc import Iterable

from pypi_appliance.core import internal


class Handler(internal.Guarded, http.server.BaseHTTPRequestHandler):
    """A request handler whose every request carries the internal key."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes on a kept-alive connection: with
    # Nagle's algorithm each answer waited for nginx's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def answer(
        self, status: int, body: bytes = b"", content_type: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status: int, value: object, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.answer(status, json.dumps(value).encode(), "application/json", headers)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        """Requests are not logged: the front door's access log has them."""

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002
        print(format % args, file=sys.stderr, flush=True)


def server(handler: type[Handler], port: int) -> http.server.ThreadingHTTPServer:
    """Listening on every address of the container (the compose network's),
    a thread per connection that does not hold up the exit."""
    listening = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
    listening.daemon_threads = True
    return listening
