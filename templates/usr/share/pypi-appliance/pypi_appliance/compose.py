"""docker compose for the service: up, down and logs, as plain text."""

from __future__ import annotations

import re
import subprocess
import sys

from pypi_appliance.settings import CONF, PACKAGE, Fail, Settings, check_choices
from pypi_appliance.users import ensure_version


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
        f"/etc/{PACKAGE}/compose.yaml",
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


def cmd_up(args, conf: Settings):
    check_choices(conf)
    ensure_version(conf)
    # In the foreground: if a container dies, compose exits and systemd starts it all again.
    return plain(compose(conf, "up", "--remove-orphans", "--abort-on-container-exit"))


def cmd_down(args, conf: Settings):
    return plain(compose(conf, "down"))
