"""`downloads`: who pulled what. The front door writes one line per file
downloaded (its own and the upstream's) to LOG:

    2026-12-07T20:45:00+00:00 upstream HIT 200 48213 10.0.0.5 ci /upstream/cooled/<sha256>/cooled-2.0.tar.gz
    2026-12-07T20:45:01+00:00 local - 200 1093 10.0.0.5 alice /packages/team_tool-1.0.tar.gz

(time, source, cache status, HTTP status, bytes, client address, account or
-, the URL asked for). logrotate keeps a year of it, compressed; `cache clear`
adds a marker line and removes none. A query reads every rotation, filtered by
grep first: a year of 100 CI runners is a few GB, and grep reads that in
seconds where Python would take minutes."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from pypi_appliance.admin.settings import Fail, Settings
from pypi_appliance.core import audit, policy
from pypi_appliance.core.names import project_of, version_of

LOG = os.path.join(os.path.dirname(audit.LOG), "downloads.log")  # beside the audit log
MARK = "#"  # lines the helper adds (cache clear): not downloads


@dataclass(frozen=True)
class Download:
    time: str
    source: str  # local or upstream
    cache: str  # the upstream cache's HIT, MISS, ... (- for local files)
    status: str
    size: str
    address: str
    account: str
    project: str
    version: str
    file: str


def parse(line: str) -> Download | None:
    """A record line, or None for a marker or a line cut short."""
    fields = line.split()
    if len(fields) != 8 or line.startswith(MARK):
        return None
    stamp, source, cache, status, size, address, account, uri = fields
    path = urllib.parse.unquote(uri.partition("?")[0])
    if source == "upstream":
        parts = path.split("/")
        if len(parts) != 5 or parts[1] != "upstream":
            return None
        project, name = parts[2], parts[4]
    elif path.startswith("/packages/"):
        name = path.rsplit("/", 1)[-1]
        project = project_of(name)
    else:
        return None
    return Download(
        stamp, source, cache, status, size, address, account, project, version_of(project, name) or "?", name
    )


def files() -> list[str]:
    """The record and its rotations, oldest first (logrotate: LOG.N.gz, LOG.1, LOG)."""

    def age(path: str) -> int:
        suffix = path[len(LOG) :].removeprefix(".").removesuffix(".gz")
        return int(suffix) if suffix.isdigit() else 0

    return sorted(
        (p for p in glob.glob(LOG + "*") if p == LOG or re.fullmatch(r"\.[0-9]+(\.gz)?", p[len(LOG) :])),
        key=age,
        reverse=True,
    )


def grep(pattern: str, fixed: bool = False) -> list[str]:
    """The lines of every rotation that match (extended regex, case-insensitive; or a fixed string)."""
    lines: list[str] = []
    for path in files():
        tool = "zgrep" if path.endswith(".gz") else "grep"
        done = subprocess.run(
            [tool, "-a", "-h", "-i", "-F" if fixed else "-E", "-e", pattern, path], capture_output=True
        )
        if done.returncode > 1:
            raise Fail(f"{path}: {done.stderr.decode(errors='replace').strip() or 'unreadable'}")
        lines += done.stdout.decode("utf-8", "replace").splitlines()
    return lines


def name_pattern(project: str) -> str:
    """What a line of project's files holds, in any spelling (grep's part; parse() decides)."""
    name = "[-_.]+".join(re.escape(part) for part in project.split("-"))
    return f" /(packages/([^ ]*/)?|upstream/){name}[-_./]"


def query(project: str | None, version: str | None, account: str | None, since: datetime | None) -> list[Download]:
    if project:
        lines = grep(name_pattern(project))
    else:
        lines = grep(f" {account} /", fixed=True)
    found = []
    for line in lines:
        record = parse(line)
        if record is None:
            continue
        if project and record.project != project or version and record.version != version:
            continue
        if account and record.account != account:
            continue
        if since and (policy.upload_time(record.time) or since) < since:
            continue
        found.append(record)
    return sorted(found, key=lambda r: r.time)


def cmd_downloads(args, conf: Settings):
    if bool(args.release) == bool(args.account):
        raise Fail("name a project (NAME or NAME==VERSION) or an account (--account NAME), one of them")
    project = version = None
    if args.release:
        try:
            project, version = policy.parse_target(args.release)
        except ValueError as err:
            raise Fail(str(err)) from None
        if "*" in project or "?" in project:
            raise Fail(f"'{args.release}': give a project name, such as requests")
    try:
        since = policy.parse_moment(args.since or "")
    except ValueError as err:
        raise Fail(f"--since: {err}") from None
    found = query(project, version, args.account, since)
    what = f"{project}{f'=={version}' if version else ''}" if project else f"the account {args.account}"
    if not found:
        print(f"no downloads of {what}{f' since {args.since}' if since else ''} in {LOG}*", file=sys.stderr)
        return 0
    print(f"{'time':<25} {'account':<14} {'address':<15} {'project':<20} {'version':<10} file (from)")
    for r in found:
        origin = "this index" if r.source == "local" else f"upstream, cache {r.cache}"
        print(f"{r.time:<25} {r.account:<14} {r.address:<15} {r.project:<20} {r.version:<10} {r.file} ({origin})")
    accounts = sorted({r.account for r in found})
    print(
        f"{len(found)} downloads of {what} by {len(accounts)} accounts from "
        f"{len({r.address for r in found})} addresses, {found[0].time} to {found[-1].time}",
        file=sys.stderr,
    )
    return 0
