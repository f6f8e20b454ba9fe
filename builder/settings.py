"""The appliance's settings, declared once: the config file's keys, the debconf
question that asks each one and at which priority, its default, its kind
(which check it gets), its choices, the compose services that receive it as
environment, and what it means.

The builder's --port/--data-dir defaults, the debconf templates' defaults and
choices, the config script's checks of the choices, the admin helper's keys and
defaults (defaults.json) and the README's settings table all come from here
(the README's is tested against it)."""

from __future__ import annotations

from dataclasses import dataclass

# TLS modes and the front door's listener snippet for each (debian/links).
TLS_LISTENERS = {"self-signed": "https", "provided": "https", "off": "http"}
# Who may read the index; uploads always need a password.
ACCESS_MODES = ("private", "public-read")


# The kinds of value a setting holds: each has one check in the helper
# (admin/settings.py check_choices) and, for the asked ones, one in the config
# script (debian/_checks.sh), kept alike by parity tests.
KINDS = (
    "text",
    "user",
    "port",
    "choice",
    "path",
    "file",
    "url",
    "address",
    "networks",
    "hosts",
    "count",
    "size",
    "duration",
    "moment",
)


@dataclass(frozen=True)
class Setting:
    key: str
    question: str | None  # pypi-appliance/<question>, or None: the config file only
    default: str
    meaning: str
    choices: tuple[str, ...] = ()
    kind: str = "text"
    priority: str | None = None  # debconf's, for a question: high (always asked) or medium
    env: tuple[str, ...] = ()  # compose services that receive it as environment

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.key}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (self.question is None) != (self.priority is None):
            raise ValueError(f"{self.key}: a question needs a priority, and only a question has one")
        if self.choices and self.kind != "choice":
            raise ValueError(f"{self.key}: choices are for kind 'choice'")


