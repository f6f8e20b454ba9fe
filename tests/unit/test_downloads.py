"""Who pulled what (admin/downloads.py): the front door's record lines read
back, every rotation (plain and compressed) searched, any spelling of a name."""

from __future__ import annotations

import argparse
import gzip

import pytest

from pypi_appliance.admin import downloads
from pypi_appliance.admin.settings import Fail, read_conf

SHA = "ab" * 32
OLD = [
    f"2026-01-05T10:00:00+00:00 upstream MISS 200 100 10.0.0.5 ci /upstream/cooled/{SHA}/cooled-2.0-py3-none-any.whl",
    "2026-01-05T10:00:01+00:00 local - 200 50 10.0.0.6 alice /packages/Team_Tool-1.0.tar.gz",
]
NOW = [
    "# cache cleared 2026-12-01T00:00:00+00:00",
    f"2026-12-07T10:00:00+00:00 upstream HIT 200 100 10.0.0.7 ci /upstream/cooled/{SHA}/cooled-2.0-py3-none-any.whl",
    f"2026-12-07T10:00:01+00:00 upstream HIT 200 100 10.0.0.7 ci /upstream/cooled/{SHA}/cooled-1.0-py3-none-any.whl",
    "2026-12-07T10:00:02+00:00 local - 200 50 10.0.0.8 bob /packages/sub/team.tool-1.1-py3-none-any.whl",
    "2026-12-07T10:00:03+00:00 local - 200 50 10.0.0.8 bob /packages/team-toolbox-1.0.tar.gz",
    "2026-12-07T10:00:04+00:00 local - 200 50 10.0.0.8 bob /packages/cut-sh",
]


@pytest.fixture
def record(tmp_path, monkeypatch):
    log = tmp_path / "downloads.log"
    monkeypatch.setattr(downloads, "LOG", str(log))
    with gzip.open(f"{log}.2.gz", "wt") as f:
        f.write("\n".join(OLD[:1]) + "\n")
    (tmp_path / "downloads.log.1").write_text("\n".join(OLD[1:]) + "\n")
    log.write_text("\n".join(NOW) + "\n")
    (tmp_path / "downloads.log.bak").write_text(NOW[1] + "\n")  # not a rotation: not read
    return log


def test_a_release_in_every_rotation(record):
    found = downloads.query("cooled", "2.0", None, None)
    assert [(r.time[:10], r.account, r.address, r.cache) for r in found] == [
        ("2026-01-05", "ci", "10.0.0.5", "MISS"),
        ("2026-12-07", "ci", "10.0.0.7", "HIT"),
    ]
    assert [r.version for r in downloads.query("cooled", None, None, None)] == ["2.0", "2.0", "1.0"]


def test_local_files_by_any_spelling_and_not_their_neighbours(record):
    found = downloads.query("team-tool", None, None, None)
    assert [(r.file, r.version, r.source) for r in found] == [
        ("Team_Tool-1.0.tar.gz", "1.0", "local"),
        ("team.tool-1.1-py3-none-any.whl", "1.1", "local"),
    ]


def test_an_account_and_since(record):
    found = downloads.query(None, None, "ci", downloads.policy.parse_moment("2026-12-01"))
    assert [r.file for r in found] == ["cooled-2.0-py3-none-any.whl", "cooled-1.0-py3-none-any.whl"]
    assert downloads.query(None, None, "nobody", None) == []


def test_the_command_names_bad_input(record, capsys):
    conf = read_conf("/nonexistent")
    ask = lambda **kw: argparse.Namespace(**{"release": None, "account": None, "since": None, **kw})  # noqa: E731
    with pytest.raises(Fail, match="name a project"):
        downloads.cmd_downloads(ask(), conf)
    with pytest.raises(Fail, match="'cool\\*': give a project name"):
        downloads.cmd_downloads(ask(release="cool*"), conf)
    with pytest.raises(Fail, match="--since: 'last week' is not an ISO 8601 date"):
        downloads.cmd_downloads(ask(release="cooled", since="last week"), conf)
    assert downloads.cmd_downloads(ask(release="Cooled==2.0"), conf) == 0
    out, err = capsys.readouterr()
    assert out.count("cooled-2.0-py3-none-any.whl (upstream, cache ") == 2
    assert "2 downloads of cooled==2.0 by 1 accounts from 2 addresses" in err
