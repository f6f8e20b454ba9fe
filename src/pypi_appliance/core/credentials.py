"""Publish scopes and tokens: what the credential checker (services/auth.py),
pypiserver's upload hook and the helper share. Standard library only.

A scope is a list of normalized project names or globs ("team-a-*,shared-utils");
"*" is every project, which every account had before scopes came (0.9.0).

A token is a high-entropy random string, used as the password with the user
name __token__ (as on PyPI). Only a keyed hash of it is kept (HMAC-SHA256 with
DATA_DIR/auth/token-key), so checking one costs a hash and a dict lookup, no
bcrypt. Tokens made with 'pypi-appliance token create' are in
DATA_DIR/auth/tokens.json; those minted for CI by trusted publishing (OIDC)
in DATA_DIR/auth/state/minted.json. Both have the same records:
{"NAME": {"digest", "role", "projects", "created", "expires", "by", ...}}."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets

from pypi_appliance.core.fsutil import read_json
from pypi_appliance.core.names import normalize, normalize_pattern

TOKEN_USER = "__token__"
# A recognisable prefix: secret scanners (and people) can tell what leaked.
TOKEN_PREFIX = "pypia-"
TOKEN = re.compile(r"pypia-[A-Za-z0-9_-]{43}")
ALL = ("*",)
# A name or a glob of names (letters, digits, . _ - and the wildcards * ?).
PATTERN = re.compile(r"[A-Za-z0-9*?](?:[A-Za-z0-9._*?-]*[A-Za-z0-9*?])?")
# The account a token acts as, in the audit log and the downloads record
# (':' is in no account name: htpasswd cannot hold one).
ACCOUNT_PREFIX = "token:"
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def parse_scope(text: str) -> tuple[str, ...]:
    """'team-a-*,shared-utils' -> the patterns, normalized (PEP 503); '*' is all."""
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"{text!r} names no project: give names or globs, such as 'team-a-*,shared-utils', or '*'")
    for p in patterns:
        if not PATTERN.fullmatch(p):
            raise ValueError(
                f"{p!r} is neither a project name nor a glob of names (letters, digits, . _ - and the "
                "wildcards * ?), such as team-a-* or shared-utils"
            )
    normalized = [normalize_pattern(p) for p in patterns]
    return ALL if "*" in normalized else tuple(dict.fromkeys(normalized))


def format_scope(patterns) -> str:
    return ",".join(patterns)


def covers(patterns, project: str) -> bool:
    """Whether a scope lets its holder publish the project (any spelling)."""
    name = normalize(project)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def key_path(data_dir: str) -> str:
    return os.path.join(data_dir, "auth", "token-key")


def tokens_path(data_dir: str) -> str:
    return os.path.join(data_dir, "auth", "tokens.json")


def state_dir(data_dir: str) -> str:
    """What the services write beside the credentials (the containers' user's):
    the tokens minted for CI and the ID tokens seen (the exchange), when each
    token was last used (the checker)."""
    return os.path.join(data_dir, "auth", "state")


def minted_path(data_dir: str) -> str:
    return os.path.join(state_dir(data_dir), "minted.json")


def used_path(data_dir: str) -> str:
    return os.path.join(state_dir(data_dir), "token-use.json")


def trusts_path(data_dir: str) -> str:
    return os.path.join(data_dir, "auth", "trusts.json")


def read_key(path: str) -> bytes:
    """The key of the token hashes (b'': none yet, so no token matches)."""
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except FileNotFoundError:
        return b""


def read_tokens(path: str) -> dict[str, dict]:
    """A tokens file's records ({}: none yet). A file that is there but not
    readable as tokens raises: the caller refuses every token."""
    tokens = read_json(path, {"tokens": {}})["tokens"]
    for name, record in tokens.items():
        if not isinstance(record.get("digest"), str) or not isinstance(record.get("expires"), int):
            raise ValueError(f"token {name!r} has no digest or expiry")
        record["projects"] = tuple(record.get("projects") or ())
    return tokens


def tokens_json(tokens: dict[str, dict]) -> bytes:
    records = {n: {**r, "projects": list(r.get("projects") or ())} for n, r in sorted(tokens.items())}
    return (json.dumps({"version": 1, "tokens": records}, indent=1, sort_keys=True) + "\n").encode()


def state(record: dict, now: float) -> str:
    """'active', 'expired' or 'revoked'."""
    if record.get("revoked"):
        return "revoked"
    return "expired" if record["expires"] <= now else "active"


def prune(tokens: dict[str, dict], now: float, keep: float = 7 * 86400) -> dict[str, dict]:
    """Records ended more than KEEP seconds ago go: the list stays short, and a
    recent one still says why a token stopped working."""
    return {n: r for n, r in tokens.items() if max(r["expires"], r.get("revoked") or 0) > now - keep}
