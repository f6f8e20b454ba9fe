"""The index: static pages made when the packages dir changes.

pypiserver writes package files; this reads each new file once (checks it is
whole, hashes it, takes its METADATA), keeps what it learnt in one record per
project (DATA_DIR/index/records/, with the upload times and yanks that the
files themselves cannot carry), and writes what nginx serves:

    index/simple/index.html, index.json              the project list
    index/simple/<project>/index.html, index.json    PEP 503 HTML, PEP 691 JSON (PEP 700 fields)
    index/metadata/<file>.metadata                   PEP 658/714 metadata files

Every change happens under one lock (index/.lock), by the indexer service
(python3 -m pypi_appliance.index serve, in a container) or by the admin
helper (yank, remove, reindex). Standard library only: it runs on the host's
Python and on the pypiserver image's.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import fcntl
import hashlib
import html
import json
import os
import re
import resource
import select
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from datetime import datetime, timezone
from urllib.parse import quote

API_VERSION = "1.1"
# The shape of the pages this version writes: pages written by a version with
# another shape (a key pip cannot read) are written again at the first pass.
PAGES_SHAPE = "2"
# What pip can install; anything else in the packages dir is reported, not listed.
WHEEL, SDISTS = ".whl", (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class Invalid(Exception):
    """A file that is not (yet) a whole, readable distribution: not listed."""


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def now() -> str:
    """PEP 700's upload-time format (UTC)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_key(version: str):
    """Orders versions well enough for a listing (PEP 700 sets no order)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+!-]", version)]


# Bounds on the work one file may cause: an upload bomb is a few hundred bytes
# that unpack to gigabytes. The checks below give the reason; the inspector's
# process (Inspector) bounds memory and time whatever the reason.
METADATA_MAX = 8 * 2**20  # METADATA or PKG-INFO: a long README is a few hundred KiB
MEMBERS_MAX = 65_536  # members of one archive (a zip without zip64 holds no more)
UNPACKED_MAX = 2**30  # bytes unpacked, plus EXPANSION times the file's own size
EXPANSION = 32
INSPECT_SECONDS = 30
INSPECT_MEMORY = 256 * 2**20  # address space of the inspector: 8 MiB of METADATA peaks at 115 MiB
REFRESH_SECONDS = 90  # an upload's answer waits this long for its pass
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
            raise Invalid(f"it unpacks to more than {_mib(self.unpacked)} (the index reads at most "
                          f"{_mib(UNPACKED_MAX)} plus {EXPANSION} times the file's size)")

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
            raise Invalid(f"member {info.filename} is compressed with method {info.compress_type}; "
                          "wheels and zip archives here use stored or deflate")
    ordered = sorted(members, key=lambda i: i.header_offset)
    for one, other in zip(ordered, ordered[1:]):
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
                    found = archive.extractfile(member).read()
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
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = f"import sys; sys.path.insert(0, {root!r}); from pypi_appliance.index import inspector; inspector()"
        self.child = subprocess.Popen([sys.executable, "-I", "-c", code], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True)

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
            raise Invalid(f"checking it took longer than {INSPECT_SECONDS} s or more than "
                          f"{_mib(INSPECT_MEMORY)} of memory")
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


def write_atomic(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never part of one."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{threading.get_ident()}-{os.path.basename(path)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_json(name: str, entry: dict, yanked) -> dict:
    item = {
        "filename": os.path.basename(name),
        "url": f"../../packages/{quote(name)}",
        "hashes": {"sha256": entry["sha256"]},
        "size": entry["size"],
        "upload-time": entry["upload-time"],
        "yanked": yanked,
    }
    if entry.get("requires-python"):
        item["requires-python"] = entry["requires-python"]
    # PEP 714: JSON carries core-metadata only. The old name there crashes
    # pip 22.3-23.1 (Debian 12's 23.0.1 among them: pypa/pip#12042).
    item["core-metadata"] = {"sha256": entry["metadata-sha256"]} if entry.get("metadata-sha256") else False
    return item


def render_project(project: str, record: dict) -> tuple[bytes, bytes]:
    """A project's page: (PEP 503 HTML, PEP 691 JSON), API version 1.1."""
    files = []
    for name in sorted(record["files"]):
        entry = record["files"][name]
        reason = record.get("yanked", {}).get(entry["version"])
        files.append(_file_json(name, entry, (reason or True) if reason is not None else False))
    versions = sorted({e["version"] for e in record["files"].values()}, key=version_key)
    return render_page({"meta": {"api-version": API_VERSION}, "name": project, "versions": versions,
                        "files": files})


