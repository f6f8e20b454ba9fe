"""The upstream service on its own, over real HTTP against a small upstream:
its pages (PEP 503 HTML or PEP 691 JSON) become the appliance's, with file
URLs on the appliance and hashes, metadata, requires-python and yanks kept;
files are streamed and refused when their hash is not the page's."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import http.server
import json
import time

import pytest

from pypi_appliance.admin import cache
from pypi_appliance.admin.settings import read_conf
from pypi_appliance.core import policy
from pypi_appliance.services import upstream
from tests.support.serving import serving

WHEEL = b"PK fake wheel bytes"
SDIST = b"fake sdist bytes"
META = b"Metadata-Version: 2.1\nName: demo\nVersion: 2.0\n"
H_WHEEL, H_SDIST, H_META = (hashlib.sha256(b).hexdigest() for b in (WHEEL, SDIST, META))
HTML_PAGE = f"""<!DOCTYPE html><html><body>
<a href="https://files.example/p/demo-2.0-py3-none-any.whl#sha256={H_WHEEL}" data-requires-python="&gt;=3.9"
   data-core-metadata="sha256={H_META}">demo-2.0-py3-none-any.whl</a>
<a href="../../p/demo-1.0.tar.gz#sha256={H_SDIST}" data-yanked="broken build">demo-1.0.tar.gz</a>
<a href="https://files.example/p/bad-1.0.tar.gz#sha256={"0" * 64}">demo-0.1.tar.gz</a>
</body></html>"""


class Fake(http.server.BaseHTTPRequestHandler):
    """An upstream: HTML pages on /simple/, files on /p/ (the test's own host
    stands in for files.example), a JSON page for 'jsonproj'; records each path."""

    seen: list[str] = []
    auth: list[str | None] = []

    def do_GET(self):
        Fake.seen.append(self.path)
        Fake.auth.append(self.headers.get("Authorization"))
        body, kind = {
            "/simple/demo/": (
                HTML_PAGE.replace("https://files.example", f"http://127.0.0.1:{self.server.server_port}").encode(),
                "text/html",
            ),
            "/simple/jsonproj/": (
                json.dumps(
                    {
                        "meta": {"api-version": "1.1"},
                        "name": "jsonproj",
                        "files": [
                            {
                                "filename": "jsonproj-3.0-py3-none-any.whl",
                                "url": "/p/demo-2.0-py3-none-any.whl",
                                "hashes": {"sha256": H_WHEEL},
                                "core-metadata": {"sha256": H_META},
                                "yanked": False,
                                "size": len(WHEEL),
                                "upload-time": "2026-01-01T00:00:00.000000Z",
                            }
                        ],
                    }
                ).encode(),
                "application/vnd.pypi.simple.v1+json",
            ),
            "/p/demo-2.0-py3-none-any.whl": (WHEEL, "application/octet-stream"),
            "/p/demo-2.0-py3-none-any.whl.metadata": (META, "application/octet-stream"),
            "/p/demo-1.0.tar.gz": (SDIST, "application/octet-stream"),
            "/p/bad-1.0.tar.gz": (b"not what the page says", "application/octet-stream"),
            "/simple/hostile/": (
                json.dumps(
                    {
                        "meta": {"api-version": "1.1"},
                        "name": "hostile",
                        "files": [
                            {
                                "filename": "hostile-1.0.tar.gz",
                                "url": "file:///etc/passwd",
                                "hashes": {"sha256": H_SDIST},
                            },
                            {
                                "filename": "hostile-1.1.tar.gz",
                                "url": f"http://localhost:{self.server.server_port}/p/demo-1.0.tar.gz",
                                "hashes": {"sha256": H_SDIST},
                            },
                            {"filename": "hostile-1.2.tar.gz", "url": "/p/demo-1.0.tar.gz", "hashes": {}},
                            {"filename": "hostile-1.3.tar.gz", "url": "/p/demo-1.0.tar.gz", "hashes": "sha256"},
                            {
                                "filename": "hostile-2.0-py3-none-any.whl",
                                "url": "/p/away.whl",
                                "hashes": {"sha256": H_WHEEL},
                                "core-metadata": True,
                            },
                            {
                                "filename": "hostile-2.1-py3-none-any.whl",
                                "url": "/p/here.whl",
                                "hashes": {"sha256": H_WHEEL},
                            },
                        ],
                    }
                ).encode(),
                "application/vnd.pypi.simple.v1+json",
            ),
            "/simple/cooled/": (cooled_page(), "application/vnd.pypi.simple.v1+json"),
            "/simple/huge/": (
                json.dumps({"meta": {"api-version": "1.1"}, "name": "huge", "files": []}).encode() + b" " * 4096,
                "application/vnd.pypi.simple.v1+json",
            ),
            "/simple/many/": (
                json.dumps(
                    {
                        "meta": {"api-version": "1.1"},
                        "name": "many",
                        "files": [
                            {"filename": f"many-{n}.tar.gz", "url": f"file:///x/{n}", "hashes": {"sha256": H_SDIST}}
                            for n in range(50)
                        ],
                    }
                ).encode(),
                "application/vnd.pypi.simple.v1+json",
            ),
        }.get(self.path, (None, None))
        redirects = {
            "/p/away.whl": f"http://localhost:{self.server.server_port}/p/demo-2.0-py3-none-any.whl",
            "/p/here.whl": "/p/demo-2.0-py3-none-any.whl",
        }
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def cooled_page() -> bytes:
    """A JSON page with upload times: 1.0 old, 2.0 a minute ago, 3.0 none (all the one wheel's bytes)."""
    fresh = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 60))
    files = [
        {
            "filename": f"cooled-{version}-py3-none-any.whl",
            "url": "/p/demo-2.0-py3-none-any.whl",
            "hashes": {"sha256": H_WHEEL},
            **({"upload-time": uploaded} if uploaded else {}),
        }
        for version, uploaded in (("1.0", "2020-01-01T00:00:00Z"), ("2.0", fresh), ("3.0", None))
    ]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "cooled", "files": files}).encode()


