"""The one URL as a control point: what the upstream may offer (core.policy).

The upstream serves PEP 691 JSON with upload times (tests/support/fake_upstream:
cooled 1.0 a month old, 2.0 uploaded a minute ago, 3.0 without a time). With
PYPI_UPSTREAM_MIN_AGE=7d pip and uv get 1.0; 2.0 is held (its file URL, as a
lock file names it, refused with the reason, cached or not); 3.0 is not
offered (fail-closed). Rules (upstream allow|deny) take effect at once, for
pages and files already cached too, and each is in the audit log."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import fake_upstream as fake
from tests.support.client import (
    PASSWORD,
    USER,
    client_env,
    index_url,
    pip_install,
    tls_args,
    twine_upload,
    upload_form,
)
from tests.support.dists import make_wheel

pytestmark = pytest.mark.stack

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
POLICY = f"PYPI_UPSTREAM={fake.INDEX} PYPI_UPSTREAM_FILE_HOSTS={fake.FILE_HOST} PYPI_UPSTREAM_MIN_AGE=7d"
DEFAULTS = (
    "PYPI_UPSTREAM= PYPI_UPSTREAM_FILE_HOSTS=files.pythonhosted.org PYPI_UPSTREAM_MIN_AGE=0 "
    "PYPI_UPSTREAM_NOT_AFTER= PYPI_UPSTREAM_ONLY_LISTED=no"
)


@pytest.fixture(scope="module")
def cooled(stack, tmp_path_factory):
    """The upstream on with a 7-day cooldown; the rules, settings and upstream gone after the module."""
    tree = fake.projects(tmp_path_factory.mktemp("upstream"))
    fake.start(stack, tree, fake.proxy_image(stack))
    stack.sh(f"pypi-appliance write-config {POLICY}")
    try:
        fake.restart(stack)
        yield tree
    finally:
        stack.sh(f"rm -f {stack.root}{stack.data_dir}/policy/upstream-rules.json")
        stack.sh(f"pypi-appliance write-config {DEFAULTS}")
        fake.restart(stack)
        fake.stop(stack)


def url(tree: dict, version: str) -> str:
    """The appliance's URL of a cooled wheel, as the page names it (and a lock file would)."""
    name = f"cooled-{version}-py3-none-any.whl"
    data = next(data for path, data in tree.items() if path.endswith(f"/{name}"))
    return f"/upstream/cooled/{hashlib.sha256(data).hexdigest()}/{name}"


def page(stack) -> dict:
    status, body, _ = stack.fetch_all("/simple/cooled/", user=USER, password=PASSWORD, headers=JSON)
    assert status == 200, body
    return json.loads(body)


def get(stack, path: str) -> tuple[int, str, dict]:
    status, body, headers = stack.fetch_all(path, user=USER, password=PASSWORD)
    return status, body.decode("utf-8", "replace"), headers


def install(stack, tmp_path: Path, spec: str, tool: str = "pip") -> subprocess.CompletedProcess:
    target = tmp_path / f"{tool}-{spec}"
    if tool == "pip":
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", *tls_args(stack)]
        env = client_env(PIP_INDEX_URL=index_url(stack, USER, PASSWORD))
    else:
        command = [sys.executable, "-m", "uv", "pip", "install", "--no-cache", "--index-url"]
        command.append(index_url(stack, USER, PASSWORD))
        env = client_env(SSL_CERT_FILE=stack.ca_file, UV_NO_CONFIG="1")
    return subprocess.run(
        [*command, "--target", str(target), spec], capture_output=True, text=True, timeout=180, env=env
    )


def installed(tmp_path: Path, spec: str, tool: str = "pip") -> str:
    return (tmp_path / f"{tool}-{spec}" / "cooled" / "__init__.py").read_text()