def render_page(page: dict) -> tuple[bytes, bytes]:
    """A PEP 691 project page as (PEP 503 HTML, JSON); also the upstream's pages."""
    links = []
    for item in page["files"]:
        href = item["url"]
        if item.get("hashes"):
            algorithm = "sha256" if "sha256" in item["hashes"] else sorted(item["hashes"])[0]
            href += f"#{algorithm}={item['hashes'][algorithm]}"
        attrs = [f'href="{html.escape(href)}"']
        if item.get("requires-python"):
            attrs.append(f'data-requires-python="{html.escape(item["requires-python"])}"')
        meta = item.get("core-metadata", False)
        if meta:  # PEP 714 keeps the old attribute name in HTML, for pips before 23.2
            meta = "true" if meta is True else "".join(f"{k}={v}" for k, v in sorted(meta.items())[:1])
            attrs += [f'data-dist-info-metadata="{html.escape(meta)}"', f'data-core-metadata="{html.escape(meta)}"']
        yanked = item.get("yanked", False)
        if yanked is not False:
            attrs.append(f'data-yanked="{html.escape(yanked if yanked is not True else "")}"')
        links.append(f'<a {" ".join(attrs)}>{html.escape(item["filename"])}</a><br>\n')
    title = html.escape(f"Links for {page['name']}")
    body = (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="{API_VERSION}">'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n{''.join(links)}</body></html>\n"
    )
    return body.encode(), json.dumps(page, indent=None, separators=(",", ":")).encode() + b"\n"


def render_root(projects: list[str]) -> tuple[bytes, bytes]:
    page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    links = "".join(f'<a href="{quote(p)}/">{html.escape(p)}</a><br>\n' for p in projects)
    body = (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="{API_VERSION}">'
        f"<title>Simple index</title></head>\n<body>\n{links}</body></html>\n"
    )
    return body.encode(), json.dumps(page, separators=(",", ":")).encode() + b"\n"


def parse_release(spec: str) -> tuple[str, str]:
    """PROJECT==VERSION, as pip pins it."""
    name, sep, version = spec.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise ValueError(f"{spec!r} is not PROJECT==VERSION (for example mypkg==1.2.0)")
    return normalize(name.strip()), version.strip()


