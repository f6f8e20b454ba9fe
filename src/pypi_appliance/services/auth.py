"""The credential checker: the front door asks it about each Authorization
header it has not seen answered (nginx.conf, location /_auth) and remembers
good answers. bcrypt runs here, on a bounded number of threads, so guesses never
take time from uploads or index pages; clean addresses are checked before
addresses that keep failing, and an account that fails too often from an
address is throttled there (429 with Retry-After at the front door) without
any bcrypt work.

Run as a compose service: python -m pypi_appliance.services.auth serve /data PORT
Answers to GET /check: 200 (empty, cacheable) with X-Appliance-User,
X-Appliance-Role and X-Appliance-Projects (the publish scope, core.credentials;
pypiserver's upload hook applies it); 403 when the account may not do what
X-Appliance-Need asks; 401 with X-Appliance-Refusal (wrong, or throttled with
Retry-After). Tokens (user __token__) cost a keyed hash, no bcrypt; their
answers are cached until they expire at most (X-Accel-Expires). GET /throttled
lists what is throttled, GET /tokens/used when each token was last checked."""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import itertools
import json
import logging
import os
import secrets
import sys
import threading
import time

from pypi_appliance.core import audit, credentials, httpd
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.policy import UNREADABLE, Watched
from pypi_appliance.core.roles import READ, may, read_roles

# The config file's settings for it (builder/settings.py), which compose.yaml
# passes with their defaults.
SETTINGS = (
    "PYPI_AUTH_MAX_FAILURES",
    "PYPI_AUTH_THROTTLE_SECONDS",
    "PYPI_AUTH_THROTTLE_MAX_SECONDS",
    "PYPI_AUTH_WORKERS",
)
# A bcrypt hash of a random password: unknown names cost what known ones do.
DUMMY_HASH = None


class Accounts:
    """The htpasswd and roles files, read again when either changes; the
    tokens (made by the helper, and minted for CI), likewise."""

    def __init__(self, auth_dir: str):
        self.htpasswd = os.path.join(auth_dir, "htpasswd")
        self.roles_file = os.path.join(auth_dir, "roles")
        self.version = None
        self.users = None
        self.roles: dict[str, tuple] = {}
        self.lock = threading.Lock()
        data = os.path.dirname(auth_dir)
        self.key = Watched(credentials.key_path(data), credentials.read_key)
        self.token_files = [
            Watched(credentials.tokens_path(data), credentials.read_tokens),
            Watched(credentials.minted_path(data), credentials.read_tokens),
        ]
        self.token_index: tuple = (None, {})
        self.broken: dict[str, str] = {}

    def tokens(self) -> dict[str, tuple[str, dict]]:
        """digest -> (name, record) of every token file; a file that cannot be
        read adds nothing (its tokens are refused, and say why in the log)."""
        with self.lock:
            seen = []
            for watched in (self.key, *self.token_files):
                try:
                    watched.get()
                    seen.append(watched.seen)
                except UNREADABLE as err:
                    if self.broken.get(watched.path) != str(err):
                        logging.error("%s cannot be read (%s): its tokens are refused", watched.path, err)
                    self.broken[watched.path] = str(err)
                    seen.append(None)
                else:
                    self.broken.pop(watched.path, None)
            if seen != self.token_index[0]:
                index = {}
                for watched in self.token_files:
                    try:
                        index.update({r["digest"]: (n, r) for n, r in watched.get().items()})
                    except UNREADABLE:
                        pass
                self.token_index = (seen, index)
            return self.token_index[1]

    def _stamp(self):
        stamps = []
        for path in (self.htpasswd, self.roles_file):
            try:
                st = os.stat(path)
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def current(self):
        """(version, users, roles): reloaded when a file changed."""
        with self.lock:
            stamp = self._stamp()
            if stamp != self.version:
                logging.getLogger("passlib").setLevel(logging.ERROR)
                from passlib.apache import HtpasswdFile

                exists = os.path.exists(self.htpasswd)
                self.users = HtpasswdFile(self.htpasswd, new=not exists)
                self.roles = read_roles(self.roles_file)
                self.version = stamp
            return self.version, self.users, self.roles


