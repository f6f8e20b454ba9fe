"""An upstream index for the appliance to proxy (tests and bench): nginx, in
the appliance's Docker engine, serving a generated PEP 503/691 tree. Pages are on
index.upstream.test (and, behind a password, private.upstream.test), files on
files.upstream.test by absolute URLs, as PyPI's are on files.pythonhosted.org.
It joins only the appliance's compose network: the suite's host cannot reach it."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path

from tests.support.client import PASSWORD, USER
from tests.support.dists import make_wheel

NAME = "upstream-test"
NETWORK = "pypi-appliance_default"
FILE_HOST = "files.upstream.test"  # the appliance's PYPI_UPSTREAM_FILE_HOSTS must name it
HOSTS = ("index.upstream.test", "private.upstream.test", FILE_HOST)
INDEX = "http://index.upstream.test/simple/"
PRIVATE = "http://private.upstream.test/simple/"
FILES = f"http://{FILE_HOST}/packages"
PRIVATE_USER, PRIVATE_PASSWORD = "mirror", "up s3cret"
# Projects with one 100 kB sdist each and HTML pages only (the service reads
# PEP 503 too), to fill a small cache.
BIG = [f"big-{n}" for n in range(6)]
# A project with PEP 700 upload times (JSON pages): one release old, one
# uploaded a minute ago, one without a time.
COOLED = {
    "1.0": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 30 * 86400)),
    "2.0": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60)),
    "3.0": None,
}
BIG_SIZE = 100_000

NGINX = r"""
events {}
http {
    log_format hosts '$host "$remote_user" "$request" $status';
    access_log /dev/stdout hosts;
    map $http_accept $page {
        default index.html;
        "~application/vnd\.pypi\.simple\.v1\+json" index.json;
    }
    types {
        application/vnd.pypi.simple.v1+json json;
        text/html html;
    }
    server {
        listen 80;
        server_name index.upstream.test;
        root /srv/index;
        location /simple/ {
            try_files $uri$page $uri/index.html =404;
        }
    }
    server {
        listen 80;
        server_name private.upstream.test;
        root /srv/index;
        auth_basic "upstream";
        auth_basic_user_file /srv/htpasswd;
        location /simple/ {
            try_files $uri$page $uri/index.html =404;
        }
        # Downloads redirected, as Artifactory's go to object storage: to the
        # files host (one the appliance fetches from), or to a host it does not.
        location ~ ^/moved/(?<rest>.+)$ {
            return 302 http://files.upstream.test/packages/$rest;
        }
        location /away/ {
            return 302 http://elsewhere.test/;
        }
    }
    server {
        listen 80;
        server_name files.upstream.test;
        root /srv/files;
    }
}
"""


def add_project(
    tree: dict, name: str, files: dict[str, bytes], json_too: bool = True, uploaded: dict | None = None
) -> None:
    """A project's pages on the index host and its files (and wheels' metadata
    files) on the files host; uploaded: a file's PEP 700 upload-time (JSON only)."""
    entries, links = [], []
    for filename, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        path = f"{digest[:2]}/{digest[2:4]}/{filename}"
        tree[f"files/packages/{path}"] = data
        entry = {
            "filename": filename,
            "url": f"{FILES}/{path}",
            "hashes": {"sha256": digest},
            "requires-python": ">=3.8",
            "yanked": False,
        }
        if (uploaded or {}).get(filename):
            entry["upload-time"] = uploaded[filename]
        attrs = f'href="{FILES}/{path}#sha256={digest}" data-requires-python="&gt;=3.8"'
        if filename.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")))
            tree[f"files/packages/{path}.metadata"] = meta
            entry["core-metadata"] = {"sha256": hashlib.sha256(meta).hexdigest()}
            attrs += f' data-core-metadata="sha256={entry["core-metadata"]["sha256"]}"'
        entries.append(entry)
        links.append(f"<a {attrs}>{html.escape(filename)}</a><br>")
    tree[f"index/simple/{name}/index.html"] = (
        "<!DOCTYPE html><html><body>" + "\n".join(links) + "</body></html>\n"
    ).encode()
    if json_too:
        tree[f"index/simple/{name}/index.json"] = json.dumps(
            {"meta": {"api-version": "1.1"}, "name": name, "files": entries}
        ).encode()


def projects(directory: Path) -> dict[str, bytes]:
    """The suite's upstream: up-only (two releases), held-name, never-fetched,
    private-only, cooled (upload times), a hostile page, and the BIG projects;
    wheels made in directory."""
    tree: dict[str, bytes] = {}
    add_project(
        tree,
        "up-only",
        {w.name: w.read_bytes() for w in (make_wheel(directory, v, project="up-only") for v in ("1.0", "2.0"))},
    )
    for name, version in (("held-name", "9.9"), ("never-fetched", "1.0"), ("private-only", "1.0")):
        wheel = make_wheel(directory, version, project=name)
        add_project(tree, name, {wheel.name: wheel.read_bytes()})
    wheels = {v: make_wheel(directory, v, project="cooled") for v in COOLED}
    add_project(
        tree,
        "cooled",
        {w.name: w.read_bytes() for w in wheels.values()},
        uploaded={wheels[v].name: when for v, when in COOLED.items()},
    )
    up_only = next(path for path in tree if path.endswith("/up_only-1.0-py3-none-any.whl"))
    add_hostile(tree, "hostile", up_only.removeprefix("files/packages/"), tree[up_only])
    for name in BIG:
        add_project(tree, name, {f"{name}-1.0.tar.gz": os.urandom(BIG_SIZE)}, json_too=False)
    return tree


