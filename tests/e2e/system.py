"""Driving one system container: commands, files and HTTP through 127.0.0.1."""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request


class System:
    def __init__(self, name: str, port: int):
        self.name = name
        self.port = port
        self.scheme = "https"
        # The CA the suite trusts for this appliance, as a file for pip and twine.
        self.ca_file = tempfile.NamedTemporaryFile(prefix="pypi-appliance-ca.", suffix=".pem", delete=False).name
        self.context = None

    def trust(self, ca: bytes | None = None) -> None:
        """Follow the appliance's TLS mode: its scheme, and the CA that verifies
        it (the appliance's own, unless given)."""
        conf = self.sh("cat /etc/pypi-appliance/pypi-appliance.conf 2>/dev/null || true").stdout
        modes = [line.split("=", 1)[1] for line in conf.splitlines() if line.startswith("PYPI_TLS=")]
        mode = modes[-1] if modes else "self-signed"
        self.scheme = "http" if mode == "off" else "https"
        if ca is None and mode == "provided":
            return  # the admin's CA: only the test that provided it knows it
        if self.scheme == "https":
            if ca is None:
                ca = self.sh("cat /etc/pypi-appliance/tls/ca.crt 2>/dev/null || true").stdout.encode()
            with open(self.ca_file, "wb") as f:
                f.write(ca)
            self.context = ssl.create_default_context(cafile=self.ca_file) if ca else None

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

    def settled_status(self, options: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
        """pypi-appliance status once it no longer says starting (3): right
        after a start the containers' health checks are still starting."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.sh(f"pypi-appliance status {options}", check=False)
            if result.returncode != 3 or time.monotonic() > deadline:
                return result
            time.sleep(1)

    def report(self, options: str = "", timeout: float = 120) -> str:
        """The settled status's output; it must say ok."""
        result = self.settled_status(options, timeout)
        if result.returncode != 0:
            raise AssertionError(f"status exited {result.returncode}\n{result.stdout}{result.stderr}")
        return result.stdout

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

    def refresh_port(self) -> None:
        """The published port may change when the container restarts."""
        out = subprocess.run(["docker", "port", self.name, "8080"], capture_output=True, text=True, check=True).stdout
        self.port = int(out.splitlines()[0].rsplit(":", 1)[1])

    def status(self, package: str = "pypi-appliance") -> str:
        """dpkg's two-letter state, e.g. 'ii' installed, 'rc' config files left, '' none."""
        out = self.sh(f"dpkg-query -W -f '${{db:Status-Abbrev}}' {package} 2>/dev/null || true").stdout
        return out.strip()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def fetch(self, path: str, **kwargs) -> tuple[int, bytes]:
        """Status and body of one request; credentials encoded the way a given client would."""
        return self.fetch_all(path, **kwargs)[:2]

    def fetch_all(
        self,
        path: str,
        user: str | None = None,
        password: str | None = None,
        encoding: str = "utf-8",
        method: str = "GET",
        data: bytes | None = None,
        headers: dict | None = None,
    ) -> tuple[int, bytes, dict]:
        """Status, body and headers of one request."""
        request = urllib.request.Request(self.url(path), method=method, data=data, headers=headers or {})
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode(encoding)).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def http(self, path: str, **kwargs) -> int:
        return self.fetch(path, **kwargs)[0]

    def wait_http(self, path: str, expect: int, timeout: float = 90, **kwargs) -> float:
        """Seconds until path answers expect; raises after timeout. Follows a
        change of TLS mode or CA (a reinstall, a reconfigure) while it waits."""
        start = time.monotonic()
        last = None
        while time.monotonic() - start < timeout:
            try:
                last = self.http(path, **kwargs)
                if last == expect:
                    return time.monotonic() - start
            except OSError as err:
                last = err
                if isinstance(err, ssl.SSLError) or isinstance(getattr(err, "reason", None), ssl.SSLError):
                    self.trust()
            time.sleep(0.5)
        raise TimeoutError(f"{path} did not answer {expect} within {timeout} s (last: {last})")
