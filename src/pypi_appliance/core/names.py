"""Project names, versions and the file names pip can install: the rules
every part of the appliance (indexer, upstream service, helper) shares.
Standard library only."""

from __future__ import annotations

import re
from datetime import datetime, timezone

# What pip can install; anything else in the packages dir is reported, not listed.
WHEEL, SDISTS = ".whl", (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
DISTRIBUTIONS = (WHEEL, *SDISTS)


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def normalize_pattern(pattern: str) -> str:
    """A glob of names normalized as names are, its wildcards (* ?) kept."""
    return "".join(part if part in "*?" else normalize(part) for part in re.split(r"([*?])", pattern))


def now() -> str:
    """PEP 700's upload-time format (UTC)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_key(version: str):
    """Orders versions well enough for a listing (PEP 700 sets no order)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+!-]", version)]


def parse_release(spec: str) -> tuple[str, str]:
    """PROJECT==VERSION, as pip pins it."""
    name, sep, version = spec.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise ValueError(f"{spec!r} is not PROJECT==VERSION (for example mypkg==1.2.0)")
    return normalize(name.strip()), version.strip()


def project_of(filename: str) -> str:
    """The normalized project a distribution's file name belongs to (a wheel's
    first field; an sdist's name up to the version), for counting files where
    opening them would cost too much. The index reads the name from METADATA."""
    if filename.endswith(WHEEL):
        return normalize(filename.split("-", 1)[0])
    return normalize(re.split(r"-\d", filename, maxsplit=1)[0])


def version_of(project: str, filename: str) -> str | None:
    """A file's version from its name (wheels and sdists), for PEP 700's list;
    None when the name does not start with the project's."""
    stem = filename
    for ext in (*DISTRIBUTIONS, ".egg"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    if filename.endswith(WHEEL):
        parts = stem.split("-")
        return parts[1] if len(parts) >= 5 else None
    name, sep, version = stem.rpartition("-")
    return version if sep and normalize(name) == project else None
