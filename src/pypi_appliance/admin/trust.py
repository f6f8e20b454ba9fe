"""Trusted publishers: 'trust add|list|remove', the CI identities whose OIDC
ID tokens the exchange (admin/oidc.py) trades for short-lived publish tokens."""

from __future__ import annotations

import hashlib
import sys
import time

from pypi_appliance.admin.oidc import (
    LIFETIME,
    MAX_LIFETIME,
    MIN_LIFETIME,
    Refused,
    discover,
    minted_lock,
    read_trusts,
    trusts_json,
)
from pypi_appliance.admin.settings import SERVER_GID, Fail, Settings
from pypi_appliance.admin.tokens import check_name, ensure_key, read, revoke
from pypi_appliance.admin.users import new_version, reload_front_door
from pypi_appliance.core import audit, credentials
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.policy import UNREADABLE, parse_duration


def load(conf: Settings) -> dict:
    path = credentials.trusts_path(conf.data_dir)
    try:
        return read_trusts(path)
    except UNREADABLE as err:
        raise Fail(f"{path} cannot be read ({err}); mend or remove it") from None


def save(conf: Settings, data: dict) -> None:
    write_atomic(
        credentials.trusts_path(conf.data_dir), trusts_json(data), mode=0o640, owner=(0, SERVER_GID), durable=True
    )


def parse_claims(text: str) -> dict[str, str]:
    """'project_path=group/repo,ref_protected=true' -> {name: pattern}."""
    claims = {}
    for item in (i.strip() for i in text.split(",")):
        name, sep, pattern = item.partition("=")
        if not item or not sep or not name.strip() or not pattern.strip():
            raise Fail(
                f"--claims: {item!r} is not NAME=VALUE; give the claims that name the CI job, such as "
                "'project_path=group/repo,ref_protected=true' (GitLab) or "
                "'repository=org/repo,ref=refs/heads/main' (GitHub)"
            )
        claims[name.strip()] = pattern.strip()
    for required in ("iss", "aud", "exp"):
        if required in claims:
            raise Fail(f"--claims: {required} is checked already (--issuer, --audience, expiry); leave it out")
    return claims


def default_audience(conf: Settings) -> str:
    """The index's URL, as clients have it: a token made for another index is not accepted here."""
    from pypi_appliance.admin.clients import base_url

    return base_url(conf)


def cmd_trust_add(args, conf: Settings):
    issuer = args.issuer.strip()
    if not issuer.startswith("https://") or any(c in issuer for c in " ?#"):
        raise Fail(f"--issuer {issuer!r}: an issuer is an https:// URL, such as https://gitlab.example.com")
    claims = parse_claims(args.claims)
    try:
        projects = credentials.parse_scope(args.projects)
        lifetime = parse_duration(args.lifetime) if args.lifetime else LIFETIME
    except ValueError as err:
        raise Fail(str(err)) from None
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise Fail(f"--lifetime {args.lifetime}: from 15m to 6h (PEP 807)")
    data = load(conf)
    data["audience"] = data["audience"] or default_audience(conf)
    audience = args.audience or data["audience"]
    name = (
        check_name(args.name)
        if args.name
        else "ci-" + hashlib.sha256(f"{issuer} {sorted(claims.items())}".encode()).hexdigest()[:6]
    )
    if name in data["trusts"]:
        raise Fail(f"a trust named {name!r} exists; remove it first (trust remove {name}) or choose another --name")
    if not args.no_check:
        try:
            discover(issuer)
        except Refused as err:
            raise Fail(f"--issuer {issuer}: {err.description} (--no-check adds it anyway)") from None
    ensure_key(conf)
    data["trusts"][name] = {
        "issuer": issuer,
        "audience": audience,
        "claims": claims,
        "projects": projects,
        "lifetime": lifetime,
        "created": int(time.time()),
        "by": audit.actor(),
    }
    save(conf, data)
    audit.record(
        "trust-add",
        by=audit.actor(),
        trust=name,
        iss=issuer,
        aud=audience,
        claims=",".join(f"{k}={v}" for k, v in claims.items()),
        projects=credentials.format_scope(projects),
    )
    print(f"added trust {name!r}: ID tokens from {issuer} for the audience {audience!r}", file=sys.stderr)
    print(f"with {', '.join(f'{k}={v}' for k, v in claims.items())} may publish {credentials.format_scope(projects)}")


def cmd_trust_list(args, conf: Settings):
    data = load(conf)
    if not data["trusts"]:
        print("no trusted publishers ('trust add' registers one)", file=sys.stderr)
        return
    for name, t in sorted(data["trusts"].items()):
        print(f"{name}: {t['issuer']} aud={t['audience']}")
        print(f"  claims: {', '.join(f'{k}={v}' for k, v in sorted(t['claims'].items()))}")
        minutes = t.get("lifetime", LIFETIME) // 60
        print(f"  may publish: {credentials.format_scope(t['projects'])}, tokens of {minutes} minutes")


def cmd_trust_remove(args, conf: Settings):
    data = load(conf)
    if args.name not in data["trusts"]:
        raise Fail(f"no trust named {args.name!r} ('trust list' shows them)")
    del data["trusts"][args.name]
    save(conf, data)
    # The tokens it minted stop working now, cached answers too.
    now = int(time.time())
    with minted_lock(conf.data_dir) as path:
        minted = read(path)
        mine = [n for n, r in minted.items() if args.name in r.get("by", "").removeprefix("oidc:").split(",")]
        ended = revoke(path, mine, now)
    new_version(conf)
    reload_front_door()
    audit.record("trust-remove", by=audit.actor(), trust=args.name, revoked=len(ended))
    print(
        f"removed trust {args.name!r}" + (f" and revoked the {len(ended)} tokens it minted" if ended else ""),
        file=sys.stderr,
    )
