"""The audit log: one line per upload, yank, removal, account change, failed
login and throttle, appended by the helper and the containers alike (each
line is one write to a file opened for appending). logrotate keeps it bounded.

    2026-12-01T23:40:11.123Z login-failed client=172.18.0.1 account=ci
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from pypi_appliance.core import build


def _log() -> str:
    """The containers are told where it is; the helper reads the build's choice."""
    if "PYPI_AUDIT_LOG" in os.environ:
        return os.environ["PYPI_AUDIT_LOG"]
    return build.defaults()["audit_log"]


LOG = _log()
PLAIN = re.compile(r"[\w.@+:/=*?,-]+")


def actor() -> str:
    """Who ran the helper."""
    return os.environ.get("SUDO_USER") or "root"


def value(text) -> str:
    """A field's value: as it is when plain, else quoted (names come from clients)."""
    text = "" if text is None else str(text)
    return text if PLAIN.fullmatch(text) else json.dumps(text)


def line(event: str, fields: dict) -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return " ".join([stamp, event, *(f"{k}={value(v)}" for k, v in fields.items())]) + "\n"


def record(event: str, **fields) -> None:
    """Append one line; a log that cannot be written is said on stderr, and the
    operation goes on."""
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
        try:
            os.write(fd, line(event, fields).encode())
        finally:
            os.close(fd)
    except OSError as err:
        print(f"audit log {LOG}: {err}: {line(event, fields).strip()}", file=sys.stderr, flush=True)
