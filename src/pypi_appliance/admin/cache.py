"""The upstream's cache under DATA_DIR/upstream (not backed up: it can be
fetched again): what the front door is told about it, `cache`, `cache clear`.

nginx keeps the pages and files in pages-N/ and files-N/; `cache clear` (and
a start with another upstream) moves it to generation N+1 and reloads, so
nothing stops and nothing half-deleted is served."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import urllib.parse

from pypi_appliance.admin import downloads
from pypi_appliance.admin.settings import CONF, PACKAGE, Settings
from pypi_appliance.core import audit, policy
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.names import normalize

HITS = {"HIT", "STALE", "UPDATING", "REVALIDATED"}


def root(conf: Settings) -> str:
    return os.path.join(conf.data_dir, "upstream")


def generation(conf: Settings) -> int:
    try:
        with open(os.path.join(root(conf), "generation"), encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def policy_version(conf: Settings) -> str:
    """What the upstream's pages depend on besides the upstream: the policy's
    settings, rules and project states (a key of nginx's page cache, so a
    change takes effect at once)."""
    digest = hashlib.sha256(f"{conf.upstream_min_age}|{conf.upstream_not_after}|{conf.upstream_only_listed}|".encode())
    for path in (policy.rules_path(conf.data_dir), policy.status_path(conf.data_dir)):
        try:
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
        except FileNotFoundError:
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def settings_conf(conf: Settings, n: int) -> str:
    return (
        f"# Written by {PACKAGE} at each start from PYPI_UPSTREAM and PYPI_UPSTREAM_CACHE_MAX\n"
        f"# in {CONF}, and at each change of the upstream rules: edit those, not this.\n"
        f"geo $from_upstream {{ default {1 if conf.upstream else 0}; }}\n"
        f"geo $upstream_policy {{ default {policy_version(conf)}; }}\n"
        f"geo $upstream_pages_zone {{ default upstream_pages_{n}; }}\n"
        f"geo $upstream_files_zone {{ default upstream_files_{n}; }}\n"
        f"proxy_cache_path /data/upstream/pages-{n} levels=2 keys_zone=upstream_pages_{n}:8m max_size=1g "
        "inactive=30d use_temp_path=off;\n"
        f"proxy_cache_path /data/upstream/files-{n} levels=2:2 keys_zone=upstream_files_{n}:16m "
        f"max_size={conf.upstream_cache_max} inactive=3650d use_temp_path=off;\n"
    )


def _write(conf: Settings, name: str, text: str) -> None:
    write_atomic(os.path.join(root(conf), name), text)


def use_policy(conf: Settings) -> None:
    """Tell the front door of a change of the upstream rules or project states:
    the pages it kept under the old ones are not served. Before the first
    start there is nothing to tell: the start writes it."""
    from pypi_appliance.admin.users import reload_front_door

    if os.path.isdir(root(conf)):
        _use(conf, generation(conf))
        reload_front_door()


def _use(conf: Settings, n: int) -> None:
    """Point the front door at generation n (it reads this at its next start or reload)."""
    _write(conf, "generation", f"{n}\n")
    _write(conf, "settings.conf", settings_conf(conf, n))


def write_settings(conf: Settings) -> None:
    """The front door's upstream settings (it includes them), replaced whole,
    at each start. Another upstream than the cache's starts an empty cache:
    its pages and files are not the old one's."""
    os.makedirs(root(conf), mode=0o755, exist_ok=True)
    os.makedirs(os.path.dirname(policy.rules_path(conf.data_dir)), mode=0o755, exist_ok=True)
    n = generation(conf)
    try:
        with open(os.path.join(root(conf), "upstream"), encoding="utf-8") as f:
            cached_for = f.read().strip()
    except FileNotFoundError:
        cached_for = conf.upstream
    if conf.upstream and conf.upstream != cached_for:
        n += 1
        remove_older(conf, n)
    if conf.upstream:
        _write(conf, "upstream", conf.upstream + "\n")
    _use(conf, n)