class Throttle:
    """Failures per (client address, account). MAX_FAILURES within WINDOW
    seconds throttle that account from that address for PERIOD seconds; each
    failure after a throttle, until it has been quiet for as long again,
    doubles the period (up to PERIOD_MAX). So a guesser on a shared address (a
    NAT, a CI network, a reverse proxy) holds back only the account it guesses:
    the others log in from there as before.

    An address whose failures reach SPRAY times MAX_FAILURES within WINDOW,
    across accounts, is slowed instead of shut: one check per
    PERIOD / MAX_FAILURES seconds from it, for any account, until it has had
    no failure for PERIOD. A spray of names gets few guesses, and a correct
    password from there still gets in at that rate."""

    WINDOW = 60
    SPRAY = 10
    KEPT = 100_000

    def __init__(self, max_failures: int, period: float, period_max: float):
        self.max_failures, self.period, self.period_max = max_failures, period, period_max
        self.interval = period / max_failures
        self.failures: dict[tuple, collections.deque] = collections.defaultdict(
            collections.deque
        )  # (address, account) -> times
        self.until: dict[tuple, float] = {}
        self.level: dict[tuple, int] = {}
        self.spray: dict[str, collections.deque] = collections.defaultdict(
            collections.deque
        )  # address -> times, any account
        self.slowed: dict[str, list[float]] = {}  # address -> [quiet until, next check at]
        self.lock = threading.Lock()

    def length(self, level: int) -> float:
        return min(self.period * 2 ** (level - 1), self.period_max)

    def _prune(self, key, now):
        """The key's failures within the window (a new list: nothing is
        stored for a key that has none)."""
        times = self.failures.get(key)
        while times and times[0] < now - self.WINDOW:
            times.popleft()
        level = self.level.get(key, 0)
        if level and now > self.until[key] + self.length(level):
            del self.level[key], self.until[key]
        return times or ()

    def _prune_address(self, client, now):
        times = self.spray.get(client)
        while times and times[0] < now - self.WINDOW:
            times.popleft()
        if client in self.slowed and now > self.slowed[client][0]:
            del self.slowed[client]
        return times or ()

    def blocked(self, client: str, account, now: float) -> int:
        """Seconds until the client may try this account again (0: now; a
        slowed address's next check is taken)."""
        with self.lock:
            key = (client, account)
            self._prune(key, now)
            left = self.until.get(key, 0) - now
            if left > 0:
                return int(left + 0.999)
            self._prune_address(client, now)
            slow = self.slowed.get(client)
            if slow:
                if now < slow[1]:
                    return int(slow[1] - now + 0.999)
                slow[1] = now + self.interval
            return 0

    def recent(self, client: str, now: float) -> int:
        """How much the address has failed lately (0: clean), to rank its checks."""
        with self.lock:
            slowed = self.SPRAY * self.max_failures if client in self.slowed else 0
            return len(self._prune_address(client, now)) + slowed

    def _forget_quiet(self, now):
        """A spray of addresses or names: forget those quiet for a minute."""
        if len(self.failures) > self.KEPT:
            self.failures = collections.defaultdict(
                collections.deque,
                {k: t for k, t in self.failures.items() if t and t[-1] >= now - self.WINDOW or k in self.level},
            )
        if len(self.spray) > self.KEPT:
            self.spray = collections.defaultdict(
                collections.deque,
                {c: t for c, t in self.spray.items() if t and t[-1] >= now - self.WINDOW or c in self.slowed},
            )

    def failed(self, client: str, account, now: float) -> tuple[int, bool]:
        """Record a failure: (the seconds of the throttle it starts for the
        account, or 0; whether it starts slowing the address)."""
        with self.lock:
            key = (client, account)
            self._prune(key, now)
            self._prune_address(client, now)
            self._forget_quiet(now)
            spray = self.spray[client]
            spray.append(now)
            slowing = False
            if client in self.slowed:
                self.slowed[client][0] = now + self.period
            elif len(spray) >= self.SPRAY * self.max_failures:
                self.slowed[client] = [now + self.period, now + self.interval]
                slowing = True
            times = self.failures[key]
            times.append(now)
            level = self.level.get(key, 0)
            if level == 0 and len(times) < self.max_failures:
                return 0, slowing
            level += 1
            seconds = self.length(level)
            self.level[key], self.until[key] = level, now + seconds
            times.clear()
            return int(seconds), slowing

    def state(self, now: float) -> list[dict]:
        """What is held back now: accounts from an address, and slowed
        addresses (account None: every account)."""
        with self.lock:
            held = [
                {"client": c, "account": a, "seconds_left": int(until - now + 0.999), "level": self.level[(c, a)]}
                for (c, a), until in self.until.items()
                if until > now
            ]
            held += [
                {"client": c, "account": None, "seconds_left": int(quiet - now + 0.999), "slowed": True}
                for c, (quiet, _) in self.slowed.items()
                if quiet > now
            ]
            return sorted(held, key=lambda t: (t["client"], t["account"] or ""))