def upstream(stack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return stack.sh("pypi-appliance upstream " + " ".join(args), check=check)


def test_the_cooldown_offers_the_old_release_only(stack, cooled, tmp_path):
    # The page lists what is old enough, with the upstream's own upload time (PEP 700).
    listed = page(stack)
    assert [f["filename"] for f in listed["files"]] == ["cooled-1.0-py3-none-any.whl"]
    assert listed["files"][0]["upload-time"] == fake.COOLED["1.0"] and listed["versions"] == ["1.0"]
    for tool in ("pip", "uv"):
        done = install(stack, tmp_path, "cooled", tool)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed(tmp_path, "cooled", tool) == 'VERSION = "1.0"\n'
    # The fresh release is held: said by the helper, with until when; the undated one is not offered.
    held = upstream(stack, "held cooled").stdout
    assert "cooled==2.0  held until " in held and "(PYPI_UPSTREAM_MIN_AGE=7d)" in held
    assert "cooled==3.0  not offered (undated)" in held and "cooled==1.0" not in held
    # Asked for by its URL (a lock file carries it, and skips pip's own cooldown): refused, with why and when.
    status, body, _ = get(stack, url(cooled, "2.0"))
    assert status == 403 and "cooled-2.0-py3-none-any.whl was uploaded upstream at" in body
    assert "holds it until" in body and "pypi-appliance upstream allow cooled==2.0 --reason TEXT" in body
    assert get(stack, url(cooled, "2.0") + ".metadata")[0] == 403
    status, body, _ = get(stack, url(cooled, "3.0"))
    assert status == 403 and "the upstream gives no upload time" in body
    assert not [
        p for p in fake.asked_paths(stack) if p.endswith(("cooled-2.0-py3-none-any.whl", "cooled-3.0-py3-none-any.whl"))
    ]
    # A pin of the held release finds nothing to install.
    done = install(stack, tmp_path, "cooled==2.0")
    assert done.returncode != 0 and "cooled==2.0" in done.stderr


def test_break_glass_offers_a_release_at_once_and_says_why(stack, cooled, tmp_path):
    refused = upstream(stack, "allow cooled==2.0", check=False)
    assert refused.returncode == 1 and "say why cooled==2.0 may skip the cooldown: --reason TEXT" in refused.stderr
    refused = upstream(stack, "allow cooled==9.9 --reason 'a typo'", check=False)
    assert refused.returncode == 1
    assert "the upstream has no release cooled==9.9 (its latest: 1.0, 2.0, 3.0); nothing was allowed" in refused.stderr
    assert page(stack)["versions"] == ["1.0"]  # kept by the front door, and about to be forgotten
    upstream(stack, "allow cooled==2.0 --reason 'CVE-2026-1234 fix, needed today'")
    assert [f["filename"] for f in page(stack)["files"]] == [
        "cooled-1.0-py3-none-any.whl",
        "cooled-2.0-py3-none-any.whl",
    ]
    done = install(stack, tmp_path, "cooled")
    assert done.returncode == 0 and installed(tmp_path, "cooled") == 'VERSION = "2.0"\n', done.stderr
    assert get(stack, url(cooled, "2.0"))[2]["X-Appliance-Upstream"] == "HIT"
    [line] = stack.audit_lines("upstream-allow")
    assert 'by=root rule=cooled==2.0 reason="CVE-2026-1234 fix, needed today"' in line
    rules = upstream(stack, "rules").stdout
    assert "PYPI_UPSTREAM_MIN_AGE=7d" in rules and "allow  cooled==2.0" in rules and "CVE-2026-1234" in rules
    # Taken back: held again, though its file is in the cache now.
    upstream(stack, "allow cooled==2.0 --remove")
    status, body, _ = get(stack, url(cooled, "2.0"))
    assert status == 403 and "holds it until" in body
    assert [f["filename"] for f in page(stack)["files"]] == ["cooled-1.0-py3-none-any.whl"]
    assert stack.audit_lines("upstream-allow-removed")


def test_deny_a_release_a_cached_one_and_a_glob(stack, cooled, tmp_path):
    assert get(stack, url(cooled, "1.0"))[0] == 200  # in the cache now
    upstream(stack, "deny cooled==1.0 --reason 'compromised upload'")
    status, body, _ = get(stack, url(cooled, "1.0"))
    assert status == 404 and "cooled==1.0 is denied by the rule 'deny cooled==1.0 (compromised upload)'" in body
    assert page(stack)["files"] == []
    done = install(stack, tmp_path, "cooled", "uv")
    assert done.returncode != 0
    upstream(stack, "deny cooled==1.0 --remove")
    assert get(stack, url(cooled, "1.0"))[2]["X-Appliance-Upstream"] == "HIT"
    # A glob of names: 404 with the reason, and the upstream is not asked for them.
    before = len(fake.asked_paths(stack))
    upstream(stack, "deny 'cool*' --reason typosquats")
    status, body, _ = stack.fetch_all("/simple/cooled/", user=USER, password=PASSWORD, headers=JSON)
    assert status == 404 and b"cooled is denied by the rule 'deny cool* (typosquats)'" in body
    assert get(stack, url(cooled, "1.0"))[0] == 404
    assert "cooled is denied by the rule" in upstream(stack, "held cooled").stdout
    assert fake.asked_paths(stack)[before:] == []
    upstream(stack, "deny 'cool*' --remove")
    # Bad input is named, and nothing is changed.
    for target, said in (
        ("'../etc'", "'../etc' is neither a project name nor a glob of names"),
        ("'foo-*==1.0'", "a release is one project's, not a glob's"),
        ("'foo==1 0'", "'1 0' is not a version"),
    ):
        refused = upstream(stack, f"deny {target}", check=False)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    refused = upstream(stack, "deny never-set --remove", check=False)
    assert refused.returncode == 1 and "there is no rule 'deny never-set'" in refused.stderr
    assert "no allow or deny rules" in upstream(stack, "rules").stdout


def test_not_after_and_the_allow_list(stack, cooled, tmp_path):
    for setting, said in (
        ("PYPI_UPSTREAM_MIN_AGE=7", "'7' is not a duration such as 7d, 36h"),
        ("PYPI_UPSTREAM_NOT_AFTER=30/11/2026", "'30/11/2026' is not an ISO 8601 date or time"),
        ("PYPI_UPSTREAM_ONLY_LISTED=maybe", "'maybe' is not yes or no"),
    ):
        refused = stack.sh(f"pypi-appliance write-config {setting}", check=False)
        assert refused.returncode == 1 and said in refused.stderr and "nothing was changed" in refused.stderr
    line = fake.COOLED["1.0"][:10]  # the day of 1.0's upload: 2.0 came after it
    stack.sh(f"pypi-appliance write-config PYPI_UPSTREAM_MIN_AGE=0 PYPI_UPSTREAM_NOT_AFTER={line}T23:59:59Z")
    stack.sh("pypi-appliance write-config PYPI_UPSTREAM_ONLY_LISTED=yes")
    fake.restart(stack)
    try:
        status, body, _ = stack.fetch_all("/simple/cooled/", user=USER, password=PASSWORD, headers=JSON)
        assert status == 404 and b"cooled is not on the allow-list (PYPI_UPSTREAM_ONLY_LISTED=yes)" in body
        assert stack.http("/simple/up-only/", user=USER, password=PASSWORD) == 404
        upstream(stack, "allow cooled")
        assert [f["filename"] for f in page(stack)["files"]] == ["cooled-1.0-py3-none-any.whl"]
        status, body, _ = get(stack, url(cooled, "2.0"))
        assert status == 403 and "after PYPI_UPSTREAM_NOT_AFTER=" in body
        done = install(stack, tmp_path, "cooled")
        assert done.returncode == 0 and installed(tmp_path, "cooled") == 'VERSION = "1.0"\n', done.stderr
    finally:
        stack.sh(f"rm -f {stack.root}{stack.data_dir}/policy/upstream-rules.json")
        stack.sh(f"pypi-appliance write-config {POLICY} PYPI_UPSTREAM_NOT_AFTER= PYPI_UPSTREAM_ONLY_LISTED=no")
        fake.restart(stack)


def downloads(stack, *args: str, want: str) -> str:
    """The downloads command's output once it shows want (the front door flushes its record each second)."""
    deadline = time.monotonic() + 10
    while True:
        out = stack.sh("pypi-appliance downloads " + " ".join(args)).stdout
        if want in out or time.monotonic() > deadline:
            return out
        time.sleep(0.25)


def test_who_pulled_what_survives_a_cache_clear(stack, cooled, tmp_path):
    done = install(stack, tmp_path, "cooled==1.0")
    assert done.returncode == 0, done.stderr
    wheel = make_wheel(tmp_path, "1.0", project="team-tool")
    assert twine_upload(stack, wheel, PASSWORD).returncode == 0
    assert stack.http(f"/packages/{wheel.name}", user=USER, password=PASSWORD) == 200
    assert stack.http(f"/packages/{wheel.name}.metadata", user=USER, password=PASSWORD) == 200  # not a download
    stack.sh("pypi-appliance cache clear")
    out = downloads(stack, "cooled==1.0", want="cooled-1.0-py3-none-any.whl")
    line = next(line for line in out.splitlines() if "cooled-1.0-py3-none-any.whl" in line)
    assert re.search(
        rf" {USER} +\d+\.\d+\.\d+\.\d+ +cooled +1\.0 +cooled-1\.0-py3-none-any\.whl \(upstream, cache ", line
    )
    out = downloads(stack, "team-tool", want=wheel.name)
    assert [line for line in out.splitlines() if wheel.name in line and "(this index)" in line and f" {USER} " in line]
    assert len([line for line in out.splitlines() if wheel.name in line]) == 1
    mine = downloads(stack, f"--account {USER}", want=wheel.name)
    assert "cooled-1.0-py3-none-any.whl" in mine and wheel.name in mine
    refused = stack.sh("pypi-appliance downloads", check=False)
    assert refused.returncode == 1 and "name a project (NAME or NAME==VERSION) or an account" in refused.stderr
    assert stack.sh("pypi-appliance remove team-tool==1.0 --yes", check=False).returncode == 0


def post(stack, wheel: Path) -> tuple[int, str]:
    body, content_type = upload_form(wheel)
    status, answer, _ = stack.fetch_all(
        "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
    )
    return status, answer.decode("utf-8", "replace")


def state(stack, name: str, value: str, reason: str = "") -> None:
    stack.sh(f"pypi-appliance project-status {name} {value}" + (f" --reason '{reason}'" if reason else ""))


def test_project_states_of_a_name_held_here(stack, tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="state-probe")
    assert twine_upload(stack, wheel, PASSWORD).returncode == 0
    path = f"/packages/{wheel.name}"
    for value, reason in (("deprecated", "use state-probe-ng"), ("archived", "finished")):
        state(stack, "State_Probe", value, reason)
        listed = json.loads(stack.fetch_all("/simple/state-probe/", user=USER, password=PASSWORD, headers=JSON)[1])
        assert (
            listed["project-status"] == {"status": value, "reason": reason} and listed["meta"]["api-version"] == "1.4"
        )
        assert pip_install(stack, tmp_path / value, PASSWORD, project="state-probe") == "1.0"
        done = install(stack, tmp_path / value, "state-probe", "uv")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / value / "uv-state-probe" / "state_probe" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    # Archived: a new upload is refused, with why, and the refusal is in the audit log.
    status, said = post(stack, make_wheel(tmp_path, "2.0", project="state-probe"))
    assert status == 403 and "state-probe is archived on this index (finished), and takes no uploads" in said
    assert "pypi-appliance project-status state-probe active" in said
    assert [line for line in stack.audit_lines("upload-refused") if "state_probe-2.0" in line and "status=403" in line]
    # Quarantined: no files listed, the file and its metadata gone with the reason, pip and uv find nothing.
    state(stack, "state-probe", "quarantined", "malware found")
    listed = json.loads(stack.fetch_all("/simple/state-probe/", user=USER, password=PASSWORD, headers=JSON)[1])
    assert listed["files"] == [] and listed["project-status"]["status"] == "quarantined"
    status, body, _ = get(stack, path)
    assert status == 410 and "state-probe is quarantined on this index (malware found)" in body
    assert get(stack, path + ".metadata")[0] == 410
    # Without a login, nothing of it: not its state, not the reason.
    for unseen in (path, path + ".metadata"):
        status, body, headers = stack.fetch_all(unseen)
        assert status == 401 and b"malware" not in body and "WWW-Authenticate" in headers, (unseen, status, body)
    for tool in ("pip", "uv"):
        assert install(stack, tmp_path, "state-probe", tool).returncode != 0
    assert post(stack, make_wheel(tmp_path, "3.0", project="state-probe"))[0] == 403
    shown = stack.sh("pypi-appliance project-status").stdout
    assert "state-probe  quarantined" in shown and "malware found" in shown
    # Active again: as before.
    state(stack, "state-probe", "active")
    assert get(stack, path)[0] == 200
    assert pip_install(stack, tmp_path / "active", PASSWORD, project="state-probe") == "1.0"
    assert len(stack.audit_lines("project-status")) >= 4
    refused = stack.sh("pypi-appliance project-status 'state-*' archived", check=False)
    assert refused.returncode == 1 and "a state is a project's: give its name" in refused.stderr


def test_a_name_reserved_takes_no_upload(stack, tmp_path):
    """The incident's hole: a good release uploaded under an upstream name opened
    the name to every publish account. Archived before it is held, nobody publishes it."""
    state(stack, "reserved-name", "archived", "we take it from upstream; nobody publishes it here")
    status, said = post(stack, make_wheel(tmp_path, "2.0", project="reserved-name"))
    assert status == 403 and "reserved-name is archived on this index" in said
    assert stack.http("/simple/reserved-name/", user=USER, password=PASSWORD) == 404  # still not held
    state(stack, "reserved-name", "active")


def test_project_states_of_an_upstream_name(stack, cooled, tmp_path):
    assert get(stack, url(cooled, "1.0"))[0] == 200  # cached
    state(stack, "cooled", "quarantined", "compromised maintainer account")
    listed = page(stack)
    assert listed["files"] == []
    assert listed["project-status"] == {"status": "quarantined", "reason": "compromised maintainer account"}
    status, body, _ = get(stack, url(cooled, "1.0"))
    assert status == 410 and "cooled is quarantined on this index (compromised maintainer account)" in body
    assert install(stack, tmp_path, "cooled", "uv").returncode != 0
    state(stack, "cooled", "deprecated")
    assert page(stack)["project-status"] == {"status": "deprecated"}
    done = install(stack, tmp_path, "cooled")
    assert done.returncode == 0 and installed(tmp_path, "cooled") == 'VERSION = "1.0"\n', done.stderr
    state(stack, "cooled", "active")
    assert get(stack, url(cooled, "1.0"))[2]["X-Appliance-Upstream"] == "HIT"


def test_an_admins_note(stack):
    stack.sh("pypi-appliance audit note 'incident 42: cooled 2.0 compromised upstream, denied'")
    [line] = stack.audit_lines("note")
    assert 'by=root text="incident 42: cooled 2.0 compromised upstream, denied"' in line
    refused = stack.sh("pypi-appliance audit note ' '", check=False)
    assert refused.returncode == 1 and "a note needs its text" in refused.stderr
