"""yank, unyank, remove and reindex: the admin's changes to the index, made
with the indexer's own code and lock, as its user, and logged to the journal."""

from __future__ import annotations

import os
import sys
import syslog

from pypi_appliance import audit
from pypi_appliance.index import Index, Syncer, parse_release
from pypi_appliance.settings import PACKAGE, SERVER_GID, Fail, Settings


def open_index(conf: Settings) -> Index:
    index = Index(conf.data_dir)
    if not os.path.isdir(index.packages):
        raise Fail(f"{index.packages} does not exist; install or reconfigure {PACKAGE} first")
    # The indexer's user owns the index: files made here must stay its own.
    os.makedirs(index.root, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(index.root, SERVER_GID, SERVER_GID)
        os.setgroups([])
        os.setgid(SERVER_GID)
        os.setuid(SERVER_GID)
    return index


def logged(text: str) -> None:
    syslog.openlog(PACKAGE)
    syslog.syslog(syslog.LOG_NOTICE, text)
    print(text, file=sys.stderr)


def release_files(index: Index, spec: str) -> tuple[str, str, dict]:
    try:
        project, version = parse_release(spec)
    except ValueError as err:
        raise Fail(str(err)) from None
    record = index.load(project)
    if not any(e["version"] == version for e in record["files"].values()):
        have = sorted({e["version"] for e in record["files"].values()})
        known = f"it has {', '.join(have)}" if have else "there is no such project"
        raise Fail(f"no release {project}=={version} on this index ({known})")
    return project, version, record


def set_yank(conf: Settings, spec: str, reason: str | None) -> None:
    index = open_index(conf)
    with index.lock():
        project, version, record = release_files(index, spec)
        yanks = record.setdefault("yanked", {})
        if reason is None:
            if yanks.pop(version, None) is None:
                raise Fail(f"{project}=={version} is not yanked")
        else:
            yanks[version] = reason
        index.save(project, record)
        index.publish(project, record)
    if reason is None:
        audit.record("unyank", by=audit.actor(), release=f"{project}=={version}")
        logged(f"unyanked {project}=={version}")
    else:
        audit.record("yank", by=audit.actor(), release=f"{project}=={version}", reason=reason)
        logged(f"yanked {project}=={version}" + (f": {reason}" if reason else ""))


def cmd_yank(args, conf: Settings) -> None:
    set_yank(conf, args.release, args.reason or "")


def cmd_unyank(args, conf: Settings) -> None:
    set_yank(conf, args.release, None)


def cmd_remove(args, conf: Settings) -> None:
    index = Index(conf.data_dir)
    project, version, record = release_files(index, args.release)
    names = sorted(n for n, e in record["files"].items() if e["version"] == version)
    print(f"{project}=={version}: {len(names)} files", file=sys.stderr)
    for name in names:
        print(f"  {name}", file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            raise Fail("not on a terminal: add --yes to delete them; nothing was removed")
        if input("Delete these files for good? [y/N] ").strip().lower() not in ("y", "yes"):
            raise Fail("nothing was removed")
    index = open_index(conf)
    for name in names:
        try:
            os.unlink(os.path.join(index.packages, name))
        except FileNotFoundError:
            pass
    syncer = Syncer(index, log=lambda text: None)
    syncer.sync()
    with index.lock():  # gone for good: neither its yank nor its upload times stay
        record = index.load(project)
        record.get("yanked", {}).pop(version, None)
        for name in names:
            record.get("gone", {}).pop(name, None)
        index.save(project, record)
    for name in names:
        audit.record("remove", by=audit.actor(), release=f"{project}=={version}", file=name)
    logged(f"removed {project}=={version} ({', '.join(names)})")


def cmd_reindex(args, conf: Settings) -> None:
    index = open_index(conf)
    syncer = Syncer(index, log=lambda text: print(text, file=sys.stderr), rehash=True)
    changes = syncer.sync()
    last = syncer.last
    logged(
        f"reindexed {last['files']} files in {last['projects']} projects"
        + (f"; {len(last['invalid'])} not listed (not whole or not a distribution)" if last["invalid"] else "")
    )
    return 1 if changes["invalid"] else 0