class Checker:
    """bcrypt checks on WORKERS threads. A free thread takes the waiting check
    whose address has the fewest failures now, then one that logged in
    before, then the one with the fewest checks waiting. With two threads or
    more, one is kept for addresses without failures: guesses never have all
    of them, and a client that has not failed never waits for a guess to end.
    At most PER_CLIENT checks wait per address."""

    PER_CLIENT = 4
    MAX_WAITING = 1024
    TRUSTED_SECONDS = 3600

    def __init__(self, accounts: Accounts, throttle: Throttle, workers: int):
        self.accounts, self.throttle = accounts, throttle
        self.pending: list[dict] = []
        self.order = itertools.count()
        self.waiting: collections.Counter = collections.Counter()
        self.succeeded: dict[str, float] = {}  # address -> when a check from it last succeeded
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.used: dict[str, int] = {}  # token name -> when last checked (not answered from a cache)
        # Good answers, by a salted hash of the header: a throttled address
        # keeps using credentials already known to be good.
        self.salt = secrets.token_bytes(16)
        self.good: collections.OrderedDict = collections.OrderedDict()
        for n in range(workers):
            threading.Thread(target=self._work, args=(n == 0 and workers > 1,), daemon=True).start()

    def _rank(self, job, now):
        client = job["client"]
        trusted = now - self.succeeded.get(client, -self.TRUSTED_SECONDS) < self.TRUSTED_SECONDS
        return self.throttle.recent(client, now), not trusted, self.waiting[client], job["order"]

    def _take(self, clean_only):
        with self.ready:
            while True:
                now = time.monotonic()
                ranked = [(self._rank(j, now), j) for j in self.pending]
                ranked = [(rank, j) for rank, j in ranked if rank[0] == 0 or not clean_only]
                if ranked:
                    job = min(ranked, key=lambda pair: pair[0])[1]
                    self.pending.remove(job)
                    return job
                self.ready.wait()

    def _work(self, clean_only):
        while True:
            job = self._take(clean_only)
            job["result"] = self._bcrypt(job["users"], job["name"], job["password"])
            job["done"].set()

    @staticmethod
    def _bcrypt(users, name, password):
        global DUMMY_HASH
        try:
            if name in users.users():
                return bool(users.check_password(name, password))
            from passlib.hash import bcrypt

            DUMMY_HASH = DUMMY_HASH or bcrypt.hash(secrets.token_hex(16))
            bcrypt.verify(password, DUMMY_HASH)
        except (ValueError, TypeError):
            pass
        return False

    def check_token(self, token: str, client: str):
        """A token's (status, account, reason, retry_after, grant, seconds left):
        a keyed hash and a lookup, no bcrypt and no throttle (a token cannot be
        guessed, and a wrong one costs nothing to check)."""
        index = self.accounts.tokens()
        try:
            key = self.accounts.key.get()
        except UNREADABLE:
            key = b""
        found = index.get(credentials.digest(key, token)) if key else None
        now = time.time()
        if found is None:
            audit.record("login-failed", client=client, account=credentials.TOKEN_USER, why="unknown token")
            return 401, None, "wrong", 0, None, 0
        name, record = found
        account = credentials.ACCOUNT_PREFIX + name
        ended = credentials.state(record, now)
        if ended != "active":
            audit.record("login-failed", client=client, account=account, why=f"token {ended}")
            return 401, account, "wrong", 0, None, 0
        with self.lock:
            self.used[name] = int(now)
        return 200, account, "", 0, (record["role"], tuple(record["projects"])), int(record["expires"] - now)

    def check(self, header: str, client: str):
        """(status, name, reason, retry_after): 200 with the account's name,
        401 wrong/throttled/busy."""
        name, password = split_basic(header)
        _, users, _ = self.accounts.current()
        key = hashlib.sha256(self.salt + header.encode()).digest()
        # Known good while the account's hash is the same: other accounts'
        # changes do not cost a bcrypt check.
        with self.lock:
            hit = self.good.get(key)
            if hit:
                self.good.move_to_end(key)  # the 10,000 kept are the most recently used
        if hit and hit[0] == name and users.get_hash(name) == hit[1]:
            return 200, name, "", 0
        if name is None:  # no bcrypt work to save
            return 401, None, "wrong", 0
        left = self.throttle.blocked(client, name, time.monotonic())
        if left:
            return 401, name, "throttled", left
        with self.lock:
            if self.waiting[client] >= self.PER_CLIENT or len(self.pending) >= self.MAX_WAITING:
                return 401, name, "busy", 1
            self.waiting[client] += 1
            job = {
                "users": users,
                "name": name,
                "password": password,
                "client": client,
                "order": next(self.order),
                "done": threading.Event(),
            }
            self.pending.append(job)
            self.ready.notify_all()
        try:
            job["done"].wait()
        finally:
            with self.lock:
                self.waiting[client] -= 1
                if not self.waiting[client]:
                    del self.waiting[client]
        if job["result"]:
            with self.lock:
                self.succeeded[client] = time.monotonic()
                if len(self.succeeded) > 10_000:
                    self.succeeded = {
                        c: t for c, t in self.succeeded.items() if time.monotonic() - t < self.TRUSTED_SECONDS
                    }
                self.good[key] = (name, users.get_hash(name))
                if len(self.good) > 10_000:
                    self.good.popitem(last=False)
            return 200, name, "", 0
        audit.record("login-failed", client=client, account=name)
        seconds, slowing = self.throttle.failed(client, name, time.monotonic())
        if seconds:
            audit.record("throttled", client=client, account=name, seconds=seconds)
        if slowing:
            audit.record(
                "slowed", client=client, seconds=int(self.throttle.period), every=round(self.throttle.interval, 1)
            )
        return 401, name, "wrong", 0