@pytest.fixture
def service():
    Fake.seen, Fake.auth = [], []
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    up = upstream.Upstream(f"http://127.0.0.1:{fake.server_port}/simple", "ci:s3cret", page_seconds=60)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), upstream.handler(up))

    def get(path, fmt="html"):
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", path, headers={"X-Appliance-Format": fmt})
        response = conn.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as err:
            body = None if err.partial is not None else b""
        return response.status, dict(response.headers), body

    get.upstream = up
    with serving(fake), serving(server):
        yield get


def test_html_page_becomes_the_appliances(service):
    status, headers, body = service("/simple/demo/", "json")
    assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    assert headers["X-Accel-Expires"] == "60"
    page = json.loads(body)
    files = {f["filename"]: f for f in page["files"]}
    wheel = files["demo-2.0-py3-none-any.whl"]
    assert wheel["url"] == f"../../upstream/demo/{H_WHEEL}/demo-2.0-py3-none-any.whl"
    assert wheel["hashes"] == {"sha256": H_WHEEL} and wheel["requires-python"] == ">=3.9"
    assert wheel["core-metadata"] == {"sha256": H_META}
    assert not any("dist-info-metadata" in f for f in page["files"])  # PEP 714 (pip 22.3-23.1 crash)
    assert files["demo-1.0.tar.gz"]["yanked"] == "broken build" and files["demo-1.0.tar.gz"]["core-metadata"] is False
    assert page["versions"] == ["0.1", "1.0", "2.0"] and page["meta"]["api-version"] == "1.4"
    status, _, body = service("/simple/demo/", "html")
    text = body.decode()
    assert status == 200
    assert (
        f'href="../../upstream/demo/{H_WHEEL}/demo-2.0-py3-none-any.whl#sha256={H_WHEEL}" '
        'data-requires-python="&gt;=3.9"'
    ) in text
    assert f'data-core-metadata="sha256={H_META}"' in text and 'data-yanked="broken build"' in text
    assert "files.example" not in text and "127.0.0.1" not in text
    # The credentials went to the upstream's host, for the pages.
    assert Fake.auth[0].startswith("Basic ") and Fake.seen[:2] == ["/simple/demo/", "/simple/demo/"]


def test_json_page_and_relative_urls(service):
    status, _, body = service("/simple/jsonproj/", "json")
    item = json.loads(body)["files"][0]
    assert status == 200 and item["url"] == f"../../upstream/jsonproj/{H_WHEEL}/jsonproj-3.0-py3-none-any.whl"
    assert item["size"] == len(WHEEL) and item["upload-time"] == "2026-01-01T00:00:00.000000Z"
    # The file is the upstream's /p/... (a URL relative to its host), the same bytes.
    assert service(f"/files/jsonproj/{H_WHEEL}/jsonproj-3.0-py3-none-any.whl")[2] == WHEEL
    assert service(f"/files/jsonproj/{H_WHEEL}/jsonproj-3.0-py3-none-any.whl.metadata")[2] == META


