"""make bench: the installed appliance against nginx serving the same files
statically (the anchor) and against the recipe it replaces, all measured in
one run, on one system container, with wrk on 127.0.0.1.

The last line is the headline ratio:
    authenticated-download/static ratio: X.XX
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tests.support import fake_upstream as fake
from tests.support import images
from tests.support.client import FLOODER, preseed
from tests.support.dists import make_wheel
from tests.support.system import System

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROJECTS, FILES_PER_PROJECT = 1_000, 10
# The large index, 100,000 files (0 skips it: BENCH_LARGE_PROJECTS=0 make bench).
LARGE_PROJECTS = int(os.environ.get("BENCH_LARGE_PROJECTS", "10000"))
DURATION = 5  # seconds per wrk run
# ASCII: the recipe cannot serve pip a non-ASCII password (see README).
USER, PASSWORD = "bench", "bench-password"
PIP_PROJECTS = 20
HEADLINE_ROUNDS = 5  # the "in turns" cells, appliance and anchor alternately; medians
PLAIN, HTTPS = "http://127.0.0.1:8080", "https://127.0.0.1:8080"
CA = "/etc/pypi-appliance/tls/ca.crt"
CURL_TLS, PIP_TLS = f"--cacert {CA}", f"--cert {CA}"

# Generates the packages: tiny, valid wheels (the anchor serves the
# appliance's own pages, copied, so both carry the same attributes).
GENERATE = r"""
import io, os, sys, zipfile
packages, projects, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(packages, exist_ok=True)
for p in range(projects):
    name = f"bench-p{p:05d}"
    mod = name.replace("-", "_")
    for v in range(per):
        fn = f"{mod}-1.{v}-py3-none-any.whl"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"{mod}/__init__.py", f"VERSION = '1.{v}'\n" + "#" * 2048 + "\n")
            z.writestr(f"{mod}-1.{v}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.{v}\n")
            z.writestr(f"{mod}-1.{v}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{mod}-1.{v}.dist-info/RECORD", "")
        with open(os.path.join(packages, fn), "wb") as f:
            f.write(buf.getvalue())
"""

# A project that depends on 20 internal packages of 20 MB each (random bytes,
# stored): what metadata files (PEP 658) spare a resolver.
GENERATE_DEPS = r"""
import io, os, sys, zipfile
packages, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def wheel(name, requires, payload):
    mod = name.replace("-", "_")
    with zipfile.ZipFile(os.path.join(packages, f"{mod}-1.0-py3-none-any.whl"), "w") as z:
        z.writestr(f"{mod}/__init__.py", "")
        if payload:
            z.writestr(f"{mod}/payload.bin", os.urandom(payload))
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
        z.writestr(f"{mod}-1.0.dist-info/METADATA", meta)
        z.writestr(f"{mod}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{mod}-1.0.dist-info/RECORD", "")
deps = [f"bench-dep-{n:02d}" for n in range(count)]
for d in deps:
    wheel(d, [], size)
wheel("bench-app", deps, 0)
"""

STATIC_NGINX = """
user nginx;
worker_processes auto;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    default_type application/octet-stream;
    map $http_accept $page {
        default index.html;
        "~*application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
    }
    server {
        listen 8080;
        location = /health { return 200 "ok\\n"; }
        location /packages/ { alias /data/packages/; }
        location ~ ^/packages/(?<file>.+\\.whl)\\.metadata$ { alias /data/static/metadata/$file.metadata; }
        location /simple/ {
            root /data/static;
            types { application/vnd.pypi.simple.v1+json json; text/html html; }
            try_files ${uri}$page =404;
        }
    }
}
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(out: Path, *args: str) -> tuple[Path, float]:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "builder", "build", "--output-dir", str(out), "--build-dir", str(out / "build"), *args],
        check=True,
        capture_output=True,
    )
    return next(out.glob("*.deb")), time.monotonic() - started


