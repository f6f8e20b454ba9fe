"""What each account may do: read (list and download) or publish (also
upload; yank and remove are the host admin's commands, not an account's).
DATA_DIR/auth/roles holds one "NAME ROLE" line per account; an account
without a line may only read. Standard library only: the credential checker
(services/auth.py) runs it in the server image."""

from __future__ import annotations

ROLES = ("read", "publish")


def may(role: str, need: str) -> bool:
    """Whether role covers need: publish covers read."""
    return role in ROLES and need in ROLES and ROLES.index(role) >= ROLES.index(need)


def read_roles(path: str) -> dict[str, str]:
    roles = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) == 2 and fields[1] in ROLES:
                    roles[fields[0]] = fields[1]
    except FileNotFoundError:
        pass
    return roles


def format_roles(roles: dict[str, str]) -> bytes:
    lines = [
        "# NAME ROLE: read (list and download) or publish (also upload).",
        "# Changed by 'pypi-appliance user role'; an account without a line may only read.",
    ]
    lines += [f"{name} {role}" for name, role in sorted(roles.items())]
    return ("\n".join(lines) + "\n").encode()