def test_files_are_checked_against_the_page(service):
    status, _, body = service(f"/files/demo/{H_WHEEL}/demo-2.0-py3-none-any.whl")
    assert status == 200 and body == WHEEL
    assert service(f"/files/demo/{H_WHEEL}/demo-2.0-py3-none-any.whl.metadata")[2] == META
    # Relative to the page: ../../p/ from /simple/demo/.
    assert service(f"/files/demo/{H_SDIST}/demo-1.0.tar.gz")[2] == SDIST
    # Its bytes are not the page's: the download is cut before its end.
    status, _, body = service(f"/files/demo/{'0' * 64}/demo-0.1.tar.gz")
    assert status == 200 and body is None
    # A name the page lists with another hash (replaced upstream): not this file.
    status, _, body = service(f"/files/demo/{H_SDIST}/demo-2.0-py3-none-any.whl")
    assert status == 404 and b"the upstream lists no demo-2.0-py3-none-any.whl with that hash" in body
    # Only what the upstream's page lists is fetched: no open proxy.
    before = list(Fake.seen)
    status, _, body = service(f"/files/demo/{H_WHEEL}/..%2F..%2Fetc%2Fpasswd")
    assert status == 404 and b"the upstream lists no" in body
    # ...and URLs the page does not list cost the upstream nothing while it is kept.
    for n in range(5):
        assert service(f"/files/demo/{H_WHEEL}/guess-{n}.whl")[0] == 404
    assert Fake.seen[len(before) :] == []


def test_missing_and_unreachable(service):
    status, headers, body = service("/simple/nothing-here/")
    assert (
        status == 404
        and headers["X-Accel-Expires"] == "60"
        and b"no project nothing-here on this index, nor on its upstream http://127.0.0.1:" in body
    )
    down = upstream.Upstream("http://127.0.0.1:9/simple/", "ci:s3cret")
    started = time.monotonic()
    with pytest.raises(upstream.Refused) as refused:
        down.files("demo")
    assert refused.value.status == 502 and "unreachable" in str(refused.value)
    assert time.monotonic() - started < upstream.TIMEOUT + 1
    assert upstream.shown("https://ci:s3cret@private.example/simple/") == "https://private.example/simple/"


def test_another_upstream_starts_an_empty_cache(tmp_path):
    conf = dataclasses.replace(
        read_conf("/nonexistent"), data_dir=str(tmp_path), upstream="https://a.example/simple/", upstream_cache_max="2g"
    )
    cache.write_settings(conf)
    text = (tmp_path / "upstream/settings.conf").read_text()
    assert "geo $from_upstream { default 1; }" in text and "keys_zone=upstream_files_0:16m max_size=2g" in text
    (tmp_path / "upstream/files-0/ab").mkdir(parents=True)
    (tmp_path / "upstream/files-0/ab/entry").write_bytes(b"x" * 5000)
    assert cache.usage(conf)[1] == 1
    cache.write_settings(conf)  # a restart: the same cache
    assert cache.generation(conf) == 0 and cache.usage(conf)[1] == 1
    off = dataclasses.replace(conf, upstream="")
    cache.write_settings(off)  # off, then on again with the same upstream: still the same cache
    assert "geo $from_upstream { default 0; }" in (tmp_path / "upstream/settings.conf").read_text()
    cache.write_settings(conf)
    assert cache.generation(conf) == 0 and cache.usage(conf)[1] == 1
    cache.write_settings(dataclasses.replace(conf, upstream="https://b.example/simple/"))
    assert cache.generation(conf) == 1 and cache.usage(conf) == (0, 0, 0)
    assert not (tmp_path / "upstream/files-0").exists()
    assert "upstream_files_1" in (tmp_path / "upstream/settings.conf").read_text()


def test_a_hostile_page_decides_nothing(service):
    """Links elsewhere (file:, another host) and links without a sha256 are
    dropped; a redirect off the upstream's host is not followed; the
    credentials never leave its host, and come along within it."""
    status, _, body = service("/simple/hostile/", "json")
    files = {f["filename"]: f for f in json.loads(body)["files"]}
    assert status == 200 and sorted(files) == ["hostile-2.0-py3-none-any.whl", "hostile-2.1-py3-none-any.whl"]
    # Metadata without a sha256 would go unchecked: clients get the file instead.
    assert files["hostile-2.0-py3-none-any.whl"]["core-metadata"] is False
    for name in ("hostile-1.0.tar.gz", "hostile-1.1.tar.gz"):
        assert service(f"/files/hostile/{H_SDIST}/{name}")[0] == 404
    before = len(Fake.seen)
    status, _, body = service(f"/files/hostile/{H_WHEEL}/hostile-2.0-py3-none-any.whl")
    assert status == 502 and b"not followed" in body and b"neither the upstream's host nor in" in body, body
    assert Fake.seen[before:] == ["/p/away.whl"]  # localhost was never asked
    status, _, body = service(f"/files/hostile/{H_WHEEL}/hostile-2.1-py3-none-any.whl")
    assert status == 200 and body == WHEEL
    assert Fake.seen[-2:] == ["/p/here.whl", "/p/demo-2.0-py3-none-any.whl"]
    assert Fake.auth[-1] == Fake.auth[-2] and Fake.auth[-1].startswith("Basic ")


