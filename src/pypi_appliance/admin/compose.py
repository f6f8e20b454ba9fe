"""docker compose for the service: up, down and logs, as plain text."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading

from pypi_appliance.admin import images
from pypi_appliance.admin.cache import write_settings
from pypi_appliance.admin.settings import BUILD, CONF, PACKAGE, ROOT, RUN_DIR, SERVER_GID, Fail, Settings, check_choices
from pypi_appliance.admin.users import ensure_version
from pypi_appliance.core import audit, credentials
from pypi_appliance.core.fsutil import write_atomic

COMPOSE_FILE = f"{ROOT}/etc/{PACKAGE}/compose.yaml"
NGINX_FILE = f"{ROOT}/etc/{PACKAGE}/nginx.conf"
# What nginx.conf says since the credential checker (0.3.0), the upstream
# (0.4.0) and the upstream's rules (0.8.0) came.
NEEDED = {
    "proxy_pass http://auth/check;": "does not ask the credential checker",
    "include /data/upstream/settings.conf;": "does not serve the upstream",
    "include /etc/nginx/internal-key.conf;": "does not send the containers' key",
    "proxy_pass http://upstream_index/gate/": "does not apply the upstream rules to files (cooldown, deny)",
    "proxy_set_header X-Appliance-Projects $auth_projects;": "does not tell pypiserver the uploader's scope",
}
# What compose.yaml says since the services' code moved to pypi_appliance.services
# and pypiserver's hook learnt the indexer's address from it (0.8.0), and since
# the front door names the uploader and its scope (0.9.0).
COMPOSE_NEEDED = {
    "pypi_appliance.services.": "runs the services' code by its names from before 0.8.0",
    "PYPI_INDEXER:": "does not tell pypiserver where the indexer is",
    "/policy:/data/policy:ro": "does not give the upstream service its rules",
    "--authenticate=.": "has pypiserver check passwords itself (since 0.9.0 the front door names the account)",
}


def compose(conf: Settings, *args):
    return [
        "docker",
        "compose",
        "--ansi",
        "never",
        "--project-name",
        PACKAGE,
        "--env-file",
        CONF,
        "--file",
        COMPOSE_FILE,
        *args,
    ]


# compose 2.26 writes a terminal escape (ESC[2K) before every container line,
# even with --ansi never: journald then stores each line as "[82B blob data]".
ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def plain(cmd):
    """Run cmd with its output copied to ours as plain text; its exit status."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise Fail("the docker command is missing; install docker-cli (or docker-ce-cli)") from None
    out = sys.stdout.buffer
    try:
        for line in proc.stdout:
            out.write(ANSI_ESCAPE.sub(b"", line))
            out.flush()
    except BrokenPipeError:
        proc.terminate()
    return proc.wait()


def cmd_logs(args, conf: Settings):
    cmd = compose(conf, "logs", "--no-color", "--tail", str(args.lines))
    if args.follow:
        cmd.append("--follow")
    return plain(cmd)


def cmd_audit(args, conf: Settings):
    if args.action == "note":
        text = " ".join(args.text).strip()
        if not text:
            raise Fail("a note needs its text: pypi-appliance audit note 'what happened'")
        audit.record("note", by=audit.actor(), text=text)
        print(f"{PACKAGE}: noted in {audit.LOG}")
        return 0
    if args.text:
        raise Fail(f"unexpected {' '.join(args.text)!r}; to add a line: pypi-appliance audit note TEXT")
    if not os.path.exists(audit.LOG):
        print(f"{audit.LOG}: nothing logged yet", file=sys.stderr)
        return
    os.execvp("tail", ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), audit.LOG])


