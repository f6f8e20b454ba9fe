"""Tokens: 'token create|list|revoke'. A token is printed once and kept as a
keyed hash (core.credentials); it is the password of the user __token__, as
on PyPI, so twine, uv and poetry settings look as they do there."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import datetime, timezone

from pypi_appliance.admin.settings import SERVER_GID, Fail, Settings
from pypi_appliance.admin.users import new_version, reload_front_door, scope_option
from pypi_appliance.core import audit, credentials
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.policy import UNREADABLE, parse_duration

MAX_EXPIRES = 366 * 86400


def ensure_key(conf: Settings) -> bytes:
    """The key of the tokens' hashes: made once, read by the checker and the exchange."""
    path = credentials.key_path(conf.data_dir)
    key = credentials.read_key(path)
    if not key and os.path.isdir(os.path.dirname(path)):
        key = secrets.token_hex(32).encode()
        write_atomic(path, key + b"\n", mode=0o640, owner=(0, SERVER_GID), durable=True)
    return key


def read(path: str) -> dict[str, dict]:
    try:
        return credentials.read_tokens(path)
    except UNREADABLE as err:
        raise Fail(f"{path} cannot be read ({err}); no token in it works until it is mended or removed") from None


def when(seconds) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def check_name(name: str) -> str:
    if not credentials.TOKEN_NAME.fullmatch(name):
        raise Fail(f"invalid token name {name!r}: use 1-64 letters, digits and ._@+- starting with a letter or digit")
    return name


def cmd_token_create(args, conf: Settings):
    projects = scope_option(args.role, args.projects)
    try:
        lifetime = parse_duration(args.expires)
    except ValueError as err:
        raise Fail(f"--expires: {err}") from None
    if not 0 < lifetime <= MAX_EXPIRES:
        raise Fail(f"--expires {args.expires}: a token lives at least a second and at most 366d; make a new one then")
    path = credentials.tokens_path(conf.data_dir)
    tokens = read(path)
    now = int(time.time())
    name = check_name(args.name) if args.name else f"token-{secrets.token_hex(3)}"
    if name in tokens and credentials.state(tokens[name], now) == "active":
        raise Fail(f"a token named {name!r} exists; revoke it first (token revoke {name}) or choose another --name")
    key = ensure_key(conf)
    if not key:
        raise Fail(
            f"{os.path.dirname(path)} does not exist; run 'dpkg-reconfigure pypi-appliance' to create the data dir"
        )
    secret = credentials.new_token()
    tokens = credentials.prune(tokens, now)
    tokens[name] = {
        "digest": credentials.digest(key, secret),
        "role": args.role,
        "projects": list(projects),
        "created": now,
        "expires": now + lifetime,
        "by": audit.actor(),
    }
    write_atomic(path, credentials.tokens_json(tokens), mode=0o640, owner=(0, SERVER_GID), durable=True)
    audit.record(
        "token-create",
        by=audit.actor(),
        token=name,
        role=args.role,
        projects=credentials.format_scope(projects),
        expires=when(now + lifetime),
    )
    print(
        f"token {name!r} ({args.role}"
        + (f" of {credentials.format_scope(projects)}" if args.role == "publish" else "")
        + f"), expires {when(now + lifetime)}. It is shown once: use it as the password of the user "
        f"{credentials.TOKEN_USER} (twine: TWINE_USERNAME={credentials.TOKEN_USER} TWINE_PASSWORD=<token>; "
        f"uv: UV_PUBLISH_USERNAME / UV_INDEX_<NAME>_USERNAME={credentials.TOKEN_USER}).",
        file=sys.stderr,
    )
    print(secret)


def last_used(conf: Settings) -> dict[str, int]:
    """When the checker last checked each token: its record on disk, and what it knows since it wrote that."""
    used: dict[str, int] = {}
    try:
        with open(credentials.used_path(conf.data_dir), encoding="utf-8") as f:
            used.update(json.load(f))
    except (OSError, ValueError):
        pass
    from pypi_appliance.admin.status import ask_service, containers

    found = containers()
    live = ask_service(found, "auth", "/tokens/used", 4) if isinstance(found, list) else None
    for name, at in (live or {}).items():
        used[name] = max(int(at), int(used.get(name, 0)))
    return used


def cmd_token_list(args, conf: Settings):
    now = time.time()
    rows = []
    used = last_used(conf)
    for path in (credentials.tokens_path(conf.data_dir), credentials.minted_path(conf.data_dir)):
        for name, r in sorted(read(path).items()):
            rows.append(
                [
                    name,
                    r["role"],
                    credentials.format_scope(r["projects"]) if r["role"] == "publish" else "-",
                    when(r["created"]),
                    when(r["expires"]),
                    when(used.get(name)),
                    credentials.state(r, now),
                    r.get("by", ""),
                ]
            )
    if not rows:
        print("no tokens (token create makes one)", file=sys.stderr)
        return
    header = ["NAME", "ROLE", "PROJECTS", "CREATED", "EXPIRES", "LAST USED", "STATE", "BY"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def revoke(path: str, names, now: int) -> list[str]:
    """Revoke the named tokens of one file that are not revoked yet; their names."""
    tokens = read(path)
    hit = [n for n in names if n in tokens and not tokens[n].get("revoked")]
    for name in hit:
        tokens[name]["revoked"] = now
    if hit:
        write_atomic(path, credentials.tokens_json(tokens), mode=0o640, owner=(0, SERVER_GID), durable=True)
    return hit


def cmd_token_revoke(args, conf: Settings):
    from pypi_appliance.admin.oidc import minted_lock

    now = int(time.time())
    done = revoke(credentials.tokens_path(conf.data_dir), args.names, now)
    with minted_lock(conf.data_dir) as path:
        done += revoke(path, args.names, now)
    missing = [n for n in args.names if n not in done]
    if done:
        # Answers the front door cached for them are not used again.
        new_version(conf)
        reload_front_door()
    for name in done:
        audit.record("token-revoke", by=audit.actor(), token=name)
        print(f"revoked token {name!r}", file=sys.stderr)
    if missing:
        raise Fail(f"no active token named {', '.join(map(repr, missing))} ('token list' shows them)")