def test_the_credentials_never_follow_a_redirect_elsewhere(service):
    up = service.upstream
    other = upstream.Upstream(up.url, "ci:s3cret", file_hosts=f"localhost:{up.host.rsplit(':', 1)[1]}")
    with other.open(up.url.replace("/simple/", "/p/away.whl")) as response:
        assert response.read() == WHEEL  # followed: localhost is a file host here
    assert Fake.seen[-2:] == ["/p/away.whl", "/p/demo-2.0-py3-none-any.whl"]
    assert Fake.auth[-2].startswith("Basic ") and Fake.auth[-1] is None
    assert other.why_not("https://files.example/x.whl").endswith(
        "neither the upstream's host nor in PYPI_UPSTREAM_FILE_HOSTS"
    )
    secure = upstream.Upstream("https://index.example/simple/", file_hosts="files.example")
    assert secure.why_not("http://files.example/x.whl").endswith("is plain http under an https upstream")
    assert secure.why_not("https://files.example/x.whl") is None
    assert secure.why_not("ftp://files.example/x.whl").endswith("is not an http(s) URL")


def test_dropped_links_are_said_a_few_times(service, capsys):
    status, _, body = service("/simple/many/", "json")
    assert status == 200 and json.loads(body)["files"] == []
    err = capsys.readouterr().err
    assert err.count("dropped a link: file:///x/") == 5 and "/simple/many/: dropped 45 more links" in err, err


def test_a_page_larger_than_the_bound_is_refused(service, monkeypatch):
    monkeypatch.setattr(upstream, "PAGE_MAX", 4096)
    status, _, body = service("/simple/huge/", "json")
    assert status == 502 and b"is larger than 0 MiB, more than this appliance reads" in body, body


def policed(service, tmp_path, rules=(), **settings):
    """The service's upstream under a policy: the settings, and a rules file holding rules."""
    path = tmp_path / "policy" / "upstream-rules.json"
    path.parent.mkdir()
    path.write_text(policy.rules_json(rules))
    base = policy.Policy.from_settings(
        settings.get("min_age", "0"), settings.get("not_after", ""), settings.get("only_listed", "no")
    )
    service.upstream.rules = upstream.Rules(base, str(tmp_path))
    return path


def cooled_files(service):
    status, _, body = service("/simple/cooled/", "json")
    assert status == 200, body
    return [f["filename"] for f in json.loads(body)["files"]]


def gate(service, version):
    return service(f"/gate/cooled/{H_WHEEL}/cooled-{version}-py3-none-any.whl")


def test_the_cooldown_offers_only_files_old_enough_and_dated(service, tmp_path):
    assert cooled_files(service) == [f"cooled-{v}-py3-none-any.whl" for v in ("1.0", "2.0", "3.0")]
    policed(service, tmp_path, min_age="7d")
    assert cooled_files(service) == ["cooled-1.0-py3-none-any.whl"]
    status, headers, body = gate(service, "1.0")
    assert status == 200 and headers["X-Accel-Redirect"] == (
        f"/_upstream_file/cooled/{H_WHEEL}/cooled-1.0-py3-none-any.whl"
    )
    # A held file's URL (a lock file names it) is refused with the reason and the time it comes.
    status, _, body = gate(service, "2.0")
    text = body.decode()
    assert status == 403 and "cooled-2.0-py3-none-any.whl was uploaded upstream at" in text
    assert "(PYPI_UPSTREAM_MIN_AGE=7d) holds it until" in text
    assert "pypi-appliance upstream allow cooled==2.0 --reason TEXT" in text
    # Its metadata file too; and the service's own file route, should nginx ever skip the gate.
    assert service(f"/gate/cooled/{H_WHEEL}/cooled-2.0-py3-none-any.whl.metadata")[0] == 403
    assert service(f"/files/cooled/{H_WHEEL}/cooled-2.0-py3-none-any.whl")[0] == 403
    # No upload time: not offered while a cooldown is on (fail-closed).
    status, _, body = gate(service, "3.0")
    assert status == 403 and b"the upstream gives no upload time" in body
    # The helper's view: each file, its state and until when.
    status, _, body = service("/decisions/cooled")
    states = {f["version"]: (f["state"], f["until"]) for f in json.loads(body)["files"]}
    assert states["1.0"] == ("offered", None) and states["3.0"] == ("undated", None)
    assert states["2.0"][0] == "held" and states["2.0"][1] > time.strftime("%Y-%m-%dT", time.gmtime())


