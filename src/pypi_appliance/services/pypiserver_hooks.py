"""pypiserver's write path made whole and fast, installed by the gunicorn
config mounted over the image's /data/gunicorn.conf.py (its documented
override point; pypiserver has no plugin hook): an upload is written under a hidden name and renamed only when it
is complete, a full disk answers 507 and leaves nothing, and the response waits
until the indexer lists the file (or refuses it, if it is not a whole wheel
or archive), and each upload is written to the audit log.

pypiserver checks no password (compose.yaml: --passwords=. --authenticate=.):
the front door has checked the uploader (a password once, a token by its
hash) and its role, and names the account and its publish scope in headers
nobody else can set (nginx.conf sets them on every request it passes here;
only requests with the containers' key get here: guarded() below). The hook
applies the scope. PEP 740 attestations sent with a file are checked against
it and kept beside it as its .provenance (core.attestations)."""

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request

import pypiserver.backend
from pypiserver.bottle_wrapper import Bottle, HTTPError, HTTPResponse, request

from pypi_appliance.core import attestations, audit, credentials, internal, policy
from pypi_appliance.core.names import normalize, project_of
from pypi_appliance.services.index import REFRESH_SECONDS

PACKAGES = "/data/packages"
UPLOAD_PREFIX = ".upload-"  # the indexer and backups skip hidden files
INDEXER = os.environ["PYPI_INDEXER"]  # compose.yaml: the indexer service's URL
log = logging.getLogger("pypi-appliance")
STATES = policy.Watched(policy.status_path("/data"), policy.read_statuses)  # compose.yaml mounts DATA_DIR/policy
# passlib 1.7.4 reads bcrypt's version from bcrypt.__about__, which bcrypt 4
# removed, and logs a traceback on every start that hides real errors: the
# backend works (the checker and the helper silence it the same way).
logging.getLogger("passlib").setLevel(logging.ERROR)


