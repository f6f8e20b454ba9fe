"""The service, its containers and its health, for people and for monitoring."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time

from pypi_appliance.admin import images
from pypi_appliance.admin.compose import compose
from pypi_appliance.admin.host import host_addresses, host_name, index_url, probe, run
from pypi_appliance.admin.settings import BUILD, PACKAGE, NeedsRoot, Settings
from pypi_appliance.admin.tls import tls_state
from pypi_appliance.core import audit
from pypi_appliance.core.fsutil import walk_packages
from pypi_appliance.core.names import project_of


def docker_denied(errors):
    return any("permission denied" in e.lower() for e in errors)


def containers():
    """The appliance's containers, or why Docker could not list them."""
    errors = []
    code, ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PACKAGE}"], errors)
    if code == 0 and ids:
        code, out = run(["docker", "inspect", *ids.split()], errors)
    if code != 0:
        if docker_denied(errors):
            return "permission denied on Docker's socket: run as root (or as a member of the docker group)"
        return "docker is not answering" + (f" ({errors[-1].splitlines()[-1]})" if errors else "")
    if not ids:
        return []
    result = []
    for c in json.loads(out):
        state = c["State"]
        result.append(
            {
                "name": c["Name"].lstrip("/"),
                # Its compose service (compose's label), by which status asks it.
                "service": (c["Config"].get("Labels") or {}).get("com.docker.compose.service"),
                "state": state["Status"],
                "health": state.get("Health", {}).get("Status", "none"),
            }
        )
    return result


def health(conf: Settings):
    status, _, detail = probe(conf, "/health")
    return status == 200, detail


def package_stats(conf: Settings):
    """Files, projects (by file name: opening each would cost too much) and bytes in the packages dir."""
    directory = os.path.join(conf.data_dir, "packages")
    try:
        files, _ = walk_packages(directory)
    except PermissionError:  # a user who may not read it (0750): status goes on without the count
        return 0, 0, 0
    projects = {project_of(os.path.basename(name)) for name in files}
    size = 0
    for name in files:
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
            size += os.path.getsize(os.path.join(directory, name))
    return len(files), len(projects), size