def container_pid(system: System, name: str, timeout: float = 120) -> str:
    """The PID of a running container, waiting while it is (re)created."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = system.sh(f"docker inspect -f '{{{{.State.Running}}}} {{{{.State.Pid}}}}' {name}", check=False)
        running, _, pid = out.stdout.strip().partition(" ")
        if running == "true" and pid != "0":
            return pid
        time.sleep(0.5)
    raise TimeoutError(f"container {name} is not running")


def wait_health(system: System, pid: str, base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            system.sh(f"nsenter -t {pid} -n curl -sf {CURL_TLS} -o /dev/null {base}/health", check=False).returncode
            == 0
        ):
            return
        time.sleep(0.5)
    raise TimeoutError("server did not become healthy")


def parse_wrk(out: str) -> dict:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, flags=re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms(latency["50"]) if "50" in latency else None,
        "p99_ms": ms(latency["99"]) if "99" in latency else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "timeouts": int(timeouts.group(1)) if timeouts else 0,
        "raw": out,
    }


def wrk(system: System, pid: str, base: str, path: str, concurrency: int, auth: bool, accept: str = "") -> dict:
    header = f"-H 'Accept: {accept}'" if accept else ""
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        header += f" -H 'Authorization: Basic {token}'"
    threads = min(concurrency, 2)
    out = system.sh(
        f"nsenter -t {pid} -n wrk -t{threads} -c{concurrency} -d{DURATION}s --timeout 30s "
        f"--latency {header} {base}{path}",
        timeout=DURATION + 60,
    ).stdout
    return parse_wrk(out)


def pip_download(
    system: System,
    pid: str | None,
    base: str,
    auth: bool,
    names: list[str] | None = None,
    path: str = "/simple/",
    trusted: tuple[str, ...] = (),
) -> float:
    """Seconds for pip to download names (the bench's 20 projects) from base,
    in the network namespace of pid (None: the system's own)."""
    credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@" if auth else ""
    scheme, _, host = base.partition("://")
    # pip 24.2+ cannot verify HTTPS to an IP address (pypa/pip#12906); the certificate covers localhost.
    host = host.replace("127.0.0.1", "localhost") if scheme == "https" else host
    names = names or [f"bench-p{p:05d}" for p in range(PIP_PROJECTS)]
    inside = f"nsenter -t {pid} -n " if pid else ""
    trust = "".join(f" --trusted-host {host}" for host in trusted)
    started = time.monotonic()
    system.sh(
        f"rm -rf /tmp/dl && {inside}env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/dev/null "
        f"python3 -m pip download -q --no-deps --no-cache-dir -d /tmp/dl {PIP_TLS if scheme == 'https' else ''}{trust} "
        f"--index-url {scheme}://{credentials}{host}{path} {' '.join(names)}",
        timeout=600,
    )
    seconds = time.monotonic() - started
    count = int(system.sh("ls /tmp/dl | wc -l").stdout)
    assert count == len(names), f"pip downloaded {count} files, expected {len(names)}"
    return seconds


JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


def paths(projects: int) -> dict:
    """Each cell's (path, Accept header): a project and a file in the middle of the index."""
    middle = projects // 2
    return {
        "/simple/": ("/simple/", ""),
        "/simple/<project>/": (f"/simple/bench-p{middle:05d}/", ""),
        "/simple/<project>/ JSON": (f"/simple/bench-p{middle:05d}/", JSON_ACCEPT),
        "/packages/<file>": (f"/packages/bench_p{middle:05d}-1.5-py3-none-any.whl", ""),
    }


def measure(
    system: System,
    label: str,
    container: str,
    auth: bool,
    restart: str,
    projects: int,
    base: str = PLAIN,
    cells=(1, 16),
) -> dict:
    pid = container_pid(system, container)
    wait_health(system, pid, base)
    result = {"label": label, "wrk": {}}
    for name, (path, accept) in paths(projects).items():
        for concurrency in cells:
            system.sh(
                f"nsenter -t {pid} -n curl -sf {CURL_TLS} -o /dev/null "
                + (f"-u '{USER}:{PASSWORD}' " if auth else "")
                + f"{base}{path}"
            )
            figures = wrk(system, pid, base, path, concurrency, auth, accept)
            result["wrk"][f"{name} c={concurrency}"] = figures
            log(
                f"  {label:<28} {name:<24} c={concurrency:<3} {figures['rps']:>10.1f} req/s "
                f"p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms non-2xx {figures['non_2xx']}"
            )
    # Cold: the first pip after a restart; warm: the next one; then again after
    # another project got a new file, as an upload, a restore or an rsync does.
    system.sh(restart)
    pid = container_pid(system, container)
    wait_health(system, pid, base)
    result["pip_download_s"] = pip_download(system, pid, base, auth)
    result["pip_download_warm_s"] = pip_download(system, pid, base, auth)
    last = projects - 1
    new = f"/srv/pypi/packages/bench_p{last:05d}-{time.time_ns()}.0-py3-none-any.whl"
    system.sh(f"cp /srv/pypi/packages/bench_p{last:05d}-1.0-py3-none-any.whl {new} && chown 9898:9898 {new}")
    result["pip_download_changed_s"] = pip_download(system, pid, base, auth)
    log(
        f"  {label:<28} pip download of {PIP_PROJECTS} projects: {result['pip_download_s']:.2f} s cold, "
        f"{result['pip_download_warm_s']:.2f} s warm, {result['pip_download_changed_s']:.2f} s after a change"
    )
    return result


def take_turns(system: System, app_pid: str, static_pid: str, projects: int) -> dict:
    """The headline cells at c=16, from the appliance (plain HTTP,
    authenticated) and the anchor in turns: a noisy moment hits both."""
    result = {}
    for cell in ("/packages/<file>", "/simple/<project>/", "/simple/<project>/ JSON"):
        path, accept = paths(projects)[cell]
        app, static = [], []
        for _ in range(HEADLINE_ROUNDS):
            static.append(wrk(system, static_pid, PLAIN, path, 16, auth=False, accept=accept)["rps"])
            app.append(wrk(system, app_pid, PLAIN, path, 16, auth=True, accept=accept)["rps"])
        log(f"  in turns, {cell}: appliance {app} static {static} req/s")
        result[cell] = {
            "appliance_rps": app,
            "static_rps": static,
            "ratio": statistics.median(app) / statistics.median(static),
        }
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# Shared by the in-container scripts below: a legacy-API upload's body of a
# tiny wheel of PROJECT at VERSION, its file name and content type.
UPLOAD_BODY = r"""
import io, zipfile
def upload_body(project, version):
    module = project.replace("-", "_")
    name = f"{module}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        z.writestr(f"{module}-{version}.dist-info/METADATA", metadata)
    bd = "benchboundary"
    body = (f'--{bd}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f'--{bd}\r\nContent-Disposition: form-data; name="content"; filename="{name}"\r\n\r\n').encode()
    return name, body + buf.getvalue() + f"\r\n--{bd}--\r\n".encode(), f"multipart/form-data; boundary={bd}"
"""

# Uploads through the front door, each followed at once by the page: the
# response waits for the listing, so the page must always have the file.
UPLOAD_PROBE = r"""
import base64, http.client, io, json, sys, time, zipfile
count, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
upload_s, listed = [], 0
stamp = time.time_ns()
for n in range(count):
    name, body, content_type = upload_body("bench-upload", f"{stamp}.{n}")
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=60)
    started = time.monotonic()
    c.request("POST", "/", body, {"Authorization": auth, "Content-Type": content_type})
    r = c.getresponse(); r.read()
    upload_s.append(time.monotonic() - started)
    assert r.status == 200, r.status
    c.request("GET", "/simple/bench-upload/", headers={"Authorization": auth})
    page = c.getresponse().read().decode()
    listed += name in page
print(json.dumps({"upload_s": upload_s, "listed_next_request": listed, "count": count}))
"""

COPY_PROBE = r"""
import json, os, shutil, sys, time, urllib.request, base64
count, user, password, source = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
seen = []
for n in range(count):
    name = f"bench_p00000-{time.time_ns()}.0-py3-none-any.whl"
    tmp = f"/srv/pypi/packages/.copy-{name}"
    shutil.copy(source, tmp); os.chown(tmp, 9898, 9898)
    os.rename(tmp, f"/srv/pypi/packages/{name}")
    started = time.monotonic()
    while time.monotonic() - started < 10:
        req = urllib.request.Request("http://127.0.0.1:8080/simple/bench-p00000/", headers={"Authorization": auth})
        if name in urllib.request.urlopen(req).read().decode():
            break
        time.sleep(0.01)
    seen.append(time.monotonic() - started)
print(json.dumps({"copy_listed_s": seen}))
"""


def freshness(system: System, pid: str) -> dict:
    """Upload response times (each checked listed by the next request), the
    time until a file copied in is listed, and a full reindex."""
    system.put("/root/upload-probe.py", (UPLOAD_BODY + UPLOAD_PROBE).encode())
    system.put("/root/copy-probe.py", COPY_PROBE.encode())
    up = json.loads(
        system.sh(f"nsenter -t {pid} -n python3 /root/upload-probe.py 50 {USER} {PASSWORD}", timeout=600).stdout
    )
    assert up["listed_next_request"] == up["count"], up
    copy = json.loads(
        system.sh(
            f"nsenter -t {pid} -n python3 /root/copy-probe.py 20 {USER} {PASSWORD} "
            "/srv/pypi/packages/bench_p00000-1.0-py3-none-any.whl",
            timeout=600,
        ).stdout
    )
    started = time.monotonic()
    system.sh("pypi-appliance reindex", timeout=3600)
    reindex_s = time.monotonic() - started
    result = {
        "upload_p50_s": percentile(up["upload_s"], 0.5),
        "upload_p99_s": percentile(up["upload_s"], 0.99),
        "listed_next_request": f"{up['listed_next_request']}/{up['count']}",
        "copy_p50_s": percentile(copy["copy_listed_s"], 0.5),
        "copy_p99_s": percentile(copy["copy_listed_s"], 0.99),
        "reindex_s": reindex_s,
    }
    log(f"  freshness: {result}")
    return result


# A client that does not guess, from an address of its own: per round, the
# first request of an account never checked before (a bcrypt check), and an
# upload by the admin (whose credential is known good).
LEGIT_PROBE = r"""
import base64, http.client, json, sys, time
target, source, user, password = sys.argv[1], sys.argv[2], sys.argv[5], sys.argv[6]
first, count = int(sys.argv[3]), int(sys.argv[4])
basic = lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()
page_s, upload_s = [], []
for n in range(first, first + count):
    c = http.client.HTTPConnection(target, 8080, source_address=(source, 0), timeout=60)
    started = time.monotonic()
    c.request("GET", "/simple/bench-p00000/", headers={"Authorization": basic(f"fresh{n:02d}", f"fresh-password-{n}")})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    page_s.append(time.monotonic() - started)
    _, body, content_type = upload_body("bench-flood", f"{time.time_ns()}.{n}")
    started = time.monotonic()
    c.request("POST", "/", body, {"Authorization": basic(user, password), "Content-Type": content_type})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    upload_s.append(time.monotonic() - started)
print(json.dumps({"page_s": page_s, "upload_s": upload_s}))
"""

FLOOD_ADDRESSES = [f"198.18.0.{n}" for n in range(1, 17)]
GUESSER, LEGIT = "198.18.1.1", "198.18.2.1"
FLOOD_ROUNDS = 20


def flood_case(system: System) -> dict:
    """Upload and uncached-page latency with and without 16 addresses sending
    wrong passwords (one connection each), and the guesses a single address
    on 16 connections gets checked. Clients reach the published port on the
    system's own address from addresses of their own (extra ones on eth0)."""
    target = system.sh("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1 | head -1").stdout.strip()
    for address in [*FLOOD_ADDRESSES, GUESSER, LEGIT]:
        system.sh(f"ip addr add {address}/32 dev eth0 2>/dev/null || true")
    for n in range(2 * FLOOD_ROUNDS):
        system.sh(f"pypi-appliance user add --password-stdin fresh{n:02d} 2>/dev/null", input=f"fresh-password-{n}\n")
    system.put("/root/legit-probe.py", (UPLOAD_BODY + LEGIT_PROBE).encode())
    system.put("/root/flood.py", FLOODER.encode())

    def legit(first):
        out = system.sh(
            f"python3 /root/legit-probe.py {target} {LEGIT} {first} {FLOOD_ROUNDS} {USER} {PASSWORD}", timeout=600
        ).stdout
        return json.loads(out)

    def figures(run):
        return {f"{k[:-2]}_p{q}_s": percentile(run[k], q / 100) for k in ("page_s", "upload_s") for q in (50, 99)}

    quiet = figures(legit(0))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(
            system.sh, f"python3 /root/flood.py http {target} 8080 20 1 {' '.join(FLOOD_ADDRESSES)}", timeout=300
        )
        time.sleep(2)
        loud = figures(legit(FLOOD_ROUNDS))
        flood = json.loads(flooding.result().stdout)
    single = json.loads(system.sh(f"python3 /root/flood.py http {target} 8080 30 16 {GUESSER}", timeout=300).stdout)
    for n in range(2 * FLOOD_ROUNDS):
        system.sh(f"pypi-appliance user remove fresh{n:02d} 2>/dev/null", check=False)
    system.sh("rm -f /srv/pypi/packages/bench_flood-*")
    result = {
        "quiet": quiet,
        "flood": loud,
        "flood_counts": flood,
        "single_address_checked_per_s": single.get("401", 0) / single["seconds"],
        "single_address_answered_per_s": (single.get("401", 0) + single.get("429", 0)) / single["seconds"],
        "single_counts": single,
    }
    log(f"  flood: {result}")
    return result


# 16 CI clients at once, each with a credential of its own: its first request
# (not cached by the front door: a check by the checker) and then repeated
# ones for a few seconds (cached), over plain HTTP on the published port.
CI_CLIENT = r"""
import base64, http.client, json, sys, threading, time
target, seconds, creds = sys.argv[1], float(sys.argv[2]), json.load(sys.stdin)
first, counts, start = [], [], threading.Barrier(len(creds))
def client(user, password):
    header = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    c = http.client.HTTPConnection(target, 8080, timeout=60)
    start.wait()
    t = time.monotonic()
    c.request("GET", "/simple/bench-p00000/", headers=header); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    first.append(time.monotonic() - t)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("GET", "/simple/bench-p00000/", headers=header); r = c.getresponse(); r.read(); n += 1
    counts.append(n)
threads = [threading.Thread(target=client, args=pair) for pair in creds]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"first_s": sorted(first), "repeated_per_s": sum(counts) / seconds}))
"""
CI_CLIENTS = 16


def token_case(system: System) -> dict:
    """The CI cell: 16 clients with passwords (bcrypt once each) against 16 with tokens (a keyed hash)."""
    target = system.sh("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1 | head -1").stdout.strip()
    system.put("/root/ci-client.py", CI_CLIENT.encode())
    passwords = []
    for n in range(CI_CLIENTS):
        system.sh(f"pypi-appliance user add --password-stdin ci{n:02d} 2>/dev/null", input=f"ci-password-{n}\n")
        passwords.append([f"ci{n:02d}", f"ci-password-{n}"])
    tokens = [
        [
            "__token__",
            system.sh(f"pypi-appliance token create --expires 1h --name ci-token-{n:02d} 2>/dev/null").stdout.strip(),
        ]
        for n in range(CI_CLIENTS)
    ]
    result = {}
    for kind, creds in (("password", passwords), ("token", tokens)):
        out = json.loads(
            system.sh(f"python3 /root/ci-client.py {target} 5", input=json.dumps(creds), timeout=300).stdout
        )
        result[kind] = {
            "first_p50_s": percentile(out["first_s"], 0.5),
            "first_max_s": max(out["first_s"]),
            "repeated_per_s": out["repeated_per_s"],
        }
    for n in range(CI_CLIENTS):
        system.sh(f"pypi-appliance user remove ci{n:02d} 2>/dev/null", check=False)
    system.sh("pypi-appliance token revoke " + " ".join(f"ci-token-{n:02d}" for n in range(CI_CLIENTS)), check=False)
    log(f"  ci credentials: {result}")
    return result


UPSTREAM_WHEEL_BYTES = 256 * 1024
UPSTREAM_ROUNDS = 3


def upstream_case(system: System, nginx_ref: str, scratch: Path) -> dict:
    """pip download of 20 projects only the upstream has (256 KiB wheels, each
    with a PEP 700 upload time a month old): through the appliance cold (cache
    just cleared) and warm (all cached), without and with a cooldown
    (PYPI_UPSTREAM_MIN_AGE=7d: every page and file decided by its upload time),
    and straight from the upstream, in turns; medians."""
    names = [f"up-bench-{n:02d}" for n in range(PIP_PROJECTS)]
    month_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 30 * 86400))
    tree: dict[str, bytes] = {}
    for name in names:
        wheel = make_wheel(scratch, "1.0", project=name, payload=UPSTREAM_WHEEL_BYTES)
        fake.add_project(tree, name, {wheel.name: wheel.read_bytes()}, uploaded={wheel.name: month_ago})
    fake.start(system, tree, nginx_ref)

    def configure(min_age: str) -> None:
        fake.restarting(
            system,
            lambda: system.sh(
                f"pypi-appliance write-config PYPI_UPSTREAM={fake.INDEX} PYPI_UPSTREAM_MIN_AGE={min_age} "
                f"PYPI_UPSTREAM_FILE_HOSTS={fake.FILE_HOST} && "
                "systemctl restart pypi-appliance"
            ),
        )
        system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)

    configure("0")
    # The system itself reaches the upstream on its own network (the direct runs).
    address = system.sh(
        f"docker inspect -f '{{{{(index .NetworkSettings.Networks \"{fake.NAME}\").IPAddress}}}}' {fake.NAME}"
    ).stdout.strip()
    system.sh(f"cp /etc/hosts /root/hosts.orig && echo '{address} {' '.join(fake.HOSTS)}' >> /etc/hosts")
    rows: dict[str, list[float]] = {"cold": [], "warm": [], "direct": [], "cooldown_cold": [], "cooldown_warm": []}
    try:
        for min_age, prefix in (("0", ""), ("7d", "cooldown_")):
            if min_age != "0":
                configure(min_age)
            for _ in range(UPSTREAM_ROUNDS):
                system.sh("pypi-appliance cache clear")
                proxy = container_pid(system, "pypi-appliance-proxy-1")
                rows[f"{prefix}cold"].append(pip_download(system, proxy, PLAIN, True, names))
                rows[f"{prefix}warm"].append(pip_download(system, proxy, PLAIN, True, names))
                if not prefix:
                    rows["direct"].append(
                        pip_download(system, None, "http://index.upstream.test", False, names, trusted=fake.HOSTS)
                    )
    finally:
        system.sh("cp /root/hosts.orig /etc/hosts")
        fake.restarting(
            system,
            lambda: system.sh(
                "pypi-appliance write-config PYPI_UPSTREAM= PYPI_UPSTREAM_MIN_AGE=0 && systemctl restart pypi-appliance"
            ),
        )
        fake.stop(system)
        system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
    out = {key: statistics.median(values) for key, values in rows.items()}
    out["runs"] = rows
    log(
        f"  upstream: cold {out['cold']:.2f} s, warm {out['warm']:.2f} s, direct {out['direct']:.2f} s; "
        f"with a cooldown cold {out['cooldown_cold']:.2f} s, warm {out['cooldown_warm']:.2f} s"
    )
    return out


