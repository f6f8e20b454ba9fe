"""Files written whole or not at all, and the one walk of a packages dir.
Standard library only: the containers and the helper use it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_file(
    path: str, mode: int = 0o644, owner: tuple[int, int] | None = None, durable: bool = False
) -> Iterator[IO[bytes]]:
    """A file object whose bytes replace path when the block ends, or vanish
    when it raises. Readers see the old file or the new one, never part of one.

    The temporary file is hidden (a leading dot: walkers skip it), unique
    (threads and processes may write the same path), created 0600 and given
    its mode and owner before the first byte, so a secret is never readable
    by others even while it is written. durable: fsync before the rename
    (credentials, settings, backups; pages that records can rebuild skip it)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(
    path: str, data: bytes | str, mode: int = 0o644, owner: tuple[int, int] | None = None, durable: bool = False
) -> None:
    """write data to path through atomic_file (str as UTF-8)."""
    with atomic_file(path, mode, owner, durable) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def read_json(path: str, missing):
    """A JSON file the helper writes whole (rules, states, tokens, trusts), or
    missing when there is none yet; one that is there but unreadable raises."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return missing


def walk_packages(packages: str) -> tuple[dict[str, int], dict[str, int]]:
    """Every file under packages/ (subdirectories too) as a path relative to
    it, with its inode (readdir gives it: no stat per file, so a walk of
    100,000 files stays short), and each directory's mtime. Hidden names
    (uploads being written, temporary files) are skipped, as pip never asks
    for them."""
    files, dirs = {}, {}
    pending = [""]
    while pending:
        rel = pending.pop()
        top = os.path.join(packages, rel)
        try:
            dirs[rel] = os.stat(top).st_mtime_ns
            entries = list(os.scandir(top))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(name)
            elif entry.is_file():
                files[name] = entry.inode()
    return files, dirs
