"""One index URL for everything: names the appliance does not hold come from an
upstream index, cached; names it holds are answered by it alone.

The upstream is nginx serving a generated PEP 503/691 tree in the system's own
Docker, on the appliance's compose network only (the suite's host cannot reach
it), with pages on index.upstream.test and absolute file URLs on
files.upstream.test, as PyPI's are on files.pythonhosted.org."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from tests.e2e.client import PASSWORD, USER, client_env, index_url, make_wheel, pip_install, tls_args, twine_upload
from tests.e2e.test_first_hour import reconfigure

pytestmark = pytest.mark.e2e

UPSTREAM = "http://index.upstream.test/simple/"
FILES = "http://files.upstream.test/packages"
FAKE = "upstream-test"
NETWORK = "pypi-appliance_default"
BIG = [f"big-{n}" for n in range(6)]
BIG_SIZE = 100_000
CAP_KB = 300

NGINX = r"""
events {}
http {
    access_log /dev/stdout;
    map $http_accept $page {
        default index.html;
        "~application/vnd\.pypi\.simple\.v1\+json" index.json;
    }
    server {
        listen 80;
        server_name index.upstream.test;
        root /srv/index;
        types {
            application/vnd.pypi.simple.v1+json json;
            text/html html;
        }
        location /simple/ {
            try_files $uri$page $uri/index.html =404;
        }
    }
    server {
        listen 80;
        server_name files.upstream.test;
        root /srv/files;
    }
}
"""


def add_project(tree: dict, name: str, files: dict[str, bytes], json_too: bool = True) -> None:
    """A project's pages on the index host and its files on the files host."""
    entries, links = [], []
    for filename, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        url = f"{FILES}/{digest[:2]}/{digest[2:4]}/{filename}"
        tree[f"files/packages/{digest[:2]}/{digest[2:4]}/{filename}"] = data
        entry = {"filename": filename, "url": url, "hashes": {"sha256": digest}, "requires-python": ">=3.8",
                 "yanked": False}
        attrs = f'href="{url}#sha256={digest}" data-requires-python="&gt;=3.8"'
        if filename.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")))
            tree[f"files/packages/{digest[:2]}/{digest[2:4]}/{filename}.metadata"] = meta
            entry["core-metadata"] = {"sha256": hashlib.sha256(meta).hexdigest()}
            attrs += f' data-core-metadata="sha256={entry["core-metadata"]["sha256"]}"'
        entries.append(entry)
        links.append(f"<a {attrs}>{html.escape(filename)}</a><br>")
    tree[f"index/simple/{name}/index.html"] = ("<!DOCTYPE html><html><body>" + "\n".join(links)
                                                + "</body></html>\n").encode()
    if json_too:
        tree[f"index/simple/{name}/index.json"] = json.dumps(
            {"meta": {"api-version": "1.1"}, "name": name, "files": entries}).encode()


@pytest.fixture(scope="module")
def upstream(system, installed, tmp_path_factory):
    """The upstream, switched on with dpkg-reconfigure (pages kept 2 s, files
    capped at CAP_KB); off again and gone after the module."""
    wheels = tmp_path_factory.mktemp("upstream")
    tree: dict[str, bytes] = {}
    add_project(tree, "up-only", {w.name: w.read_bytes() for w in
                                  (make_wheel(wheels, v, project="up-only") for v in ("1.0", "2.0"))})
    add_project(tree, "held-name", {make_wheel(wheels, "9.9", project="held-name").name:
                                    make_wheel(wheels, "9.9", project="held-name").read_bytes()})
    add_project(tree, "never-fetched", {make_wheel(wheels, "1.0", project="never-fetched").name:
                                        make_wheel(wheels, "1.0", project="never-fetched").read_bytes()})
    for name in BIG:  # HTML pages only: the service reads PEP 503 too
        add_project(tree, name, {f"{name}-1.0.tar.gz": os.urandom(BIG_SIZE)}, json_too=False)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, data in {**tree, "nginx.conf": NGINX.encode()}.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    system.put("/root/upstream.tar", archive.getvalue())
    system.sh(f"rm -rf /root/upstream && mkdir /root/upstream && tar -xf /root/upstream.tar -C /root/upstream && "
              f"docker rm -f {FAKE} >/dev/null 2>&1; docker network create {FAKE} >/dev/null 2>&1; "
              f"docker run -d --name {FAKE} --network {FAKE} "
              "-v /root/upstream:/srv:ro -v /root/upstream/nginx.conf:/etc/nginx/nginx.conf:ro "
              f"{images_proxy(system)} nginx -g 'daemon off;'")
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=2 PYPI_UPSTREAM_CACHE_MAX={CAP_KB}k")
    try:
        switch(system, UPSTREAM)
        yield tree
    finally:
        system.sh(f"docker network disconnect {NETWORK} {FAKE}", check=False)
        system.sh(f"docker rm -f {FAKE}; docker network rm {FAKE}", check=False)
        system.sh("pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=300 PYPI_UPSTREAM_CACHE_MAX=10g")
        if "PYPI_UPSTREAM=\n" not in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout:
            switch(system, "none")


