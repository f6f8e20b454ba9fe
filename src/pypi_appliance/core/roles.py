"""What each account may do: read (list and download) or publish (also
upload; yank and remove are the host admin's commands, not an account's),
and for publish, which projects (core.credentials: a scope).
DATA_DIR/auth/roles holds one "NAME ROLE [PATTERNS]" line per account; an
account without a line may only read, a publish line without patterns may
publish every project (as every publish account could before 0.9.0).
Standard library only: the credential checker (services/auth.py) runs it in
the server image."""

from __future__ import annotations

from typing import NamedTuple

from pypi_appliance.core.credentials import ALL, format_scope, parse_scope

ROLES = ("read", "publish")


class Grant(NamedTuple):
    role: str
    projects: tuple[str, ...] = ALL


READ = Grant(ROLES[0])


def may(role: str, need: str) -> bool:
    """Whether role covers need: publish covers read."""
    return role in ROLES and need in ROLES and ROLES.index(role) >= ROLES.index(need)


def read_roles(path: str) -> dict[str, Grant]:
    roles = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) in (2, 3) and fields[1] in ROLES:
                    try:
                        projects = parse_scope(fields[2]) if len(fields) == 3 else ALL
                    except ValueError:
                        projects = ()  # a line the helper did not write: nothing, not everything
                    roles[fields[0]] = Grant(fields[1], projects)
    except FileNotFoundError:
        pass
    return roles


def format_roles(roles: dict[str, Grant]) -> bytes:
    lines = [
        "# NAME ROLE [PROJECTS]: read (list and download) or publish (also upload), and the",
        "# projects a publish account may upload (names or globs, comma-separated; none: all).",
        "# Changed by 'pypi-appliance user role|scope'; an account without a line may only read.",
    ]
    for name, grant in sorted(roles.items()):
        scoped = grant.role == ROLES[1] and tuple(grant.projects) != ALL
        lines.append(f"{name} {grant.role}" + (f" {format_scope(grant.projects)}" if scoped else ""))
    return ("\n".join(lines) + "\n").encode()
