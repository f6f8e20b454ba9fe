"""yank, unyank, remove, reindex and project-status: the admin's changes to
the index, made with the indexer's own code and lock, as its user, and logged
to the journal."""

from __future__ import annotations

import contextlib
import os
import sys
import syslog
import time

from pypi_appliance.admin.settings import PACKAGE, SERVER_GID, Fail, Settings
from pypi_appliance.core import attestations, audit, policy
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.names import normalize, parse_release
from pypi_appliance.services.index import Index, Syncer


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


def confirm(args, question: str) -> None:
    if not args.yes:
        if not sys.stdin.isatty():
            raise Fail("not on a terminal: add --yes to do it; nothing was changed")
        if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
            raise Fail("nothing was changed")


def unlisted_file(index: Index, given: str) -> str:
    """A file in the packages dir that the index does not list, as status names it."""
    name = os.path.normpath(given)
    if os.path.isabs(name) or any(part.startswith(".") for part in name.split(os.sep)):
        raise Fail(f"{given!r} is not a file name in the packages dir (as 'status' shows it) nor PROJECT==VERSION")
    if not os.path.isfile(os.path.join(index.packages, name)):
        raise Fail(f"there is no file {name} in {index.packages} (give PROJECT==VERSION for a listed release)")
    if name in index.known():
        raise Fail(f"{name} is listed: remove its release with PROJECT==VERSION")
    return name


def cmd_remove(args, conf: Settings) -> None:
    index = Index(conf.data_dir)
    if "==" not in args.release:  # a file the index refused (status lists them)
        name = unlisted_file(index, args.release)
        print(f"{name}: not listed", file=sys.stderr)
        confirm(args, "Delete this file for good?")
        index = open_index(conf)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(index.packages, name))
        Syncer(index, log=lambda text: None).sync()
        audit.record("remove", by=audit.actor(), file=name)
        logged(f"removed {name} (not listed)")
        return
    project, version, record = release_files(index, args.release)
    names = sorted(n for n, e in record["files"].items() if e["version"] == version)
    print(f"{project}=={version}: {len(names)} files", file=sys.stderr)
    for name in names:
        print(f"  {name}", file=sys.stderr)
    confirm(args, "Delete these files for good?")
    index = open_index(conf)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(index.packages, name))
    syncer = Syncer(index, log=lambda text: None)
    syncer.sync()
    for name in names:  # unlisted now: their provenance (PEP 740) goes too
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(index.packages, name + attestations.SUFFIX))
    with index.lock():  # its yank goes; its files' hashes stay, so other bytes cannot take their names
        record = index.load(project)
        record.get("yanked", {}).pop(version, None)
        index.save(project, record)
    for name in names:
        audit.record("remove", by=audit.actor(), release=f"{project}=={version}", file=name)
    logged(f"removed {project}=={version} ({', '.join(names)}); the name stays this index's")


def cmd_release_name(args, conf: Settings) -> None:
    index = Index(conf.data_dir)
    project = normalize(args.name)
    record = index.load(project)
    if not os.path.isfile(index.record_path(project)) or not index.held(record):
        raise Fail(f"{project} is not held by this index: the upstream answers for it already")
    if record["files"]:
        versions = sorted({e["version"] for e in record["files"].values()})
        raise Fail(
            f"{project} still has {len(record['files'])} files ({', '.join(versions)}): remove them first "
            f"(pypi-appliance remove {project}=={versions[0]}); nothing was changed"
        )
    print(
        f"{project}: no files; the upstream will answer for it (its files of other contents stay refused here)",
        file=sys.stderr,
    )
    confirm(args, f"Let the upstream answer for {project}?")
    index = open_index(conf)
    with index.lock():
        record = index.load(project)
        if record["files"]:
            raise Fail(f"{project} got files meanwhile; nothing was changed")
        record["released"] = True
        index.save(project, record)
        index.publish(project, record)
        index.publish_root()
    audit.record("release-name", by=audit.actor(), project=project)
    logged(f"released {project}: the upstream answers for it")


def cmd_reindex(args, conf: Settings) -> int:
    index = open_index(conf)
    syncer = Syncer(index, log=lambda text: print(text, file=sys.stderr), rehash=True)
    changes = syncer.sync()
    last = syncer.last
    logged(
        f"reindexed {last['files']} files in {last['projects']} projects"
        + (f"; {len(last['invalid'])} not listed (not whole or not a distribution)" if last["invalid"] else "")
    )
    return 1 if changes["invalid"] else 0


STATE_SAID = {
    "active": "uploads and downloads as usual",
    "archived": "its files are offered; every upload of it is refused",
    "deprecated": "as active, marked deprecated on its pages",
    "quarantined": "its pages list no files, its files answer 410 (cached ones too), every upload is refused",
}


def cmd_project_status(args, conf: Settings) -> None:
    path = policy.status_path(conf.data_dir)
    try:
        states = policy.read_statuses(path)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise Fail(f"{path} is not a project states file ({err}); restore it from a backup") from None
    if args.name is None:
        for name, state in sorted(states.items()):
            print(
                f"{name}  {state['status']}  {state.get('at', '')} by {state.get('by', '')}: {state.get('reason', '')}"
            )
        if not states:
            print("every project is active (no state set)")
        return
    try:
        project, version = policy.parse_target(args.name)
    except ValueError as err:
        raise Fail(str(err)) from None
    if version or "*" in project or "?" in project:
        raise Fail(f"'{args.name}': a state is a project's: give its name, such as mypkg")
    if args.state is None:
        state = states.get(project, {"status": "active"})
        print(f"{project}  {state['status']}" + (f": {state['reason']}" if state.get("reason") else ""))
        return
    if args.state == "active":
        states.pop(project, None)
    else:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        states[project] = {"status": args.state, "reason": args.reason or "", "by": audit.actor(), "at": stamp}
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomic(path, policy.statuses_json(states), mode=0o644, durable=True)
    audit.record("project-status", by=audit.actor(), project=project, status=args.state, reason=args.reason or "")
    logged(f"{project} is {args.state}: {STATE_SAID[args.state]}")
    # The upstream's pages kept by the front door are keyed by the states; this index's are written again.
    from pypi_appliance.admin import cache

    cache.use_policy(conf)
    index = open_index(conf)
    with index.lock():
        record = index.load(project)
        if os.path.exists(index.record_path(project)):
            index.publish(project, record)
