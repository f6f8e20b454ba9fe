"""Backups with a checksum manifest, and a restore that asks and keeps what it replaces."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

from pypi_appliance.admin.host import run
from pypi_appliance.admin.settings import (
    CONF,
    KEYS,
    PACKAGE,
    SERVER_GID,
    TLS_DIR,
    Fail,
    Settings,
    read_conf,
    write_conf,
)
from pypi_appliance.admin.tls import ensure_certificate, tls_paths
from pypi_appliance.core import attestations, audit, policy
from pypi_appliance.core.fsutil import atomic_file
from pypi_appliance.core.roles import ROLES, Grant, format_roles
from pypi_appliance.services.index import Index

BACKUP_ROOT = f"{PACKAGE}-backup"


MANIFEST = "MANIFEST.sha256"


def sha256(stream):
    h = hashlib.sha256()
    for chunk in iter(lambda: stream.read(2**20), b""):
        h.update(chunk)
    return h.hexdigest()


def write_archive(target, staged, digests=None):
    """A tar.gz of (path, name) pairs with a checksum manifest, written under a
    temporary name, root-only (it holds password hashes and maybe the CA key).
    digests: names whose sha256 is known already (package files)."""
    lines = []
    for src, arc in staged:
        if digests and arc in digests:
            lines.append(f"{digests[arc]}  {arc}\n")
            continue
        with open(src, "rb") as f:
            lines.append(f"{sha256(f)}  {arc}\n")
    manifest = "".join(lines).encode()
    # Root-only from its first byte: a reader that opened it before a chmod would keep reading.
    with atomic_file(target, mode=0o600, durable=True) as raw:
        with tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for src, arc in staged:
                archive.add(src, arcname=f"{BACKUP_ROOT}/{arc}", recursive=False)
            info = tarfile.TarInfo(f"{BACKUP_ROOT}/{MANIFEST}")
            info.size, info.mtime, info.mode = len(manifest), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(manifest))


def ca_sources():
    paths = tls_paths()
    return [(paths[name], f"tls/{name}") for name in ("ca.crt", "ca.key")]


# What a backup keeps of DATA_DIR/auth (the htpasswd file always), and what
# each is, for the warning of what a restore would lose. Tokens minted for CI
# (auth/state/) live 15 minutes: not kept.
AUTH = {
    "htpasswd": "the password file (accounts and passwords)",
    "roles": "the accounts' roles and publish scopes",
    "tokens.json": "the tokens (token create, revoke)",
    "token-key": "the key of the tokens' hashes",
    "trusts.json": "the trusted publishers (trust add)",
}


def cmd_backup(args, conf: Settings):
    """Packages, htpasswd and config (and the CA with --with-ca), with a checksum manifest."""
    target = args.file or time.strftime(f"{PACKAGE}-backup-%Y%m%d-%H%M%S.tar.gz")
    data = conf.data_dir
    sources = [
        (os.path.join(data, "auth", name), f"auth/{name}")
        for name in AUTH
        if name == "htpasswd" or os.path.isfile(os.path.join(data, "auth", name))
    ]
    for name in (f"{PACKAGE}.conf", "compose.yaml", "nginx.conf"):
        sources.append((os.path.join(os.path.dirname(CONF), name), f"config/{name}"))
    for name in POLICY:
        if os.path.isfile(os.path.join(data, name)):
            sources.append((os.path.join(data, name), name))
    if args.with_ca:
        missing = [src for src, _ in ca_sources() if not os.path.isfile(src)]
        if missing:
            raise Fail(
                f"--with-ca: {missing[0]} does not exist (the appliance has its own CA only in "
                "self-signed mode); nothing was backed up"
            )
        sources += ca_sources()
    packages = os.path.join(data, "packages")
    if not os.path.isdir(packages):
        raise Fail(f"{packages} does not exist; nothing to back up")
    index = Index(data)
    with tempfile.TemporaryDirectory(prefix=f".{PACKAGE}-backup.", dir=data) as scratch:
        # Exactly what the index lists (subfolders too), as it lists it: a file
        # it refused, or one that changed since it was read, is left out.
        staged, digests, skipped = [], {}, []
        listed = listed_files(index)
        for name, digest in listed.items():
            copy = os.path.join(scratch, "packages", name)
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            try:  # a hard link keeps the file for the archive even if it is deleted meanwhile
                os.link(os.path.join(packages, name), copy)
            except FileNotFoundError:
                skipped.append(f"{name}: removed meanwhile")
                continue
            except OSError:
                shutil.copy2(os.path.join(packages, name), copy)
            with open(copy, "rb") as f:
                if sha256(f) != digest:
                    skipped.append(f"{name}: differs from what the index lists ('{PACKAGE} reindex' reads it again)")
                    continue
            staged.append((copy, f"packages/{name}"))
            digests[f"packages/{name}"] = digest
            # Its PEP 740 attestations, kept beside it by the upload.
            provenance = os.path.join(packages, name + attestations.SUFFIX)
            if os.path.isfile(provenance):
                shutil.copy2(provenance, copy + attestations.SUFFIX)
                staged.append((copy + attestations.SUFFIX, f"packages/{name}{attestations.SUFFIX}"))
        kept = {n + attestations.SUFFIX for n in listed}
        unlisted = sorted(set(index.walk()[0]) - set(listed) - kept)
        staged += [(src, arc) for src, arc in sources if os.path.isfile(src)]
        # Upload times, yanks, held names and the hashes of removed files:
        # what the files themselves cannot say.
        for project in index.projects():
            copy = os.path.join(scratch, f"record-{project}.json")
            shutil.copy2(index.record_path(project), copy)
            staged.append((copy, f"index/records/{project}.json"))
        staged += audit_logs()
        write_archive(target, staged, digests)
    for why in skipped:
        print(f"{PACKAGE}: left out {why}", file=sys.stderr)
    if unlisted:
        print(
            f"{PACKAGE}: left out {len(unlisted)} files the index does not list ('{PACKAGE} status' says why): "
            + ", ".join(unlisted[:5])
            + (", ..." if len(unlisted) > 5 else ""),
            file=sys.stderr,
        )
    count = len(digests)
    print(f"backed up {count} package files{' and the CA' if args.with_ca else ''} to {target}", file=sys.stderr)


def listed_files(index: Index) -> dict[str, str]:
    """Every file the index lists, with its sha256: what a backup takes."""
    return {
        name: entry["sha256"] for project in index.projects() for name, entry in index.load(project)["files"].items()
    }


def audit_logs() -> list[tuple[str, str]]:
    """The audit log and its rotations, as (path, name in the archive)."""
    directory, base = os.path.split(audit.LOG)
    names = (
        sorted(n for n in os.listdir(directory) if n == base or n.startswith(f"{base}."))
        if os.path.isdir(directory)
        else []
    )
    return [(os.path.join(directory, n), f"log/{n}") for n in names]


def audit_lines(paths) -> list[bytes]:
    lines: list[bytes] = []
    for path in paths:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            lines += f.read().splitlines(keepends=True)
    return lines


def merge_audit_log(scratch) -> int:
    """The backup's audit lines this host's log lacks (after a purge: all of
    them) go into its log, in time order; returns how many."""
    theirs = audit_lines(
        sorted(os.path.join(scratch, "log", n) for n in os.listdir(os.path.join(scratch, "log")))
        if os.path.isdir(os.path.join(scratch, "log"))
        else []
    )
    current = audit_lines([audit.LOG]) if os.path.isfile(audit.LOG) else []
    known = set(current) | set(audit_lines([src for src, _ in audit_logs() if src != audit.LOG]))
    missing = [line for line in dict.fromkeys(theirs) if line not in known and line.endswith(b"\n")]
    if not missing:
        return 0
    merged = sorted(missing + current, key=lambda line: line.split(b" ", 1)[0])  # stamps sort as times
    with atomic_file(audit.LOG, mode=0o660, owner=(0, SERVER_GID), durable=True) as f:
        f.writelines(merged)
    return len(missing)


# What restore puts back; config/ in an archive is for reference only. Of the
# index, only the records: the indexer makes the pages from them and the files.
RESTORED = ("packages", "auth", "tls", "index", "log", "policy")
# The upstream's allow and deny rules, and the projects' states.
POLICY = {
    f"policy/{policy.RULES_FILE}": "the upstream's allow and deny rules",
    f"policy/{policy.STATUS_FILE}": "the projects' states (archived, quarantined, ...)",
}
BACKUP_CONF = f"config/{PACKAGE}.conf"
# Settings that belong to the host, not to the index: a restore never offers them.
HOST_SETTINGS = ("PYPI_DATA_DIR", "PYPI_BIND_ADDRESS", "PYPI_TLS_CERT", "PYPI_TLS_KEY", "PYPI_TLS_NAMES")


def settings_differences(scratch, conf: Settings) -> dict[str, str]:
    """The backup's settings that this host has otherwise (KEY -> the backup's value)."""
    path = os.path.join(scratch, BACKUP_CONF)
    if not os.path.isfile(path):
        return {}
    theirs = read_conf(path)
    return {
        key: getattr(theirs, field)
        for key, field in KEYS.items()
        if key not in HOST_SETTINGS and getattr(theirs, field) != getattr(conf, field)
    }


def offer_settings(args, differences: dict[str, str], conf: Settings) -> None:
    """Say which settings the backup had otherwise; apply them only when asked to, on a terminal."""
    if not differences:
        return
    print("The backup's settings differ from this host's (a restore keeps this host's):", file=sys.stderr)
    for key, value in differences.items():
        print(f"  {key}={value or '(empty)'} (here: {getattr(conf, KEYS[key]) or '(empty)'})", file=sys.stderr)
    command = f"{PACKAGE} write-config " + " ".join(shlex.quote(f"{k}={v}") for k, v in differences.items())
    if (
        not args.yes
        and sys.stdin.isatty()
        and input("Use the backup's settings? [y/N] ").strip().lower() in ("y", "yes")
    ):
        write_conf(differences, why="restore")
        print(f"set them in {CONF}; they take effect at the restart below", file=sys.stderr)
        return
    print(f"To use the backup's: {command} && systemctl restart {PACKAGE}", file=sys.stderr)


def extract_verified(path, scratch):
    """Unpack a backup's packages/, auth/ and tls/ into scratch, checking every
    member against the manifest; on any problem raise, so the caller touches nothing."""
    if not os.path.isfile(path):
        raise Fail(f"{path}: no such file; nothing was restored")
    digests, manifest = {}, None
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                name = member.name
                if not name.startswith(f"{BACKUP_ROOT}/"):
                    raise Fail(f"{path}: unexpected member {name!r}; not a {PACKAGE} backup")
                rel = name[len(BACKUP_ROOT) + 1 :]
                if member.isdir():
                    continue
                if not member.isfile() or ".." in rel.split("/") or rel.startswith("/"):
                    raise Fail(f"{path}: refusing member {name!r}")
                if rel == MANIFEST:
                    manifest = archive.extractfile(member).read().decode()
                elif rel.split("/")[0] in RESTORED or rel == BACKUP_CONF:
                    dest = os.path.join(scratch, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with archive.extractfile(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    with open(dest, "rb") as f:
                        digests[rel] = sha256(f)
                else:
                    digests[rel] = sha256(archive.extractfile(member))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise Fail(f"{path} is truncated or corrupt ({err}); nothing was restored") from None
    if manifest is None:
        raise Fail(f"{path} has no {MANIFEST}; nothing was restored")
    expected = {}
    for line in manifest.splitlines():
        digest, _, rel = line.partition("  ")
        expected[rel] = digest
    if expected != digests:
        bad = sorted(set(expected) ^ set(digests) | {k for k in expected if expected[k] != digests.get(k)})
        raise Fail(f"{path} does not match its manifest ({', '.join(bad)}); nothing was restored")
    if "auth/htpasswd" not in expected:
        raise Fail(f"{path} holds no auth/htpasswd; nothing was restored")
    return expected


def replaced_by(conf: Settings, members):
    """What a restore of members would remove or change: (path, name in a safety archive, why)."""
    data = conf.data_dir
    packages = os.path.join(data, "packages")
    losses: list[tuple[str, str, str | None]] = []
    for name in sorted(Index(data).walk()[0]):
        live = os.path.join(packages, name)
        digest = members.get(f"packages/{name}")
        if digest is None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(live)))
            losses.append((live, f"packages/{name}", f"{name} (added {when}, not in the backup)"))
        else:
            with open(live, "rb") as f:
                if sha256(f) != digest:
                    losses.append((live, f"packages/{name}", f"{name} (differs from the backup's)"))
    for name, why in AUTH.items():
        live = os.path.join(data, "auth", name)
        if os.path.isfile(live):
            with open(live, "rb") as f:
                if sha256(f) != members.get(f"auth/{name}"):
                    losses.append((live, f"auth/{name}", why))
    for name, what in POLICY.items():
        live = os.path.join(data, name)
        if os.path.isfile(live):
            with open(live, "rb") as f:
                if sha256(f) != members.get(name):
                    losses.append((live, name, what))
    (crt, crt_arc), (key, key_arc) = ca_sources()
    if crt_arc in members and os.path.isfile(crt):
        with open(crt, "rb") as f:
            if sha256(f) != members[crt_arc]:
                losses.append((crt, crt_arc, f"this host's CA ({crt}), which its clients trust"))
                losses.append((key, key_arc, None))
    return losses


def confirm(args, question):
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise Fail("not on a terminal: add --yes to go ahead; nothing was restored")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Fail("nothing was restored")


def install_ca(scratch):
    """The backup's CA replaces this host's: clients that trusted it trust this appliance again."""
    os.makedirs(TLS_DIR, mode=0o755, exist_ok=True)
    for name, mode in (("ca.key", 0o600), ("ca.crt", 0o644)):
        src = os.path.join(scratch, "tls", name)
        os.chown(src, 0, 0)
        os.chmod(src, mode)
        os.replace(src, tls_paths()[name])


def swap_in(data, scratch, names):
    """Rename each live dir aside and the new one in; on failure put the old ones back."""
    done = []
    try:
        for name in names:
            live, old = os.path.join(data, name), os.path.join(scratch, f"old-{name}")
            if os.path.exists(live):
                os.rename(live, old)
            done.append((live, old))
            os.rename(os.path.join(scratch, name), live)
    except BaseException:
        for live, old in reversed(done):
            if os.path.exists(old):
                if os.path.exists(live):
                    shutil.rmtree(live)
                os.rename(old, live)
        raise


def cmd_restore(args, conf: Settings):
    data = conf.data_dir
    if not os.path.isdir(data):
        raise Fail(f"{data} does not exist; install or reconfigure {PACKAGE} first")
    _, state = run(["systemctl", "is-active", f"{PACKAGE}.service"])
    with tempfile.TemporaryDirectory(prefix=f".{PACKAGE}-restore.", dir=data) as scratch:
        members = extract_verified(args.file, scratch)
        count = sum(1 for rel in members if rel.startswith("packages/"))
        with_ca = "tls/ca.crt" in members and "tls/ca.key" in members
        losses = replaced_by(conf, members)
        print(
            f"{args.file}: {count} package files, the password file and roles, the index's records (upload "
            f"times, yanks, held names), the upstream rules and project states{' and a CA' if with_ca else ''}; "
            "its audit lines "
            "are added to this host's. Not restored: settings (below), the upstream's cache (fetched again).",
            file=sys.stderr,
        )
        differences = settings_differences(scratch, conf)
        if losses:
            print(f"Restoring it replaces what {data} holds now; this would be lost:", file=sys.stderr)
            for _, _, why in losses:
                if why:
                    print(f"  {why}", file=sys.stderr)
        confirm(args, f"Replace the packages and passwords in {data} with the backup's?")
        offer_settings(args, differences, conf)
        saved = None
        if losses:
            saved = os.path.join(data, time.strftime("before-restore-%Y%m%d-%H%M%S.tar.gz"))
            try:
                write_archive(saved, [(src, arc) for src, arc, _ in losses if os.path.isfile(src)])
            except OSError as err:
                raise Fail(f"cannot keep what the restore replaces in {saved} ({err}); nothing was restored") from None
        new_packages, new_auth = os.path.join(scratch, "packages"), os.path.join(scratch, "auth")
        os.makedirs(new_packages, exist_ok=True)
        for root, _, names in os.walk(new_packages):
            os.chown(root, SERVER_GID, SERVER_GID)
            for name in names:
                os.chown(os.path.join(root, name), SERVER_GID, SERVER_GID)
                os.chmod(os.path.join(root, name), 0o644)
        os.chmod(new_packages, 0o755)
        new_index = os.path.join(scratch, "index")
        os.makedirs(os.path.join(new_index, "records"), exist_ok=True)
        for root, _, names in os.walk(new_index):
            os.chown(root, SERVER_GID, SERVER_GID)
            os.chmod(root, 0o755)
            for name in names:
                os.chown(os.path.join(root, name), SERVER_GID, SERVER_GID)
                os.chmod(os.path.join(root, name), 0o644)
        os.chown(new_auth, 0, SERVER_GID)
        os.chmod(new_auth, 0o750)
        roles = os.path.join(new_auth, "roles")
        if not os.path.exists(roles):
            # A backup from before roles (0.3.0): its accounts could all publish, and still may.
            with open(os.path.join(new_auth, "htpasswd"), encoding="utf-8") as f:
                names = [line.split(":", 1)[0] for line in f if ":" in line]
            with open(roles, "wb") as f:
                f.write(format_roles({name: Grant(ROLES[-1]) for name in names}))
        for name in AUTH:
            if os.path.exists(os.path.join(new_auth, name)):
                os.chown(os.path.join(new_auth, name), 0, SERVER_GID)
                os.chmod(os.path.join(new_auth, name), 0o640)
        new_policy = os.path.join(scratch, "policy")  # root's, read by the containers
        os.makedirs(new_policy, exist_ok=True)
        os.chmod(new_policy, 0o755)
        for name in os.listdir(new_policy):
            os.chown(os.path.join(new_policy, name), 0, 0)
            os.chmod(os.path.join(new_policy, name), 0o644)
        # The containers hold the old directories open: stop, swap by rename, start.
        if state == "active":
            subprocess.run(["systemctl", "stop", f"{PACKAGE}.service"], check=True)
        try:
            swap_in(data, scratch, ["packages", "auth", "index", "policy"])
            # Before the start: the log is replaced by rename, and the containers append to it.
            added = merge_audit_log(scratch)
            if with_ca:
                install_ca(scratch)
                ensure_certificate(conf)
        finally:
            if state == "active":
                subprocess.run(["systemctl", "start", f"{PACKAGE}.service"], check=True)
    audit.record("restore", by=audit.actor(), file=os.path.abspath(args.file), packages=count, audit_lines=added)
    print(
        f"restored {count} package files and the password file{' and the CA' if with_ca else ''} from {args.file}",
        file=sys.stderr,
    )
    if saved:
        print(f"what it replaced is kept in {saved} (root only; 'tar -xzf' it to take files back)", file=sys.stderr)