def index_state(conf: Settings):
    """What the indexer said after its last pass (DATA_DIR/index/status.json)."""
    try:
        with open(os.path.join(conf.data_dir, "index", "status.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ask_service(found, service: str, path: str, timeout: int):
    """The JSON a compose service's internal endpoint answers (an error
    status's body too), asked from inside its running container (of found,
    what containers() listed) with its own Python, on the port the build gave
    it; None when it does not answer."""
    running = [c["name"] for c in found if c["service"] == service and c["state"] == "running"]
    if not running:
        return None
    port = BUILD["services"][service]["port"]
    code, out = run(
        [
            "docker",
            "exec",
            running[0],
            "python",
            "-c",
            "import sys, urllib.request as u, urllib.error as e\n"
            "try: print(u.urlopen(sys.argv[1], timeout=int(sys.argv[2])).read().decode())\n"
            "except e.HTTPError as err: print(err.read().decode())",
            f"http://127.0.0.1:{port}{path}",
            str(timeout),
        ]
    )
    try:
        return json.loads(out) if code == 0 else None
    except ValueError:
        return None


def throttled(found):
    """What the credential checker throttles now (None: it did not answer)."""
    return ask_service(found, "auth", "/throttled", 4) if isinstance(found, list) else None


def upstream_reach(conf: Settings, found):
    """(reachable, why) of the upstream, asked of the upstream service; None
    when there is no upstream."""
    if not conf.upstream:
        return None
    answer = ask_service(found, "upstream", "/reach", 9) if isinstance(found, list) else None
    if answer is None:
        return False, "the upstream service did not answer"
    return answer["ok"], answer["why"]


def describe_throttled(found):
    if found is None:
        return "unknown (the credential checker did not answer)"
    if not found:
        return "nothing"

    def one(t):
        if t.get("slowed"):
            return f"{t['client']} slowed for every account ({t['seconds_left']} s left)"
        return f"{t['client']} for {audit.value(t['account'])} ({t['seconds_left']} s left)"

    return ", ".join(one(t) for t in found)


# Below this much free space uploads may soon be refused (507).
LOW_SPACE_BYTES = 2**30


def space_warning(disk):
    if disk and disk.free < max(LOW_SPACE_BYTES, disk.total // 20):
        return (
            f"only {disk.free / 2**20:.0f} MiB free on the data dir: large uploads will be refused "
            "(507, nothing is kept) until space is freed"
        )
    return None


def describe_tls(state):
    if state["mode"] == "off":
        return "off (plain HTTP)"
    if "expires" not in state:
        return f"{state['mode']}, {state['certificate']} unreadable"
    text = f"{state['mode']}, certificate valid until {state['expires'][:10]}"
    if "ca" in state:
        text += f"\n{'':12}CA {state['ca']}\n{'':12}SHA-256 {state['ca_fingerprint']}"
    return text


# Containers get this long after the service starts before a failing health
# check means more than "still starting".
STARTING_SECONDS = 60


def service_state():
    """The unit's state, seconds since it was started (None when not running), and
    whether its last start gave up on its images."""
    _, out = run(
        [
            "systemctl",
            "show",
            f"{PACKAGE}.service",
            "-p",
            "ActiveState",
            "-p",
            "ExecMainStartTimestampMonotonic",
            "-p",
            "ExecMainStatus",
        ]
    )
    props = dict(line.partition("=")[::2] for line in out.splitlines())
    started = int(props.get("ExecMainStartTimestampMonotonic") or 0)
    age = time.monotonic() - started / 1e6 if started else None
    gave_up_on_images = props.get("ExecMainStatus") == str(images.IMAGES["gave_up_status"])
    return props.get("ActiveState") or "unknown", age, gave_up_on_images


# The unit restarts always; it stays "failed" only when systemd stopped retrying
# (its start limit; systemd 257 keeps the last failure as the Result), or when
# the start gave up on its images (images.ensure).
GAVE_UP = (
    f"the service gave up after failing to start again and again; 'journalctl -u {PACKAGE}' "
    f"says why. Once fixed: systemctl reset-failed {PACKAGE} && systemctl start {PACKAGE}"
)


def starting(service, age, found):
    """Whether a failing health check is the service still coming up."""
    if service in ("activating", "reloading"):
        return True
    if service != "active":
        return False
    if isinstance(found, list) and any(c["health"] == "starting" or c["state"] == "created" for c in found):
        return True
    return age is not None and age < STARTING_SECONDS


ACCESS_TEXT = {
    "private": "private: listing and downloads need a password",
    "public-read": "public-read: anyone may list and download; uploads need a password",
}


# Exit codes: 0 ok, 1 failing, 2 degraded (the index serves its own names, the
# upstream's fail), 3 starting; 4 (not root) comes from the caller.
EXIT = {"ok": 0, "failing": 1, "degraded": 2, "starting": 3}


def cmd_status(args, conf: Settings):
    service, age, gave_up_on_images = service_state()
    healthy, detail = health(conf)
    found = containers()
    unhealthy = [c["name"] for c in found if c["health"] == "unhealthy"] if isinstance(found, list) else []
    coming = isinstance(found, list) and any(c["health"] == "starting" or c["state"] == "created" for c in found)
    reach = upstream_reach(conf, found) if healthy and not unhealthy else None
    if (not healthy and starting(service, age, found)) or (healthy and coming and not unhealthy):
        state = "starting"
        detail = f"starting ({detail}); the containers are coming up, check again in a few seconds"
    elif healthy and unhealthy:
        state = "failing"
        detail = f"{detail}, but {', '.join(unhealthy)} fails its health check; '{PACKAGE} logs' says why"
    elif healthy and reach and not reach[0]:
        state = "degraded"
        detail = (
            f"{detail}, but the upstream fails: {reach[1]}; names this index holds are served, "
            "the upstream's answer 502 unless cached"
        )
    else:
        state = "ok" if healthy else "failing"
        if not healthy and service == "failed":
            why = images.failure() if gave_up_on_images else None
            detail = f"{detail}; " + (f"the service stopped: {why}" if why else GAVE_UP)
    files, projects, used = package_stats(conf)
    # Where uploads go: packages/ may be a file system of its own.
    uploads = next((d for d in (os.path.join(conf.data_dir, "packages"), conf.data_dir) if os.path.isdir(d)), None)
    disk = shutil.disk_usage(uploads) if uploads else None
    report = {
        "version": BUILD["version"],
        "service": service,
        "containers": found if isinstance(found, list) else None,
        "containers_error": found if isinstance(found, str) else None,
        "healthy": healthy,
        "state": state,
        "health": detail,
        "urls": [index_url(conf, h) for h in [host_name(), *host_addresses()]],
        "tls": tls_state(conf),
        "access": conf.access,
        "projects": projects,
        "files": files,
        "data_dir": conf.data_dir,
        "packages_bytes": used,
        "disk_free_bytes": disk.free if disk else None,
        "index": index_state(conf),
        "throttled": throttled(found),
        "publishing": publishing_state(conf),
        "upstream": conf.upstream or None,
        "upstream_reachable": reach[0] if reach else None,
        "images": images.origins(lambda *a: compose(conf, *a)),
    }
    warnings = [w for w in (report["tls"].get("warning"), space_warning(disk)) if w]
    if report["index"] and report["index"]["invalid"]:
        bad = report["index"]["invalid"]
        warnings.append(
            f"{len(bad)} files in the packages dir are not listed: "
            + "; ".join(f"{name}: {why}" for name, why in list(bad.items())[:5])
            + f" ('{PACKAGE} remove FILE' deletes one)"
        )
    report["warnings"] = warnings
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if isinstance(found, str):
            container_text = f"unknown: {found}"
        else:
            container_text = (
                ", ".join(f"{c['name']} {c['state']} ({c['health']})" for c in report["containers"]) or "none"
            )
        rows = [
            ("version", f"{PACKAGE} {report['version']}"),
            ("service", report["service"]),
            ("container", container_text),
            (
                "health",
                {"ok": "ok: ", "failing": "FAILING: ", "degraded": "DEGRADED: ", "starting": ""}[state] + detail,
            ),
            ("url", "\n".ljust(12).join(report["urls"])),
            ("tls", describe_tls(report["tls"])),
            ("access", ACCESS_TEXT.get(conf.access, f"{conf.access} (unknown: the service will not start)")),
            ("packages", f"{plural(files, 'file')} in {plural(projects, 'project')}"),
            (
                "index",
                f"{plural(report['index']['files'], 'file')} listed in "
                f"{plural(report['index']['projects'], 'project')} "
                f"(updated {report['index']['time'][:19].replace('T', ' ')} UTC)"
                + held_text(report["index"].get("held-without-files", []))
                if report["index"]
                else "not made yet (the indexer makes it when the service starts)",
            ),
            ("throttled", describe_throttled(report["throttled"])),
            ("ci", describe_publishing(report["publishing"])),
            (
                "images",
                "\n".ljust(12).join(f"{i['ref']} {i['origin']}" for i in report["images"])
                if report["images"]
                else "unknown (Docker or docker compose did not answer)",
            ),
            (
                "upstream",
                f"{conf.upstream} for names this index does not hold ({PACKAGE} cache shows the cache)"
                if conf.upstream
                else "none: only this index's packages (PYPI_UPSTREAM)",
            ),
            (
                "data dir",
                conf.data_dir
                + (f" ({used / 2**20:.1f} MiB used, {disk.free / 2**30:.1f} GiB free)" if disk else " (missing)"),
            ),
        ]
        rows += [("WARNING", warning) for warning in warnings]
        for key, value in rows:
            print(f"{key:<10}  {value}")
    if isinstance(found, str) and found.startswith("permission denied"):
        raise NeedsRoot(f"cannot see the containers: {found}")
    return EXIT[state]


def publishing_state(conf: Settings) -> dict | None:
    """Tokens that work now, trusted publishers, and whether the token exchange
    answers (never a token); None when the files are not readable (not root)."""
    import socket
    import time

    from pypi_appliance.admin.compose import EXCHANGE_DIR
    from pypi_appliance.admin.oidc import SOCKET_NAME, read_trusts
    from pypi_appliance.core import credentials
    from pypi_appliance.core.policy import UNREADABLE

    try:
        now = time.time()
        tokens = [
            r
            for path in (credentials.tokens_path(conf.data_dir), credentials.minted_path(conf.data_dir))
            for r in credentials.read_tokens(path).values()
            if credentials.state(r, now) == "active"
        ]
        trusts = read_trusts(credentials.trusts_path(conf.data_dir))["trusts"]
    except PermissionError:
        return None
    except UNREADABLE as err:
        return {"error": str(err)}
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(os.path.join(EXCHANGE_DIR, SOCKET_NAME))
            answering = True
        except OSError:
            answering = False
    return {"tokens_active": len(tokens), "trusts": len(trusts), "exchange_answering": answering}


def describe_publishing(state: dict | None) -> str:
    if state is None:
        return "unknown (run as root)"
    if "error" in state:
        return f"the tokens or trusts cannot be read: {state['error']}"
    exchange = "the token exchange answers" if state["exchange_answering"] else "the token exchange is NOT answering"
    return f"{plural(state['tokens_active'], 'token')} active, {plural(state['trusts'], 'trusted publisher')}" + (
        f" ({exchange})" if state["trusts"] else ""
    )


def held_text(names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (
        f"; {plural(len(names), 'name')} with no files still this index's ({shown}): "
        f"'{PACKAGE} release-name NAME' lets the upstream answer for one"
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
