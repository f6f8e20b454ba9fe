"""One index URL for everything: names the appliance does not hold come from an
upstream index, cached; names it holds are answered by it alone.

The upstream is nginx serving a generated PEP 503/691 tree in this host's
Docker engine, on the appliance's compose network only (the suite cannot
reach it), with pages on index.upstream.test and absolute file URLs on
files.upstream.test, as PyPI's are on files.pythonhosted.org. Switching with
dpkg-reconfigure and a private upstream: tests/e2e/test_upstream.py."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time

import pytest

from tests.support import fake_upstream as fake
from tests.support import images
from tests.support.client import PASSWORD, USER, FormatProxy, client_env, index_url, pip_install, tls_args, twine_upload
from tests.support.dists import make_wheel

pytestmark = pytest.mark.stack

CAP_KB = 300
# The pip each supported distribution ships (Ubuntu 22.04, Debian 12, Ubuntu
# 24.04, Debian 13) and the newest. pip 22.3-23.1 crashed on every JSON page
# that carried PEP 658's old dist-info-metadata key (pypa/pip#12042, PEP 714).
PIPS = ["22.0.2", "23.0.1", "24.0", "25.1.1", "newest"]
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SETTINGS = f"PYPI_UPSTREAM_PAGE_SECONDS=2 PYPI_UPSTREAM_CACHE_MAX={CAP_KB}k PYPI_UPSTREAM_FILE_HOSTS={fake.FILE_HOST}"
DEFAULTS = "PYPI_UPSTREAM_PAGE_SECONDS=300 PYPI_UPSTREAM_CACHE_MAX=10g PYPI_UPSTREAM_FILE_HOSTS=files.pythonhosted.org"


@pytest.fixture(scope="module")
def upstream(stack, tmp_path_factory):
    """The upstream on (pages kept 2 s, files capped at CAP_KB); off again and gone after the module."""
    tree = fake.projects(tmp_path_factory.mktemp("upstream"))
    fake.start(stack, tree, fake.proxy_image(stack))
    stack.sh(f"pypi-appliance write-config PYPI_UPSTREAM={fake.INDEX} {SETTINGS}")
    try:
        fake.restart(stack)
        yield tree
    finally:
        stack.sh(f"pypi-appliance write-config PYPI_UPSTREAM= {DEFAULTS}")
        fake.restart(stack)
        fake.stop(stack)


def test_an_upstream_only_project_installs_with_pip_and_uv(stack, upstream, tmp_path):
    before = len(fake.asked_paths(stack))
    conf = stack.sh(f"cat {stack.conf}").stdout
    assert f"PYPI_UPSTREAM={fake.INDEX}\n" in conf
    assert f"upstream    {fake.INDEX} for names this index does not hold" in stack.report()
    assert "one index is enough" in stack.sh("pypi-appliance client-config").stdout
    assert pip_install(stack, tmp_path, PASSWORD, project="up-only") == "2.0"
    # The page names the files on the appliance, with the upstream's hashes and metadata.
    status, body, headers = stack.fetch_all(
        "/simple/up-only/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    page = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    wheel = next(f for f in page["files"] if f["filename"] == "up_only-2.0-py3-none-any.whl")
    assert wheel["url"] == f"../../upstream/up-only/{wheel['hashes']['sha256']}/up_only-2.0-py3-none-any.whl"
    path = wheel["url"].removeprefix("../..")
    assert wheel["requires-python"] == ">=3.8" and wheel["core-metadata"]["sha256"]
    assert page["versions"] == ["1.0", "2.0"]
    status, meta, _ = stack.fetch_all(path + ".metadata", user=USER, password=PASSWORD)
    assert status == 200 and hashlib.sha256(meta).hexdigest() == wheel["core-metadata"]["sha256"]
    # The second download is the cache's.
    status, data, headers = stack.fetch_all(path, user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"
    assert hashlib.sha256(data).hexdigest() == wheel["hashes"]["sha256"]
    # Proxied names need the same credentials as local ones.
    assert stack.http("/simple/up-only/") == 401
    assert stack.http(path) == 401

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
        index_url(stack, USER, PASSWORD),
        "up-only==1.0",
    ]
    done = subprocess.run(
        uv, capture_output=True, text=True, timeout=180, env=client_env(SSL_CERT_FILE=stack.ca_file, UV_NO_CONFIG="1")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "uv" / "up_only" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    # Every file crossed from the upstream once.
    files = [path for path in fake.asked_paths(stack)[before:] if path.startswith("/packages/")]
    assert len(files) == len(set(files)), files


def test_a_name_held_here_is_never_asked_upstream(stack, upstream, tmp_path):
    uploaded = twine_upload(stack, make_wheel(tmp_path, "1.0", project="held-name"), PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert pip_install(stack, tmp_path, PASSWORD, project="held-name") == "1.0"
    status, body, _ = stack.fetch_all(
        "/simple/held-name/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200 and [f["filename"] for f in json.loads(body)["files"]] == ["held_name-1.0-py3-none-any.whl"]
    # Spelt otherwise, it is still this index's name.
    assert stack.http("/simple/Held_Name/", user=USER, password=PASSWORD) == 200
    # Nor by the file URLs of the upstream's page.
    wheel = next(data for path, data in upstream.items() if path.endswith("/held_name-9.9-py3-none-any.whl"))
    digest = hashlib.sha256(wheel).hexdigest()
    status, body, _ = stack.fetch_all(
        f"/upstream/held-name/{digest}/held_name-9.9-py3-none-any.whl", user=USER, password=PASSWORD
    )
    assert status == 404 and b"held-name is held by this index" in body
    # ...spelt otherwise either: only normalized names are the upstream's.
    for spelling in ("Held-Name", "HELD_NAME", "held.name"):
        path = f"/upstream/{spelling}/{digest}/held_name-9.9-py3-none-any.whl"
        assert stack.http(path, user=USER, password=PASSWORD) == 404, spelling
    assert not [path for path in fake.asked_paths(stack) if "held" in path.lower()], fake.asked_paths(stack)
    # A request line smuggled in a decoded capture reaches nothing (CR LF never pass).
    smuggled = "/upstream/a%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/health/" + digest + "/x.whl"
    assert stack.http(smuggled, user=USER, password=PASSWORD) in (400, 404)
    assert stack.http("/simple/a%0d%0aX:%20y/", user=USER, password=PASSWORD) in (400, 404)

    # Its last release removed, the name stays this index's: no versions, and none of the upstream's.
    stack.sh("pypi-appliance remove --yes held-name==1.0")
    status, body, _ = stack.fetch_all(
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
            *tls_args(stack),
            "-d",
            str(tmp_path / "none"),
            "held-name",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=client_env(PIP_INDEX_URL=index_url(stack, USER, PASSWORD)),
    )
    assert found.returncode != 0 and "No matching distribution found for held-name" in found.stderr, found.stderr
    assert not [path for path in fake.asked_paths(stack) if "held" in path.lower()], fake.asked_paths(stack)
    # Released by the admin, it is the upstream's.
    stack.sh("pypi-appliance release-name --yes held-name")
    assert pip_install(stack, tmp_path / "released", PASSWORD, project="held-name") == "9.9"
    # Its removed file, the same bytes, comes back and holds the name again.
    again = twine_upload(stack, tmp_path / "held_name-1.0-py3-none-any.whl", PASSWORD)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pip_install(stack, tmp_path / "again", PASSWORD, project="held-name") == "1.0"


def test_the_cache_is_capped_and_cleared(stack, upstream):
    stack.sh("pypi-appliance cache clear")  # only this test's files, in the order it fetches them
    paths = {name: fake.file_path(stack, name, f"{name}-1.0.tar.gz") for name in fake.BIG}
    for name in fake.BIG:
        status, data, _ = stack.fetch_all(paths[name], user=USER, password=PASSWORD)
        assert status == 200 and len(data) == fake.BIG_SIZE
    # nginx's cache manager removes the least recently used beyond the cap
    # (files cached before the last start count once its loader has read
    # them, a minute after the start).
    files = f"{stack.root}{stack.data_dir}/upstream/files-*"
    script = f"find {files} -type f -printf '%k\\n'" + " | awk '{s += $1} END {print s + 0}'"
    deadline = time.monotonic() + 90
    while int(stack.sh(script).stdout) > CAP_KB:
        assert time.monotonic() < deadline, stack.sh(script).stdout
        time.sleep(0.5)
    status, _, headers = stack.fetch_all(paths[fake.BIG[-1]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"  # the newest is kept
    status, _, headers = stack.fetch_all(paths[fake.BIG[0]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"  # the oldest went first

    # The record the hits are counted from lags by up to a second (the front door's buffer).
    deadline = time.monotonic() + 10
    while True:
        shown = stack.sh("pypi-appliance cache").stdout
        hits = re.search(r"^hits +(\d+)% of (\d+) file downloads since", shown, re.M)
        if hits and int(hits.group(2)) >= len(fake.BIG) + 2 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert re.search(rf"^cache +\S+ \S+ of {CAP_KB}k \(PYPI_UPSTREAM_CACHE_MAX\): [1-9]\d* files", shown, re.M), shown
    assert hits and int(hits.group(2)) >= len(fake.BIG) + 2, shown
    # What the cache holds, by project and file (the newest stayed, the oldest came back).
    listed = stack.sh("pypi-appliance cache files").stdout
    newest, oldest = fake.BIG[-1], fake.BIG[0]
    assert f"{newest}  {newest}-1.0.tar.gz  " in listed and f"{oldest}  {oldest}-1.0.tar.gz  " in listed, listed
    assert stack.sh(f"pypi-appliance cache files {fake.BIG[0]}").stdout.splitlines() == [
        line for line in listed.splitlines() if line.startswith(f"{fake.BIG[0]}  ")
    ]
    log = f"{stack.root}/var/log/pypi-appliance/downloads.log"
    before = stack.sh(f"cat {log}").stdout
    out = stack.sh("pypi-appliance cache clear").stdout
    assert "the upstream's cache is empty" in out
    # The record of what was fetched survives a clear; the counts start anew; the clear is audited.
    assert stack.sh(f"cat {log}").stdout.startswith(before)
    assert "no file downloads yet" in stack.sh("pypi-appliance cache").stdout
    assert " cache-clear by=root " in stack.sh(f"tail -n 5 {stack.audit_log}").stdout
    assert re.search(r": 0 files, 0 pages", stack.sh("pypi-appliance cache").stdout)
    status, _, headers = stack.fetch_all(paths[fake.BIG[-1]], user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"
    # Not in backups: it can be fetched again.
    stack.sh(f"pypi-appliance backup {stack.scratch}/upstream-backup.tar.gz")
    assert "upstream" not in stack.sh(f"tar -tzf {stack.scratch}/upstream-backup.tar.gz").stdout


def test_an_upstream_down_leaves_the_cache_serving_and_fails_fast(stack, upstream, tmp_path):
    assert pip_install(stack, tmp_path / "warm", PASSWORD, project="up-only") == "2.0"
    # Frozen: connections open and nothing answers, the worst case for a client.
    stack.sh(f"docker pause {fake.NAME}")
    try:
        time.sleep(3)  # the page (kept 2 s) is stale now
        assert pip_install(stack, tmp_path / "offline", PASSWORD, project="up-only") == "2.0"
        started = time.monotonic()
        status, body, _ = stack.fetch_all("/simple/never-fetched/", user=USER, password=PASSWORD)
        took = time.monotonic() - started
        assert status in (502, 504) and took < 10, (status, took)
        assert b"the upstream did not answer http://index.upstream.test/simple/never-fetched/ within" in body, body
    finally:
        stack.sh(f"docker unpause {fake.NAME}")
    assert stack.http("/simple/never-fetched/", user=USER, password=PASSWORD) == 200


def test_an_upstream_page_decides_nothing(stack, upstream):
    """Its links to file: URLs, to other hosts and without a sha256 are dropped
    (and the upstream service says so); none of them is ever fetched."""
    status, body, _ = stack.fetch_all(
        "/simple/hostile/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, body
    # On the public index host, the relative redirect links are on the upstream's host: kept.
    assert sorted(f["filename"] for f in json.loads(body)["files"]) == [
        "hostile-2.0-py3-none-any.whl",
        "hostile-2.1-py3-none-any.whl",
    ]
    logs = stack.sh("docker logs pypi-appliance-upstream-1 2>&1").stdout
    for why in (
        "file:///etc/passwd is not an http(s) URL",
        "http://elsewhere.test/packages/",
        "neither the upstream's host nor in PYPI_UPSTREAM_FILE_HOSTS",
        "hostile-1.2.tar.gz has no sha256",
    ):
        assert why in logs, (why, logs[-2000:])
    sha = hashlib.sha256(b"").hexdigest()
    for name in ("hostile-1.0.tar.gz", "hostile-1.1.tar.gz", "hostile-1.2.tar.gz"):
        assert stack.http(f"/upstream/hostile/{sha}/{name}", user=USER, password=PASSWORD) == 404
    assert not [path for _, _, path in fake.asked(stack) if path.startswith("/etc") or "elsewhere" in path]


@pytest.fixture(scope="module")
def matrix_local(stack, upstream, tmp_path_factory):
    """A local project (its wheel has a metadata file) beside the upstream's up-only."""
    wheel = make_wheel(tmp_path_factory.mktemp("matrix"), "1.0", project="matrix-local")
    uploaded = twine_upload(stack, wheel, PASSWORD)
    assert uploaded.returncode == 0 or "already exists" in uploaded.stdout + uploaded.stderr, uploaded.stdout
    return "matrix-local"


