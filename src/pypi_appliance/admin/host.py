"""This host as clients see it: its names and addresses, and the index URL."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

from pypi_appliance.admin.settings import PACKAGE, Settings


def run(cmd, errors=None):
    """Exit status and stdout of cmd; its stderr goes to the errors list when given."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        if errors is not None:
            errors.append(f"{cmd[0]}: command not found")
        return 127, ""
    if errors is not None and proc.stderr.strip():
        errors.append(proc.stderr.strip())
    return proc.returncode, proc.stdout.strip()


def container(service: str) -> str | None:
    """The running container of one of the appliance's compose services, found
    by compose's own labels (project and service), never by guessing the name
    compose gave it; None when none runs."""
    code, out = run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PACKAGE}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ]
    )
    return out.split()[0] if code == 0 and out.split() else None


def host_addresses():
    """Global addresses of this host, best first; docker's own bridges left out."""
    code, out = run(["ip", "-j", "addr", "show", "scope", "global"])
    addresses = []
    if code == 0 and out:
        for link in json.loads(out):
            if re.match(r"(docker|br-|veth)", link.get("ifname", "")):
                continue
            for addr in link.get("addr_info", []):
                local = addr.get("local")
                if not local:
                    continue
                addresses.append(f"[{local}]" if ":" in local else local)
    return addresses or [os.uname().nodename]


def host_name():
    """The name clients should use: the FQDN, else the host name. The
    certificate covers both, and pip 24.2+ fails on https://IP (pypa/pip#12906)."""
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return socket.gethostname()


def is_ip(name):
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def normal_name(name):
    return str(ipaddress.ip_address(name.strip("[]"))) if is_ip(name) else name.lower()


def scheme(conf: Settings):
    return "http" if conf.tls == "off" else "https"


def probe(conf: Settings, path: str):
    """Status and headers of one request to the front door over loopback (or
    (None, {}) and why not). The certificate is checked by the tls report."""
    address = conf.bind_address or "127.0.0.1"
    address = f"[{address.strip('[]')}]" if ":" in address else address
    url = f"{scheme(conf)}://{address}:{conf.port}{path}"
    context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, dict(response.headers), f"{url} answered {response.status}"
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), f"{url} answered {err.code}"
    except OSError as err:
        return None, {}, f"{url} did not answer: {getattr(err, 'reason', err)}"


def endpoint(host, conf: Settings):
    """HOST[:PORT] as clients write it: the configured port unless one is given."""
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"
    if re.search(r"(^[^:\[]+|\])$", host):
        host = f"{host}:{conf.port}"
    return host


def index_url(conf: Settings, host=None):
    return f"{scheme(conf)}://{endpoint(host or host_name(), conf)}/simple/"