def images_proxy(system) -> str:
    return system.sh("sed -n 's/^ *image: \\(nginx:.*\\)/\\1/p' /etc/pypi-appliance/compose.yaml").stdout.strip()


def switch(system, url: str) -> str:
    """dpkg-reconfigure with url as the upstream ("none": off); the fake upstream joins the
    appliance's network again (it leaves it first: compose removes the network)."""
    system.sh(f"docker network disconnect {NETWORK} {FAKE}", check=False)
    out = reconfigure(system, upstream=url)
    if url != "none":
        deadline = time.monotonic() + 60
        while system.sh(f"docker network connect --alias index.upstream.test --alias files.upstream.test "
                        f"{NETWORK} {FAKE}", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the appliance's network did not come back"
            time.sleep(0.5)
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    return out


def asked(system) -> list[str]:
    """The paths the upstream was asked for, in order."""
    logs = system.sh(f"docker logs {FAKE} 2>&1").stdout
    return re.findall(r'"GET (\S+) HTTP', logs)


def test_an_upstream_only_project_installs_with_pip_and_uv(system, upstream, tmp_path):
    conf = system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    assert f"PYPI_UPSTREAM={UPSTREAM}\n" in conf
    assert f"upstream    {UPSTREAM} for names this index does not hold" in system.sh("pypi-appliance status").stdout
    assert "one index is enough" in system.sh("pypi-appliance client-config").stdout
    assert pip_install(system, tmp_path, PASSWORD, project="up-only") == "2.0"
    # The page names the files on the appliance, with the upstream's hashes and metadata.
    status, body, headers = system.fetch_all("/simple/up-only/", user=USER, password=PASSWORD,
                                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    page = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    wheel = next(f for f in page["files"] if f["filename"] == "up_only-2.0-py3-none-any.whl")
    assert wheel["url"] == "../../upstream/up-only/up_only-2.0-py3-none-any.whl"
    assert wheel["requires-python"] == ">=3.8" and wheel["core-metadata"]["sha256"]
    assert page["versions"] == ["1.0", "2.0"]
    status, meta, _ = system.fetch_all("/upstream/up-only/up_only-2.0-py3-none-any.whl.metadata",
                                       user=USER, password=PASSWORD)
    assert status == 200 and hashlib.sha256(meta).hexdigest() == wheel["core-metadata"]["sha256"]
    # The second download is the cache's.
    status, data, headers = system.fetch_all("/upstream/up-only/up_only-2.0-py3-none-any.whl",
                                             user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"
    assert hashlib.sha256(data).hexdigest() == wheel["hashes"]["sha256"]
    # Proxied names need the same credentials as local ones.
    assert system.http("/simple/up-only/") == 401
    assert system.http("/upstream/up-only/up_only-2.0-py3-none-any.whl") == 401

    uv = [sys.executable, "-m", "uv", "pip", "install", "--no-cache", "--target", str(tmp_path / "uv"),
          "--index-url", index_url(system, USER, PASSWORD), "up-only==1.0"]
    done = subprocess.run(uv, capture_output=True, text=True, timeout=180,
                          env=client_env(SSL_CERT_FILE=system.ca_file, UV_NO_CONFIG="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "uv" / "up_only" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    # Every file crossed from the upstream once.
    files = [path for path in asked(system) if path.startswith("/packages/")]
    assert len(files) == len(set(files)), files


def test_a_name_held_here_is_never_asked_upstream(system, upstream, tmp_path):
    uploaded = twine_upload(system, make_wheel(tmp_path, "1.0", project="held-name"), PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert pip_install(system, tmp_path, PASSWORD, project="held-name") == "1.0"
    status, body, _ = system.fetch_all("/simple/held-name/", user=USER, password=PASSWORD,
                                       headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert status == 200 and [f["filename"] for f in json.loads(body)["files"]] == [
        "held_name-1.0-py3-none-any.whl"]
    # Spelt otherwise, it is still this index's name.
    assert system.http("/simple/Held_Name/", user=USER, password=PASSWORD) == 200
    assert not [path for path in asked(system) if "held" in path.lower()], asked(system)


def test_the_cache_is_capped_and_cleared(system, upstream):
    for name in BIG:
        assert system.http(f"/simple/{name}/", user=USER, password=PASSWORD) == 200
        status, data, _ = system.fetch_all(f"/upstream/{name}/{name}-1.0.tar.gz", user=USER, password=PASSWORD)
        assert status == 200 and len(data) == BIG_SIZE
    # nginx's cache manager removes the least recently used beyond the cap.
    script = "find /srv/pypi/upstream/files-* -type f -printf '%k\\n' | awk '{s += $1} END {print s + 0}'"
    deadline = time.monotonic() + 30
    while int(system.sh(script).stdout) > CAP_KB:
        assert time.monotonic() < deadline, system.sh(script).stdout
        time.sleep(0.5)
    status, _, headers = system.fetch_all(f"/upstream/{BIG[-1]}/{BIG[-1]}-1.0.tar.gz", user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "HIT"  # the newest is kept
    status, _, headers = system.fetch_all(f"/upstream/{BIG[0]}/{BIG[0]}-1.0.tar.gz", user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"  # the oldest went first

    shown = system.sh("pypi-appliance cache").stdout
    assert re.search(rf"^cache +\S+ \S+ of {CAP_KB}k \(PYPI_UPSTREAM_CACHE_MAX\): [1-9]\d* files", shown, re.M), shown
    hits = re.search(r"^hits +(\d+)% of (\d+) file downloads since", shown, re.M)
    assert hits and int(hits.group(2)) >= len(BIG) + 2, shown
    out = system.sh("pypi-appliance cache clear").stdout
    assert "the upstream's cache is empty" in out
    assert re.search(r": 0 files, 0 pages", system.sh("pypi-appliance cache").stdout)
    status, _, headers = system.fetch_all(f"/upstream/{BIG[-1]}/{BIG[-1]}-1.0.tar.gz", user=USER, password=PASSWORD)
    assert status == 200 and headers["X-Appliance-Upstream"] == "MISS"
    # Not in backups: it can be fetched again.
    system.sh("pypi-appliance backup /root/upstream-backup.tar.gz")
    assert "upstream" not in system.sh("tar -tzf /root/upstream-backup.tar.gz").stdout


def test_an_upstream_down_leaves_the_cache_serving_and_fails_fast(system, upstream, tmp_path):
    assert pip_install(system, tmp_path / "warm", PASSWORD, project="up-only") == "2.0"
    # Frozen: connections open and nothing answers, the worst case for a client.
    system.sh(f"docker pause {FAKE}")
    try:
        time.sleep(3)  # the page (kept 2 s) is stale now
        assert pip_install(system, tmp_path / "offline", PASSWORD, project="up-only") == "2.0"
        started = time.monotonic()
        status, body, _ = system.fetch_all("/simple/never-fetched/", user=USER, password=PASSWORD)
        took = time.monotonic() - started
        assert status in (502, 504) and took < 10, (status, took)
        assert b"the upstream did not answer http://index.upstream.test/simple/never-fetched/ within" in body, body
    finally:
        system.sh(f"docker unpause {FAKE}")
    assert system.http("/simple/never-fetched/", user=USER, password=PASSWORD) == 200


def test_switching_off_stops_proxying_at_once(system, upstream):
    assert system.http("/simple/up-only/", user=USER, password=PASSWORD) == 200
    switch(system, "none")  # an empty answer would keep the current one
    assert "PYPI_UPSTREAM=\n" in system.sh("cat /etc/pypi-appliance/pypi-appliance.conf").stdout
    status, body, _ = system.fetch_all("/simple/up-only/", user=USER, password=PASSWORD)
    assert status == 404 and b"no project up-only on this index" in body
    assert system.http("/upstream/up-only/up_only-2.0-py3-none-any.whl", user=USER, password=PASSWORD) == 404
    assert "upstream    none" in system.sh("pypi-appliance status").stdout
    # Its own names are untouched.
    assert system.http("/simple/held-name/", user=USER, password=PASSWORD) == 200
