"""make bench: the installed appliance against nginx serving the same files
statically (the anchor) and against the recipe it replaces, all measured in
one run, on one system container, with wrk on 127.0.0.1.

The last line is the headline ratio:
    authenticated-download/static ratio: X.XX
"""

from __future__ import annotations

import base64
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tests.e2e import images
from tests.e2e.client import preseed
from tests.e2e.system import System

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROJECTS, FILES_PER_PROJECT = 1_000, 10
DURATION = 5  # seconds per wrk run
# ASCII: the recipe cannot serve pip a non-ASCII password (see README).
USER, PASSWORD = "bench", "bench-password"
PIP_PROJECTS = 20
HEADLINE_ROUNDS = 3  # the headline cell, appliance and anchor taken in turns; medians
PLAIN, HTTPS = "http://127.0.0.1:8080", "https://127.0.0.1:8080"
CA = "/etc/pypi-appliance/tls/ca.crt"
CURL_TLS, PIP_TLS = f"--cacert {CA}", f"--cert {CA}"

# Generates the packages (tiny, valid wheels) and the static PEP 503 pages the anchor serves.
GENERATE = r"""
import hashlib, html, io, os, sys, zipfile
packages, static, projects, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(packages, exist_ok=True)
links = {}
for p in range(projects):
    name = f"bench-p{p:04d}"
    mod = name.replace("-", "_")
    for v in range(per):
        fn = f"{mod}-1.{v}-py3-none-any.whl"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"{mod}/__init__.py", f"VERSION = '1.{v}'\n" + "#" * 2048 + "\n")
            z.writestr(f"{mod}-1.{v}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.{v}\n")
            z.writestr(f"{mod}-1.{v}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{mod}-1.{v}.dist-info/RECORD", "")
        data = buf.getvalue()
        with open(os.path.join(packages, fn), "wb") as f:
            f.write(data)
        links.setdefault(name, []).append((fn, hashlib.sha256(data).hexdigest()))
for name, files in links.items():
    d = os.path.join(static, "simple", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><body>\n" + "".join(
            f'<a href="../../packages/{fn}#sha256={h}">{html.escape(fn)}</a><br>\n' for fn, h in files) + "</body></html>\n")
with open(os.path.join(static, "simple", "index.html"), "w") as f:
    f.write("<!DOCTYPE html><html><body>\n" + "".join(f'<a href="{n}/">{n}</a><br>\n' for n in links) + "</body></html>\n")
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
    server {
        listen 8080;
        location = /health { return 200 "ok\n"; }
        location /packages/ { alias /data/packages/; }
        location /simple/ { root /data/static; index index.html; default_type text/html; }
    }
}
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(out: Path, *args: str) -> tuple[Path, float]:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "builder", "build", "--output-dir", str(out),
                    "--build-dir", str(out / "build"), *args], check=True, capture_output=True)
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
        if system.sh(f"nsenter -t {pid} -n curl -sf {CURL_TLS} -o /dev/null {base}/health",
                     check=False).returncode == 0:
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


def wrk(system: System, pid: str, base: str, path: str, concurrency: int, auth: bool) -> dict:
    header = ""
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        header = f"-H 'Authorization: Basic {token}'"
    threads = min(concurrency, 2)
    out = system.sh(f"nsenter -t {pid} -n wrk -t{threads} -c{concurrency} -d{DURATION}s --timeout 30s "
                    f"--latency {header} {base}{path}", timeout=DURATION + 60).stdout
    return parse_wrk(out)


def pip_download(system: System, pid: str, base: str, auth: bool) -> float:
    credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@" if auth else ""
    scheme, _, host = base.partition("://")
    # pip 24.2+ cannot verify HTTPS to an IP address (pypa/pip#12906); the certificate covers localhost.
    host = host.replace("127.0.0.1", "localhost") if scheme == "https" else host
    names = " ".join(f"bench-p{p:04d}" for p in range(PIP_PROJECTS))
    started = time.monotonic()
    system.sh(f"rm -rf /tmp/dl && nsenter -t {pid} -n env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/dev/null "
              f"python3 -m pip download -q --no-deps --no-cache-dir -d /tmp/dl {PIP_TLS if scheme == 'https' else ''} "
              f"--index-url {scheme}://{credentials}{host}/simple/ {names}", timeout=600)
    seconds = time.monotonic() - started
    count = int(system.sh("ls /tmp/dl | wc -l").stdout)
    assert count == PIP_PROJECTS, f"pip downloaded {count} files, expected {PIP_PROJECTS}"
    return seconds


PATHS = {
    "/simple/": "/simple/",
    "/simple/<project>/": "/simple/bench-p0500/",
    "/packages/<file>": "/packages/bench_p0500-1.5-py3-none-any.whl",
}


def measure(system: System, label: str, container: str, auth: bool, base: str = PLAIN) -> dict:
    pid = container_pid(system, container)
    wait_health(system, pid, base)
    result = {"label": label, "wrk": {}}
    for name, path in PATHS.items():
        for concurrency in (1, 16):
            system.sh(f"nsenter -t {pid} -n curl -sf {CURL_TLS} -o /dev/null "
                      + (f"-u '{USER}:{PASSWORD}' " if auth else "") + f"{base}{path}")
            figures = wrk(system, pid, base, path, concurrency, auth)
            result["wrk"][f"{name} c={concurrency}"] = figures
            log(f"  {label:<28} {name:<20} c={concurrency:<3} {figures['rps']:>10.1f} req/s "
                f"p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms")
    # Cold: the first pip for these projects (index pages not cached); warm:
    # the next one; then again after another project got a new file, as an
    # upload, a restore or an rsync does.
    result["pip_download_s"] = pip_download(system, pid, base, auth)
    result["pip_download_warm_s"] = pip_download(system, pid, base, auth)
    new = f"/srv/pypi/packages/bench_p0999-{time.time_ns()}.0-py3-none-any.whl"
    system.sh(f"cp /srv/pypi/packages/bench_p0999-1.0-py3-none-any.whl {new} && chown 9898:9898 {new}")
    result["pip_download_changed_s"] = pip_download(system, pid, base, auth)
    log(f"  {label:<28} pip download of {PIP_PROJECTS} projects: {result['pip_download_s']:.2f} s cold, "
        f"{result['pip_download_warm_s']:.2f} s warm, {result['pip_download_changed_s']:.2f} s after a change")
    return result


def take_turns(system: System, app_pid: str, static_pid: str) -> dict:
    """The headline cell, /packages/<file> at c=16, from the appliance (plain
    HTTP, authenticated) and the anchor in turns: a noisy moment hits both."""
    path, app, static = PATHS["/packages/<file>"], [], []
    for _ in range(HEADLINE_ROUNDS):
        static.append(wrk(system, static_pid, PLAIN, path, 16, auth=False)["rps"])
        app.append(wrk(system, app_pid, PLAIN, path, 16, auth=True)["rps"])
    log(f"  headline in turns: appliance {app} static {static} req/s")
    return {"appliance_rps": app, "static_rps": static,
            "ratio": statistics.median(app) / statistics.median(static)}


def report(results: dict) -> None:
    configs = results["configurations"]
    head = (f"{'configuration':<28}" + "".join(f"{k:>26}" for k in configs[0]["wrk"])
            + f"{'pip cold (s)':>14}{'pip warm (s)':>14}{'pip changed (s)':>17}")
    print(f"pypi-appliance benchmark: {PROJECTS * FILES_PER_PROJECT} files in {PROJECTS} projects, "
          f"wrk {DURATION} s per cell, req/s (p99 ms)")
    print(head)
    for c in configs:
        cells = "".join(f"{v['rps']:>15.0f} ({v['p99_ms'] or 0:>7.1f})" for v in c["wrk"].values())
        print(f"{c['label']:<28}{cells}{c['pip_download_s']:>14.2f}{c['pip_download_warm_s']:>14.2f}"
              f"{c['pip_download_changed_s']:>17.2f}")
    print(f"make deb (builder run): {results['make_deb_s']:.1f} s")
    print(f"apt install to first authenticated 200 over HTTPS (image present): {results['install_to_200_s']:.1f} s")
    h = results["headline"]
    print(f"headline cell in turns ({HEADLINE_ROUNDS} rounds, medians): appliance "
          f"{statistics.median(h['appliance_rps']):.0f} req/s, static {statistics.median(h['static_rps']):.0f} req/s")
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.2f}")


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
        log(f"generating {PROJECTS * FILES_PER_PROJECT} files in {PROJECTS} projects")
        system.put("/root/generate.py", GENERATE.encode())
        system.sh(f"python3 /root/generate.py /srv/pypi/packages /srv/static {PROJECTS} {FILES_PER_PROJECT} "
                  "&& chown -R 9898:9898 /srv/pypi/packages")
        system.put("/root/pypi-appliance.deb", deb.read_bytes())
        system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
        started = time.monotonic()
        system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb")
        system.trust()
        system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
        install_to_200_s = time.monotonic() - started

        # The anchor runs beside the appliance from the start (its own network
        # namespace), so the headline cell can be taken from both in turns.
        system.put("/root/static-nginx.conf", STATIC_NGINX.encode())
        system.sh(f"docker run -d --name static -v /root/static-nginx.conf:/etc/nginx/nginx.conf:ro "
                  f"-v /srv/pypi/packages:/data/packages:ro -v /srv/static:/data/static:ro {nginx_ref} "
                  "nginx -g 'daemon off;'")

        proxy = "pypi-appliance-proxy-1"
        configs = [measure(system, "appliance, auth, HTTPS", proxy, auth=True, base=HTTPS)]
        # Plain HTTP, as the targets were set: the config file is the
        # truth, and dpkg-reconfigure applies it.
        system.sh("sed -i 's/^PYPI_TLS=.*/PYPI_TLS=off/' /etc/pypi-appliance/pypi-appliance.conf && "
                  "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance")
        configs.append(measure(system, "appliance, authenticated", proxy, auth=True))
        headline = take_turns(system, container_pid(system, proxy), container_pid(system, "static"))
        # Anyone may read (PYPI_ACCESS=public-read), switched as an admin would.
        system.sh("sed -i 's/^PYPI_ACCESS=.*/PYPI_ACCESS=public-read/' /etc/pypi-appliance/pypi-appliance.conf && "
                  "DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance")
        system.wait_http("/simple/", 200, timeout=120)
        configs.append(measure(system, "appliance, anonymous", proxy, auth=False))
        system.sh("systemctl stop pypi-appliance")

        # The recipe: pypiserver's command without --server (waitress), bcrypt on every request.
        system.sh(f"docker run -d --name recipe --init -v /srv/pypi/packages:/data/packages "
                  f"-v /srv/pypi/auth:/data/auth:ro {pypiserver_ref} "
                  f"run -p 8080 -P /data/auth/htpasswd -a update,download,list /data/packages")
        configs.append(measure(system, "recipe (waitress, bcrypt)", "recipe", auth=True))
        system.sh("docker rm -f recipe")
        configs.append(measure(system, "nginx static (anchor)", "static", auth=False))
    finally:
        subprocess.run([*base, "down", "-v"], env=env, capture_output=True)

    by = {c["label"]: c for c in configs}
    app, static, recipe = by["appliance, authenticated"], by["nginx static (anchor)"], by["recipe (waitress, bcrypt)"]
    tls = by["appliance, auth, HTTPS"]

    def rps(config, cell):
        return config["wrk"][cell]["rps"]

    ratios = {
        "authenticated /simple/<project>/ vs recipe (c=16)":
            rps(app, "/simple/<project>/ c=16") / max(rps(recipe, "/simple/<project>/ c=16"), 0.01),
        "authenticated pip download time / static, cold": app["pip_download_s"] / static["pip_download_s"],
        "authenticated pip download time / static, warm": app["pip_download_warm_s"] / static["pip_download_warm_s"],
        "authenticated pip download time / static, after another project changed":
            app["pip_download_changed_s"] / static["pip_download_changed_s"],
        "TLS cost: HTTPS/HTTP req/s, /packages/<file> c=16":
            rps(tls, "/packages/<file> c=16") / rps(app, "/packages/<file> c=16"),
        "TLS cost: HTTPS/HTTP req/s, /simple/<project>/ c=16":
            rps(tls, "/simple/<project>/ c=16") / rps(app, "/simple/<project>/ c=16"),
        "TLS cost: HTTPS/HTTP pip download time, warm": tls["pip_download_warm_s"] / app["pip_download_warm_s"],
        "authenticated-download/static ratio": headline["ratio"],
    }
    results = {"files": PROJECTS * FILES_PER_PROJECT, "projects": PROJECTS, "duration_s": DURATION,
               "make_deb_s": make_deb_s, "install_to_200_s": install_to_200_s,
               "configurations": configs, "headline": headline, "ratios": ratios}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
