"""One index URL for everything: names the appliance does not hold come from an
upstream index, cached; names it holds are answered by it alone.

The upstream is nginx serving a generated PEP 503/691 tree in the system's own
Docker, on the appliance's compose network only (the suite's host cannot reach
it), with pages on index.upstream.test and absolute file URLs on
files.upstream.test, as PyPI's are on files.pythonhosted.org."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.e2e.test_first_hour import reconfigure
from tests.support import fake_upstream as fake
from tests.support import images
from tests.support.client import PASSWORD, USER, FormatProxy, client_env, index_url, pip_install, tls_args, twine_upload
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

BIG = [f"big-{n}" for n in range(6)]
BIG_SIZE = 100_000
CAP_KB = 300
CONF = "/etc/pypi-appliance/pypi-appliance.conf"


@pytest.fixture(scope="module")
def upstream(system, installed, tmp_path_factory):
    """The upstream, switched on with dpkg-reconfigure (pages kept 2 s, files
    capped at CAP_KB); off again and gone after the module."""
    wheels = tmp_path_factory.mktemp("upstream")
    tree: dict[str, bytes] = {}
    fake.add_project(
        tree,
        "up-only",
        {w.name: w.read_bytes() for w in (make_wheel(wheels, v, project="up-only") for v in ("1.0", "2.0"))},
    )
    for name, version in (("held-name", "9.9"), ("never-fetched", "1.0"), ("private-only", "1.0")):
        wheel = make_wheel(wheels, version, project=name)
        fake.add_project(tree, name, {wheel.name: wheel.read_bytes()})
    up_only = next(path for path in tree if path.endswith("/up_only-1.0-py3-none-any.whl"))
    fake.add_hostile(tree, "hostile", up_only.removeprefix("files/packages/"), tree[up_only])
    for name in BIG:  # HTML pages only: the service reads PEP 503 too
        fake.add_project(tree, name, {f"{name}-1.0.tar.gz": os.urandom(BIG_SIZE)}, json_too=False)
    fake.start(system, tree, fake.proxy_image(system))
    system.sh(
        f"pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=2 PYPI_UPSTREAM_CACHE_MAX={CAP_KB}k "
        f"PYPI_UPSTREAM_FILE_HOSTS={fake.FILE_HOST}"
    )
    try:
        switch(system, fake.INDEX)
        yield tree
    finally:
        system.sh(
            "pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=300 PYPI_UPSTREAM_CACHE_MAX=10g "
            "PYPI_UPSTREAM_CREDENTIALS= PYPI_UPSTREAM_FILE_HOSTS=files.pythonhosted.org"
        )
        if "PYPI_UPSTREAM=\n" not in system.sh(f"cat {CONF}").stdout:
            switch(system, "none")
        fake.stop(system)


def switch(system, url: str) -> str:
    """dpkg-reconfigure with url as the upstream ("none": off)."""
    out = []
    fake.restarting(system, lambda: out.append(reconfigure(system, upstream=url)))
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    return out[0]


def restart(system) -> None:
    fake.restarting(system, lambda: system.sh("systemctl restart pypi-appliance"))
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def file_path(system, project: str, filename: str) -> str:
    """The appliance's path for a file of the upstream's, from its page."""
    status, body, _ = system.fetch_all(
        f"/simple/{project}/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, (status, body)
    url = next(f["url"] for f in json.loads(body)["files"] if f["filename"] == filename)
    assert url.startswith(f"../../upstream/{project}/"), url
    return url.removeprefix("../..")


def asked(system) -> list[str]:
    """The paths the upstream was asked for, in order."""
    return [path for _, _, path in fake.asked(system)]


def test_an_upstream_only_project_installs_with_pip_and_uv(system, upstream, tmp_path):
    conf = system.sh(f"cat {CONF}").stdout
    assert f"PYPI_UPSTREAM={fake.INDEX}\n" in conf
    assert f"upstream    {fake.INDEX} for names this index does not hold" in system.report()
    assert "one index is enough" in system.sh("pypi-appliance client-config").stdout
    assert pip_install(system, tmp_path, PASSWORD, project="up-only") == "2.0"
    # The page names the files on the appliance, with the upstream's hashes and metadata.
    status, body, headers = system.fetch_all(
        "/simple/up-only/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    page = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    wheel = next(f for f in page["files"] if f["filename"] == "up_only-2.0-py3-none-any.whl")
    assert wheel["url"] == f"../../upstream/up-only/{wheel['hashes']['sha256']}/up_only-2.0-py3-none-any.whl"
    path = wheel["url"].removeprefix("../..")
    assert wheel["requires-python"] == ">=3.8" and wheel["core-metadata"]["sha256"]
    assert page["versions"] == ["1.0", "2.0"]
    status, meta, _ = system.fetch_all(path + ".metadata", user=USER, password=PASSWORD)
    assert status == 200 and hashlib.sha256(meta).hexdigest() == wheel["core-metadata"]["sha256"]
    # The second download is the cache's.
    status, data, headers = system.fetch_all(path, user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"
    assert hashlib.sha256(data).hexdigest() == wheel["hashes"]["sha256"]
    # Proxied names need the same credentials as local ones.
    assert system.http("/simple/up-only/") == 401
    assert system.http(path) == 401

    uv = [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "install",
        "--no-cache",
        "--target",
        str(tmp_path / "uv"),
        "--index-url",
        index_url(system, USER, PASSWORD),
        "up-only==1.0",
    ]
    done = subprocess.run(
        uv, capture_output=True, text=True, timeout=180, env=client_env(SSL_CERT_FILE=system.ca_file, UV_NO_CONFIG="1")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "uv" / "up_only" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    # Every file crossed from the upstream once.
    files = [path for path in asked(system) if path.startswith("/packages/")]
    assert len(files) == len(set(files)), files


def test_a_name_held_here_is_never_asked_upstream(system, upstream, tmp_path):
    uploaded = twine_upload(system, make_wheel(tmp_path, "1.0", project="held-name"), PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert pip_install(system, tmp_path, PASSWORD, project="held-name") == "1.0"
    status, body, _ = system.fetch_all(
        "/simple/held-name/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200 and [f["filename"] for f in json.loads(body)["files"]] == ["held_name-1.0-py3-none-any.whl"]
    # Spelt otherwise, it is still this index's name.
    assert system.http("/simple/Held_Name/", user=USER, password=PASSWORD) == 200
    # Nor by the file URLs of the upstream's page.
    wheel = next(data for path, data in upstream.items() if path.endswith("/held_name-9.9-py3-none-any.whl"))
    digest = hashlib.sha256(wheel).hexdigest()
    status, body, _ = system.fetch_all(
        f"/upstream/held-name/{digest}/held_name-9.9-py3-none-any.whl", user=USER, password=PASSWORD
    )
    assert status == 404 and b"held-name is held by this index" in body
    # ...spelt otherwise either: only normalized names are the upstream's.
    for spelling in ("Held-Name", "HELD_NAME", "held.name"):
        path = f"/upstream/{spelling}/{digest}/held_name-9.9-py3-none-any.whl"
        assert system.http(path, user=USER, password=PASSWORD) == 404, spelling
    assert not [path for path in asked(system) if "held" in path.lower()], asked(system)
    # A request line smuggled in a decoded capture reaches nothing (CR LF never pass).
    smuggled = "/upstream/a%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/health/" + digest + "/x.whl"
    assert system.http(smuggled, user=USER, password=PASSWORD) in (400, 404)
    assert system.http("/simple/a%0d%0aX:%20y/", user=USER, password=PASSWORD) in (400, 404)

    # Its last release removed, the name stays this index's: no versions, and none of the upstream's.
    system.sh("pypi-appliance remove --yes held-name==1.0")
    status, body, _ = system.fetch_all(
        "/simple/held-name/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200 and json.loads(body)["files"] == [], (status, body)
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            *tls_args(system),
            "-d",
            str(tmp_path / "none"),
            "held-name",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=client_env(PIP_INDEX_URL=index_url(system, USER, PASSWORD)),
    )
    assert found.returncode != 0 and "No matching distribution found for held-name" in found.stderr, found.stderr
    assert not [path for path in asked(system) if "held" in path.lower()], asked(system)
    # Released by the admin, it is the upstream's.
    system.sh("pypi-appliance release-name --yes held-name")
    assert pip_install(system, tmp_path / "released", PASSWORD, project="held-name") == "9.9"
    # Its removed file, the same bytes, comes back and holds the name again.
    again = twine_upload(system, tmp_path / "held_name-1.0-py3-none-any.whl", PASSWORD)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pip_install(system, tmp_path / "again", PASSWORD, project="held-name") == "1.0"


def test_the_cache_is_capped_and_cleared(system, upstream):
    system.sh("pypi-appliance cache clear")  # only this test's files, in the order it fetches them
    paths = {name: file_path(system, name, f"{name}-1.0.tar.gz") for name in BIG}
    for name in BIG:
        status, data, _ = system.fetch_all(paths[name], user=USER, password=PASSWORD)
        assert status == 200 and len(data) == BIG_SIZE
    # nginx's cache manager removes the least recently used beyond the cap
    # (files cached before the last start count once its loader has read
    # them, a minute after the start).
    script = "find /srv/pypi/upstream/files-* -type f -printf '%k\\n' | awk '{s += $1} END {print s + 0}'"
    deadline = time.monotonic() + 90
    while int(system.sh(script).stdout) > CAP_KB:
        assert time.monotonic() < deadline, system.sh(script).stdout
        time.sleep(0.5)
    status, _, headers = system.fetch_all(paths[BIG[-1]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"  # the newest is kept
    status, _, headers = system.fetch_all(paths[BIG[0]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"  # the oldest went first

    shown = system.sh("pypi-appliance cache").stdout
    assert re.search(rf"^cache +\S+ \S+ of {CAP_KB}k \(PYPI_UPSTREAM_CACHE_MAX\): [1-9]\d* files", shown, re.M), shown
    hits = re.search(r"^hits +(\d+)% of (\d+) file downloads since", shown, re.M)
    assert hits and int(hits.group(2)) >= len(BIG) + 2, shown
    # What the cache holds, by project and file (the newest stayed, the oldest came back).
    listed = system.sh("pypi-appliance cache files").stdout
    assert f"{BIG[-1]}  {BIG[-1]}-1.0.tar.gz  " in listed and f"{BIG[0]}  {BIG[0]}-1.0.tar.gz  " in listed, listed
    assert system.sh(f"pypi-appliance cache files {BIG[0]}").stdout.splitlines() == [
        line for line in listed.splitlines() if line.startswith(f"{BIG[0]}  ")
    ]
    log = "/var/log/pypi-appliance/upstream-cache.log"
    before = system.sh(f"cat {log}").stdout
    out = system.sh("pypi-appliance cache clear").stdout
    assert "the upstream's cache is empty" in out
    # The record of what was fetched survives a clear; the counts start anew; the clear is audited.
    assert system.sh(f"cat {log}").stdout.startswith(before)
    assert "no file downloads yet" in system.sh("pypi-appliance cache").stdout
    assert " cache-clear by=root " in system.sh("tail -n 5 /var/log/pypi-appliance/audit.log").stdout
    assert re.search(r": 0 files, 0 pages", system.sh("pypi-appliance cache").stdout)
    status, _, headers = system.fetch_all(paths[BIG[-1]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"
    # Not in backups: it can be fetched again.
    system.sh("pypi-appliance backup /root/upstream-backup.tar.gz")
    assert "upstream" not in system.sh("tar -tzf /root/upstream-backup.tar.gz").stdout


def test_an_upstream_down_leaves_the_cache_serving_and_fails_fast(system, upstream, tmp_path):
    assert pip_install(system, tmp_path / "warm", PASSWORD, project="up-only") == "2.0"
    # Frozen: connections open and nothing answers, the worst case for a client.
    system.sh(f"docker pause {fake.NAME}")
    try:
        time.sleep(3)  # the page (kept 2 s) is stale now
        assert pip_install(system, tmp_path / "offline", PASSWORD, project="up-only") == "2.0"
        started = time.monotonic()
        status, body, _ = system.fetch_all("/simple/never-fetched/", user=USER, password=PASSWORD)
        took = time.monotonic() - started
        assert status in (502, 504) and took < 10, (status, took)
        assert b"the upstream did not answer http://index.upstream.test/simple/never-fetched/ within" in body, body
    finally:
        system.sh(f"docker unpause {fake.NAME}")
    assert system.http("/simple/never-fetched/", user=USER, password=PASSWORD) == 200


def test_an_upstream_page_decides_nothing(system, upstream):
    """Its links to file: URLs, to other hosts and without a sha256 are dropped
    (and the upstream service says so); none of them is ever fetched."""
    status, body, _ = system.fetch_all(
        "/simple/hostile/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, body
    # On the public index host, the relative redirect links are on the upstream's host: kept.
    assert sorted(f["filename"] for f in json.loads(body)["files"]) == [
        "hostile-2.0-py3-none-any.whl",
        "hostile-2.1-py3-none-any.whl",
    ]
    logs = system.sh("docker logs pypi-appliance-upstream-1 2>&1").stdout
    for why in (
        "file:///etc/passwd is not an http(s) URL",
        "http://elsewhere.test/packages/",
        "neither the upstream's host nor in PYPI_UPSTREAM_FILE_HOSTS",
        "hostile-1.2.tar.gz has no sha256",
    ):
        assert why in logs, (why, logs[-2000:])
    sha = hashlib.sha256(b"").hexdigest()
    for name in ("hostile-1.0.tar.gz", "hostile-1.1.tar.gz", "hostile-1.2.tar.gz"):
        assert system.http(f"/upstream/hostile/{sha}/{name}", user=USER, password=PASSWORD) == 404
    assert not [path for _, _, path in fake.asked(system) if path.startswith("/etc") or "elsewhere" in path]


def test_a_private_upstream_gets_its_credentials_and_nobody_sees_them(system, upstream):
    creds = "/etc/pypi-appliance/upstream-credentials"
    secret = fake.PRIVATE_PASSWORD
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM={fake.PRIVATE} PYPI_UPSTREAM_CREDENTIALS=")
    restart(system)
    status, body, _ = system.fetch_all("/simple/private-only/", user=USER, password=PASSWORD)
    assert status == 502 and b"the upstream refused the appliance (401)" in body, body
    assert b"PYPI_UPSTREAM_CREDENTIALS" in body
    # A file others may read is refused, with what to run.
    system.sh(f"rm -f {creds} && umask 022 && printf '%s\\n' '{fake.PRIVATE_USER}:{secret}' > {creds}")
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM_CREDENTIALS={creds}")
    refused = system.sh("pypi-appliance up", check=False)
    assert refused.returncode == 1 and f"chgrp 9898 {creds} && chmod 0640 {creds}" in refused.stderr, refused.stderr
    system.sh(f"chgrp 9898 {creds} && chmod 0640 {creds}")
    restart(system)
    status, body, _ = system.fetch_all(
        "/simple/private-only/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, body
    url = json.loads(body)["files"][0]["url"]
    assert system.http(f"/simple/private-only/{url}", user=USER, password=PASSWORD) == 200
    # The credentials went to the upstream's host only, never to the files' host.
    requests = fake.asked(system)
    assert ("private.upstream.test", fake.PRIVATE_USER, "/simple/private-only/") in requests, requests
    assert all(user == "-" for host, user, _ in requests if host == "files.upstream.test"), requests
    # A redirected download: followed to the files host without the
    # credentials; to a host the appliance does not fetch from, not followed.
    hostile = {
        f["filename"]: f["url"]
        for f in json.loads(
            system.fetch_all(
                "/simple/hostile/",
                user=USER,
                password=PASSWORD,
                headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            )[1]
        )["files"]
    }
    assert sorted(hostile) == ["hostile-2.0-py3-none-any.whl", "hostile-2.1-py3-none-any.whl"], hostile
    status, data, _ = system.fetch_all(
        f"/simple/hostile/{hostile['hostile-2.0-py3-none-any.whl']}", user=USER, password=PASSWORD
    )
    assert status == 200 and data == upstream[next(p for p in upstream if p.endswith("/up_only-1.0-py3-none-any.whl"))]
    moved = [(host, user) for host, user, path in fake.asked(system) if "up_only-1.0" in path][-2:]
    assert moved == [("private.upstream.test", fake.PRIVATE_USER), ("files.upstream.test", "-")], moved
    status, body, _ = system.fetch_all(
        f"/simple/hostile/{hostile['hostile-2.1-py3-none-any.whl']}", user=USER, password=PASSWORD
    )
    assert status == 502 and b"not followed, http://elsewhere.test/ is on elsewhere.test" in body, body
    # Nowhere to be read but the file.
    seen = system.sh(
        "journalctl -u pypi-appliance --no-pager -o cat; docker inspect pypi-appliance-upstream-1; "
        f"cat {CONF}; pypi-appliance status; pypi-appliance cache"
    ).stdout
    assert secret not in seen and fake.PRIVATE_USER + ":" not in seen
    system.sh(f"rm -f {creds}")
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM={fake.INDEX} PYPI_UPSTREAM_CREDENTIALS=")
    restart(system)


# The pip each supported distribution ships (Ubuntu 22.04, Debian 12, Ubuntu
# 24.04, Debian 13) and the newest. pip 22.3-23.1 crashed on every JSON page
# that carried PEP 658's old dist-info-metadata key (pypa/pip#12042, PEP 714).
PIPS = ["22.0.2", "23.0.1", "24.0", "25.1.1", "newest"]
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def matrix_local(system, upstream, tmp_path_factory):
    """A local project (its wheel has a metadata file) beside the upstream's up-only."""
    wheel = make_wheel(tmp_path_factory.mktemp("matrix"), "1.0", project="matrix-local")
    uploaded = twine_upload(system, wheel, PASSWORD)
    assert uploaded.returncode == 0 or "already exists" in uploaded.stdout + uploaded.stderr, uploaded.stdout
    return "matrix-local"


