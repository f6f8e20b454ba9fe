"""What the build chose (defaults.json beside this package) and what the admin
set (the config file), read once into one typed value."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

_DEFAULTS = Path(os.environ.get("PYPI_APPLIANCE_DEFAULTS", Path(__file__).resolve().parent.parent / "defaults.json"))
BUILD = json.loads(_DEFAULTS.read_text(encoding="utf-8"))

PACKAGE = BUILD["package"]
CONF = os.environ.get("PYPI_APPLIANCE_CONF", f"/etc/{PACKAGE}/{PACKAGE}.conf")
TLS_DIR = os.environ.get("PYPI_APPLIANCE_TLS_DIR", f"/etc/{PACKAGE}/tls")
AUTH_ACTIONS = tuple(BUILD["auth_actions"])
USERNAME = re.compile(BUILD["username_pattern"])
# gid of the pypiserver user inside the container: it must read the htpasswd file.
SERVER_GID = BUILD["server_id"]
BCRYPT_MAX_BYTES = BUILD["bcrypt_max_bytes"]


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


# The config file's keys and the Settings field each one sets.
KEYS = {
    "PYPI_PORT": "port",
    "PYPI_DATA_DIR": "data_dir",
    "PYPI_ADMIN_USER": "admin_user",
    "PYPI_TLS": "tls",
    "PYPI_TLS_CERT": "tls_cert",
    "PYPI_TLS_KEY": "tls_key",
    "PYPI_TLS_NAMES": "tls_names",
}


def read_conf(path: str = CONF) -> Settings:
    """KEY=VALUE lines of the config file over the built-in defaults."""
    values = {
        "port": str(BUILD["port"]),
        "data_dir": BUILD["data_dir"],
        "admin_user": "admin",
        "tls": "self-signed",
        "tls_cert": "",
        "tls_key": "",
        "tls_names": "",
    }
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() in KEYS:
                    values[KEYS[key.strip()]] = value.strip()
    except FileNotFoundError:
        pass
    return Settings(**values)
