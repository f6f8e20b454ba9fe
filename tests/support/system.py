"""Driving one system container: commands, files and HTTP through 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import threading
import time

from tests.support.appliance import Appliance
from tests.support.client import PASSWORD, USER


class System(Appliance):
    """The .deb installed on a Debian host with systemd: the package's paths are the host's."""

    def __init__(self, name: str, port: int):
        super().__init__(port)
        self.name = name

    def sh(
        self, script: str, input: bytes | str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run script with sh inside the container; secrets go in on stdin, never in argv."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c", script],
            input=data,
            capture_output=True,
            timeout=timeout,
        )
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(f"{script!r} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    # What a prompt waiting for an answer ends with: "Password: ", "[y/N] ",
    # "HTTPS for the package index: ", "管理員密碼： ".
    PROMPT = re.compile(r"(?:[:?：]|\[y/N\])\s*$")

    def interact(self, script: str, lines: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run script on a terminal (script(1)) and type each line once a prompt is on
        the screen, as a person would: a password prompt flushes what was typed before it."""
        proc = subprocess.Popen(
            ["docker", "exec", "-i", self.name, "script", "-qec", script, "/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        screen = bytearray()
        reader = threading.Thread(
            target=lambda: [screen.extend(c) for c in iter(lambda: proc.stdout.read1(4096), b"")], daemon=True
        )
        reader.start()
        deadline = time.monotonic() + timeout
        seen = 0
        for line in lines:
            # A new prompt: output since the last answer, ending like one, and quiet for a moment.
            while time.monotonic() < deadline and proc.poll() is None:
                text = screen[seen:].decode(errors="replace")
                size = len(screen)
                time.sleep(0.1)
                if len(screen) == size and self.PROMPT.search(text):
                    break
            seen = len(screen)
            try:
                proc.stdin.write(line.encode() + b"\n")
                proc.stdin.flush()
            except BrokenPipeError:  # it ended early; the caller sees how in the output
                break
        try:
            proc.stdin.close()
            proc.wait(timeout=max(1, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, BrokenPipeError):
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        return proc.returncode, bytes(screen).decode(errors="replace")

    def wait_booted(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running || true").stdout.strip()
            if state in ("running", "degraded") and self.sh("docker info", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not boot with a Docker engine in {timeout} s (last: {state})")

    def wait_unit(self, state: str, timeout: float, unit: str = "pypi-appliance") -> None:
        """Until systemctl is-active says state; raises after timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.sh(f"systemctl is-active {unit}", check=False).stdout.strip()
            if last == state:
                return
            time.sleep(1)
        raise TimeoutError(f"{unit} was not {state} within {timeout} s (last: {last})")

    def load_images(self, refs: list[str]) -> None:
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "exec", "-i", self.name, "docker", "load", "-q"],
            stdin=save.stdout,
            check=True,
            capture_output=True,
            timeout=600,
        )
        save.stdout.close()
        assert save.wait(timeout=60) == 0

    def put(self, path: str, data: bytes) -> None:
        # Streamed: docker cp into a tmpfs mount lands under the mount.
        self.sh(f"cat > '{path}'", input=data)

    def restart(self) -> None:
        self.sh("systemctl restart pypi-appliance")
        self.wait_http("/simple/", 200, user=USER, password=PASSWORD)

    def refresh_port(self) -> None:
        """The published port may change when the container restarts."""
        out = subprocess.run(["docker", "port", self.name, "8080"], capture_output=True, text=True, check=True).stdout
        self.port = int(out.splitlines()[0].rsplit(":", 1)[1])

    def status(self, package: str = "pypi-appliance") -> str:
        """dpkg's two-letter state, e.g. 'ii' installed, 'rc' config files left, '' none."""
        out = self.sh(f"dpkg-query -W -f '${{db:Status-Abbrev}}' {package} 2>/dev/null || true").stdout
        return out.strip()
