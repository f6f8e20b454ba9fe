"""What the index reads of an uploaded file: whether it is a whole wheel or
sdist, its name, version, hash and METADATA, within bounds on the work one
hostile file may cause. inspect() does it in this process; Inspector in a
child process with bounded memory and time. Standard library only."""

from __future__ import annotations

import base64
import email.message
import email.parser
import hashlib
import json
import os
import re
import resource
import select
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib

from pypi_appliance.core.names import SDISTS, WHEEL, normalize


class Invalid(Exception):
    """A file that is not (yet) a whole, readable distribution: not listed."""


# Bounds on the work one file may cause: an upload bomb is a few hundred bytes
# that unpack to gigabytes. The checks below give the reason; the inspector's
# process (Inspector) bounds memory and time whatever the reason.
METADATA_MAX = 8 * 2**20  # METADATA or PKG-INFO: a long README is a few hundred KiB
MEMBERS_MAX = 65_536  # members of one archive (a zip without zip64 holds no more)
UNPACKED_MAX = 2**30  # bytes unpacked, plus EXPANSION times the file's own size
EXPANSION = 32
INSPECT_SECONDS = 30
INSPECT_MEMORY = 256 * 2**20  # address space of the inspector: 8 MiB of METADATA peaks at 115 MiB
# What every build backend writes; zipfile inflates others with no bound per read.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def _headers(data: bytes) -> email.message.Message:
    return email.parser.BytesHeaderParser().parsebytes(data)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


