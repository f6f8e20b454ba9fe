"""What the upstream may offer: the cooldown (PYPI_UPSTREAM_MIN_AGE), the
line in the sand (PYPI_UPSTREAM_NOT_AFTER), the allow-list mode
(PYPI_UPSTREAM_ONLY_LISTED) and the admin's rules (`pypi-appliance upstream
allow|deny`, kept in DATA_DIR/policy/upstream-rules.json). The upstream
service decides every page and file with it, cached files included; the
helper checks and writes the rules with it. Standard library only.

Time is the upstream's own upload time (PEP 700's upload-time), never when
the appliance first saw a file: a file without one is not offered while a
cooldown or a NOT_AFTER is on (fail-closed).

    deny NAME-OR-GLOB            the name is not the upstream's: 404, never fetched
    deny NAME==VERSION           that release is not offered; the others are
    allow NAME-OR-GLOB           on the allow-list (PYPI_UPSTREAM_ONLY_LISTED=yes)
    allow NAME==VERSION          break-glass: offered despite cooldown and NOT_AFTER

A deny wins over an allow."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from pypi_appliance.core.credentials import PATTERN
from pypi_appliance.core.fsutil import read_json
from pypi_appliance.core.names import normalize_pattern, version_of

RULES_FILE = "upstream-rules.json"
# PEP 792's project states, for names held here and upstream ones alike
# (`pypi-appliance project-status`), kept in DATA_DIR/policy/project-status.json.
STATUS_FILE = "project-status.json"
STATUSES = ("active", "archived", "deprecated", "quarantined")
# States that refuse every upload of the name, whoever asks (PEP 792: archived
# and quarantined; a name not held yet is reserved by them).
LOCKED = ("archived", "quarantined")
UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# POSIX ERE too: the config script checks the debconf answer with it (debian/_checks.sh).
DURATION = re.compile(r"0|([0-9]+[wdhms])+")
# A normalized name, or a glob of them (* and ?); other spellings are normalized first.
GLOB = PATTERN  # a name or a glob of names (core.credentials)
# PEP 440 versions (and the legacy ones on old pages): no spaces, no separators of ours.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")
KINDS = ("allow", "deny")


def parse_duration(text: str) -> int:
    """Seconds of a duration such as 7d, 36h, 1d12h or 0."""
    if not DURATION.fullmatch(text):
        raise ValueError(f"'{text}' is not a duration such as 7d, 36h, 1d12h, 90m or 0 (off)")
    return sum(int(n) * UNITS[unit] for n, unit in re.findall(r"([0-9]+)([wdhms])", text))


def parse_moment(text: str) -> datetime | None:
    """An ISO 8601 date or date and time (UTC unless it says otherwise); '' is none."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"'{text}' is not an ISO 8601 date or time such as 2026-11-30 or 2026-11-30T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def upload_time(value) -> datetime | None:
    """An upstream file's PEP 700 upload-time, or None when it has none (or an unreadable one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_moment(value)
    except ValueError:
        return None


def shown_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown_duration(seconds: int) -> str:
    for unit, size in UNITS.items():
        if unit != "w" and seconds % size == 0:  # days, as the README recommends them
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_target(text: str) -> tuple[str, str | None]:
    """PATTERN or PATTERN==VERSION: the pattern normalized (a name, or a glob
    of names); a version only with a name, not a glob."""
    name, sep, version = text.strip().partition("==")
    name, version = name.strip(), version.strip()
    if not GLOB.fullmatch(name):
        raise ValueError(
            f"'{name}' is neither a project name nor a glob of names (letters, digits, . _ - and the "
            "wildcards * ?), such as requests, *-nightly or leftpadx==2.0.0"
        )
    if sep and not VERSION.fullmatch(version):
        raise ValueError(f"'{text.strip()}': '{version}' is not a version such as 2.0.0")
    if sep and ("*" in name or "?" in name):
        raise ValueError(f"'{text.strip()}': a release is one project's, not a glob's")
    return normalize_pattern(name), (version if sep else None)


@dataclass(frozen=True)
class Rule:
    kind: str  # allow or deny
    pattern: str  # a normalized name or glob
    version: str | None = None
    reason: str = ""
    by: str = ""
    at: str = ""

    def target(self) -> str:
        return self.pattern + (f"=={self.version}" if self.version else "")

    def names(self, project: str) -> bool:
        return fnmatch.fnmatchcase(project, self.pattern)

    def covers(self, project: str, version: str | None) -> bool:
        return self.names(project) and (self.version is None or self.version == version)

    def said(self) -> str:
        return f"{self.kind} {self.target()}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Decision:
    offered: bool
    state: str  # offered, allowed (break-glass), held, denied, unlisted, undated
    why: str = ""
    until: datetime | None = None  # when a held file becomes available (None: never by itself)

    @property
    def status(self) -> int:
        """What a request for it answers: a name that is not the upstream's is not found;
        a quarantined one is gone; a release held back is there, but forbidden for now."""
        return {"denied": 404, "unlisted": 404, "quarantined": 410}.get(self.state, 403)


OFFERED = Decision(True, "offered")


@dataclass(frozen=True)
class Policy:
    min_age: int = 0
    not_after: datetime | None = None
    only_listed: bool = False
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    statuses: dict = field(default_factory=dict)  # name: {"status": ..., "reason": ...}

    def status(self, project: str) -> dict | None:
        """The project's PEP 792 state when an admin set one."""
        return self.statuses.get(project)

    @classmethod
    def from_settings(cls, min_age: str, not_after: str, only_listed: str, rules=()) -> Policy:
        if only_listed not in ("yes", "no"):
            raise ValueError(f"PYPI_UPSTREAM_ONLY_LISTED: '{only_listed}' is not yes or no")
        return cls(parse_duration(min_age or "0"), parse_moment(not_after), only_listed == "yes", tuple(rules))

    @property
    def timed(self) -> bool:
        """Whether files are offered by their upload time."""
        return bool(self.min_age or self.not_after)

    def name(self, project: str) -> Decision | None:
        """A decision for the whole name (denied, quarantined, or not on the allow-list), or None."""
        for rule in self.rules:
            if rule.kind == "deny" and rule.version is None and rule.names(project):
                return Decision(False, "denied", f"{project} is denied by the rule '{rule.said()}'")
        if (self.status(project) or {}).get("status") == "quarantined":
            return Decision(False, "quarantined", quarantined(project, self.status(project)))
        # A release allowed by name==version lists the name for that release only (file()).
        if self.only_listed and not any(rule.kind == "allow" and rule.names(project) for rule in self.rules):
            return Decision(
                False,
                "unlisted",
                f"{project} is not on the allow-list (PYPI_UPSTREAM_ONLY_LISTED=yes); an admin can add it "
                f"with: pypi-appliance upstream allow {project}",
            )
        return None

    def listed(self, project: str) -> bool:
        return any(rule.kind == "allow" and rule.version is None and rule.names(project) for rule in self.rules)

    def file(self, project: str, filename: str, uploaded, now: datetime) -> Decision:
        """Whether the upstream's file (with its PEP 700 upload-time, or None) is offered now."""
        if decided := self.name(project):
            return decided
        version = version_of(project, filename)
        release = f"{project}=={version}" if version else filename
        for rule in self.rules:
            if rule.kind == "deny" and rule.version is not None and rule.covers(project, version):
                return Decision(False, "denied", f"{release} is denied by the rule '{rule.said()}'")
        for rule in self.rules:
            if rule.kind == "allow" and rule.version is not None and rule.covers(project, version):
                return Decision(True, "allowed", f"allowed by the rule '{rule.said()}'")
        if self.only_listed and not self.listed(project):
            return Decision(
                False,
                "unlisted",
                f"{release} is not on the allow-list (PYPI_UPSTREAM_ONLY_LISTED=yes): only some releases of "
                f"{project} are; an admin can add the name with: pypi-appliance upstream allow {project}",
            )
        if not self.timed:
            return OFFERED
        moment = upload_time(uploaded)
        if moment is None:
            return Decision(
                False,
                "undated",
                f"{filename}: the upstream gives no upload time, and with a cooldown or NOT_AFTER on, "
                f"files without one are not offered; an admin can offer it with: "
                f"pypi-appliance upstream allow {release} --reason TEXT",
            )
        if self.not_after and moment > self.not_after:
            return Decision(
                False,
                "held",
                f"{filename} was uploaded upstream at {shown_time(moment)}, after PYPI_UPSTREAM_NOT_AFTER="
                f"{shown_time(self.not_after)}; an admin can offer it with: "
                f"pypi-appliance upstream allow {release} --reason TEXT",
            )
        until = moment + timedelta(seconds=self.min_age)
        if until > now:
            return Decision(
                False,
                "held",
                f"{filename} was uploaded upstream at {shown_time(moment)}; the cooldown "
                f"(PYPI_UPSTREAM_MIN_AGE={shown_duration(self.min_age)}) holds it until {shown_time(until)}; "
                f"an admin can offer it now with: pypi-appliance upstream allow {release} --reason TEXT",
                until,
            )
        return OFFERED


