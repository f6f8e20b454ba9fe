"""The upstream: names the appliance does not hold, answered from another
index (PYPI_UPSTREAM, PyPI's simple API usually), for nginx to cache.

nginx asks only for names without a local page: a name you hold is answered
by you alone, whatever the upstream has (no dependency confusion).

    GET /simple/<project>/   the upstream's page, in the format nginx names
                             (X-Appliance-Format: html|json), its file URLs
                             pointing at the appliance's /upstream/<project>/<hash>/
    GET /files/<project>/<hash>/<file>[.metadata]
                             a file the upstream's page lists with that hash,
                             streamed and checked against it on the way

    GET /gate/<project>/<hash>/<file>[.metadata]
                             the policy's word on a file (core.policy: cooldown,
                             NOT_AFTER, allow and deny rules), asked by nginx
                             before every download, cached or not: where the
                             file is (X-Accel-Redirect), or why not
    GET /decisions/<project> every file the upstream lists and the policy's word
                             on each (`pypi-appliance upstream held|allow`)

The hash in the URL keys nginx's cache: a file the upstream replaces under the
same name (a private upstream may) is fetched anew, never served stale.

The upstream's pages are data, not instructions: only links on the
upstream's own host or a host in PYPI_UPSTREAM_FILE_HOSTS, over http(s) (https
when the upstream is https), with a sha256, are kept; the credentials go to
the upstream's host only and never follow a redirect; a redirect leaves those
hosts never.

Pages are kept by nginx for PYPI_UPSTREAM_PAGE_SECONDS (X-Accel-Expires), and
served stale while the upstream fails; files once, under PYPI_UPSTREAM_CACHE_MAX.
Standard library only: it runs on the pypiserver image's Python.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from pypi_appliance.core import httpd, policy
from pypi_appliance.core.names import normalize, version_key, version_of
from pypi_appliance.core.simple import API_VERSION, project_status, render_page

ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
# Every wait on the upstream: a name never fetched fails within 10 s, not pip's 15 s x 5 retries.
TIMEOUT = 5
CHUNK = 1 << 16
# A page is read whole: 64 MiB of JSON parses in about 400 MiB (the largest
# projects on PyPI, nightlies with many wheels a day, have pages of a few tens).
PAGE_MAX = 64 << 20
PACKAGE = "pypi-appliance"
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
DROPPED_SHOWN = 5


class Refused(Exception):
    """The upstream cannot answer: (status for the client, why)."""

    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


def shown(url: str) -> str:
    """A URL as it may be logged or shown: never with credentials."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


