"""The upstream on the installed package: switched on and off with
dpkg-reconfigure, a private upstream's credentials (never in the journal),
an upstream on the Docker host across restarts, the incident of the first-hour
trial replayed (who got it, blocked, locked, a cooldown). The rest of the upstream
(caching, held names, hostile pages, every pip): tests/stack/test_upstream.py."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.test_first_hour import reconfigure
from tests.support import fake_upstream as fake
from tests.support.client import PASSWORD, USER, pip_install, twine_upload
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
        system.sh("rm -f /srv/pypi/policy/upstream-rules.json /srv/pypi/policy/project-status.json")
        system.sh(
            "pypi-appliance write-config PYPI_UPSTREAM_PAGE_SECONDS=300 PYPI_UPSTREAM_CACHE_MAX=10g "
            "PYPI_UPSTREAM_CREDENTIALS= PYPI_UPSTREAM_FILE_HOSTS=files.pythonhosted.org PYPI_UPSTREAM_MIN_AGE=0"
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


def test_the_incident_replayed(system, upstream, tmp_path):
    """The first-hour trial's incident (../shared/docs/first-hour-trial.md): "the newest
    release of a package we take from upstream was compromised an hour ago" (cooled 3.0
    here). Who got it, blocked (cached too), the name locked against a publish account,
    every step in the audit log; then a cooldown keeps the next fresh release out
    (cooled 2.0, a minute old), and break-glass lets it in with a reason."""
    ci = "ci-incident"
    ci_password, _ = system.add_generated(ci, "publish")
    bad = fake.file_path(system, "cooled", "cooled-3.0-py3-none-any.whl")
    fresh = fake.file_path(system, "cooled", "cooled-2.0-py3-none-any.whl")
    assert pip_install(system, tmp_path / "before", ci_password, user=ci, project="cooled") == "3.0"
    system.sh("pypi-appliance audit note 'incident 7: cooled 3.0 reported compromised upstream'")
    system.sh("pypi-appliance cache clear")
    # Who got it, when, from where: after the clear too (the record lags a second at most).
    deadline = time.monotonic() + 10
    while f" {ci} " not in (out := system.sh("pypi-appliance downloads cooled==3.0").stdout):
        assert time.monotonic() < deadline, out
        time.sleep(0.25)
    [line] = [line for line in out.splitlines() if f" {ci} " in line]
    assert re.match(rf"\d{{4}}-\d\d-\d\dT\S+ +{ci} +\d+\.\d+\.\d+\.\d+ +cooled +3\.0 +cooled-3\.0-py3", line), line
    # Blocked, for the file the cache held and a lock file names: 404 with the reason; pip gets 2.0.
    system.sh("pypi-appliance upstream deny cooled==3.0 --reason 'compromised, incident 7'")
    status, body, _ = system.fetch_all(bad, user=ci, password=ci_password)
    assert status == 404 and b"cooled==3.0 is denied by the rule 'deny cooled==3.0 (compromised, incident 7)'" in body
    assert pip_install(system, tmp_path / "blocked", ci_password, user=ci, project="cooled") == "2.0"
    # The name locked: nobody publishes a release of their own under it (the trial's workaround went wrong there).
    system.sh("pypi-appliance project-status cooled archived --reason 'incident 7: from upstream only'")
    uploaded = twine_upload(system, make_wheel(tmp_path, "3.1", project="cooled"), PASSWORD)
    assert uploaded.returncode != 0, uploaded.stdout
    assert system.http("/simple/cooled/", user=USER, password=PASSWORD) == 200  # still the upstream's, archived
    assert pip_install(system, tmp_path / "locked", ci_password, user=ci, project="cooled") == "2.0"
    events = [line.split()[1] for line in system.audit_lines()]
    for event in ("note", "cache-clear", "upstream-deny", "project-status", "upload-refused"):
        assert event in events, event
    # Next time: a cooldown, through the installed compose file. The fresh release is held, said, then let in.
    system.sh("pypi-appliance write-config PYPI_UPSTREAM_MIN_AGE=7d")
    try:
        fake.restart(system)
        assert pip_install(system, tmp_path / "cooled", ci_password, user=ci, project="cooled") == "1.0"
        held = system.sh("pypi-appliance upstream held cooled").stdout
        assert "cooled==2.0  held until " in held and "cooled==3.0  not offered (denied)" in held, held
        status, body, _ = system.fetch_all(fresh, user=ci, password=ci_password)
        assert status == 403 and b"holds it until" in body
        system.sh("pypi-appliance upstream allow cooled==2.0 --reason 'vendor confirmed clean'")
        assert pip_install(system, tmp_path / "allowed", ci_password, user=ci, project="cooled") == "2.0"
        assert 'reason="vendor confirmed clean"' in system.audit_lines("upstream-allow")[-1]
    finally:
        system.sh("rm -f /srv/pypi/policy/upstream-rules.json /srv/pypi/policy/project-status.json")
        system.sh("pypi-appliance write-config PYPI_UPSTREAM_MIN_AGE=0")
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