@pytest.mark.parametrize("pages", ["as-asked", "html"])
@pytest.mark.parametrize("pip", PIPS)
def test_every_supported_pip_installs_local_and_upstream_names(system, matrix_local, tmp_path, pip, pages):
    """Each pip downloads a local name and an upstream one, through a proxy that
    notes the pages' types (and, for "html", makes every page HTML)."""
    wheel = images.newest_pip() if pip == "newest" else images.pip_wheel(pip)
    with FormatProxy(system, force_html=pages == "html") as proxy:
        done = subprocess.run(
            [
                sys.executable,
                f"{wheel}/pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--no-input",
                "--trusted-host",
                f"127.0.0.1:{proxy.port}",
                "--index-url",
                proxy.index_url(USER, PASSWORD),
                "-d",
                str(tmp_path),
                f"{matrix_local}==1.0",
                "up-only==2.0",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=client_env(),
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "matrix_local-1.0-py3-none-any.whl",
        "up_only-2.0-py3-none-any.whl",
    ]
    kinds = {kind.split(";")[0] for _, kind in proxy.types}
    # pip 22.0 predates PEP 691 and reads HTML; the others ask for JSON first.
    assert kinds == ({"text/html"} if pages == "html" or pip == "22.0.2" else {JSON_TYPE}), proxy.types


@pytest.mark.parametrize("pages", ["as-asked", "html"])
def test_uv_installs_local_and_upstream_names(system, matrix_local, tmp_path, pages):
    with FormatProxy(system, force_html=pages == "html") as proxy:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "uv",
                "pip",
                "install",
                "--no-cache",
                "--no-deps",
                "--target",
                str(tmp_path),
                "--index-url",
                proxy.index_url(USER, PASSWORD),
                f"{matrix_local}==1.0",
                "up-only==2.0",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=client_env(UV_NO_CONFIG="1"),
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "matrix_local" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    assert (tmp_path / "up_only" / "__init__.py").read_text() == 'VERSION = "2.0"\n'
    kinds = {kind.split(";")[0] for _, kind in proxy.types}
    assert kinds == ({"text/html"} if pages == "html" else {JSON_TYPE}), proxy.types


def test_an_upstream_on_the_docker_host_keeps_its_address_across_restarts(system, upstream):
    """host.docker.internal names the Docker host from the upstream service
    (host-gateway), whatever subnet compose gives the network at each start."""
    system.sh(
        "systemd-run --unit host-upstream python3 -m http.server --bind 0.0.0.0 --directory /root/upstream/index 9000"
    )
    try:
        system.sh("pypi-appliance write-config PYPI_UPSTREAM=http://host.docker.internal:9000/simple/")
        subnets = []
        for _ in range(2):
            restart(system)
            subnets.append(
                system.sh(
                    "docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' pypi-appliance_default"
                ).stdout.strip()
            )
            status, body, headers = system.fetch_all("/simple/up-only/", user=USER, password=PASSWORD)
            assert status == 200 and b"up_only-2.0-py3-none-any.whl" in body, (status, body)
        assert system.settled_status().returncode == 0
    finally:
        system.sh("systemctl stop host-upstream", check=False)
        system.sh(f"pypi-appliance write-config PYPI_UPSTREAM={fake.INDEX}")
        restart(system)


def test_status_says_degraded_while_the_upstream_is_down(system, upstream):
    assert system.settled_status().returncode == 0
    system.sh(f"docker network disconnect {fake.NETWORK} {fake.NAME}")
    try:
        result = system.sh("pypi-appliance status", check=False)
        assert result.returncode == 2, result.stdout
        assert re.search(
            r"^health\s+DEGRADED: .* but the upstream fails: http://index.upstream.test/simple/ "
            r"is unreachable",
            result.stdout,
            re.M,
        ), result.stdout
        assert json.loads(system.sh("pypi-appliance status --json", check=False).stdout)["state"] == "degraded"
    finally:
        aliases = " ".join(f"--alias {host}" for host in fake.HOSTS)
        system.sh(f"docker network connect {aliases} {fake.NETWORK} {fake.NAME}")
    assert system.sh("pypi-appliance status", check=False).returncode == 0


# Last: the module's other tests need the upstream on.
def test_switching_off_stops_proxying_at_once(system, upstream):
    path = file_path(system, "up-only", "up_only-2.0-py3-none-any.whl")
    switch(system, "none")  # an empty answer would keep the current one
    assert "PYPI_UPSTREAM=\n" in system.sh(f"cat {CONF}").stdout
    status, body, _ = system.fetch_all("/simple/up-only/", user=USER, password=PASSWORD)
    assert status == 404 and b"no project up-only on this index" in body
    assert system.http(path, user=USER, password=PASSWORD) == 404
    assert "upstream    none" in system.report()
    # Its own names are untouched.
    assert system.http("/simple/held-name/", user=USER, password=PASSWORD) == 200