class Index:
    """The index dir of one data dir: records, pages, metadata files, the lock."""

    def __init__(self, data_dir: str):
        self.packages = os.path.join(data_dir, "packages")
        self.root = os.path.join(data_dir, "index")
        self.records = os.path.join(self.root, "records")
        self.simple = os.path.join(self.root, "simple")
        self.metadata = os.path.join(self.root, "metadata")
        self.status_file = os.path.join(self.root, "status.json")

    @contextlib.contextmanager
    def lock(self):
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # Records: what was learnt of each file, and what the files cannot say.
    def record_path(self, project: str) -> str:
        return os.path.join(self.records, f"{project}.json")

    def load(self, project: str) -> dict:
        try:
            with open(self.record_path(project), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {"files": {}, "yanked": {}}

    def projects(self) -> list[str]:
        try:
            return sorted(n[: -len(".json")] for n in os.listdir(self.records) if n.endswith(".json"))
        except FileNotFoundError:
            return []

    def save(self, project: str, record: dict) -> None:
        # Kept with no files: the name stays held (see held()), and the hashes
        # of its files that were removed stay too (see Syncer.sync).
        write_atomic(self.record_path(project), json.dumps(record, indent=1, sort_keys=True).encode())

    @staticmethod
    def held(record: dict) -> bool:
        """A name is this index's from its first file until an admin releases
        it (pypi-appliance release-name): with no files left it still has its
        page, empty, so the upstream never answers for it."""
        return bool(record["files"]) or not record.get("released")

    # Pages.
    def publish(self, project: str, record: dict) -> None:
        directory = os.path.join(self.simple, project)
        if not self.held(record):
            shutil.rmtree(directory, ignore_errors=True)
            return
        page, data = render_project(project, record)
        # JSON first: a reader that finds the HTML finds the JSON too.
        write_atomic(os.path.join(directory, "index.json"), data)
        write_atomic(os.path.join(directory, "index.html"), page)

    def publish_root(self) -> None:
        listed = [p for p in self.projects() if os.path.isdir(os.path.join(self.simple, p))]
        page, data = render_root(listed)
        write_atomic(os.path.join(self.simple, "index.json"), data)
        write_atomic(os.path.join(self.simple, "index.html"), page)

    def ready(self) -> bool:
        return os.path.isfile(os.path.join(self.simple, "index.html"))

    def shape_path(self) -> str:
        return os.path.join(self.root, "pages-shape")

    def republish_if_stale(self) -> bool:
        """Pages of another shape (an upgrade) are made again from the records."""
        try:
            with open(self.shape_path(), encoding="ascii") as f:
                if f.read().strip() == PAGES_SHAPE:
                    return False
        except FileNotFoundError:
            pass
        for project in self.projects():
            self.publish(project, self.load(project))
        self.publish_root()
        write_atomic(self.shape_path(), PAGES_SHAPE.encode() + b"\n")
        return True

    # Files.
    def walk(self) -> tuple[dict[str, int], dict[str, int]]:
        """Every listable name under packages/ with its inode (readdir gives it:
        no stat per file, so a pass over 100,000 files stays short), and each
        dir's mtime."""
        files, dirs = {}, {}
        pending = [""]
        while pending:
            rel = pending.pop()
            top = os.path.join(self.packages, rel)
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

    def stat(self, name: str) -> tuple[int, int, int]:
        st = os.stat(os.path.join(self.packages, name))
        return st.st_ino, st.st_size, st.st_mtime_ns

    def learn(self, name: str, stat: tuple[int, int, int], info: dict, record: dict, previous: dict) -> None:
        """Put one inspected file into its project's record."""
        metadata = info.pop("metadata")
        if metadata is not None:
            info["metadata-sha256"] = hashlib.sha256(metadata).hexdigest()
            write_atomic(os.path.join(self.metadata, f"{name}.metadata"), metadata)
        # The first time the appliance saw these bytes; a restore, a reindex or a
        # packages dir that was briefly missing (an unmounted disk) keeps it.
        tombstone = record.setdefault("gone", {}).pop(name, {})
        record.pop("released", None)  # held again
        old = previous.get(name) or tombstone
        info["upload-time"] = old["upload-time"] if old.get("sha256") == info["sha256"] else now()
        info["inode"], _, info["mtime_ns"] = stat
        record["files"][name] = info

    def forget(self, name: str, record: dict) -> dict:
        """Take one file out of its record, keeping its hash and upload time
        should the same bytes come back; returns what the record said of it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.metadata, f"{name}.metadata"))
        entry = record["files"].pop(name, {})
        if entry:
            record.setdefault("gone", {})[name] = {k: entry[k] for k in ("sha256", "upload-time")}
        return entry

    def prune(self) -> None:
        """Pages, records and metadata files that no listed file accounts for."""
        listed = {p: self.load(p) for p in self.projects()}
        if os.path.isdir(self.simple):
            for entry in os.scandir(self.simple):
                if entry.is_dir() and (entry.name not in listed or not self.held(listed[entry.name])):
                    shutil.rmtree(entry.path, ignore_errors=True)
        names = {n for r in listed.values() for n in r["files"]}
        for top, _, files in os.walk(self.metadata):
            for f in files:
                rel = os.path.relpath(os.path.join(top, f), self.metadata)
                if rel.removesuffix(".metadata") not in names:
                    os.unlink(os.path.join(top, f))

    def known(self) -> dict[str, tuple[str, tuple[int, int, int]]]:
        """What the records say is listed: name -> (project, (inode, size, mtime))."""
        listed = {}
        for project in self.projects():
            for name, entry in self.load(project)["files"].items():
                listed[name] = (project, (entry.get("inode"), entry.get("size"), entry.get("mtime_ns")))
        return listed


class Syncer:
    """Keeps the index equal to the packages dir: one pass at a time, each pass
    a walk compared with what is listed. A refresh request waits for a pass that
    started after it arrived, so an upload's response follows its listing."""

    def __init__(self, index: Index, log=None, rehash: bool = False):
        self.index = index
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.cond = threading.Condition()
        self.started = self.done = 0
        self.wanted = True
        self.rehash = rehash
        self.listed: dict[str, tuple[str, tuple]] = {}
        self.empty: set[str] = set()
        self.invalid: dict[str, tuple[tuple, str]] = {}
        self.dirs: dict[str, int] = {}
        self.last = {}
        self.inspect = Inspector()

    def changed(self) -> bool:
        """Cheap: one stat per directory and per file not yet listable."""
        for rel, mtime in self.dirs.items():
            try:
                if os.stat(os.path.join(self.index.packages, rel)).st_mtime_ns != mtime:
                    return True
            except FileNotFoundError:
                return True
        for name, (stat, _) in self.invalid.items():
            try:
                st = os.stat(os.path.join(self.index.packages, name))
            except FileNotFoundError:
                return True
            if (st.st_ino, st.st_size, st.st_mtime_ns) != stat:
                return True
        return not self.dirs

    def sync(self) -> dict:
        """One pass; returns what changed (added, removed, invalid)."""
        index = self.index
        with index.lock():
            if not self.dirs:  # first pass: trust the records only where the file is unchanged
                self.listed = index.known()
                self.empty = set(index.projects()) - {p for p, _ in self.listed.values()}
                if index.republish_if_stale():
                    self.log(f"pages written again in this version's shape ({PAGES_SHAPE})")
            files, self.dirs = index.walk()
            todo = {}
            for name, inode in files.items():
                entry, bad = self.listed.get(name), self.invalid.get(name)
                # A listed file is the same file while its inode is: uploads,
                # copies and rsync make new ones (a file rewritten in place
                # needs a reindex). One not yet whole is watched by its stat.
                if not self.rehash and entry is not None and entry[1][0] == inode:
                    continue
                try:
                    stat = index.stat(name)
                except FileNotFoundError:
                    continue
                if self.rehash or bad is None or bad[0] != stat:
                    todo[name] = stat
            gone = [n for n in self.listed if n not in files or n in todo]
            self.invalid = {n: v for n, v in self.invalid.items() if n in files and n not in todo}
            touched: dict[str, dict] = {}
            had: dict[str, bool] = {}

            def record(project):
                if project not in touched:
                    touched[project] = index.load(project)
                    had[project] = bool(touched[project]["files"])
                return touched[project]

            previous = {}
            for name in gone:
                project, _ = self.listed.pop(name)
                previous[name] = index.forget(name, record(project))
            added, invalid = [], {}
            for name, stat in sorted(todo.items()):
                try:
                    info = self.inspect(os.path.join(index.packages, name), os.path.basename(name))
                    project = info.pop("project")
                    known = touched.get(project) or index.load(project)
                    was = known.get("gone", {}).get(name) or previous.get(name) or {}
                    if was.get("sha256", info["sha256"]) != info["sha256"]:
                        raise Invalid(f"a file of this name was on this index with other contents (sha256 "
                                      f"{was['sha256']}); a file name keeps its bytes, so publish a new version")
                    index.learn(name, stat, info, record(project), previous)
                    self.listed[name] = (project, stat)
                    added.append(name)
                except Invalid as err:
                    self.invalid[name] = (stat, str(err))
                    invalid[name] = str(err)
                    self.log(f"not listed: {name}: {err}")
                except OSError as err:  # vanished or unreadable meanwhile: the next pass sees
                    self.log(f"not listed: {name}: {err}")
            for project, rec in touched.items():
                index.save(project, rec)
                index.publish(project, rec)
            if self.rehash:
                index.prune()
            if any(had[p] != bool(r["files"]) for p, r in touched.items()) or not index.ready() or self.rehash:
                index.publish_root()
            self.rehash = False
            # Touched records are in hand; the others are read again, as the helper may have released one.
            self.empty = {p for p in self.empty | set(touched)
                          if not (r := touched.get(p) or index.load(p))["files"] and index.held(r)}
            removed = [n for n in gone if n not in self.listed]
            for name in added:
                self.log(f"listed: {name}")
            for name in removed:
                self.log(f"unlisted: {name}")
            self.last = {
                "time": now(),
                "files": len(self.listed),
                "projects": len({p for p, _ in self.listed.values()}),
                "invalid": {n: why for n, (_, why) in sorted(self.invalid.items())},
                # Names with no files that the upstream still does not answer for (release-name).
                "held-without-files": sorted(self.empty),
            }
            write_atomic(index.status_file, json.dumps(self.last, indent=1).encode())
            return {"added": added, "removed": removed, "invalid": invalid}

    def request(self, timeout: float) -> bool:
        """Ask for a pass and wait until one that started after now has ended."""
        with self.cond:
            target = self.started + 1
            self.wanted = True
            self.cond.notify_all()
            return self.cond.wait_for(lambda: self.done >= target, timeout)

    def run(self, interval: float = 0.2) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.wanted, timeout=interval)
                wanted, self.wanted = self.wanted, False
                if not wanted and not self.changed():
                    continue
                self.started += 1
                current = self.started
            try:
                self.sync()
            except Exception as err:  # noqa: BLE001 - keep serving; the next pass retries
                self.log(f"index pass failed: {err!r}")
            with self.cond:
                self.done = current
                self.cond.notify_all()