SETTINGS = (
    Setting(
        "PYPI_ADMIN_USER",
        "admin-username",
        "admin",
        "the admin account debconf manages (more with `pypi-appliance user add`)",
        kind="user",
        priority="high",
    ),
    Setting("PYPI_PORT", "port", "8080", "the TCP port the front door listens on", kind="port", priority="high"),
    Setting(
        "PYPI_TLS",
        "tls",
        "self-signed",
        "HTTPS: the appliance's own CA, your certificate, or plain HTTP",
        tuple(TLS_LISTENERS),
        kind="choice",
        priority="high",
    ),
    Setting(
        "PYPI_TLS_CERT",
        "tls-cert",
        "",
        "the certificate (chain) file, PEM; set by the mode when not provided",
        kind="file",
        priority="high",
    ),
    Setting("PYPI_TLS_KEY", "tls-key", "", "its unencrypted key file, PEM", kind="file", priority="high"),
    Setting("PYPI_TLS_NAMES", None, "", "more names and addresses for the self-signed certificate, comma separated"),
    Setting(
        "PYPI_ACCESS",
        "access",
        ACCESS_MODES[0],
        "who may list and download: `private` needs a password, `public-read` does not",
        ACCESS_MODES,
        kind="choice",
        priority="medium",
    ),
    Setting(
        "PYPI_BIND_ADDRESS",
        None,
        "",
        "the host address the port is published on, such as 127.0.0.1 behind a reverse proxy on this host "
        "(empty: every address)",
        kind="address",
    ),
    Setting(
        "PYPI_TRUSTED_PROXIES",
        None,
        "",
        "addresses or networks of reverse proxies (comma separated, such as 10.0.0.5,172.16.0.0/12): "
        "from them the client's address is taken from X-Forwarded-For (throttling, audit log)",
        kind="networks",
    ),
    Setting(
        "PYPI_CLIENT_URL",
        None,
        "",
        "the URL clients use when it is not this host's (a reverse proxy's, such as "
        "https://pypi.example.com): client-config and user add print it",
        kind="url",
    ),
    Setting(
        "PYPI_AUTH_MAX_FAILURES",
        None,
        "10",
        "failed logins for one account from one client address within a minute that throttle it there (429)",
        kind="count",
        env=("auth",),
    ),
    Setting(
        "PYPI_AUTH_THROTTLE_SECONDS",
        None,
        "60",
        "the first throttle's length; each failure after it doubles the next",
        kind="count",
        env=("auth",),
    ),
    Setting("PYPI_AUTH_THROTTLE_MAX_SECONDS", None, "3600", "the longest throttle", kind="count", env=("auth",)),
    Setting(
        "PYPI_AUTH_WORKERS",
        None,
        "2",
        "threads that check passwords (bcrypt): the most CPU guesses can take",
        kind="count",
        env=("auth",),
    ),
    Setting(
        "PYPI_UPSTREAM",
        "upstream",
        "",
        "the simple-API URL of an index for the names this one does not hold, such as "
        "https://pypi.org/simple/ (empty: none)",
        kind="url",
        priority="medium",
        env=("upstream",),
    ),
    Setting(
        "PYPI_UPSTREAM_CREDENTIALS",
        None,
        "",
        "a file holding USER:PASSWORD for a private upstream (mode 0640, group 9898)",
        kind="file",
    ),
    Setting(
        "PYPI_UPSTREAM_FILE_HOSTS",
        None,
        "files.pythonhosted.org",
        "hosts besides the upstream's own that its pages may link files on (comma separated; "
        "PyPI's are on files.pythonhosted.org); links elsewhere are dropped",
        kind="hosts",
        env=("upstream",),
    ),
    Setting(
        "PYPI_UPSTREAM_PAGE_SECONDS",
        None,
        "300",
        "how long an upstream page is kept before it is fetched again",
        kind="count",
        env=("upstream",),
    ),
    Setting(
        "PYPI_UPSTREAM_CACHE_MAX",
        None,
        "10g",
        "the most disk the upstream's files take (k, m, g); the least recently used go first",
        kind="size",
    ),
    Setting(
        "PYPI_UPSTREAM_MIN_AGE",
        "upstream-min-age",
        "0",
        "the cooldown: an upstream file is offered only once the upstream's own upload time is this old "
        "(such as 7d, 36h; 0: off); files without an upload time are not offered while it is on",
        kind="duration",
        priority="medium",
        env=("upstream",),
    ),
    Setting(
        "PYPI_UPSTREAM_NOT_AFTER",
        None,
        "",
        "a line in the sand: nothing uploaded upstream after this ISO date or time (such as 2026-11-30 "
        "or 2026-11-30T12:00:00Z) is offered, whatever the cooldown (empty: none)",
        kind="moment",
        env=("upstream",),
    ),
    Setting(
        "PYPI_UPSTREAM_ONLY_LISTED",
        None,
        "no",
        "`yes`: only names on the allow-list (`pypi-appliance upstream allow NAME`) come from the upstream",
        ("yes", "no"),
        kind="choice",
        env=("upstream",),
    ),
    Setting(
        "PYPI_DATA_DIR",
        "data-dir",
        "/srv/pypi",
        "where packages/, auth/, index/ and upstream/ (its cache) live",
        kind="path",
        priority="medium",
    ),
)
# Settings that must be whole numbers of 1 or more.
COUNTS = tuple(s.key for s in SETTINGS if s.kind == "count")
# An upstream URL: http(s), a host (and port), a path; never credentials (they
# would land in debconf's database and the logs). The config script and the
# helper check the same (a parity test feeds both).
UPSTREAM_PATTERN = r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+/-]*)?"
# A cooldown (PYPI_UPSTREAM_MIN_AGE), checked by the config script; the
# upstream service and the helper parse it with pypi_appliance.core.policy's
# DURATION (a parity test feeds both the same values).
DURATION_PATTERN = r"0|([0-9]+[wdhms])+"
# nginx's size syntax.
SIZE_PATTERN = r"[0-9]+[kKmMgG]?"
BY_KEY = {s.key: s for s in SETTINGS}


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| key | debconf question | default | what |", "|---|---|---|---|"]
    for s in SETTINGS:
        question = f"`pypi-appliance/{s.question}` ({s.priority})" if s.question else "(config file only)"
        default = f"`{s.default}`" if s.default else "(empty)"
        choices = f" (`{'`, `'.join(s.choices)}`)" if s.choices else ""
        rows.append(f"| `{s.key}` | {question} | {default} | {s.meaning}{choices} |")
    return "\n".join(rows) + "\n"