def refresh():
    """Ask the indexer for a pass over the packages dir: what it found invalid,
    or None when it did not answer."""
    request = urllib.request.Request(
        f"{INDEXER}/refresh", data=b"", method="POST", headers={internal.HEADER: internal.key().decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=REFRESH_SECONDS + 10) as response:
            return json.load(response).get("invalid", {})
    except (OSError, ValueError) as err:
        log.warning("the indexer did not answer (%s)", err)
        return None


def refused(status: int, name: str, why: str) -> HTTPError:
    """A refused upload: in the audit log, and why for the client, in the
    body and, as PyPI does, in the status line's reason, which twine prints."""
    audit.record("upload-refused", **who(), file=name, status=status, why=why)
    reason = "".join(c if " " <= c <= "~" else "?" for c in why)[:400]
    return HTTPError(f"{status} {reason}", why)


# What the front door says of the sender (nginx.conf: proxy_set_header).
ACCOUNT, PROJECTS = "HTTP_X_APPLIANCE_USER", "HTTP_X_APPLIANCE_PROJECTS"


def uploaded_projects(name: str) -> list[str]:
    """The project the form names and the one the file's name does (a client may send either)."""
    return sorted({normalize(request.forms.get("name") or ""), project_of(name)} - {""})


def check_scope(name: str) -> None:
    """The account may publish the project: its scope covers the name, a new name too."""
    account = request.environ.get(ACCOUNT, "")
    if not account:
        raise refused(403, name, f"{name} was not stored: the front door named no account for this upload")
    scope = request.environ.get(PROJECTS, "")
    try:
        patterns = credentials.parse_scope(scope)
    except ValueError:
        patterns = ()
    for project in uploaded_projects(name):
        if credentials.covers(patterns, project):
            continue
        if account.startswith(credentials.ACCOUNT_PREFIX):
            fix = "upload it with a token whose --projects cover it (pypi-appliance token create)"
        else:
            fix = f"an admin can widen it with: pypi-appliance user scope {account} '{scope},{project}'"
        raise refused(
            403,
            name,
            f"{name} was not stored: {account} may publish only {scope or 'no project'}, not {project}; {fix}",
        )


def check_locked(name: str) -> None:
    """An archived or quarantined name (PEP 792), or one reserved so, takes no upload, whoever sends it."""
    try:
        states = STATES.get()
    except policy.UNREADABLE as err:
        raise refused(503, name, f"{name} was not stored: the project states cannot be read ({err})") from None
    for project in uploaded_projects(name):
        state = states.get(project, {})
        if state.get("status") in policy.LOCKED:
            reason = f" ({state['reason']})" if state.get("reason") else ""
            raise refused(
                403,
                name,
                f"{name} was not stored: {project} is {state['status']} on this index{reason}, and takes no "
                f"uploads; an admin can change that with: pypi-appliance project-status {project} active",
            )


def write_file(fh, destination):
    """pypiserver.backend.write_file, made atomic, with a clear answer for a full disk."""
    destination = str(destination)
    directory, name = os.path.split(destination)
    check_scope(name)
    check_locked(name)
    provenance = kept_attestations(fh, name)
    tmp = os.path.join(directory, f"{UPLOAD_PREFIX}{os.getpid()}-{id(fh)}-{name}")
    offset = fh.tell()
    placed = linked = False
    try:
        with open(tmp, "xb") as dest:
            shutil.copyfileobj(fh, dest, 2**20)
            dest.flush()
            os.fsync(dest.fileno())
        os.chmod(tmp, 0o644)
        # Before the file: the pass that lists it finds its provenance.
        placed = provenance is not None and place_provenance(destination, provenance)
        # link, not rename: a file that appeared meanwhile is never replaced.
        os.link(tmp, destination)
        linked = True
    except FileExistsError:
        raise refused(409, name, f"Package '{name}' already exists!") from None
    except OSError as err:
        if err.errno in (28, 122):  # ENOSPC, EDQUOT
            log.error("refused %s: no space left on the data dir", name)
            raise refused(
                507,
                name,
                f"{name} was not stored: no space left on the appliance's data dir. "
                "Nothing was kept; free space there and upload again.",
            ) from None
        raise
    finally:
        fh.seek(offset)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if placed and not linked:
            unlink_quietly(destination + attestations.SUFFIX)
    # Listed, or gone: a file the index has not checked (a bomb, say) is not kept.
    invalid = refresh()
    rel = os.path.relpath(destination, PACKAGES)
    if invalid is None or rel in invalid:
        os.unlink(destination)
        unlink_quietly(destination + attestations.SUFFIX)
        refresh()
        if invalid is None:
            raise refused(
                503,
                name,
                f"{name} was not stored: the index did not check it within {REFRESH_SECONDS} s. "
                "Nothing was kept; upload it again (pypi-appliance status shows the indexer).",
            )
        raise refused(400, name, f"{name} was not stored: {invalid[rel]}")
    extra = {"attestations": provenance_count} if (provenance_count := attestations.count(provenance)) else {}
    audit.record("upload", **who(), file=rel, size=os.path.getsize(destination), **extra)


def place_provenance(destination: str, provenance: bytes) -> bool:
    """The file's provenance beside where it goes, never replacing another
    file's: True once it is there. One left by an upload cut short (its file
    never came) is replaced."""
    path = destination + attestations.SUFFIX
    tmp = os.path.join(os.path.dirname(path), f"{UPLOAD_PREFIX}{os.getpid()}-{id(provenance)}-provenance")
    try:
        with open(tmp, "xb") as f:
            f.write(provenance)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if os.path.lexists(destination):
                raise
            os.replace(tmp, path)
        return True
    finally:
        unlink_quietly(tmp)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def kept_attestations(fh, name: str) -> bytes | None:
    """The provenance object (PEP 740) of the attestations sent with the file,
    or None without any; attestations that do not fit the file refuse it."""
    text = request.forms.get("attestations")
    if not text:
        return None
    try:
        return attestations.provenance(
            text, name, sha256(fh), {"kind": "pypi-appliance", "claims": {"account": who()["account"]}}
        )
    except ValueError as err:
        raise refused(400, name, f"{name} was not stored: its attestations {err}") from None


def who():
    """The audit fields of the request's sender: its address and account."""
    return {
        "client": request.environ.get("HTTP_X_REAL_IP", request.remote_addr),
        "account": request.environ.get(ACCOUNT, ""),
    }


def sha256(fh):
    """The whole file's digest; the file object is left where it was."""
    offset = fh.tell()
    fh.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(2**20), b""):
        digest.update(block)
    fh.seek(offset)
    return digest.hexdigest()