def serve(data_dir: str, port: int) -> None:
    """The indexer service: a pass whenever the packages dir changes (polled
    every 0.2 s) or pypiserver asks after an upload (POST /refresh)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pypi_appliance import internal

    index = Index(data_dir)
    syncer = Syncer(index)
    try:
        syncer.sync()
    except Exception as err:  # noqa: BLE001 - serve what is listed; the next pass retries
        syncer.log(f"index pass failed: {err!r}")

    class Handler(internal.Guarded, BaseHTTPRequestHandler):
        def answer(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.answer(200 if self.path == "/health" else 404, syncer.last)

        def do_POST(self):
            if self.path != "/refresh":
                return self.answer(404, {})
            if not syncer.request(timeout=REFRESH_SECONDS):
                return self.answer(503, {"error": f"the index did not catch up within {REFRESH_SECONDS} s"})
            return self.answer(200, syncer.last)

        def log_message(self, *args):  # one line per change is logged by the syncer instead
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    last = syncer.last
    syncer.log(f"index ready: {last.get('files', 0)} files in {last.get('projects', 0)} projects; serving on {port}")
    syncer.run()


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: python3 -m pypi_appliance.index serve [DATA_DIR [PORT]]")
    serve(sys.argv[2] if len(sys.argv) > 2 else "/data", int(sys.argv[3]) if len(sys.argv) > 3 else 8082)