class Links(html.parser.HTMLParser):
    """PEP 503's anchors: href, text and the data- attributes."""

    def __init__(self):
        super().__init__()
        self.links, self.current = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.current = (dict(attrs), [])

    def handle_data(self, data):
        if self.current:
            self.current[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self.current:
            self.links.append((self.current[0], "".join(self.current[1]).strip()))
            self.current = None


def _metadata(value):
    """data-core-metadata / core-metadata: False, True or {algorithm: hash}."""
    if value is None or value is False or value == "false":
        return False
    if isinstance(value, dict):
        return value or True
    algorithm, sep, digest = str(value).partition("=")
    return {algorithm: digest} if sep and digest else True


def parse_page(body: bytes, content_type: str, base: str) -> list[dict]:
    """The files of an upstream page (PEP 691 JSON or PEP 503 HTML), their
    URLs made absolute against base."""
    files = []
    if "json" in content_type:
        for item in json.loads(body)["files"]:
            entry = {
                key: item[key]
                for key in ("filename", "hashes", "requires-python", "size", "upload-time")
                if item.get(key) is not None
            }
            if not isinstance(entry.get("hashes"), dict):
                entry["hashes"] = {}
            entry["url"] = urllib.parse.urljoin(base, item["url"])
            entry["yanked"] = item.get("yanked", False)
            entry["core-metadata"] = _metadata(item.get("core-metadata", item.get("dist-info-metadata")))
            files.append(entry)
        return files
    parser = Links()
    parser.feed(body.decode("utf-8", "replace"))
    for attrs, text in parser.links:
        if not attrs.get("href"):
            continue
        url, _, fragment = urllib.parse.urljoin(base, attrs["href"]).partition("#")
        algorithm, sep, digest = fragment.partition("=")
        entry = {
            "filename": text or urllib.parse.unquote(url.rsplit("/", 1)[-1]),
            "url": url,
            "hashes": {algorithm: digest} if sep else {},
        }
        if attrs.get("data-requires-python"):
            entry["requires-python"] = attrs["data-requires-python"]
        yanked = attrs.get("data-yanked")
        entry["yanked"] = False if yanked is None else (yanked or True)
        entry["core-metadata"] = _metadata(attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata")))
        files.append(entry)
    return files


def file_key(entry: dict) -> str:
    """The URL segment that names a file's content: its sha256 (kept() made sure there is one)."""
    return entry["hashes"]["sha256"].lower()


def sha256_of(hashes) -> str | None:
    value = hashes.get("sha256") if isinstance(hashes, dict) else None
    return value if isinstance(value, str) and SHA256.fullmatch(value) else None


def host_key(url: str) -> str | None:
    """host[:port] of an http(s) URL, lower case, without credentials; None for other schemes."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname if port is None else f"{parts.hostname}:{port}"


def appliance_page(project: str, files: list[dict], status: dict | None = None) -> dict:
    """The page the appliance answers: the upstream's files at its own URLs,
    and the project's PEP 792 state when an admin set one."""
    out = []
    for entry in files:
        item = {key: value for key, value in entry.items() if key != "url"}
        item["url"] = f"../../upstream/{project}/{file_key(entry)}/{urllib.parse.quote(entry['filename'])}"
        out.append(item)
    versions = sorted({v for v in (version_of(project, e["filename"]) for e in files) if v}, key=version_key)
    return {
        "meta": {"api-version": API_VERSION},
        "name": project,
        "versions": versions,
        "files": out,
        "project-status": project_status(status),
    }


def _redirects(upstream):
    class Redirects(urllib.request.HTTPRedirectHandler):
        """Follow a redirect only to where the appliance fetches anyway."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            newurl = urllib.parse.urljoin(req.full_url, newurl)
            if why := upstream.why_not(newurl):
                raise Refused(502, f"the upstream redirected {shown(req.full_url)}: not followed, {why}")
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            # Unredirected, the credentials stay behind; within the upstream's host they go along.
            if new is not None and upstream.authorization and host_key(newurl) == upstream.host:
                new.add_unredirected_header("Authorization", upstream.authorization)
            return new

    return Redirects


class Rules:
    """The policy of the settings with the rules and project states on disk,
    each read again when the helper replaces it."""

    def __init__(self, base: policy.Policy, data_dir: str = ""):
        self.base = base
        self.files = (
            (
                policy.Watched(policy.rules_path(data_dir), policy.read_rules),
                policy.Watched(policy.status_path(data_dir), policy.read_statuses),
            )
            if data_dir
            else ()
        )
        self.current = base
        self.lock = threading.Lock()

    def policy(self) -> policy.Policy:
        """The policy now; Refused (503) while a file of it cannot be read: nothing is offered
        by rules nobody can check (fail-closed)."""
        if not self.files:
            return self.base
        rules, statuses = self.files
        with self.lock:
            try:
                now = (rules.get(), statuses.get())
            except policy.UNREADABLE as err:
                raise Refused(503, f"the upstream rules cannot be read ({err}); nothing is offered") from None
            if now != (self.current.rules, self.current.statuses):
                self.current = policy.Policy(self.base.min_age, self.base.not_after, self.base.only_listed, *now)
            return self.current


class Upstream:
    """One upstream index, its credentials, and the pages fetched lately."""

    def __init__(
        self, url: str, credentials: str = "", page_seconds: int = 300, file_hosts: str = "", rules: Rules | None = None
    ):
        self.rules = rules or Rules(policy.Policy())
        self.url = url if url.endswith("/") else url + "/"
        self.host = host_key(self.url)
        self.hosts = {self.host, *(h.strip().lower() for h in file_hosts.split(",") if h.strip())}
        self.https = self.url.startswith("https://")
        self.authorization = ("Basic " + base64.b64encode(credentials.encode()).decode()) if credentials else None
        self.page_seconds = page_seconds
        self.pages: dict[str, tuple[float, list[dict]]] = {}
        self.lock = threading.Lock()
        self.opener = urllib.request.build_opener(_redirects(self))

    def why_not(self, url: str) -> str | None:
        """Why the appliance does not fetch url, or None: only http(s) (https
        when the upstream is), on the upstream's host or PYPI_UPSTREAM_FILE_HOSTS."""
        key = host_key(url)
        if key is None:
            return f"{shown(url)} is not an http(s) URL"
        if key not in self.hosts:
            return f"{shown(url)} is on {key}, neither the upstream's host nor in PYPI_UPSTREAM_FILE_HOSTS"
        if self.https and not url.startswith("https://"):
            return f"{shown(url)} is plain http under an https upstream"
        return None

    def kept(self, files: list[dict], url: str) -> list[dict]:
        """The page's files the appliance may fetch (why_not) that have a
        sha256 to check them against; the others are dropped, and said."""
        out, dropped = [], []
        for entry in files:
            why = self.why_not(entry["url"])
            if why is None and not sha256_of(entry["hashes"]):
                why = f"{entry['filename']} has no sha256"
            if why:
                dropped.append(why)
                continue
            meta = entry["core-metadata"]
            # Metadata without a sha256 would go unchecked: clients read the file instead.
            if meta is not False and not sha256_of(meta):
                entry["core-metadata"] = False
            out.append(entry)
        # A few reasons, not one line per link: a page may list any number.
        for why in dropped[:DROPPED_SHOWN]:
            print(f"{shown(url)}: dropped a link: {why}", file=sys.stderr, flush=True)
        if len(dropped) > DROPPED_SHOWN:
            print(f"{shown(url)}: dropped {len(dropped) - DROPPED_SHOWN} more links", file=sys.stderr, flush=True)
        return out

    def open(self, url: str, accept: str = "*/*"):
        """The upstream's answer for url; Refused when there is none to pass on."""
        if why := self.why_not(url):
            raise Refused(502, f"not fetched: {why}")
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": PACKAGE})
        # The credentials go to the upstream's own host only (as pip sends an
        # index's), and never with a redirect (unredirected: urllib copies the others).
        if self.authorization and host_key(url) == self.host:
            request.add_unredirected_header("Authorization", self.authorization)
        try:
            return self.opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise Refused(404, f"{shown(url)} is not on the upstream either") from None
            if err.code in (401, 403):
                raise Refused(
                    502,
                    f"the upstream refused the appliance ({err.code}) for {shown(url)}; "
                    "set its credentials with PYPI_UPSTREAM_CREDENTIALS",
                ) from None
            raise Refused(502, f"the upstream answered {err.code} for {shown(url)}") from None
        except TimeoutError:
            raise Refused(504, f"the upstream did not answer {shown(url)} within {TIMEOUT} s") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Refused(502, f"the upstream is unreachable for {shown(url)} ({reason})") from None

    def files(self, project: str, fresh: bool = False, stale: bool = False) -> list[dict]:
        """The upstream's files of project, from a page fetched within page_seconds
        (stale: any page kept, a file's hash and upload time do not change)."""
        with self.lock:
            kept = self.pages.get(project)
        if kept and not fresh and (stale or time.monotonic() - kept[0] < self.page_seconds):
            return kept[1]
        url = f"{self.url}{project}/"
        try:
            with self.open(url, ACCEPT) as response:
                body = response.read(PAGE_MAX + 1)
                if len(body) > PAGE_MAX:
                    raise Refused(
                        502,
                        f"the upstream's page {shown(url)} is larger than {PAGE_MAX >> 20} MiB, "
                        "more than this appliance reads",
                    )
                files = self.kept(parse_page(body, response.headers.get("Content-Type", ""), response.url), url)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise Refused(502, f"the upstream's page {shown(url)} is not a simple-API page ({err})") from None
        with self.lock:
            self.pages[project] = (time.monotonic(), files)
            if len(self.pages) > 10000:
                self.pages.pop(next(iter(self.pages)))
        return files

    def reach(self) -> tuple[bool, str]:
        """Whether the upstream answers at all (status shows it): a HEAD of its
        URL. Any answer but a refusal of the appliance or a server error will do."""
        request = urllib.request.Request(self.url, method="HEAD", headers={"User-Agent": PACKAGE})
        if self.authorization:
            request.add_unredirected_header("Authorization", self.authorization)
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return True, f"{shown(self.url)} answered {response.status}"
        except Refused as refused:
            return False, str(refused)
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                return False, (f"{shown(self.url)} refused the appliance ({err.code}): check PYPI_UPSTREAM_CREDENTIALS")
            if err.code >= 500:
                return False, f"{shown(self.url)} answered {err.code}"
            return True, f"{shown(self.url)} answered {err.code}"
        except TimeoutError:
            return False, f"{shown(self.url)} did not answer within {TIMEOUT} s"
        except (urllib.error.URLError, OSError) as err:
            return False, f"{shown(self.url)} is unreachable ({getattr(err, 'reason', err)})"

    def listed(self, project: str, key: str, filename: str) -> dict:
        """The page's entry of a file (its .metadata's too): from any page kept
        (a file's hash and upload time never change, so one asked for again
        costs the upstream nothing), else from one fetched within page_seconds
        (a URL no page lists costs no fetch until that expires)."""
        want = filename.removesuffix(".metadata")
        for stale in (True, False):
            for entry in self.files(project, stale=stale):
                if entry["filename"] == want and file_key(entry) == key.lower():
                    return entry
        raise Refused(404, f"the upstream lists no {filename} with that hash for {project}")

    def decide(self, project: str, key: str, filename: str) -> policy.Decision:
        """The policy's word on a file URL: by name, then by release and upload time."""
        rules = self.rules.policy()
        if decided := rules.name(project):
            return decided
        if not rules.timed and not any(rule.version for rule in rules.rules):
            return policy.OFFERED  # nothing to look up: cached files are served while the upstream is down
        entry = self.listed(project, key, filename)
        return rules.file(project, entry["filename"], entry.get("upload-time"), datetime.now(timezone.utc))

    def entry(self, project: str, key: str, filename: str) -> tuple[str, str]:
        """The upstream URL and the sha256 the page gives for a file (or its .metadata)."""
        entry = self.listed(project, key, filename)
        if filename == entry["filename"]:  # the file itself, not its .metadata
            return entry["url"], file_key(entry)
        if entry["core-metadata"]:
            return entry["url"] + ".metadata", (sha256_of(entry["core-metadata"]) or "").lower()
        raise Refused(404, f"the upstream lists no {filename} for {project}")


def handler(upstream: Upstream) -> type[httpd.Handler]:
    class Handler(httpd.Handler):
        def refuse(self, refused: Refused):
            text = f"{PACKAGE}: {refused}\n".encode()
            # A missing name is kept as long as a page; a failure is not kept.
            keep = [("X-Accel-Expires", str(upstream.page_seconds))] if refused.status == 404 else []
            self.answer(refused.status, text, "text/plain; charset=utf-8", keep)

        def do_GET(self):
            parts = self.path.split("/")
            try:
                if self.path == "/health":
                    return self.answer(200, b"ok\n", "text/plain")
                if self.path == "/reach":
                    ok, why = upstream.reach()
                    return self.answer(
                        200 if ok else 502, json.dumps({"ok": ok, "why": why}).encode(), "application/json"
                    )
                if len(parts) == 4 and parts[1] == "simple" and parts[3] == "":
                    return self.page(normalize(urllib.parse.unquote(parts[2])))
                if len(parts) == 3 and parts[1] == "decisions":
                    return self.decisions(normalize(urllib.parse.unquote(parts[2])))
                if len(parts) == 5 and parts[1] == "gate":
                    return self.gate(
                        normalize(urllib.parse.unquote(parts[2])), parts[3], urllib.parse.unquote(parts[4])
                    )
                if len(parts) == 5 and parts[1] == "files":
                    return self.file(
                        normalize(urllib.parse.unquote(parts[2])), parts[3], urllib.parse.unquote(parts[4])
                    )
                self.answer(404, b"not found\n", "text/plain")
            except Refused as refused:
                self.log_error("%s", refused)
                self.refuse(refused)

        def gate(self, project: str, key: str, filename: str):
            """Before every download of an upstream file, from nginx's cache or not."""
            decided = upstream.decide(project, key, filename)
            if not decided.offered:
                self.log_error("%s/%s: not offered: %s", project, filename, decided.why)
                return self.answer(decided.status, f"{PACKAGE}: {decided.why}\n".encode(), "text/plain; charset=utf-8")
            where = f"/_upstream_file/{project}/{key}/{urllib.parse.quote(filename)}"
            self.answer(200, b"", "application/octet-stream", [("X-Accel-Redirect", where)])

        def decisions(self, project: str):
            """Every file the upstream lists for project, and whether it is offered, for the helper."""
            rules = upstream.rules.policy()
            now = datetime.now(timezone.utc)
            name = rules.name(project)
            try:
                files = [] if name else upstream.files(project, fresh=True)
            except Refused as refused:
                if refused.status != 404:
                    raise
                files = []
            out = []
            for entry in files:
                decided = rules.file(project, entry["filename"], entry.get("upload-time"), now)
                out.append(
                    {
                        "filename": entry["filename"],
                        "version": version_of(project, entry["filename"]),
                        "upload-time": entry.get("upload-time"),
                        "state": decided.state,
                        "why": decided.why,
                        "until": policy.shown_time(decided.until) if decided.until else None,
                    }
                )
            self.answer_json(200, {"project": project, "name": name.why if name else None, "files": out})

        def page(self, project: str):
            rules = upstream.rules.policy()
            status = rules.status(project)
            decided = rules.name(project)
            if decided and decided.state != "quarantined":
                raise Refused(decided.status, decided.why)  # never fetched
            if decided:
                return self.send_page(project, [], status)  # listed as such, nothing offered
            try:
                files = upstream.files(project, fresh=True)
            except Refused as refused:
                if refused.status != 404:
                    raise
                raise Refused(
                    404, f"no project {project} on this index, nor on its upstream {shown(upstream.url)}"
                ) from None
            now = datetime.now(timezone.utc)
            files = [e for e in files if rules.file(project, e["filename"], e.get("upload-time"), now).offered]
            self.send_page(project, files, status)

        def send_page(self, project: str, files: list[dict], status: dict | None):
            html_page, json_page = render_page(appliance_page(project, files, status))
            as_json = self.headers.get("X-Appliance-Format") == "json"
            self.answer(
                200,
                json_page if as_json else html_page,
                "application/vnd.pypi.simple.v1+json" if as_json else "text/html; charset=utf-8",
                [("X-Accel-Expires", str(upstream.page_seconds))],
            )

        def file(self, project: str, key: str, filename: str):
            decided = upstream.decide(project, key, filename)  # nginx asked the gate; a rule may have come since
            if not decided.offered:
                raise Refused(decided.status, decided.why)
            url, expected = upstream.entry(project, key, filename)
            digest = hashlib.sha256()
            with upstream.open(url) as response:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while chunk := response.read(CHUNK):
                        digest.update(chunk)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (TimeoutError, OSError) as err:
                    self.log_error("%s: the upstream stopped sending (%s)", shown(url), err)
                    self.close_connection = True
                    return
            if digest.hexdigest() != expected:
                # No last chunk: nginx keeps nothing and the client sees a broken download.
                self.log_error("%s: its sha256 is not the upstream page's; not passed on", shown(url))
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def serve(port: int) -> None:
    url = os.environ.get("PYPI_UPSTREAM", "")
    path = os.environ.get("PYPI_UPSTREAM_CREDENTIALS_FILE", "")
    credentials = ""
    if path and os.path.getsize(path) > 0:
        with open(path, encoding="utf-8") as f:
            credentials = f.read().strip()
    try:
        base = policy.Policy.from_settings(
            os.environ.get("PYPI_UPSTREAM_MIN_AGE", "0"),
            os.environ.get("PYPI_UPSTREAM_NOT_AFTER", ""),
            os.environ.get("PYPI_UPSTREAM_ONLY_LISTED", "no"),
        )
    except ValueError as err:
        sys.exit(f"the upstream policy settings: {err}")  # the helper checks them before a start
    upstream = Upstream(
        url or "http://upstream.invalid/",
        credentials,
        int(os.environ.get("PYPI_UPSTREAM_PAGE_SECONDS", "300")),
        os.environ.get("PYPI_UPSTREAM_FILE_HOSTS", ""),
        Rules(base, "/data"),  # compose.yaml mounts DATA_DIR/policy there
    )
    server = httpd.server(handler(upstream), port)
    print(f"upstream {shown(url)} on port {port}" if url else f"no upstream set; idle on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: python -m pypi_appliance.services.upstream serve PORT")
    serve(int(sys.argv[2]))
