"""What the build chose (core.build: defaults.json) and what the admin
set (the config file), read once into one typed value."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass

from pypi_appliance.core import audit, build, policy
from pypi_appliance.core.fsutil import write_atomic

BUILD = build.defaults()

PACKAGE = BUILD["package"]
# Empty on a host. The tests run the helper against an unpacked .deb (and
# a scratch dir) with the package's host paths below PYPI_APPLIANCE_ROOT.
ROOT = os.environ.get("PYPI_APPLIANCE_ROOT", "").rstrip("/")
CONF = f"{ROOT}/etc/{PACKAGE}/{PACKAGE}.conf"
TLS_DIR = f"{ROOT}/etc/{PACKAGE}/tls"
RUN_DIR = f"{ROOT}/run/{PACKAGE}"
# Who may read the index; uploads always need a password (see builder/config.py).
ACCESS_MODES = tuple(BUILD["access_modes"])
TLS_MODES = tuple(BUILD["tls_modes"])
USERNAME = re.compile(BUILD["username_pattern"])
UPSTREAM = re.compile(BUILD["upstream_pattern"])
HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
SIZE = re.compile(BUILD["size_pattern"])
# gid of the pypiserver user inside the container: it must read the htpasswd file.
SERVER_GID = BUILD["server_id"]
BCRYPT_MAX_BYTES = BUILD["bcrypt_max_bytes"]
# The system's CA bundle, which client-config's install-ca line adds the appliance's CA to.
CLIENT_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class Fail(Exception):
    """An error for the admin: printed as one line, exit status 1."""


class NeedsRoot(Fail):
    """An error that root would not have: exit status 4."""


@dataclass(frozen=True)
class Settings:
    port: str
    data_dir: str
    admin_user: str
    tls: str
    tls_cert: str
    tls_key: str
    tls_names: str
    access: str
    bind_address: str
    trusted_proxies: str
    client_url: str
    auth_max_failures: str
    auth_throttle_seconds: str
    auth_throttle_max_seconds: str
    auth_workers: str
    upstream: str
    upstream_credentials: str
    upstream_file_hosts: str
    upstream_page_seconds: str
    upstream_cache_max: str
    upstream_min_age: str
    upstream_not_after: str
    upstream_only_listed: str


# The config file's keys (builder/settings.py declares them) and the field each sets.
KEYS = {key: key.removeprefix("PYPI_").lower() for key in BUILD["settings"]}


def read_conf(path: str = CONF) -> Settings:
    """KEY=VALUE lines of the config file over the build's defaults."""
    values = {KEYS[key]: default for key, default in BUILD["settings"].items()}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() in KEYS:
                    values[KEYS[key.strip()]] = value.strip()
    except FileNotFoundError:
        pass
    # "none" is how a terminal answers "no upstream" (an empty answer keeps the value).
    if values["upstream"] == "none":
        values["upstream"] = ""
    return Settings(**values)


def yes_no(value: str) -> bool:
    if value not in ("yes", "no"):
        raise ValueError(f"'{value}' is not yes or no")
    return value == "yes"


# The upstream policy's settings, parsed as the upstream service parses them
# (core.policy): checked before a start, and by write-config before writing.
POLICY_CHECKS = {
    "PYPI_UPSTREAM_MIN_AGE": policy.parse_duration,
    "PYPI_UPSTREAM_NOT_AFTER": policy.parse_moment,
    "PYPI_UPSTREAM_ONLY_LISTED": yes_no,
}


def check_choices(conf: Settings) -> None:
    """The settings that pick a file to mount (listen/, access/) must name one;
    the counts must be counts, the upstream a URL and its cap a size."""
    for key, value, choices in (("PYPI_TLS", conf.tls, TLS_MODES), ("PYPI_ACCESS", conf.access, ACCESS_MODES)):
        if value not in choices:
            raise Fail(f"{key}={value} in {CONF} is not one of {', '.join(choices)}")
    for key in BUILD["counts"]:
        value = getattr(conf, KEYS[key])
        if not (value.isdigit() and int(value) >= 1):
            raise Fail(f"{key}={value} in {CONF} is not a whole number of 1 or more")
    if why := upstream_refusal(conf.upstream):
        raise Fail(f"{why} (PYPI_UPSTREAM in {CONF})")
    for key in ("PYPI_BIND_ADDRESS", "PYPI_TRUSTED_PROXIES", "PYPI_CLIENT_URL", "PYPI_UPSTREAM_FILE_HOSTS"):
        if why := refusal(key, getattr(conf, KEYS[key])):
            raise Fail(f"{why} ({key} in {CONF})")
    if conf.access == "public-read" and conf.upstream and conf.upstream_credentials:
        # The appliance would be anyone's way into the private upstream, with its credentials.
        raise Fail(
            f"PYPI_ACCESS=public-read with PYPI_UPSTREAM_CREDENTIALS in {CONF} would let anyone read the "
            "private upstream with the appliance's credentials; set PYPI_ACCESS=private, or empty "
            "PYPI_UPSTREAM_CREDENTIALS for a public upstream"
        )
    for key, parse in POLICY_CHECKS.items():
        try:
            parse(getattr(conf, KEYS[key]))
        except ValueError as err:
            raise Fail(f"{key} in {CONF}: {err}") from None
    if not SIZE.fullmatch(conf.upstream_cache_max):
        raise Fail(
            f"PYPI_UPSTREAM_CACHE_MAX={conf.upstream_cache_max} in {CONF} is not a size such as 10g, 500m or 1048576k"
        )