def add_hostile(tree: dict, name: str, wheel_path: str, wheel: bytes) -> None:
    """A page (JSON) whose links the appliance must not follow: a file: URL,
    another host, no sha256; and two redirected downloads of a real wheel
    (wheel_path under the files host), relative to the page's host."""
    digest = hashlib.sha256(wheel).hexdigest()
    entry = lambda filename, url, hashes: {"filename": filename, "url": url, "hashes": hashes}  # noqa: E731
    files = [
        entry(f"{name}-1.0.tar.gz", "file:///etc/passwd", {"sha256": digest}),
        entry(f"{name}-1.1.tar.gz", f"http://elsewhere.test/packages/{wheel_path}", {"sha256": digest}),
        entry(f"{name}-1.2.tar.gz", f"{FILES}/{wheel_path}", {}),
        entry(f"{name}-2.0-py3-none-any.whl", f"/moved/{wheel_path}", {"sha256": digest}),
        entry(f"{name}-2.1-py3-none-any.whl", f"/away/{wheel_path}", {"sha256": digest}),
    ]
    tree[f"index/simple/{name}/index.json"] = json.dumps(
        {"meta": {"api-version": "1.1"}, "name": name, "files": files}
    ).encode()


def start(appliance, tree: dict, image: str) -> None:
    """Copy the tree beside the appliance and start the upstream (not yet on the appliance's network)."""
    tree = {**tree, "nginx.conf": NGINX.encode(), "htpasswd": f"{PRIVATE_USER}:{{PLAIN}}{PRIVATE_PASSWORD}\n".encode()}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, data in tree.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    where = tree_dir(appliance)
    appliance.put(f"{where}.tar", archive.getvalue())
    appliance.sh(
        f"rm -rf {where} && mkdir -p {where} && tar -xf {where}.tar -C {where} && "
        f"docker rm -f {NAME} >/dev/null 2>&1; docker network create {NAME} >/dev/null 2>&1; "
        f"docker run -d --name {NAME} --network {NAME} -v {where}:/srv:ro "
        f"-v {where}/nginx.conf:/etc/nginx/nginx.conf:ro {image} nginx -g 'daemon off;'"
    )


def tree_dir(appliance) -> str:
    """Where the upstream's pages and files are, on the appliance's host."""
    return f"{appliance.scratch}/upstream"


def stop(appliance) -> None:
    appliance.sh(f"docker network disconnect {NETWORK} {NAME}", check=False)
    appliance.sh(f"docker rm -f {NAME}; docker network rm {NAME}", check=False)


def proxy_image(appliance) -> str:
    """The nginx image the installed compose file names (in the appliance's engine)."""
    compose = f"{appliance.root}/etc/pypi-appliance/compose.yaml"
    return appliance.sh(f"sed -n 's/^ *image: \\(nginx:.*\\)/\\1/p' {compose}").stdout.strip()


def restarting(appliance, action) -> None:
    """Run action (which restarts the appliance), the upstream leaving the
    appliance's network before (compose removes it) and joining it after."""
    appliance.sh(f"docker network disconnect {NETWORK} {NAME}", check=False)
    action()
    deadline = time.monotonic() + 60
    aliases = " ".join(f"--alias {host}" for host in HOSTS)
    while appliance.sh(f"docker network connect {aliases} {NETWORK} {NAME}", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the appliance's network did not come back"
        time.sleep(0.5)


def asked(appliance) -> list[tuple[str, str, str]]:
    """(host, user, path) of every request the upstream got, in order."""
    logs = appliance.sh(f"docker logs {NAME} 2>&1").stdout
    return re.findall(r'^(\S+) "([^"]*)" "GET (\S+) HTTP', logs, re.M)


def file_path(appliance, project: str, filename: str) -> str:
    """The appliance's path for a file of the upstream's, from its page."""
    status, body, _ = appliance.fetch_all(
        f"/simple/{project}/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert status == 200, (status, body)
    url = next(f["url"] for f in json.loads(body)["files"] if f["filename"] == filename)
    assert url.startswith(f"../../upstream/{project}/"), url
    return url.removeprefix("../..")


def restart(appliance) -> None:
    """Restart the appliance, the upstream joining its new network."""
    restarting(appliance, appliance.restart)


def asked_paths(appliance) -> list[str]:
    """The paths the upstream was asked for, in order."""
    return [path for _, _, path in asked(appliance)]