def check_conffiles(conf: Settings):
    """An admin's edited compose.yaml or nginx.conf from an older version,
    which dpkg keeps, must not start without the credential checker (an
    old nginx.conf would let every account publish)."""
    proc = subprocess.run(compose(conf, "config", "--services"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise Fail(f"{COMPOSE_FILE}: " + (proc.stderr.strip().splitlines() or ["unreadable"])[-1])
    missing = [s for s in BUILD["services"] if s not in proc.stdout.split()]
    with open(COMPOSE_FILE, encoding="utf-8") as f:
        text = f.read()
    old_compose = [what for line, what in COMPOSE_NEEDED.items() if line not in text]
    with open(NGINX_FILE, encoding="utf-8") as f:
        text = f.read()
    old_nginx = [what for line, what in NEEDED.items() if line not in text]
    if missing or old_compose or old_nginx:
        name = COMPOSE_FILE if missing or old_compose else NGINX_FILE
        if missing:
            what = f"has no {', '.join(missing)} service"
        else:
            what = " and ".join(old_compose or old_nginx)
        raise Fail(
            f"{name} {what}: it is an edited copy from an older version, which dpkg kept. Merge "
            f"{name}.dpkg-dist into it (or replace it with that), then systemctl restart {PACKAGE}"
        )


def check_credentials(conf: Settings):
    """The upstream's credentials: a file the appliance reads and others do not."""
    path = conf.upstream_credentials
    if not path:
        return
    try:
        st = os.stat(path)
    except OSError as err:
        raise Fail(
            f"PYPI_UPSTREAM_CREDENTIALS={path} in {CONF}: {err.strerror}; it names a file holding USER:PASSWORD"
        ) from None
    if not os.path.isabs(path) or not os.path.isfile(path):
        raise Fail(f"PYPI_UPSTREAM_CREDENTIALS={path} in {CONF} is not an absolute path to a file")
    if st.st_mode & 0o007 or st.st_gid != SERVER_GID or not st.st_mode & 0o040:
        raise Fail(
            f"{path} (PYPI_UPSTREAM_CREDENTIALS) must be readable by the appliance and nobody else: "
            f"chgrp {SERVER_GID} {path} && chmod 0640 {path}"
        )


FRONT_DOOR = f"{RUN_DIR}/front-door.conf"


def front_door_conf(conf: Settings) -> str:
    """nginx's realip settings: X-Forwarded-For names the client only when the
    peer is a trusted proxy (its rightmost untrusted address: a client cannot
    forge its way past the proxy)."""
    proxies = [p.strip() for p in conf.trusted_proxies.split(",") if p.strip()]
    text = f"# Written by {PACKAGE} at each start from PYPI_TRUSTED_PROXIES in {CONF}: edit that, not this.\n"
    if proxies:
        text += "".join(f"set_real_ip_from {p};\n" for p in proxies)
        text += "real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n"
    return text


def write_front_door(conf: Settings) -> None:
    write_atomic(FRONT_DOOR, front_door_conf(conf), mode=0o644)


INTERNAL_KEY = f"{RUN_DIR}/internal-key"  # compose.yaml mounts it, and its .conf for nginx


def write_internal_key() -> None:
    """A new key at each start (pypi_appliance.internal): the containers' group
    reads it, nginx (as root) its map; in /run, so never on a disk."""
    key = secrets.token_urlsafe(32)
    for path, text, gid, mode in (
        (INTERNAL_KEY, key + "\n", SERVER_GID, 0o640),
        (f"{INTERNAL_KEY}.conf", f'map $host $internal_key {{ default "{key}"; }}\n', 0, 0o600),
    ):
        write_atomic(path, text, mode=mode, owner=(0, gid))


EXCHANGE_DIR = f"{RUN_DIR}/oidc"  # compose.yaml mounts it into the front door


class Supervised:
    """A process of the service's besides the containers, started again
    (after RESTART_SECONDS) whenever it ends while the service runs."""

    RESTART_SECONDS = 5

    def __init__(self, name: str, start):
        self.name, self.start = name, start
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # no start once stop() has begun
        self.proc = start()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while True:
            code = self.proc.wait()
            if self.stopping.wait(self.RESTART_SECONDS):
                return
            with self.lock:
                if self.stopping.is_set():
                    return
                print(f"{PACKAGE}: {self.name} ended ({code}); started again", file=sys.stderr, flush=True)
                self.proc = self.start()

    def stop(self):
        with self.lock:
            self.stopping.set()
            proc = self.proc
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        self.thread.join(5)


def start_exchange(conf: Settings) -> Supervised:
    """Trusted publishing's token exchange (pypi_appliance.admin.oidc), as the
    containers' user: it reads the trusts and the token key, and writes only
    the tokens it mints (DATA_DIR/auth/state, which the checker reads, and
    writes when each token was last used)."""
    from pypi_appliance.admin.tokens import ensure_key

    ensure_key(conf)
    for path, mode in ((EXCHANGE_DIR, 0o755), (credentials.state_dir(conf.data_dir), 0o750)):
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chown(path, SERVER_GID, SERVER_GID)
        os.chmod(path, mode)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYPI_INTERNAL_KEY_FILE": INTERNAL_KEY,
        "PYPI_AUDIT_LOG": audit.LOG,
    }
    command = [sys.executable, "-m", "pypi_appliance.admin.oidc", "serve", conf.data_dir, EXCHANGE_DIR]
    return Supervised(
        "the token exchange",
        lambda: subprocess.Popen(
            command, env=env, user=SERVER_GID, group=SERVER_GID, extra_groups=[], stdin=subprocess.DEVNULL
        ),
    )


def cmd_up(args, conf: Settings):
    check_choices(conf)
    check_conffiles(conf)
    check_credentials(conf)
    ensure_version(conf)
    write_settings(conf)
    write_front_door(conf)
    write_internal_key()
    try:
        images.ensure(lambda *args: compose(conf, *args))
    except images.ImagesMissing as err:
        print(f"{PACKAGE}: {err}", file=sys.stderr, flush=True)
        return images.IMAGES["gave_up_status"]
    exchange = start_exchange(conf)
    try:
        # In the foreground: if a container dies, compose exits and systemd starts it all again
        # (the exchange too: it ends with this).
        return plain(compose(conf, "up", "--pull", "never", "--remove-orphans", "--abort-on-container-exit"))
    finally:
        exchange.stop()


def cmd_down(args, conf: Settings):
    return plain(compose(conf, "down"))