def quarantined(project: str, status: dict | None) -> str:
    reason = f" ({status['reason']})" if status and status.get("reason") else ""
    return (
        f"{project} is quarantined on this index{reason}: none of its files is offered; an admin "
        f"changes it with: pypi-appliance project-status {project} active"
    )


def read_statuses(path: str) -> dict:
    """The project states an admin set: {name: {"status", "reason", "by", "at"}}; {} for none yet.
    A file that is there but not readable raises: the caller fails closed."""
    projects = read_json(path, {"projects": {}})["projects"]
    for name, item in projects.items():
        if item.get("status") not in STATUSES:
            raise ValueError(f"{path}: {name}: status {item.get('status')!r} is not one of {', '.join(STATUSES)}")
    return projects


def statuses_json(statuses: dict) -> str:
    return json.dumps({"projects": statuses}, indent=1, sort_keys=True) + "\n"


def status_path(data_dir: str) -> str:
    return os.path.join(data_dir, "policy", STATUS_FILE)


# What reading a rules or states file that is there but broken raises: the
# readers fail closed on it (nothing offered, no upload taken).
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


class Watched:
    """A file read again only when it changes (stat per use): the rules and
    states, which the helper replaces whole."""

    def __init__(self, path: str, read):
        self.path, self.read = path, read
        self.seen: tuple | None = ()
        self.value = None

    def get(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self.seen:
            self.value = self.read(self.path)
            self.seen = stamp
        return self.value


def read_rules(path: str) -> tuple[Rule, ...]:
    """The rules file's rules ((): none yet). A file that is there but not
    readable as rules raises: the caller fails closed."""
    rules = tuple(Rule(**item) for item in read_json(path, {"rules": []})["rules"])
    for rule in rules:
        if rule.kind not in KINDS:
            raise ValueError(f"{path}: rule kind {rule.kind!r} is not allow or deny")
    return rules


def rules_json(rules) -> str:
    return json.dumps({"rules": [asdict(rule) for rule in rules]}, indent=1) + "\n"


def rules_path(data_dir: str) -> str:
    return os.path.join(data_dir, "policy", RULES_FILE)
