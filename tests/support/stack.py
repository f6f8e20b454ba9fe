"""The compose stack on this host's Docker engine, without systemd or dpkg:
the .deb unpacked into a scratch root, the helper run from it with its host
paths below that root (PYPI_APPLIANCE_ROOT), and the compose file's host
paths moved there too. What the postinst and the unit do, the harness does
with the same helper commands: write-config, tls, user add, up, down."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from tests.support.appliance import Appliance

PACKAGE = "pypi-appliance"
# The compose file's host paths (a volume's source, at the start of its line).
HOST_PATHS = re.compile(rf'^(\s+- "?)(/(?:etc|usr/share|run|var/log)/{PACKAGE}\b)', re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack(Appliance):
    def __init__(self, root: Path, compose_binary: Path):
        super().__init__(free_port())
        self.root = str(root)
        self.log = root / "up.log"
        self.server_id = json.loads((root / f"usr/share/{PACKAGE}/defaults.json").read_text())["server_id"]
        # The helper as /usr/sbin/pypi-appliance runs it, from the unpacked tree.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        launcher = bin_dir / PACKAGE
        launcher.write_text('#!/bin/sh\nexec /usr/bin/python3 -m pypi_appliance "$@"\n')
        launcher.chmod(0o755)
        # Compose v2 as a CLI plugin of this engine's client, for the helper's "docker compose".
        plugins = root / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(compose_binary)
        self.env = dict(
            os.environ,
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            PYTHONPATH=f"{root}/usr/share/{PACKAGE}",
            PYTHONDONTWRITEBYTECODE="1",
            PYPI_APPLIANCE_ROOT=str(root),
            PYPI_AUDIT_LOG=self.audit_log,
            DOCKER_CONFIG=str(root / ".docker"),
        )
        self.env.pop("PYPI_APPLIANCE_DEFAULTS", None)  # the unpacked package's own
        self.up_process: subprocess.Popen | None = None
        self.admin = ("", "")

    @classmethod
    def unpack(cls, deb: Path, root: Path, compose_binary: Path) -> Stack:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        compose = root / f"etc/{PACKAGE}/compose.yaml"
        compose.write_text(HOST_PATHS.sub(rf"\g<1>{root}\g<2>", compose.read_text()))
        return cls(root, compose_binary)

    def sh(self, script: str, input: bytes | str | None = None, check: bool = True, timeout: float = 300):
        """Run script with sh on this host, the helper first on PATH; secrets on stdin."""
        proc = subprocess.run(
            ["sh", "-c", script],
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            timeout=timeout,
            env=self.env,
            cwd=self.root,
        )
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"{script!r} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def put(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def restart(self) -> None:
        self.down()
        self.up(*self.admin)

    def configure(self, user: str, password: str) -> None:
        """What the postinst does with its answers: the config file, the data
        and log dirs with their owners, the certificate, the admin."""
        sid, data, tls = self.server_id, f"{self.root}{self.data_dir}", f"{self.root}/etc/{PACKAGE}/tls"
        self.sh(
            f"{PACKAGE} write-config PYPI_PORT={self.port} PYPI_BIND_ADDRESS=127.0.0.1 PYPI_ADMIN_USER={user} "
            f"PYPI_TLS=self-signed PYPI_TLS_CERT={tls}/server.crt PYPI_TLS_KEY={tls}/server.key "
            f"PYPI_DATA_DIR={data} PYPI_ACCESS=private PYPI_UPSTREAM="
        )
        self.sh(f"{PACKAGE} tls >/dev/null")
        log_dir = os.path.dirname(self.audit_log)
        self.sh(
            f"install -d -g {sid} -m 0750 {data} {log_dir} && "
            f"install -d -o {sid} -g {sid} -m 0755 {data}/packages {data}/index && "
            f"install -d -o root -g {sid} -m 0750 {data}/auth && "
            f"install -o root -g {sid} -m 0660 /dev/null {self.audit_log}"
        )
        self.sh(f"{PACKAGE} user add --role publish --password-stdin {user}", input=f"{password}\n")
        self.admin = (user, password)
        self.trust()

    def up(self, user: str, password: str, timeout: float = 180) -> None:
        """'pypi-appliance up' in the background, as the unit runs it, until the index answers."""
        with open(self.log, "ab") as log:
            self.up_process = subprocess.Popen(
                [PACKAGE, "up"], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.up_process.poll() is not None:
                raise AssertionError(f"up exited {self.up_process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if self.http("/simple/", user=user, password=password) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the stack did not answer within {timeout} s:\n{self.log.read_text()[-4000:]}")

    def down(self) -> None:
        self.sh(f"{PACKAGE} down", check=False, timeout=120)
        if self.up_process is not None:
            try:
                self.up_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.up_process.kill()
                self.up_process.wait()
            self.up_process = None