def remove_older(conf: Settings, n: int) -> int:
    """Remove the caches of generations before n; how many entries they held."""
    removed = 0
    for name in os.listdir(root(conf)):
        kind, _, number = name.partition("-")
        if kind in ("files", "pages") and number != str(n):
            for _, _, names in os.walk(os.path.join(root(conf), name)):
                removed += len(names)
            shutil.rmtree(os.path.join(root(conf), name), ignore_errors=True)
    return removed


def usage(conf: Settings) -> tuple[int, int, int]:
    """Bytes on disk, files and pages kept now."""
    size = counts = pages = 0
    n = generation(conf)
    for kind in ("files", "pages"):
        for dirpath, _, names in os.walk(os.path.join(root(conf), f"{kind}-{n}")):
            for name in names:
                size += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                if kind == "files":
                    counts += 1
                else:
                    pages += 1
    return size, counts, pages


def hits() -> tuple[int, int, str]:
    """Upstream file downloads served from the cache, all of them, and since
    when: from the downloads record, counted from the last clear."""
    hit = total = 0
    since = ""
    try:
        with open(downloads.LOG, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(CLEARED):  # counted from the last clear; the lines stay as a record
                    hit = total = 0
                    since = ""
                    continue
                fields = line.split()
                if len(fields) < 4 or fields[1] != "upstream" or fields[3] != "200":
                    continue
                since = since or fields[0]
                total += 1
                hit += fields[2] in HITS
    except FileNotFoundError:
        pass
    return hit, total, since


CLEARED = f"{downloads.MARK} cache cleared"


def cached_files(conf: Settings, name: str | None = None) -> list[tuple[str, str, int]]:
    """(project, file, bytes) of each upstream file the cache holds: nginx
    writes its key (the URL /upstream/PROJECT/HASH/FILE) into each file's header."""
    found = []
    top = os.path.join(root(conf), f"files-{generation(conf)}")
    for dirpath, _, names in os.walk(top):
        for entry in names:
            path = os.path.join(dirpath, entry)
            try:
                with open(path, "rb") as f:
                    head = f.read(4096)
                size = os.path.getsize(path)
            except OSError:  # evicted meanwhile
                continue
            key = head.partition(b"\nKEY: ")[2].partition(b"\n")[0].decode("utf-8", "replace")
            parts = key.split("/")
            if len(parts) == 5 and parts[1] == "upstream" and (name is None or normalize(name) == parts[2]):
                found.append((parts[2], urllib.parse.unquote(parts[4]), size))
    return sorted(found)


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def cmd_cache(args, conf: Settings):
    if args.action == "clear":
        return clear(conf)
    if args.action == "files":
        found = cached_files(conf, args.name)
        for project, filename, size in found:
            print(f"{project}  {filename}  {human(size)}")
        if not found:
            print(f"no cached files{f' of {normalize(args.name)}' if args.name else ''}", file=sys.stderr)
        return 0
    size, files, pages = usage(conf)
    hit, total, since = hits()
    print(f"upstream  {conf.upstream or '(none: PYPI_UPSTREAM is empty)'}")
    print(
        f"cache     {human(size)} of {conf.upstream_cache_max} (PYPI_UPSTREAM_CACHE_MAX): {files} files, "
        f"{pages} pages, in {root(conf)}"
    )
    ratio = f"{100 * hit / total:.0f}% of {total} file downloads since {since}" if total else "no file downloads yet"
    print(f"hits      {ratio}")
    return 0


def clear(conf: Settings):
    from pypi_appliance.admin.users import reload_front_door

    os.makedirs(root(conf), mode=0o755, exist_ok=True)
    os.makedirs(os.path.dirname(policy.rules_path(conf.data_dir)), mode=0o755, exist_ok=True)
    n = generation(conf) + 1
    _use(conf, n)
    reload_front_door()
    removed = remove_older(conf, n)
    # The log is a record of who got what when: cleared counts start anew, no line goes.
    with open(downloads.LOG, "a", encoding="utf-8") as f:
        f.write(f"{CLEARED} {time.strftime('%Y-%m-%dT%H:%M:%S+00:00', time.gmtime())}\n")
    audit.record("cache-clear", by=audit.actor(), removed=removed)
    print(
        f"{PACKAGE}: the upstream's cache is empty ({removed} files and pages removed); "
        "the next request of each fetches it again"
    )
    return 0
