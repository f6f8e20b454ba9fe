"""Credentials that fit CI, on the installed package: publish scopes, tokens
that expire or are revoked (refused at once, cached answers too), trusted
publishing from a local OIDC issuer with its own CA and keys (PEP 807's
discovery and PyPI's exchange routes, through the front door), and PEP 740
attestations kept and served back."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from tests.support import oidc
from tests.support.client import PASSWORD, USER, pip_install, twine_upload
from tests.support.dists import make_attestation, make_wheel

pytestmark = pytest.mark.e2e

AUDIT = "/var/log/pypi-appliance/audit.log"
ISSUER_PORT = 9443
TRUSTED_CA = "/usr/local/share/ca-certificates/test-issuer.crt"


def add_publisher(system, name: str, password: str, projects: str) -> None:
    system.sh(
        f"pypi-appliance user add --role publish --projects '{projects}' --password-stdin {name}", input=password + "\n"
    )


def listed(system, project: str) -> bool:
    return system.http(f"/simple/{project}/", user=USER, password=PASSWORD) == 200


def remove(system, *releases: str) -> None:
    for release in releases:
        system.sh(f"pypi-appliance remove --yes '{release}'", check=False)


def said(result) -> str:
    """What a client printed, its lines unwrapped (twine wraps them to the terminal)."""
    return " ".join((result.stdout + result.stderr).split())


def token_create(system, options: str) -> str:
    result = system.sh(f"pypi-appliance token create {options}")
    assert "shown once" in result.stderr
    return result.stdout.strip()


def test_a_scoped_publisher_publishes_its_projects_only(system, installed, tmp_path):
    add_publisher(system, "team-a", "team-a-password", "cred-a-*")
    try:
        assert "team-a publish cred-a-*" in system.sh("pypi-appliance user list").stdout
        ok = twine_upload(system, make_wheel(tmp_path, "1.0", project="cred-a-core"), "team-a-password", user="team-a")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert listed(system, "cred-a-core")
        # Another team's project, and a new name outside the scope: 403 naming both, nothing kept.
        for project in ("cred-b-core", "leftpadx"):
            refused = twine_upload(
                system, make_wheel(tmp_path, "1.0", project=project), "team-a-password", user="team-a"
            )
            assert refused.returncode != 0
            assert f"team-a may publish only cred-a-*, not {project}" in said(refused)
            assert "pypi-appliance user scope team-a" in said(refused)
            assert not listed(system, project)
            assert (
                system.sh(f"ls /srv/pypi/packages | grep -c '^{project.replace('-', '_')}-' || true").stdout.strip()
                == "0"
            )
        assert "upload-refused" in system.sh(f"grep 'account=team-a' {AUDIT}").stdout
        # Widened: at once, no restart.
        system.sh("pypi-appliance user scope team-a 'cred-a-*,leftpadx'")
        ok = twine_upload(system, make_wheel(tmp_path, "1.0", project="leftpadx"), "team-a-password", user="team-a")
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        system.sh("pypi-appliance user remove team-a")
        remove(system, "cred-a-core==1.0", "leftpadx==1.0")


def test_tokens_work_then_stop_at_once(system, installed, tmp_path):
    short = token_create(system, "--role publish --projects 'cred-t-*' --expires 25s --name ci-short")
    created = time.monotonic()
    revoked = token_create(system, "--role publish --projects 'cred-t-*' --expires 1d --name ci-revoked")
    reader = token_create(system, "--role read --expires 1h --name ci-reader")
    try:
        ok = twine_upload(system, make_wheel(tmp_path, "1.0", project="cred-t-core"), short, user="__token__")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        outside = twine_upload(system, make_wheel(tmp_path, "1.0", project="cred-u-core"), short, user="__token__")
        assert "token:ci-short may publish only cred-t-*, not cred-u-core" in said(outside)
        assert pip_install(system, tmp_path, reader, user="__token__", project="cred-t-core") == "1.0"
        denied = twine_upload(system, make_wheel(tmp_path, "1.1", project="cred-t-core"), reader, user="__token__")
        assert denied.returncode != 0 and "403 Forbidden" in said(denied)  # the front door's (test_access: its text)
        listing = system.sh("pypi-appliance token list").stdout
        row = next(line for line in listing.splitlines() if line.startswith("ci-short "))
        assert "publish  cred-t-*" in row and "active" in row and row.count("-") > 3
        # Revoked: refused on the next request, though the front door had its answer cached.
        assert system.http("/simple/", user="__token__", password=revoked) == 200
        system.sh("pypi-appliance token revoke ci-revoked")
        assert system.http("/simple/", user="__token__", password=revoked) == 401
        # Expired: refused when it ends, cached or not.
        assert system.http("/simple/", user="__token__", password=short) == 200
        time.sleep(max(0.0, 26 - (time.monotonic() - created)))
        assert system.http("/simple/", user="__token__", password=short) == 401
        states = {line.split()[0]: line for line in system.sh("pypi-appliance token list").stdout.splitlines()}
        assert "expired" in states["ci-short"] and "revoked" in states["ci-revoked"]
        log = system.sh(f"cat {AUDIT}").stdout
        assert "token-create by=root token=ci-short role=publish projects=cred-t-*" in log
        assert "token-revoke by=root token=ci-revoked" in log
        assert 'account=token:ci-short why="token expired"' in log
        # Shown once: never in the logs, the audit log, status, the debconf database or on disk.
        status = system.sh("pypi-appliance status", check=False).stdout
        journal = system.sh("journalctl -u pypi-appliance --no-pager -o cat").stdout
        debconf = system.sh("cat /var/cache/debconf/config.dat").stdout
        disk = system.sh(f"grep -rl -e '{short}' -e '{reader}' /srv/pypi /etc/pypi-appliance /var/log || true").stdout
        for secret in (short, revoked, reader):
            assert secret not in log + status + journal + debconf
        assert disk == ""
    finally:
        system.sh("pypi-appliance token revoke ci-reader", check=False)
        remove(system, "cred-t-core==1.0")


def copy_tree(system, local: Path, remote: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(local, arcname=".")
    system.sh(f"mkdir -p {remote} && tar -x -C {remote}", input=buffer.getvalue())


@pytest.fixture
def issuer(system, installed, tmp_path):
    """An OIDC issuer on the system's own loopback, over HTTPS with a CA the
    host trusts (as an internal GitLab with a company CA would be)."""
    found = oidc.Issuer(tmp_path / "issuer", f"https://127.0.0.1:{ISSUER_PORT}")
    copy_tree(system, tmp_path / "issuer", "/root/issuer")
    system.put("/root/oidc_issuer.py", Path(oidc.__file__).read_bytes())
    system.sh(f"cp /root/issuer/tls/ca.crt {TRUSTED_CA} && update-ca-certificates >/dev/null")
    system.sh(
        f"nohup python3 /root/oidc_issuer.py /root/issuer {ISSUER_PORT} >/dev/null 2>&1 & echo $! >/root/issuer.pid"
    )
    found.publish = lambda: copy_tree(system, tmp_path / "issuer" / "web", "/root/issuer/web")
    deadline = time.monotonic() + 20
    while system.sh(f"curl -sf https://127.0.0.1:{ISSUER_PORT}/jwks >/dev/null", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the test issuer did not start"
        time.sleep(0.2)
    yield found
    system.sh("kill $(cat /root/issuer.pid)", check=False)
    system.sh(
        "rm -f /usr/local/share/ca-certificates/test-issuer.crt && update-ca-certificates --fresh >/dev/null",
        check=False,
    )


def mint(system, token: str) -> tuple[int, dict]:
    status, body = system.fetch(
        "/_/oidc/mint-token",
        method="POST",
        data=json.dumps({"token": token}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return status, json.loads(body)


def test_trusted_publishing(system, installed, issuer, tmp_path):
    assert system.http(f"/.well-known/pytp/{hashlib.sha256(b'/').hexdigest()}") == 404  # no trust yet
    added = system.sh(
        f"pypi-appliance trust add --name gl-team-a --issuer {issuer.url} "
        "--claims 'project_path=group/team-a,ref_protected=true' --projects 'cred-o-*'"
    )
    assert "may publish cred-o-*" in added.stdout
    try:
        # PEP 807 discovery, then the audience, without any login.
        status, body = system.fetch(f"/.well-known/pytp/{hashlib.sha256(b'/').hexdigest()}")
        endpoints = json.loads(body)
        assert status == 200 and endpoints["mint-token-endpoint"].endswith("/_/oidc/mint-token")
        status, body = system.fetch("/_/oidc/audience")
        audience = json.loads(body)["audience"]
        assert status == 200 and audience.startswith("https://")
        claims = {"aud": audience}

        status, answer = mint(system, issuer.token(**claims))
        assert status == 200, answer
        minted = answer["token"]
        assert 890 <= answer["expires"] - time.time() <= 900
        ok = twine_upload(system, make_wheel(tmp_path, "1.0", project="cred-o-core"), minted, user="__token__")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        outside = twine_upload(system, make_wheel(tmp_path, "1.0", project="cred-p-core"), minted, user="__token__")
        assert outside.returncode != 0 and "may publish only cred-o-*, not cred-p-core" in said(outside)
        assert not listed(system, "cred-p-core")

        # Each refusal: 422 with why, nothing minted.
        replayed = issuer.token(**claims)
        assert mint(system, replayed)[0] == 200
        cases = {
            "wrong issuer": (issuer.token(iss="https://127.0.0.1:1", **claims), "no trust names the issuer"),
            "wrong audience": (issuer.token(aud="https://elsewhere.example"), "for another audience"),
            "expired": (issuer.token(lifetime=-300, **claims), "expired"),
            "wrong claim": (issuer.token(project_path="group/team-b", **claims), "project_path=group/team-a"),
            "replayed": (replayed, "used before"),
            "bad signature": (issuer.forged(**claims), "signature does not verify"),
        }
        old_kid = issuer.published[-1]
        old_key_token = issuer.token(kid=old_kid, **claims)
        for case, (token, why) in cases.items():
            status, answer = mint(system, token)
            assert status == 422 and why in answer["errors"][0]["description"], (case, answer)
        # A key rotated out: tokens of the new key are minted, the dropped key's refused.
        new_kid = issuer.rotate()
        issuer.publish()
        time.sleep(10)  # the exchange fetches an issuer's keys again at most every 10 s
        assert mint(system, issuer.token(kid=new_kid, **claims))[0] == 200
        status, answer = mint(system, old_key_token)
        assert status == 422 and answer["errors"][0]["code"] == "unknown-key", answer

        log = system.sh(f"cat {AUDIT}").stdout
        mints = [line for line in log.splitlines() if " oidc-mint " in line]
        assert len(mints) == 3 and all("trust=gl-team-a" in line for line in mints)  # before the restart below
        assert "claims=project_path=group/team-a,ref_protected=true" in mints[0]
        refusals = [line for line in log.splitlines() if " oidc-refused " in line]
        assert len(refusals) >= 7 and all("iss=" in line for line in refusals)
        assert minted not in log
        listing = system.sh("pypi-appliance token list").stdout
        assert "oidc-gl-team-a-" in listing and "oidc:gl-team-a" in listing

        # The exchange dies: the service starts it again, status says so meanwhile.
        held = system.sh("ss -xlpn src /run/pypi-appliance/oidc/exchange.sock").stdout
        pid = held.split("pid=", 1)[1].split(",", 1)[0]
        system.sh(f"kill -9 {pid}")
        assert mint(system, issuer.token(**claims))[0] == 503
        deadline = time.monotonic() + 30
        while (status := mint(system, issuer.token(**claims))[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == 200
        assert "the token exchange answers" in system.sh("pypi-appliance status", check=False).stdout
        assert "the token exchange ended (-9); started again" in system.sh("journalctl -u pypi-appliance -o cat").stdout

        # Removing the trust revokes what it minted, at once.
        assert system.http("/simple/", user="__token__", password=minted) == 200
        system.sh("pypi-appliance trust remove gl-team-a")
        assert system.http("/simple/", user="__token__", password=minted) == 401
    finally:
        system.sh("pypi-appliance trust remove gl-team-a", check=False)
        remove(system, "cred-o-core==1.0")


def test_attestations_are_kept_and_served_back(system, installed, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="cred-att")
    attestation = make_attestation(wheel)
    ok = twine_upload(system, wheel, PASSWORD, attestations=(attestation,))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    try:
        status, body = system.fetch(
            "/simple/cred-att/", user=USER, password=PASSWORD, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        page = json.loads(body)
        (entry,) = page["files"]
        assert status == 200 and entry["provenance"] == f"../../packages/{wheel.name}.provenance"
        status, served, headers = system.fetch_all(f"/packages/{wheel.name}.provenance", user=USER, password=PASSWORD)
        assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.integrity.v1+json"
        stored = system.sh(f"base64 -w0 /srv/pypi/packages/{wheel.name}.provenance").stdout
        assert served == base64.b64decode(stored)  # byte for byte what was kept
        provenance = json.loads(served)
        (bundle,) = provenance["attestation_bundles"]
        assert bundle["attestations"] == [json.loads(attestation.read_text())]
        assert bundle["publisher"] == {"kind": "pypi-appliance", "claims": {"account": USER}}
        assert "attestations=1" in system.sh(f"grep 'file={wheel.name}' {AUDIT}").stdout
        # Attestations of other contents: refused, nothing kept.
        other = make_wheel(tmp_path, "1.1", project="cred-att")
        wrong = make_attestation(other, sha256="0" * 64)
        refused = twine_upload(system, other, PASSWORD, attestations=(wrong,))
        assert refused.returncode != 0 and "do not fit the file" in said(refused)
        assert system.sh("ls /srv/pypi/packages/ | grep -c '^cred_att-1.1' || true").stdout.strip() == "0"
    finally:
        remove(system, "cred-att==1.0")
    assert system.sh(f"ls /srv/pypi/packages/{wheel.name}.provenance", check=False).returncode != 0