@pytest.mark.parametrize("pages", ["as-asked", "html"])
@pytest.mark.parametrize("pip", PIPS)
def test_every_supported_pip_installs_local_and_upstream_names(stack, matrix_local, tmp_path, pip, pages):
    """Each pip downloads a local name and an upstream one, through a proxy that
    notes the pages' types (and, for "html", makes every page HTML)."""
    wheel = images.newest_pip() if pip == "newest" else images.pip_wheel(pip)
    with FormatProxy(stack, force_html=pages == "html") as proxy:
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
def test_uv_installs_local_and_upstream_names(stack, matrix_local, tmp_path, pages):
    with FormatProxy(stack, force_html=pages == "html") as proxy:
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


def test_status_says_degraded_while_the_upstream_is_down(stack, upstream):
    assert stack.settled_status().returncode == 0
    stack.sh(f"docker network disconnect {fake.NETWORK} {fake.NAME}")
    try:
        result = stack.sh("pypi-appliance status", check=False)
        assert result.returncode == 2, result.stdout
        assert re.search(
            r"^health\s+DEGRADED: .* but the upstream fails: http://index.upstream.test/simple/ "
            r"is unreachable",
            result.stdout,
            re.M,
        ), result.stdout
        assert json.loads(stack.sh("pypi-appliance status --json", check=False).stdout)["state"] == "degraded"
    finally:
        aliases = " ".join(f"--alias {host}" for host in fake.HOSTS)
        stack.sh(f"docker network connect {aliases} {fake.NETWORK} {fake.NAME}")
    assert stack.sh("pypi-appliance status", check=False).returncode == 0
