"""The appliance's containers, declared once: each compose service's name
(also its host name on the compose network), the port the others reach it on,
its health check, its memory limit and what it does. The compose file's
ports, entrypoints and health checks, nginx's upstreams, the helper's
defaults.json (status asks the services by name and port) and the README's
table of services come from here."""

from __future__ import annotations

import json
from dataclasses import dataclass

# The package's Python package, in every container that runs Python code.
MODULES = "pypi_appliance.services"


@dataclass(frozen=True)
class Service:
    name: str
    port: int  # inside the compose network; never published
    does: str
    module: str = ""  # python -m MODULES.<module> serve ... ("": the image's own program)
    mem_limit: str = "512m"  # several times its measured peak (README, "What is installed")
    start_period: int = 30  # seconds of failing health checks before it counts as unhealthy

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def health_test(self) -> str:
        """The compose health check's test, as YAML: the nginx image has
        busybox's wget, the pypiserver image Python (no curl)."""
        if self.name == "proxy":
            test = ["CMD", "wget", "-q", "-O", "/dev/null", self.health_url]
        else:
            test = ["CMD", "python", "-c", f"import urllib.request as u; u.urlopen('{self.health_url}', timeout=4)"]
        return json.dumps(test)


# The front door's listener for clients inside its container; compose
# publishes it on PYPI_PORT.
FRONT_PORT = 8080
SERVICES = (
    Service(
        "proxy",
        8081,
        "nginx, the front door: TLS, the login, who may read and publish, the static index pages and files, "
        "the upstream's cache (its health listener is on loopback only)",
    ),
    Service(
        "auth",
        8083,
        "the credential checker: bcrypt on a bounded number of threads, throttling, failed logins to the audit log",
        module="auth",
        mem_limit="128m",
    ),
    Service(
        "upstream",
        8084,
        "the upstream's pages and files for names the appliance does not hold (PYPI_UPSTREAM)",
        module="upstream",
        mem_limit="1g",
    ),
    Service(
        "indexer",
        8082,
        "the index: reads each new file once and writes the static pages, metadata files and records",
        module="index",
        mem_limit="1g",
        start_period=60,
    ),
    Service(
        "pypiserver",
        8080,
        "pypiserver, the write path: uploads, whole or not at all, answered once the index lists them",
    ),
)
BY_NAME = {s.name: s for s in SERVICES}


def markdown_table() -> str:
    """The README's table of services."""
    rows = ["| compose service | port inside | memory limit | what it does |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.port} | {s.mem_limit} | {s.does} |" for s in SERVICES]
    return "\n".join(rows) + "\n"