def test_a_cached_files_gate_asks_the_upstream_nothing(service, tmp_path):
    policed(service, tmp_path, min_age="7d")
    assert gate(service, "1.0")[0] == 200
    service.upstream.page_seconds = 0  # every page expired
    seen = len(Fake.seen)
    for _ in range(3):
        assert gate(service, "1.0")[0] == 200 and gate(service, "2.0")[0] == 403
    assert Fake.seen[seen:] == []


def test_not_after_break_glass_and_deny(service, tmp_path):
    path = policed(service, tmp_path, not_after="2021-01-01")
    assert cooled_files(service) == ["cooled-1.0-py3-none-any.whl"]
    status, _, body = gate(service, "2.0")
    assert status == 403 and b"after PYPI_UPSTREAM_NOT_AFTER=2021-01-01T00:00:00Z" in body
    # Break-glass: the release is offered at once (the rules file is read again when it changes).
    path.write_text(policy.rules_json([policy.Rule("allow", "cooled", "2.0", "CVE fix")]))
    assert cooled_files(service) == ["cooled-1.0-py3-none-any.whl", "cooled-2.0-py3-none-any.whl"]
    assert gate(service, "2.0")[0] == 200
    # A release denied (a deny wins over the allow), the others kept.
    path.write_text(
        policy.rules_json(
            [policy.Rule("allow", "cooled", "2.0", "CVE fix"), policy.Rule("deny", "cooled", "2.0", "bad")]
        )
    )
    assert cooled_files(service) == ["cooled-1.0-py3-none-any.whl"]
    status, _, body = gate(service, "2.0")
    assert status == 404 and b"cooled==2.0 is denied by the rule 'deny cooled==2.0 (bad)'" in body
    # A name denied by a glob: 404 with the reason, and the upstream is not asked.
    path.write_text(policy.rules_json([policy.Rule("deny", "cool*", None, "typosquats")]))
    seen = len(Fake.seen)
    status, _, body = service("/simple/cooled/", "json")
    assert status == 404 and b"cooled is denied by the rule 'deny cool* (typosquats)'" in body
    assert gate(service, "1.0")[0] == 404
    assert Fake.seen[seen:] == []


def test_the_allow_list_mode(service, tmp_path):
    path = policed(service, tmp_path, only_listed="yes")
    status, _, body = service("/simple/cooled/", "json")
    assert status == 404 and b"not on the allow-list (PYPI_UPSTREAM_ONLY_LISTED=yes)" in body
    # One release allowed: that one only.
    path.write_text(policy.rules_json([policy.Rule("allow", "cooled", "1.0", "needed")]))
    assert cooled_files(service) == ["cooled-1.0-py3-none-any.whl"]
    path.write_text(policy.rules_json([policy.Rule("allow", "co*")]))
    assert len(cooled_files(service)) == 3


def test_an_unreadable_rules_file_offers_nothing(service, tmp_path):
    path = policed(service, tmp_path)
    path.write_text("{not json")
    status, _, body = service("/simple/cooled/", "json")
    assert status == 503 and b"cannot be read" in body and b"nothing is offered" in body


def test_project_states_of_upstream_names(service, tmp_path):
    path = policed(service, tmp_path)
    states = path.parent / policy.STATUS_FILE
    states.write_text(policy.statuses_json({"cooled": {"status": "archived", "reason": "frozen"}}))
    status, _, body = service("/simple/cooled/", "json")
    page = json.loads(body)
    assert page["project-status"] == {"status": "archived", "reason": "frozen"} and len(page["files"]) == 3
    assert page["meta"]["api-version"] == "1.4"
    assert gate(service, "1.0")[0] == 200
    # Quarantined: listed as such, no files, file URLs gone with the reason; the upstream is not asked.
    states.write_text(policy.statuses_json({"cooled": {"status": "quarantined", "reason": "malware"}}))
    seen = len(Fake.seen)
    status, _, body = service("/simple/cooled/", "html")
    assert status == 200 and b'<meta name="pypi:project-status" content="quarantined">' in body
    assert b'<meta name="pypi:project-status-reason" content="malware">' in body and b"cooled-1.0" not in body
    status, _, body = gate(service, "1.0")
    assert status == 410 and b"cooled is quarantined on this index (malware)" in body
    assert Fake.seen[seen:] == []
