"""Publish scopes, the roles file that holds them, and tokens' records
(core.credentials, core.roles), as the checker, the upload hook and the
helper share them."""

from __future__ import annotations

import pytest

from pypi_appliance.core import credentials
from pypi_appliance.core.roles import Grant, format_roles, read_roles


@pytest.mark.parametrize(
    "text, patterns",
    [
        ("team-a-*,shared-utils", ("team-a-*", "shared-utils")),
        (" Team_A.* , Shared_Utils,shared-utils ", ("team-a-*", "shared-utils")),
        ("*", ("*",)),
        ("x,*", ("*",)),
        ("lib?", ("lib?",)),
    ],
)
def test_scopes_are_normalized(text, patterns):
    assert credentials.parse_scope(text) == patterns


@pytest.mark.parametrize("text", ["", ",", "team a", "../x", "a/b", "-x", "x,y z"])
def test_bad_scopes_name_the_value(text):
    with pytest.raises(ValueError, match="names no project|is neither a project name"):
        credentials.parse_scope(text)


def test_a_scope_covers_every_spelling_of_its_names():
    scope = credentials.parse_scope("team-a-*,shared-utils")
    assert credentials.covers(scope, "team-a-core") and credentials.covers(scope, "Team_A.Core")
    assert credentials.covers(scope, "shared.utils")
    assert not credentials.covers(scope, "team-b-core") and not credentials.covers(scope, "shared-utils2")
    assert not credentials.covers((), "anything")
    assert credentials.covers(credentials.ALL, "anything")


def test_roles_file_round_trip_and_lines_from_before_scopes(tmp_path):
    path = tmp_path / "roles"
    path.write_text("# old\nadmin publish\nci read\nteam publish team-a-*,shared-utils\nodd publish ??,no/\n")
    roles = read_roles(str(path))
    assert roles == {
        "admin": Grant("publish", ("*",)),
        "ci": Grant("read", ("*",)),
        "team": Grant("publish", ("team-a-*", "shared-utils")),
        "odd": Grant("publish", ()),  # a line the helper did not write: nothing, not everything
    }
    path.write_bytes(format_roles(roles))
    text = path.read_text()
    assert "admin publish\n" in text and "team publish team-a-*,shared-utils\n" in text
    assert read_roles(str(path))["team"] == roles["team"]


def test_tokens_records(tmp_path):
    key = b"k" * 32
    token = credentials.new_token()
    assert credentials.TOKEN.fullmatch(token)
    assert credentials.digest(key, token) != credentials.digest(b"other", token)
    tokens = {
        "live": {"digest": "a", "role": "read", "projects": (), "created": 0, "expires": 200},
        "gone": {"digest": "b", "role": "read", "projects": (), "created": 0, "expires": 100, "revoked": 50},
        "long-gone": {"digest": "c", "role": "read", "projects": (), "created": 0, "expires": 10},
    }
    assert [credentials.state(tokens[n], 150) for n in tokens] == ["active", "revoked", "expired"]
    assert set(credentials.prune(tokens, 150, keep=100)) == {"live", "gone"}
    path = tmp_path / "tokens.json"
    path.write_bytes(credentials.tokens_json(tokens))
    assert credentials.read_tokens(str(path))["live"]["digest"] == "a"
    assert credentials.read_tokens(str(tmp_path / "none.json")) == {}
    path.write_text('{"tokens": {"x": {"role": "read"}}}')
    with pytest.raises(ValueError, match="no digest"):
        credentials.read_tokens(str(path))
