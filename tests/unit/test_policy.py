"""The upstream policy's rules on their own (core.policy): what parses, what
is refused (naming the value), and the decision for a file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pypi_appliance.core import policy
from pypi_appliance.core.policy import Policy, Rule

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def at(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    "text, seconds", [("0", 0), ("7d", 7 * 86400), ("36h", 36 * 3600), ("1d12h", 36 * 3600), ("2w", 14 * 86400)]
)
def test_durations(text, seconds):
    assert policy.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", "7 days", "-1d", "d", "1.5d", ""])
def test_a_duration_that_does_not_parse_is_named(text):
    with pytest.raises(ValueError, match=f"'{text}' is not a duration such as 7d, 36h"):
        policy.parse_duration(text)


def test_moments():
    assert policy.parse_moment("2026-11-30") == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert policy.parse_moment("2026-11-30T12:00:00Z") == datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    assert policy.parse_moment("2026-11-30T14:00:00+02:00") == datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    assert policy.parse_moment("") is None
    with pytest.raises(ValueError, match="'30/11/2026' is not an ISO 8601 date or time such as 2026-11-30"):
        policy.parse_moment("30/11/2026")


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("requests", ("requests", None)),
        ("Foo_Bar.baz", ("foo-bar-baz", None)),
        ("*-nightly", ("*-nightly", None)),
        ("*_Nightly", ("*-nightly", None)),
        ("leftpadx==2.0.0", ("leftpadx", "2.0.0")),
        (" leftpadx == 2.0.0 ", ("leftpadx", "2.0.0")),
    ],
)
def test_targets(text, parsed):
    assert policy.parse_target(text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("../etc", "'../etc' is neither a project name nor a glob of names"),
        ("a b", "'a b' is neither a project name nor a glob of names"),
        ("[abc]", "'\\[abc\\]' is neither a project name nor a glob of names"),
        ("", "'' is neither a project name nor a glob of names"),
        ("foo==", "'foo==': '' is not a version"),
        ("foo==1 .0", "'foo==1 .0': '1 .0' is not a version"),
        ("foo-*==1.0", "a release is one project's, not a glob's"),
    ],
)
def test_a_target_that_is_neither_a_name_nor_a_glob_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        policy.parse_target(text)


def test_the_cooldown_counts_from_the_upstreams_upload_time():
    cooled = Policy(min_age=7 * 86400)
    assert cooled.file("x", "x-1.0.tar.gz", at(timedelta(days=8)), NOW).offered
    held = cooled.file("x", "x-2.0.tar.gz", at(timedelta(minutes=1)), NOW)
    assert not held.offered and held.state == "held" and held.status == 403
    assert held.until == NOW - timedelta(minutes=1) + timedelta(days=7)
    # Fail-closed: no time, or one that does not parse, is not offered.
    for uploaded in (None, "", "yesterday", 12345):
        decided = cooled.file("x", "x-3.0.tar.gz", uploaded, NOW)
        assert not decided.offered and decided.state == "undated"
    # Off: everything, dated or not.
    assert Policy().file("x", "x-3.0.tar.gz", None, NOW).offered


def test_not_after_and_break_glass_and_deny_order():
    line = Policy(not_after=NOW - timedelta(days=30))
    assert not line.file("x", "x-2.0.tar.gz", at(timedelta(days=8)), NOW).offered
    assert line.file("x", "x-1.0.tar.gz", at(timedelta(days=31)), NOW).offered
    allowed = Policy(min_age=86400, rules=(Rule("allow", "x", "2.0", "fix"),))
    decided = allowed.file("x", "x-2.0-py3-none-any.whl", None, NOW)
    assert decided.offered and decided.state == "allowed"
    assert not allowed.file("x", "x-2.1.tar.gz", None, NOW).offered
    both = Policy(rules=(Rule("allow", "x", "2.0"), Rule("deny", "x", "2.0")))
    assert both.file("x", "x-2.0.tar.gz", None, NOW).state == "denied"
    assert both.file("x", "x-1.0.tar.gz", None, NOW).offered
    by_glob = Policy(rules=(Rule("deny", "*-nightly"),))
    assert by_glob.name("torch-nightly").status == 404 and by_glob.name("torch") is None


def test_the_allow_list():
    listed = Policy(only_listed=True, rules=(Rule("allow", "team-*"), Rule("allow", "one", "1.0")))
    assert listed.name("team-a") is None and listed.name("other").state == "unlisted"
    # A release allowed lists its name for that release only.
    assert listed.name("one") is None
    assert listed.file("one", "one-1.0.tar.gz", None, NOW).offered
    assert listed.file("one", "one-2.0.tar.gz", None, NOW).state == "unlisted"


def test_rules_files(tmp_path):
    path = tmp_path / "rules.json"
    assert policy.read_rules(str(path)) == ()
    rules = (Rule("deny", "x", None, "why", "root", "2026-12-07T00:00:00Z"),)
    path.write_text(policy.rules_json(rules))
    assert policy.read_rules(str(path)) == rules
    path.write_text('{"rules": [{"kind": "maybe", "pattern": "x"}]}')
    with pytest.raises(ValueError, match="rule kind 'maybe' is not allow or deny"):
        policy.read_rules(str(path))