def lo_bytes(system: System, pid: str) -> int:
    """Bytes sent on loopback in a network namespace (client and server both run there)."""
    dev = system.sh(f"nsenter -t {pid} -n cat /proc/net/dev").stdout
    line = next(line for line in dev.splitlines() if line.strip().startswith("lo:"))
    return int(line.split(":", 1)[1].split()[8])


def resolution(system: System, proxy_pid: str, pypiserver_pid: str) -> list[dict]:
    """pip (--dry-run --report; Debian 13's and the newest, which no longer
    downloads what metadata files describe, pypa/pip#13482) and uv resolving
    bench-app's 20 dependencies of 20 MB each, through the appliance (metadata
    files) and from pypiserver's own pages (no metadata: every wheel is read)."""
    system.sh("install -m 0755 /root/uv /usr/local/bin/uv")
    system.put("/root/pip.whl", images.newest_pip().read_bytes())
    pips = {}
    for pip in ("python3 -m pip", "python3 /root/pip.whl/pip"):
        version = system.sh(f"{pip} --version").stdout.split()[1]
        pips[f"pip {version} install --dry-run --report"] = (
            f"env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/dev/null {pip} install -q --dry-run "
            "--ignore-installed --no-cache-dir --report /tmp/report.json --index-url {url} bench-app"
        )
    credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@"
    url = f"http://{credentials}127.0.0.1:8080/simple/"
    rows = []
    for where, pid in (("appliance (metadata files)", proxy_pid), ("pypiserver's own pages", pypiserver_pid)):
        tools = {
            **pips,
            "uv pip compile": "sh -c 'echo bench-app | uv pip compile --no-cache --no-config -q --index-url {url} -'",
        }
        for tool, command in tools.items():
            before = lo_bytes(system, pid)
            started = time.monotonic()
            system.sh(f"nsenter -t {pid} -n {command.format(url=url)} >/dev/null", timeout=900)
            seconds = time.monotonic() - started
            sent = lo_bytes(system, pid) - before
            rows.append({"where": where, "tool": tool, "seconds": seconds, "bytes": sent})
            log(f"  resolution: {where:<28} {tool:<44} {seconds:6.2f} s {sent / 2**20:8.1f} MiB")
    return rows