class Budget:
    """What one file may make the index read, and until when."""

    def __init__(self, path: str):
        self.unpacked = UNPACKED_MAX + EXPANSION * os.path.getsize(path)
        self.deadline = time.monotonic() + INSPECT_SECONDS

    def check_size(self, total: int) -> None:
        if total > self.unpacked:
            raise Invalid(
                f"it unpacks to more than {_mib(self.unpacked)} (the index reads at most "
                f"{_mib(UNPACKED_MAX)} plus {EXPANSION} times the file's size)"
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise Invalid(f"checking it took longer than {INSPECT_SECONDS} s")

    @staticmethod
    def check_members(count: int) -> None:
        if count > MEMBERS_MAX:
            raise Invalid(f"it has more than {MEMBERS_MAX:,} members")

    @staticmethod
    def check_metadata(member: str, size: int) -> None:
        if size > METADATA_MAX:
            raise Invalid(f"its {member} is {_mib(size)}, more than the {_mib(METADATA_MAX)} the index reads")


def _zip_members(archive: zipfile.ZipFile, budget: Budget) -> list[zipfile.ZipInfo]:
    """The central directory, refused when it names a member twice, lets two
    members share bytes, or uses a method that inflates without bound."""
    members = archive.infolist()
    budget.check_members(len(members))
    seen = set()
    for info in members:
        if info.filename in seen:
            raise Invalid(f"member {info.filename} appears twice")
        seen.add(info.filename)
        if info.compress_type not in ZIP_METHODS:
            raise Invalid(
                f"member {info.filename} is compressed with method {info.compress_type}; "
                "wheels and zip archives here use stored or deflate"
            )
    ordered = sorted(members, key=lambda i: i.header_offset)
    for one, other in zip(ordered, ordered[1:], strict=False):
        if one.header_offset + one.compress_size >= other.header_offset:
            raise Invalid(f"members {one.filename} and {other.filename} overlap")
    budget.check_size(sum(i.file_size for i in members))
    return members


def _zip_metadata(path: str, member_re: str, budget: Budget) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            members = _zip_members(archive, budget)
            for info in members:  # every member matches its CRC: the file is whole
                try:
                    with archive.open(info) as stream:
                        while stream.read(2**20):
                            budget.check_time()
                except (zipfile.BadZipFile, zlib.error, EOFError):
                    raise Invalid(f"member {info.filename} is corrupt") from None
            found = [i for i in members if re.fullmatch(member_re, i.filename)]
            if not found:
                raise Invalid("it holds no metadata file")
            budget.check_metadata(found[0].filename, found[0].file_size)
            return archive.read(found[0])
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise Invalid(f"not a whole zip archive ({err})") from None


def _tar_metadata(path: str, budget: Budget) -> bytes:
    found = None
    try:
        with tarfile.open(path) as archive:
            for count, member in enumerate(archive, 1):  # reads it all: a truncated archive fails here
                budget.check_members(count)
                budget.check_time()
                if member.issparse():  # holes that reading makes real
                    raise Invalid(f"member {member.name} is a sparse file")
                budget.check_size(member.offset_data + member.size)
                if found is None and member.isfile() and re.fullmatch(r"[^/]+/PKG-INFO", member.name):
                    budget.check_metadata(member.name, member.size)
                    stream = archive.extractfile(member)
                    found = stream.read() if stream is not None else b""
    except (tarfile.TarError, zlib.error, EOFError, OSError) as err:
        raise Invalid(f"not a whole archive ({err})") from None
    if found is None:
        raise Invalid("it holds no PKG-INFO")
    return found


def inspect(path: str, filename: str) -> dict:
    """What the index says of one file; raises Invalid when it is not listable."""
    budget = Budget(path)
    if filename.endswith(WHEEL):
        parts = filename[: -len(WHEEL)].split("-")
        if len(parts) not in (5, 6):
            raise Invalid("not a wheel file name (name-version-python-abi-platform.whl)")
        metadata = _zip_metadata(path, r"[^/]+\.dist-info/METADATA", budget)
        prefix = parts[0]
    elif filename.endswith(SDISTS):
        reader = _zip_metadata if filename.endswith(".zip") else None
        metadata = reader(path, r"[^/]+/PKG-INFO", budget) if reader else _tar_metadata(path, budget)
        prefix = None
    else:
        raise Invalid("not a wheel or source archive that pip can install")
    fields = _headers(metadata)
    name, version = fields.get("Name"), fields.get("Version")
    if not name or not version:
        raise Invalid("its metadata has no Name or Version")
    project = normalize(name)
    if prefix is not None and normalize(prefix) != project:
        raise Invalid(f"the file name says {prefix!r} but its metadata says {name!r}")
    if prefix is None and not normalize(filename).startswith(f"{project}-"):
        raise Invalid(f"the file name does not start with its project's name {name!r}")
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {
        "project": project,
        "version": version.strip(),
        "sha256": digest.hexdigest(),
        "size": size,
        "requires-python": (fields.get("Requires-Python") or "").strip() or None,
        # PEP 658 serves a wheel's METADATA; sdists carry none of their own.
        "metadata": metadata if prefix is not None else None,
    }


class Inspector:
    """inspect() in a child process with bounded memory and time, reused for
    every file: what breaks it (a bomb past the checks above, a parser's bug)
    makes that one file invalid, never the pass."""

    def __init__(self):
        self.child = None

    def __del__(self):
        self.stop()

    def start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (
            f"import sys; sys.path.insert(0, {root!r}); from pypi_appliance.core.archives import inspector; inspector()"
        )
        self.child = subprocess.Popen(
            [sys.executable, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )

    def stop(self) -> None:
        if getattr(self, "child", None) is not None:
            self.child.kill()
            self.child.wait()
            self.child.stdin.close()
            self.child.stdout.close()
            self.child = None

    def __call__(self, path: str, filename: str) -> dict:
        if self.child is None or self.child.poll() is not None:
            self.stop()
            self.start()
        try:
            self.child.stdin.write(json.dumps({"path": path, "filename": filename}).encode() + b"\n")
            self.child.stdin.flush()
            ready, _, _ = select.select([self.child.stdout], [], [], INSPECT_SECONDS + 5)
            line = self.child.stdout.readline() if ready else b""
        except BrokenPipeError:
            line = b""
        if not line:
            self.stop()
            raise Invalid(
                f"checking it took longer than {INSPECT_SECONDS} s or more than {_mib(INSPECT_MEMORY)} of memory"
            )
        answer = json.loads(line)
        if "invalid" in answer:
            raise Invalid(answer["invalid"])
        if "oserror" in answer:
            raise OSError(answer["oserror"])
        if answer["metadata"] is not None:
            answer["metadata"] = base64.b64decode(answer["metadata"])
        return answer


def inspector() -> None:
    """The inspector's side: one JSON line in, one out, in an address space of
    INSPECT_MEMORY."""
    resource.setrlimit(resource.RLIMIT_AS, (INSPECT_MEMORY, INSPECT_MEMORY))
    for line in sys.stdin.buffer:
        ask = json.loads(line)
        try:
            info = inspect(ask["path"], ask["filename"])
            if info["metadata"] is not None:
                info["metadata"] = base64.b64encode(info["metadata"]).decode()
            answer = info
        except Invalid as err:
            answer = {"invalid": str(err)}
        except MemoryError:
            answer = {"invalid": f"checking it needs more than {_mib(INSPECT_MEMORY)} of memory"}
        except OSError as err:
            answer = {"oserror": str(err)}
        except Exception as err:  # noqa: BLE001 - a parser's failure on hostile bytes is that file's
            answer = {"invalid": f"it cannot be read ({type(err).__name__}: {err})"[:500]}
        sys.stdout.buffer.write(json.dumps(answer).encode() + b"\n")
        sys.stdout.buffer.flush()
