"""`upstream rules|allow|deny|held`: the admin's word on what the upstream
may offer (core.policy). Rules are kept in DATA_DIR/policy/upstream-rules.json
(backed up with the packages), written whole, read again by the upstream
service when they change; the front door forgets the pages it kept under
the old rules (cache.use_policy). Every change is in the audit log, with the
admin's reason."""

from __future__ import annotations

import os
import sys
import time
import urllib.parse

from pypi_appliance.admin import cache
from pypi_appliance.admin.settings import PACKAGE, Fail, Settings
from pypi_appliance.core import audit, policy
from pypi_appliance.core.fsutil import write_atomic


def rules_file(conf: Settings) -> str:
    return policy.rules_path(conf.data_dir)


def current(conf: Settings) -> list[policy.Rule]:
    try:
        return list(policy.read_rules(rules_file(conf)))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise Fail(f"{rules_file(conf)} is not a rules file ({err}); restore it from a backup") from None


def save(conf: Settings, rules: list[policy.Rule]) -> None:
    os.makedirs(os.path.dirname(rules_file(conf)), mode=0o755, exist_ok=True)
    write_atomic(rules_file(conf), policy.rules_json(rules), mode=0o644, durable=True)
    cache.use_policy(conf)


def target(text: str) -> tuple[str, str | None]:
    try:
        return policy.parse_target(text)
    except ValueError as err:
        raise Fail(str(err)) from None


def decisions(conf: Settings, project: str) -> dict:
    """The upstream service's word on each file the upstream lists for project."""
    from pypi_appliance.admin.status import ask_service, containers

    if not conf.upstream:
        raise Fail("no upstream is set (PYPI_UPSTREAM is empty)")
    answer = ask_service(containers() or [], "upstream", f"/decisions/{urllib.parse.quote(project)}", 15)
    if answer is None:
        raise Fail(f"the upstream service is not answering; is {PACKAGE} running? (systemctl status {PACKAGE})")
    return answer


def cmd_upstream(args, conf: Settings):
    return {"rules": show_rules, "allow": allow, "deny": deny, "held": held}[args.upstream_command](args, conf)


def show_rules(args, conf: Settings):
    base = (
        f"cooldown    PYPI_UPSTREAM_MIN_AGE={conf.upstream_min_age}"
        + (" (off)" if policy.parse_duration(conf.upstream_min_age) == 0 else "")
        + f"\nnot after   PYPI_UPSTREAM_NOT_AFTER={conf.upstream_not_after or '(none)'}"
        + f"\nallow-list  PYPI_UPSTREAM_ONLY_LISTED={conf.upstream_only_listed}"
    )
    print(base)
    rules = current(conf)
    for rule in rules:
        print(
            f"{rule.kind:<6} {rule.target():<30} {rule.at} by {rule.by}" + (f": {rule.reason}" if rule.reason else "")
        )
    if not rules:
        print("no allow or deny rules")
    return 0


def _change(conf: Settings, kind: str, text: str, reason: str | None, remove: bool) -> None:
    pattern, version = target(text)
    rules = current(conf)
    same = [r for r in rules if r.kind == kind and r.pattern == pattern and r.version == version]
    shown = pattern + (f"=={version}" if version else "")
    if remove:
        if not same:
            raise Fail(f"there is no rule '{kind} {shown}'; 'pypi-appliance upstream rules' lists them")
        save(conf, [r for r in rules if r not in same])
        audit.record(f"upstream-{kind}-removed", by=audit.actor(), rule=shown, reason=reason or "")
        print(f"{PACKAGE}: removed the rule '{kind} {shown}'")
        return
    rule = policy.Rule(
        kind, pattern, version, reason or "", audit.actor(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    save(conf, [r for r in rules if r not in same] + [rule])
    audit.record(f"upstream-{kind}", by=audit.actor(), rule=shown, reason=reason or "")
    print(f"{PACKAGE}: {kind} {shown}: in effect now" + (f" ({reason})" if reason else ""))


def allow(args, conf: Settings):
    pattern, version = target(args.target)
    if version and not args.remove:
        if not args.reason:
            raise Fail(f"say why {pattern}=={version} may skip the cooldown: --reason TEXT (it goes to the audit log)")
        answer = decisions(conf, pattern)
        versions = {entry["version"] for entry in answer["files"]}
        if version not in versions:
            known = ", ".join(sorted(v for v in versions if v)[-5:]) or "none"
            raise Fail(f"the upstream has no release {pattern}=={version} (its latest: {known}); nothing was allowed")
        if any(r.kind == "deny" and r.covers(pattern, version) for r in current(conf)):
            print(f"{PACKAGE}: note: a deny rule covers {pattern}=={version}, and a deny wins", file=sys.stderr)
    elif not version and conf.upstream_only_listed != "yes" and not args.remove:
        print(
            f"{PACKAGE}: note: the allow-list counts only with PYPI_UPSTREAM_ONLY_LISTED=yes (now "
            f"{conf.upstream_only_listed}); to skip a cooldown, allow a release: NAME==VERSION",
            file=sys.stderr,
        )
    _change(conf, "allow", args.target, args.reason, args.remove)
    return 0


def deny(args, conf: Settings):
    _change(conf, "deny", args.target, args.reason, args.remove)
    return 0


def held(args, conf: Settings):
    """What the upstream lists for a name and is not offered now, and until when."""
    project, version = target(args.name)
    if version or "*" in project or "?" in project:
        raise Fail(f"'{args.name}': give a project name, such as requests")
    answer = decisions(conf, project)
    if answer["name"]:
        print(answer["name"])
        return 0
    if not answer["files"]:
        raise Fail(f"the upstream lists no files for {project}")
    releases: dict[str, list[dict]] = {}
    for entry in answer["files"]:
        releases.setdefault(entry["version"] or entry["filename"], []).append(entry)
    shown = 0
    for release, entries in releases.items():
        withheld = [e for e in entries if e["state"] not in ("offered", "allowed")]
        if not withheld:
            continue
        shown += 1
        first = withheld[0]
        until = f"held until {first['until']}" if first["until"] else f"not offered ({first['state']})"
        print(f"{project}=={release}  {until}: {len(withheld)} files")
        print(f"    {first['why']}")
    if not shown:
        print(f"nothing of {project} is held: every release the upstream lists is offered")
    return 0