def exists(self, filename):
    """pypiserver's check for a re-upload walks and stats the whole packages dir
    (a second at 100,000 files, on every upload); the name at the top, where
    uploads go, is what can clash (link() above refuses it atomically too).

    The same bytes again (a CI job run twice: twine 6.2 has no --skip-existing
    for other indexes) answer 200 and change nothing, as pypi.org does; other
    bytes under the name are refused as before."""
    check_scope(filename)  # before a clash: an account learns nothing of others' names
    check_locked(filename)  # a locked name says so first
    path = next((p for p in (os.path.join(str(root), filename) for root in self.roots) if os.path.lexists(p)), None)
    if path is None:
        return False
    upload = request.files.get("content")
    if upload is not None and upload.raw_filename == filename:
        with open(path, "rb") as stored:
            same = sha256(stored) == sha256(upload.file)
        if same:
            rel = os.path.relpath(path, PACKAGES)
            audit.record("upload-identical", **who(), file=rel)
            raise HTTPResponse(
                f"{filename} is already on this index with these contents; nothing changed\n",
                status=200,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
    audit.record("upload-refused", **who(), file=filename, status=409, why="exists with other contents")
    return True


def refuse_removal(self, *args):
    """pypiserver's remove_pkg form action would let any publish account remove
    any project's files, unaudited: removal is the helper's, on the host. Its
    first step (find_version, which nothing else calls) and the removal itself
    refuse. (The app exists before this file is read: pypi-server starts
    gunicorn; the backend is shared, the _app module is not.)"""
    raise HTTPError(
        403,
        "Removing files through the index is turned off: an admin removes them on the host with "
        "'pypi-appliance remove NAME==VERSION' (asked, audited).",
    )


def guarded(self, environ, start_response):
    """Only the front door (and the container itself) may ask pypiserver:
    it serves every package without asking for a password (see internal)."""
    if internal.allowed(
        environ.get("HTTP_" + internal.HEADER.upper().replace("-", "_")), environ.get("REMOTE_ADDR", "")
    ):
        return serve(self, environ, start_response)
    start_response(
        "403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(internal.REFUSAL)))]
    )
    return [internal.REFUSAL]


def remove_cut_short() -> None:
    """Nothing is being uploaded while the server starts: what a restart cut
    short goes (a provenance whose file never came with it)."""
    for name in os.listdir(PACKAGES):
        path = os.path.join(PACKAGES, name)
        if name.startswith(UPLOAD_PREFIX) or (
            name.endswith(attestations.SUFFIX) and not os.path.lexists(path[: -len(attestations.SUFFIX)])
        ):
            os.unlink(path)
            log.warning("removed %s, an upload cut short by a restart", name)


serve = Bottle.__call__
# What install() replaces: (owner, name, the appliance's version).
PATCHES = (
    (Bottle, "__call__", guarded),  # the app exists already (see refuse_removal): its class is shared
    (pypiserver.backend, "write_file", write_file),
    (pypiserver.backend.SimpleFileBackend, "exists", exists),
    (pypiserver.backend.BackendProxy, "find_version", refuse_removal),
    (pypiserver.backend.BackendProxy, "remove_package", refuse_removal),
)


def install() -> None:
    """Patch pypiserver in place. A pypiserver whose names moved fails the
    start loudly here, not quietly at the first upload."""
    missing = [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name, _ in PATCHES if not hasattr(owner, name)]
    if missing:
        raise RuntimeError(f"this pypiserver lacks {', '.join(missing)}: the appliance's hooks do not fit it")
    remove_cut_short()
    for owner, name, replacement in PATCHES:
        setattr(owner, name, replacement)