def report(results: dict) -> None:
    for scale in results["scales"]:
        configs = scale["configurations"]
        print(f"\n{scale['files']} files in {scale['projects']} projects, wrk {DURATION} s per cell, req/s (p99 ms)")
        head = (
            f"{'configuration':<28}"
            + "".join(f"{k:>30}" for k in configs[0]["wrk"])
            + f"{'pip cold (s)':>14}{'pip warm (s)':>14}{'pip changed (s)':>17}"
        )
        print(head)
        for c in configs:
            cells = "".join(
                f"{c['wrk'][k]['rps']:>19.0f} ({c['wrk'][k]['p99_ms'] or 0:>7.1f})" if k in c["wrk"] else f"{'-':>30}"
                for k in configs[0]["wrk"]
            )
            print(
                f"{c['label']:<28}{cells}{c['pip_download_s']:>14.2f}{c['pip_download_warm_s']:>14.2f}"
                f"{c['pip_download_changed_s']:>17.2f}"
            )
        print(f"first index of {scale['files']} files (service start): {scale['first_index_s']:.1f} s")
        print(f"freshness: {scale['freshness']}")
        if scale.get("flood"):
            f = scale["flood"]
            print(f"{'wrong passwords':<34}{'page p50 / p99 (s)':>22}{'upload p50 / p99 (s)':>24}")
            for label, key in (("none", "quiet"), ("16 addresses, 1 connection each", "flood")):
                print(
                    f"{label:<34}{f[key]['page_p50_s']:>12.2f} / {f[key]['page_p99_s']:<7.2f}"
                    f"{f[key]['upload_p50_s']:>14.2f} / {f[key]['upload_p99_s']:<7.2f}"
                )
            print(f"flood: {f['flood_counts']}")
            print(
                f"one address, 16 connections: {f['single_address_checked_per_s']:.2f} guesses/s checked, "
                f"{f['single_address_answered_per_s']:.0f}/s answered in all (429 after the 10th) {f['single_counts']}"
            )
        if scale.get("ci"):
            print(f"{CI_CLIENTS} CI clients at once{'first request p50 / max (s)':>36}{'repeated req/s':>18}")
            for kind, row in scale["ci"].items():
                print(
                    f"{'with ' + kind + 's':<30}{row['first_p50_s']:>19.3f} / {row['first_max_s']:<8.3f}"
                    f"{row['repeated_per_s']:>18.0f}"
                )
        for name, value in scale["ratios"].items():
            print(f"{name}: {value:.2f}")
    if results.get("upstream"):
        u = results["upstream"]
        print(
            f"upstream: pip download of {PIP_PROJECTS} upstream-only projects ({UPSTREAM_WHEEL_BYTES // 1024} KiB "
            f"wheels), median of {UPSTREAM_ROUNDS}: through the appliance cold {u['cold']:.2f} s, "
            f"warm {u['warm']:.2f} s; straight from the upstream {u['direct']:.2f} s"
        )
        print(f"upstream: cold/direct {u['cold'] / u['direct']:.2f}, warm/direct {u['warm'] / u['direct']:.2f}")
        print(
            f"upstream with a cooldown (PYPI_UPSTREAM_MIN_AGE=7d): cold {u['cooldown_cold']:.2f} s, "
            f"warm {u['cooldown_warm']:.2f} s; against none: cold {u['cooldown_cold'] / u['cold']:.2f}, "
            f"warm {u['cooldown_warm'] / u['warm']:.2f}"
        )
    for row in results.get("resolution", []):
        print(
            f"resolution: {row['where']:<28} {row['tool']:<44} {row['seconds']:6.2f} s {row['bytes'] / 2**20:8.1f} MiB"
        )
    print(f"make deb (builder run): {results['make_deb_s']:.1f} s")
    print(f"apt install to first authenticated 200 over HTTPS (image present): {results['install_to_200_s']:.1f} s")
    print(f"authenticated-download/static ratio: {results['headline']:.2f}")