USED_SECONDS = 60


def keep_used(checker: Checker, data: str) -> None:
    """When each token was last checked, in DATA_DIR/auth/state (the one
    place the checker writes: compose.yaml mounts it): loaded at the start,
    written each minute when it changed (a token answered from the front
    door's cache is not checked: to within 5 minutes)."""
    path = credentials.used_path(data)
    try:
        with open(path, encoding="utf-8") as f:
            checker.used.update({str(k): int(v) for k, v in json.load(f).items()})
    except (OSError, ValueError, AttributeError):
        pass
    written: dict = dict(checker.used)

    def loop():
        nonlocal written
        while True:
            time.sleep(USED_SECONDS)
            with checker.lock:
                now = dict(checker.used)
            if now != written:
                try:
                    write_atomic(path, json.dumps(now, sort_keys=True).encode(), mode=0o640)
                    written = now
                except OSError as err:
                    logging.warning("%s not written (%s)", path, err)

    threading.Thread(target=loop, daemon=True).start()


def split_basic(header: str):
    """(name, password) of a Basic header, or (None, None)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        name, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (name, password) if sep and name else (None, None)


def handler(checker: Checker) -> type[httpd.Handler]:
    class Handler(httpd.Handler):
        def do_GET(self):
            if self.path == "/health":
                return self.answer(200, b"ok")
            if self.path == "/throttled":
                return self.answer_json(200, checker.throttle.state(time.monotonic()))
            if self.path == "/tokens/used":
                with checker.lock:
                    return self.answer_json(200, dict(checker.used))
            if self.path != "/check":
                return self.answer(404)
            client = self.headers.get("X-Real-IP", self.client_address[0])
            header = self.headers.get("Authorization", "")
            name, password = split_basic(header)
            headers = []
            if name == credentials.TOKEN_USER:
                status, account, reason, retry, grant, left = checker.check_token(password, client)
                # Cached no longer than the token lives (nginx: X-Accel-Expires).
                headers.append(("X-Accel-Expires", str(max(0, min(left, 300)))))
            else:
                status, account, reason, retry = checker.check(header, client)
                grant = checker.accounts.current()[2].get(account, READ)
            if status != 200:
                # No name: it is the client's, any bytes at all.
                return self.answer(401, headers=[("X-Appliance-Refusal", reason), ("Retry-After", str(retry))])
            role, projects = grant
            need = self.headers.get("X-Appliance-Need", READ.role)
            headers += [
                ("X-Appliance-User", account),
                ("X-Appliance-Role", role),
                ("X-Appliance-Projects", credentials.format_scope(projects) if role != READ.role else ""),
            ]
            self.answer(200 if may(role, need) else 403, headers=headers)

    return Handler


def serve(data: str, port: int) -> None:
    env = {key: int(os.environ[key]) for key in SETTINGS}
    throttle = Throttle(
        env["PYPI_AUTH_MAX_FAILURES"], env["PYPI_AUTH_THROTTLE_SECONDS"], env["PYPI_AUTH_THROTTLE_MAX_SECONDS"]
    )
    checker = Checker(Accounts(os.path.join(data, "auth")), throttle, env["PYPI_AUTH_WORKERS"])
    keep_used(checker, data)
    # Listening first: a login that comes during the warm-up waits for it
    # instead of being refused.
    server = httpd.server(handler(checker), port)
    # passlib, the accounts and bcrypt's backend are loaded now, not by the
    # first login after a start (a tenth of a second more for it).
    checker.accounts.current()
    Checker._bcrypt(checker.accounts.current()[1], None, "")
    print(f"checking credentials on port {port} with {env['PYPI_AUTH_WORKERS']} bcrypt threads", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: python -m pypi_appliance.services.auth serve DATA_DIR PORT")
    serve(sys.argv[2], int(sys.argv[3]))