def upstream_refusal(value: str) -> str | None:
    """Why an upstream URL is refused (the config script's check_upstream), or None."""
    if value in ("", "none"):
        return None
    if "@" in value:
        return (
            "the upstream URL holds credentials (not shown); give the URL alone and put USER:PASSWORD in the "
            f"file PYPI_UPSTREAM_CREDENTIALS names (in {CONF})"
        )
    if not UPSTREAM.fullmatch(value):
        return f"upstream '{value}' is not an http:// or https:// simple-API URL such as https://pypi.org/simple/"
    return None


def refusal(key: str, value: str) -> str | None:
    """Why a value of the reverse-proxy settings or the file hosts is refused, or None."""
    if not value:
        return None
    if key == "PYPI_BIND_ADDRESS":
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            return f"bind address '{value}' is not an IP address of this host, such as 127.0.0.1"
    elif key == "PYPI_TRUSTED_PROXIES":
        for item in value.split(","):
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                return f"trusted proxy '{item.strip()}' is not an address or network such as 10.0.0.5 or 172.16.0.0/12"
    elif key == "PYPI_UPSTREAM_FILE_HOSTS":
        for item in value.split(","):
            if not HOST.fullmatch(item.strip()):
                return f"file host '{item.strip()}' is not a host name (and port) such as files.pythonhosted.org"
    elif key == "PYPI_CLIENT_URL":
        if "@" in value:
            return "the client URL holds credentials (not shown); give the URL alone"
        if not UPSTREAM.fullmatch(value):
            return f"client URL '{value}' is not an http:// or https:// URL such as https://pypi.example.com"
    return None


HEADER = f"""\
# {PACKAGE} settings, read by {PACKAGE}.service (docker compose --env-file) and by
# the {PACKAGE} command. After editing: systemctl restart {PACKAGE}
# dpkg-reconfigure {PACKAGE} updates the PYPI_ settings and keeps everything else.
"""


def write_conf(updates: dict[str, str], path: str = CONF, *, why: str) -> None:
    """Set KEY=VALUE lines in the config file: a key's last line is changed in
    place (or the line appended), every other line is kept; replaced atomically.
    The keys whose value changed go to the audit log (their names: a value may
    be a path the admin would rather not show)."""
    for key, value in updates.items():
        if key not in KEYS:
            raise Fail(f"unknown setting {key!r}; the settings are {', '.join(KEYS)}")
        if "\n" in value or value != value.strip():
            raise Fail(f"{key}={value!r}: a value is one line without leading or trailing spaces")
        if key in POLICY_CHECKS:
            try:
                POLICY_CHECKS[key](value)
            except ValueError as err:
                raise Fail(f"{key}: {err}; nothing was changed") from None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = HEADER.splitlines()
    last = {line.partition("=")[0].strip(): n for n, line in enumerate(lines) if "=" in line and line[:1] != "#"}
    changed = []
    for key, value in updates.items():
        if key in last:
            changed += [key] if lines[last[key]].partition("=")[2] != value else []
            lines[last[key]] = f"{key}={value}"
        else:
            changed += [key]
            lines.append(f"{key}={value}")
    write_atomic(path, "\n".join(lines) + "\n", mode=0o644, durable=True)
    if changed:
        audit.record("settings", by=audit.actor(), keys=",".join(changed), why=why)


def cmd_write_config(args, conf) -> None:
    updates = {}
    for pair in args.settings:
        key, sep, value = pair.partition("=")
        if not sep:
            raise Fail(f"{pair!r} is not KEY=VALUE")
        updates[key] = value
    from_dpkg = bool(os.environ.get("DPKG_MAINTSCRIPT_PACKAGE"))  # the postinst, with debconf's answers
    write_conf(updates, why="debconf" if from_dpkg else "write-config")
    if not from_dpkg:  # the postinst restarts and says so itself
        print(
            f"{PACKAGE}: set {', '.join(updates)} in {CONF}; they take effect at: systemctl restart {PACKAGE}",
            file=sys.stderr,
        )