def ratios(by: dict, turns: dict) -> dict:
    app, static = by["appliance, authenticated"], by["nginx static (anchor)"]
    out = {
        "pip download time / static, cold (after a restart)": app["pip_download_s"] / static["pip_download_s"],
        "pip download time / static, warm": app["pip_download_warm_s"] / static["pip_download_warm_s"],
        "pip download time / static, after another project changed": app["pip_download_changed_s"]
        / static["pip_download_changed_s"],
    }
    for cell, figures in turns.items():
        out[f"authenticated {cell} c=16 / static, in turns"] = figures["ratio"]
    recipe = by.get("recipe (waitress, bcrypt)")
    if recipe:
        out["authenticated /simple/<project>/ c=16 vs recipe"] = app["wrk"]["/simple/<project>/ c=16"]["rps"] / max(
            recipe["wrk"]["/simple/<project>/ c=16"]["rps"], 0.01
        )
    tls = by.get("appliance, auth, HTTPS")
    if tls:
        for cell in ("/packages/<file> c=16", "/simple/<project>/ c=16"):
            out[f"TLS cost: HTTPS/HTTP req/s, {cell}"] = tls["wrk"][cell]["rps"] / app["wrk"][cell]["rps"]
    return out


def wait_indexed(system: System, files: int, timeout: float = 3600) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        out = system.sh("cat /srv/pypi/index/status.json 2>/dev/null || true").stdout
        if out and json.loads(out)["files"] >= files:
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"the index did not list {files} files within {timeout} s")


