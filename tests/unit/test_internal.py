"""The containers' own ports answer the front door (which sends this start's
key) and the container itself, and nobody else."""

from __future__ import annotations

import http.client
import http.server
import os

import pytest

from pypi_appliance.core import internal
from tests.support.serving import serving


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    key = tmp_path / "internal-key"
    key.write_text("k3y-of-this-start\n")
    monkeypatch.setattr(internal, "KEY_FILE", str(key))

    class Handler(internal.Guarded, http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)

    def ask(source: str, headers: dict) -> tuple[int, bytes]:
        # 127.0.0.2 is another address of this host: a peer that is not the container itself.
        conn = http.client.HTTPConnection(
            "127.0.0.1" if source == "127.0.0.1" else source, server.server_port, source_address=(source, 0), timeout=5
        )
        conn.request("GET", "/health", headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    ask.key = key
    with serving(server):
        yield ask


def test_only_the_key_or_the_container_itself_gets_an_answer(guarded):
    assert guarded("127.0.0.1", {}) == (200, b"ok")  # a health check, the helper's docker exec
    status, body = guarded("127.0.0.2", {})
    assert status == 403 and b"clients use the front door" in body
    assert guarded("127.0.0.2", {"X-Appliance-Key": "wrong"})[0] == 403
    assert guarded("127.0.0.2", {"X-Appliance-Key": "k3y-of-this-start"}) == (200, b"ok")
    guarded.key.write_text("next-start\n")  # a restart's new key: the old one stops working
    os.utime(guarded.key, (1, 1))
    assert guarded("127.0.0.2", {"X-Appliance-Key": "k3y-of-this-start"})[0] == 403
    guarded.key.unlink()  # no key at all: nothing from outside matches
    assert guarded("127.0.0.2", {"X-Appliance-Key": ""})[0] == 403
