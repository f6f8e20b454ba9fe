"""An appliance the suite drives: its HTTP front door on 127.0.0.1 and a
shell where the helper runs. Paths the tests name are below root: empty for
a system container, the unpacked .deb for the compose stack on this host."""

from __future__ import annotations

import base64
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


class Appliance:
    root = ""
    data_dir = "/srv/pypi"  # the preseeded PYPI_DATA_DIR, below root

    def __init__(self, port: int):
        self.port = port
        self.scheme = "https"
        # The CA the suite trusts for this appliance, as a file for pip and twine.
        self.ca_file = tempfile.NamedTemporaryFile(prefix="pypi-appliance-ca.", suffix=".pem", delete=False).name
        self.context = None

    @property
    def conf(self) -> str:
        return f"{self.root}/etc/pypi-appliance/pypi-appliance.conf"

    @property
    def packages(self) -> str:
        return f"{self.root}{self.data_dir}/packages"

    @property
    def audit_log(self) -> str:
        return f"{self.root}/var/log/pypi-appliance/audit.log"

    @property
    def scratch(self) -> str:
        """A directory of the appliance's host for a test's files."""
        return f"{self.root}/root"

    def sh(self, script: str, input: bytes | str | None = None, check: bool = True, timeout: float = 300):
        raise NotImplementedError

    def put(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start the appliance, until it answers again."""
        raise NotImplementedError

    def audit_lines(self, event: str | None = None) -> list[str]:
        lines = self.sh(f"cat {self.audit_log}").stdout.splitlines()
        return [line for line in lines if event is None or line.split()[1] == event]

    def add_generated(self, name: str, role: str) -> tuple[str, str]:
        """A new account with a generated password: the password and what the helper printed."""
        out = self.sh(f"pypi-appliance user add --generate --role {role} {name}").stdout
        password = out.splitlines()[1]
        assert len(password) >= 40
        return password, out

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

    def trust(self, ca: bytes | None = None) -> None:
        """Follow the appliance's TLS mode: its scheme, and the CA that verifies
        it (the appliance's own, unless given)."""
        conf = self.sh(f"cat {self.conf} 2>/dev/null || true").stdout
        modes = [line.split("=", 1)[1] for line in conf.splitlines() if line.startswith("PYPI_TLS=")]
        mode = modes[-1] if modes else "self-signed"
        self.scheme = "http" if mode == "off" else "https"
        if ca is None and mode == "provided":
            return  # the admin's CA: only the test that provided it knows it
        if self.scheme == "https":
            if ca is None:
                ca = self.sh(f"cat {self.root}/etc/pypi-appliance/tls/ca.crt 2>/dev/null || true").stdout.encode()
            with open(self.ca_file, "wb") as f:
                f.write(ca)
            self.context = ssl.create_default_context(cafile=self.ca_file) if ca else None

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