def scale_run(system: System, projects: int, nginx_ref: str, pypiserver_ref: str, full: bool) -> dict:
    """One size of index: the appliance (plain HTTP, authenticated; and at
    full, HTTPS, anonymous and the recipe) against the anchor, in one go."""
    files = projects * FILES_PER_PROJECT
    log(f"generating {files} files in {projects} projects")
    system.sh(
        "systemctl stop pypi-appliance && rm -rf /srv/pypi/packages/* /srv/pypi/index/* /srv/static && "
        f"python3 /root/generate.py /srv/pypi/packages {projects} {FILES_PER_PROJECT} && "
        "chown -R 9898:9898 /srv/pypi/packages",
        timeout=3600,
    )
    started = time.monotonic()
    system.sh("systemctl start pypi-appliance")
    wait_indexed(system, files)
    first_index_s = time.monotonic() - started
    # The anchor: nginx serving the appliance's own pages and metadata files, copied.
    system.sh(
        "mkdir -p /srv/static && cp -a /srv/pypi/index/simple /srv/pypi/index/metadata /srv/static/ && "
        "docker rm -f static >/dev/null 2>&1; "
        f"docker run -d --name static -v /root/static-nginx.conf:/etc/nginx/nginx.conf:ro "
        f"-v /srv/pypi/packages:/data/packages:ro -v /srv/static:/data/static:ro {nginx_ref} "
        "nginx -g 'daemon off;'"
    )
    proxy, restart = "pypi-appliance-proxy-1", "systemctl restart pypi-appliance"
    configs = []
    if full:
        system.sh(
            "sed -i 's/^PYPI_TLS=.*/PYPI_TLS=self-signed/' /etc/pypi-appliance/pypi-appliance.conf && "
            "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance"
        )
        system.trust()
        configs.append(measure(system, "appliance, auth, HTTPS", proxy, True, restart, projects, base=HTTPS))
        system.sh(
            "sed -i 's/^PYPI_TLS=.*/PYPI_TLS=off/' /etc/pypi-appliance/pypi-appliance.conf && "
            "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance"
        )
        system.trust()
    configs.append(measure(system, "appliance, authenticated", proxy, True, restart, projects))
    turns = take_turns(system, container_pid(system, proxy), container_pid(system, "static"), projects)
    fresh = freshness(system, container_pid(system, proxy))
    flood = flood_case(system) if full else None
    ci = token_case(system) if full else None
    if full:
        system.sh(
            "sed -i 's/^PYPI_ACCESS=.*/PYPI_ACCESS=public-read/' /etc/pypi-appliance/pypi-appliance.conf && "
            "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance"
        )
        system.wait_http("/simple/", 200, timeout=120)
        configs.append(measure(system, "appliance, anonymous", proxy, False, restart, projects))
        system.sh(
            "sed -i 's/^PYPI_ACCESS=.*/PYPI_ACCESS=private/' /etc/pypi-appliance/pypi-appliance.conf && "
            "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance"
        )
        system.sh("systemctl stop pypi-appliance")
        # The recipe: pypiserver's command without --server (waitress), bcrypt on every request.
        system.sh(
            f"docker run -d --name recipe --init -v /srv/pypi/packages:/data/packages "
            f"-v /srv/pypi/auth:/data/auth:ro {pypiserver_ref} "
            f"run -p 8080 -P /data/auth/htpasswd -a update,download,list /data/packages"
        )
        configs.append(
            measure(
                system, "recipe (waitress, bcrypt)", "recipe", True, "docker restart recipe", projects, cells=(1, 16)
            )
        )
        system.sh("docker rm -f recipe && systemctl start pypi-appliance")
    configs.append(measure(system, "nginx static (anchor)", "static", False, "docker restart static", projects))
    by = {c["label"]: c for c in configs}
    return {
        "files": files,
        "projects": projects,
        "first_index_s": first_index_s,
        "configurations": configs,
        "turns": turns,
        "freshness": fresh,
        "flood": flood,
        "ci": ci,
        "ratios": ratios(by, turns),
    }


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pypi-appliance-bench."))
    deb, make_deb_s = build(scratch / "auth")
    system_ref = images.system_image()
    compose = images.compose_binary(system_ref)
    server_refs = [images.stand_in(ref) for ref in images.compose_images(deb)]
    pypiserver_ref = next(r for r in server_refs if "pypiserver" in r)
    nginx_ref = next(r for r in server_refs if r.startswith("nginx"))
    project = "pypi-appliance-bench"
    base = [str(compose), "-f", str(ROOT / "tests/e2e/docker-compose.yml"), "-p", project]
    env = {"SYSTEM_IMAGE": system_ref, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    subprocess.run([*base, "up", "-d", "--wait"], check=True, env=env, capture_output=True)
    try:
        system = System(f"{project}-system-1", port=0)
        system.refresh_port()
        system.wait_booted()
        system.load_images(server_refs)
        system.put("/root/generate.py", GENERATE.encode())
        system.put("/root/generate-deps.py", GENERATE_DEPS.encode())
        system.put("/root/static-nginx.conf", STATIC_NGINX.encode())
        system.put("/root/uv", Path(sys.executable).with_name("uv").read_bytes())
        system.put("/root/pypi-appliance.deb", deb.read_bytes())
        system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
        started = time.monotonic()
        system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb")
        system.trust()
        system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
        install_to_200_s = time.monotonic() - started

        scales = [scale_run(system, PROJECTS, nginx_ref, pypiserver_ref, full=True)]
        # Dependency resolution, on the 10,000-file index plus bench-app and its 20 dependencies.
        system.sh(
            f"python3 /root/generate-deps.py /srv/pypi/packages {PIP_PROJECTS} {20 * 2**20} && "
            "chown -R 9898:9898 /srv/pypi/packages"
        )
        wait_indexed(system, PROJECTS * FILES_PER_PROJECT + PIP_PROJECTS + 1)
        rows = resolution(
            system,
            container_pid(system, "pypi-appliance-proxy-1"),
            container_pid(system, "pypi-appliance-pypiserver-1"),
        )
        upstream = upstream_case(system, nginx_ref, scratch)
        if LARGE_PROJECTS:
            scales.append(scale_run(system, LARGE_PROJECTS, nginx_ref, pypiserver_ref, full=False))
    finally:
        subprocess.run([*base, "down", "-v"], env=env, capture_output=True)

    results = {
        "make_deb_s": make_deb_s,
        "install_to_200_s": install_to_200_s,
        "scales": scales,
        "resolution": rows,
        "upstream": upstream,
        "headline": scales[0]["turns"]["/packages/<file>"]["ratio"],
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
