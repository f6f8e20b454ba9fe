"""The upstream on the installed package: switched on and off with
dpkg-reconfigure, a private upstream's credentials (never in the journal),
an upstream on the Docker host across restarts. The rest of the upstream
(caching, held names, hostile pages, every pip): tests/stack/test_upstream.py."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_first_hour import reconfigure
from tests.support import fake_upstream as fake
from tests.support.client import PASSWORD, USER, twine_upload
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

CAP_KB = 300
CONF = "/etc/pypi-appliance/pypi-appliance.conf"


@pytest.fixture(scope="module")
def upstream(system, installed, tmp_path_factory):
    """The upstream, switched on with dpkg-reconfigure (pages kept 2 s, files
    capped at CAP_KB); off again and gone after the module."""
    tree = fake.projects(tmp_path_factory.mktemp("upstream"))
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


def test_a_private_upstream_gets_its_credentials_and_nobody_sees_them(system, upstream):
    creds = "/etc/pypi-appliance/upstream-credentials"
    secret = fake.PRIVATE_PASSWORD
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM={fake.PRIVATE} PYPI_UPSTREAM_CREDENTIALS=")
    fake.restart(system)
    status, body, _ = system.fetch_all("/simple/private-only/", user=USER, password=PASSWORD)
    assert status == 502 and b"the upstream refused the appliance (401)" in body, body
    assert b"PYPI_UPSTREAM_CREDENTIALS" in body
    # A file others may read is refused, with what to run.
    system.sh(f"rm -f {creds} && umask 022 && printf '%s\\n' '{fake.PRIVATE_USER}:{secret}' > {creds}")
    system.sh(f"pypi-appliance write-config PYPI_UPSTREAM_CREDENTIALS={creds}")
    refused = system.sh("pypi-appliance up", check=False)
    assert refused.returncode == 1 and f"chgrp 9898 {creds} && chmod 0640 {creds}" in refused.stderr, refused.stderr
    system.sh(f"chgrp 9898 {creds} && chmod 0640 {creds}")
    fake.restart(system)
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
    fake.restart(system)


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
            fake.restart(system)
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
        fake.restart(system)


# Last: the module's other tests need the upstream on.
def test_switching_off_stops_proxying_at_once(system, upstream, tmp_path):
    uploaded = twine_upload(system, make_wheel(tmp_path, "1.0", project="stays-local"), PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    path = fake.file_path(system, "up-only", "up_only-2.0-py3-none-any.whl")
    switch(system, "none")  # an empty answer would keep the current one
    assert "PYPI_UPSTREAM=\n" in system.sh(f"cat {CONF}").stdout
    status, body, _ = system.fetch_all("/simple/up-only/", user=USER, password=PASSWORD)
    assert status == 404 and b"no project up-only on this index" in body
    assert system.http(path, user=USER, password=PASSWORD) == 404
    assert "upstream    none" in system.report()
    # Its own names are untouched.
    assert system.http("/simple/stays-local/", user=USER, password=PASSWORD) == 200
