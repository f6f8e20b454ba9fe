"""The one typed value every build step reads, and the rules for its fields."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from builder.settings import BY_KEY

PACKAGE = "pypi-appliance"
DEFAULT_IMAGE = "pypiserver/pypiserver:v2.4.2"
# The front door; its official Alpine image ships the njs module the config loads
# (stable line 1.30, njs 0.9). How to bump both: README, "Images".
DEFAULT_PROXY_IMAGE = "nginx:1.30.5-alpine"
# Login names the appliance accepts; shared by the debconf script and the helper.
# Never ':' (the htpasswd separator) nor whitespace.
USERNAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"
# uid and gid of the pypiserver user in its official image (the postinst owns
# the packages dir by it; the helper gives it the password file's group).
SERVER_ID = 9898
# The audit log (helper, containers, logrotate, fail2ban, the postinst).
AUDIT_LOG = f"/var/log/{PACKAGE}/audit.log"
# bcrypt reads at most this many bytes of a password (config script and helper).
BCRYPT_MAX_BYTES = 72

# Debian policy 5.6.12 for a native package: no epoch, no revision, so no ':' and no '-'.
_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~]*")
# docker/distribution reference grammar, with a mandatory tag or digest.
_IMAGE = re.compile(
    r"(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?::[0-9]+)?"  # a registry port on the first component
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)
# What the data dir may contain: it lands unquoted in compose and the config file.
_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")


class ConfigError(ValueError):
    """A value that cannot go into the package; the message says which and why."""


def check_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ConfigError(
            f"version {value!r} is not a valid Debian native version: start with a digit and "
            "use only letters, digits and '.+~' (for example 1.2.3 or 1.2.3~rc1)"
        )
    return value


def check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"port {value} is outside 1-65535")
    return value


# Where a data dir may not be: system and volatile paths, and everything under
# them. The debconf config script refuses the same (rendered into _checks.sh;
# a parity test feeds both the same values).
SYSTEM_DIRS = (
    "bin",
    "boot",
    "dev",
    "etc",
    "lib",
    "lib64",
    "proc",
    "run",
    "sbin",
    "sys",
    "tmp",
    "usr",
    "var/tmp",
    "var/run",
    "var/lock",
)


def check_data_dir(value: str) -> str:
    if not value.startswith("/"):
        raise ConfigError(f"data dir {value!r} is not an absolute path; give one like /srv/pypi")
    if not _PATH.fullmatch(value):
        raise ConfigError(
            f"data dir {value!r} may only contain letters, digits and '._/+-' (it is used unquoted by docker compose)"
        )
    slashed = value + "/"
    if slashed in ("/", "/var/") or slashed.startswith("//") or "/./" in slashed or "/../" in slashed:
        raise ConfigError(f"data dir {value!r} is not a dedicated directory; use one such as /srv/pypi")
    for system in SYSTEM_DIRS:
        if slashed.startswith(f"/{system}/"):
            raise ConfigError(
                f"data dir {value!r} is under /{system}, a system or volatile path; "
                "use a dedicated directory such as /srv/pypi"
            )
    return posixpath.normpath(value)


def check_image(value: str) -> str:
    match = _IMAGE.fullmatch(value)
    if not match:
        raise ConfigError(
            f"image {value!r} is not a valid image reference (expected NAME:TAG or NAME@sha256:..., "
            "lowercase name, no spaces)"
        )
    if not match["tag"] and not match["digest"]:
        raise ConfigError(f"image {value!r} has no tag; pin a release tag (for example {DEFAULT_IMAGE})")
    if match["tag"] == "latest":
        raise ConfigError(f"image {value!r} uses 'latest'; pin a release tag (for example {DEFAULT_IMAGE})")
    return value


@dataclass(frozen=True)
class Config:
    version: str
    port: int = int(BY_KEY["PYPI_PORT"].default)
    data_dir: str = BY_KEY["PYPI_DATA_DIR"].default
    image: str = DEFAULT_IMAGE
    proxy_image: str = DEFAULT_PROXY_IMAGE
    # Seconds since the epoch for the changelog date and file times (reproducible builds).
    source_date_epoch: int = 0
    package: str = field(default=PACKAGE, init=False)

    def __post_init__(self) -> None:
        check_version(self.version)
        check_port(self.port)
        if check_data_dir(self.data_dir) != self.data_dir:
            raise ConfigError(f"data dir {self.data_dir!r} is not normalized")
        check_image(self.image)
        check_image(self.proxy_image)

    @property
    def deb_name(self) -> str:
        return f"{self.package}_{self.version}_all.deb"
