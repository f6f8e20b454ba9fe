"""The index: static pages made when the packages dir changes.

pypiserver writes package files; this reads each new file once (checks it is
whole, hashes it, takes its METADATA), keeps what it learnt in one record per
project (DATA_DIR/index/records/, with the upload times and yanks that the
files themselves cannot carry), and writes what nginx serves:

    index/simple/index.html, index.json              the project list
    index/simple/<project>/index.html, index.json    PEP 503 HTML, PEP 691 JSON (PEP 700 fields)
    index/metadata/<file>.metadata                   PEP 658/714 metadata files

Every change happens under one lock (index/.lock), by the indexer service
(python -m pypi_appliance.services.index serve, in a container) or by the admin
helper (yank, remove, reindex). Standard library only: it runs on the host's
Python and on the pypiserver image's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading

from pypi_appliance.core import attestations, httpd, policy
from pypi_appliance.core.archives import Inspector, Invalid
from pypi_appliance.core.fsutil import walk_packages, write_atomic
from pypi_appliance.core.names import now
from pypi_appliance.core.simple import render_project, render_root

# The shape of the pages this version writes: pages written by a version with
# another shape (a key pip cannot read) are written again at the first pass.
PAGES_SHAPE = "3"  # 3: API 1.4, PEP 792's project-status
REFRESH_SECONDS = 90  # an upload's answer waits this long for its pass


class Index:
    """The index dir of one data dir: records, pages, metadata files, the lock."""

    def __init__(self, data_dir: str):
        self.packages = os.path.join(data_dir, "packages")
        self.root = os.path.join(data_dir, "index")
        self.records = os.path.join(self.root, "records")
        self.simple = os.path.join(self.root, "simple")
        self.metadata = os.path.join(self.root, "metadata")
        self.status_file = os.path.join(self.root, "status.json")
        # Files of quarantined projects: a marker each, which the front door
        # checks before serving one (it cannot tell a file's project).
        self.withheld = os.path.join(self.root, "withheld")
        self.states = policy.Watched(policy.status_path(data_dir), policy.read_statuses)

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
        status = self.status(project)
        self.withhold(project, record, status)
        page, data = render_project(project, record, status)
        # JSON first: a reader that finds the HTML finds the JSON too.
        write_atomic(os.path.join(directory, "index.json"), data)
        write_atomic(os.path.join(directory, "index.html"), page)

    def status(self, project: str) -> dict | None:
        """The project's PEP 792 state, when an admin set one. Unreadable: quarantined, with why
        (no file offered by states nobody can check)."""
        try:
            return self.states.get().get(project)
        except policy.UNREADABLE as err:
            return {"status": "quarantined", "reason": f"the project states cannot be read: {err}"}

    def withhold(self, project: str, record: dict, status: dict | None) -> None:
        """A marker for each file of a quarantined project (holding why), none otherwise."""
        text = None
        if (status or {}).get("status") == "quarantined":
            text = f"pypi-appliance: {policy.quarantined(project, status)}\n"
        for name in list(record["files"]) + list(record.get("gone", {})):
            for served in (name, name + attestations.SUFFIX):
                marker = os.path.join(self.withheld, "packages", served)
                if text is not None and name in record["files"]:
                    write_atomic(marker, text.encode())
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(marker)

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
        """Every file under packages/ with its inode, and each dir's mtime."""
        return walk_packages(self.packages)

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
        # PEP 740: the upload hook put the attestations beside the file before it.
        if os.path.exists(os.path.join(self.packages, name + attestations.SUFFIX)):
            info["provenance"] = True
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
        self.last: dict = {}
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
            for name in [n for n in files if n.endswith(attestations.SUFFIX)]:
                del files[name]  # a file's provenance (PEP 740), not a file to list
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
                        raise Invalid(
                            f"a file of this name was on this index with other contents (sha256 "
                            f"{was['sha256']}); a file name keeps its bytes, so publish a new version"
                        )
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
            self.empty = {
                p
                for p in self.empty | set(touched)
                if not (r := touched.get(p) or index.load(p))["files"] and index.held(r)
            }
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
    index = Index(data_dir)
    syncer = Syncer(index)
    try:
        syncer.sync()
    except Exception as err:  # noqa: BLE001 - serve what is listed; the next pass retries
        syncer.log(f"index pass failed: {err!r}")

    class Handler(httpd.Handler):
        def do_GET(self):
            self.answer_json(200 if self.path == "/health" else 404, syncer.last)

        def do_POST(self):
            if self.path != "/refresh":
                return self.answer_json(404, {})
            if not syncer.request(timeout=REFRESH_SECONDS):
                return self.answer_json(503, {"error": f"the index did not catch up within {REFRESH_SECONDS} s"})
            return self.answer_json(200, syncer.last)

    threading.Thread(target=httpd.server(Handler, port).serve_forever, daemon=True).start()
    last = syncer.last
    syncer.log(f"index ready: {last.get('files', 0)} files in {last.get('projects', 0)} projects; serving on {port}")
    syncer.run()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: python -m pypi_appliance.services.index serve DATA_DIR PORT")
    serve(sys.argv[2], int(sys.argv[3]))
