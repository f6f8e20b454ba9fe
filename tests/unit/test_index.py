"""The index engine on its own: what it lists, what it refuses, what it keeps
(upload times, yanks), and its pages' fields (PEP 503/592/658/691/700/714)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time

import pytest

from pypi_appliance.core import archives, policy
from pypi_appliance.core.archives import Invalid, inspect
from pypi_appliance.core.names import parse_release
from pypi_appliance.core.simple import API_VERSION, render_project, render_root
from pypi_appliance.services.index import Index, Syncer
from tests.support import bombs
from tests.support.dists import make_sdist, make_wheel


@pytest.fixture
def index(tmp_path):
    (tmp_path / "packages").mkdir()
    ix = Index(str(tmp_path))
    return ix, Syncer(ix, log=lambda text: None), tmp_path / "packages"


def project_page(ix, project):
    with open(os.path.join(ix.simple, project, "index.json")) as f:
        return json.load(f)


def test_whole_files_are_listed_and_broken_ones_say_why(index):
    ix, syncer, packages = index
    wheel = make_wheel(packages, "1.0", project="Good.Probe", metadata="Requires-Python: >=3.8\n")
    good_sdist = make_sdist(packages, "good-probe", "1.1")
    truncated = packages / "good_probe-2.0-py3-none-any.whl"
    truncated.write_bytes(wheel.read_bytes()[:-30])
    crc = packages / "good_probe-2.1-py3-none-any.whl"
    crc.write_bytes(wheel.read_bytes().replace(b'VERSION = "1.0"', b'VERSION = "1.X"'))
    cut_tar = packages / "good-probe-2.2.tar.gz"
    cut_tar.write_bytes(good_sdist.read_bytes()[:60])
    (packages / "notes.txt").write_text("not a distribution")
    other = make_wheel(packages.parent, "1.0", project="other")
    (packages / "good_probe-3.0-py3-none-any.whl").write_bytes(other.read_bytes())
    changes = syncer.sync()
    assert sorted(changes["added"]) == sorted([good_sdist.name, wheel.name])
    why = changes["invalid"]
    assert why[truncated.name].startswith("not a whole zip archive")
    assert why[crc.name] == "member Good.Probe/__init__.py is corrupt"
    assert why[cut_tar.name].startswith("not a whole archive")
    assert why["notes.txt"] == "not a wheel or source archive that pip can install"
    assert why["good_probe-3.0-py3-none-any.whl"] == "the file name says 'good_probe' but its metadata says 'other'"
    with pytest.raises(Invalid, match="no PKG-INFO"):
        inspect(str(make_sdist(packages.parent, "bare", "1.0", pkg_info=False)), "bare-1.0.tar.gz")
    page = project_page(ix, "good-probe")
    assert [f["filename"] for f in page["files"]] == [wheel.name, good_sdist.name]
    assert page["versions"] == ["1.0", "1.1"]
    files = {f["filename"]: f for f in page["files"]}
    assert files[good_sdist.name]["requires-python"] == ">=3.9"
    assert files[good_sdist.name]["core-metadata"] is False  # PEP 658 files for wheels only
    assert files[wheel.name]["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    status = json.loads(open(ix.status_file).read())
    assert status["files"] == 2 and status["projects"] == 1 and len(status["invalid"]) == 5


def test_a_file_being_copied_is_listed_once_whole(index):
    ix, syncer, packages = index
    whole = make_wheel(packages.parent, "1.0", project="copy-probe").read_bytes()
    target = packages / "copy_probe-1.0-py3-none-any.whl"
    target.write_bytes(whole[: len(whole) // 2])
    syncer.sync()
    assert not os.path.exists(os.path.join(ix.simple, "copy-probe"))
    assert not syncer.changed()
    with open(target, "ab") as f:  # the directory's mtime stays: the file's own stat tells
        f.write(whole[len(whole) // 2 :])
    assert syncer.changed()
    assert syncer.sync()["added"] == [target.name]


def test_upload_times_and_yanks_survive_reindex_restore_and_a_missing_disk(index):
    ix, syncer, packages = index
    wheel = make_wheel(packages, "1.0", project="keep-probe")
    syncer.sync()
    first = project_page(ix, "keep-probe")["files"][0]["upload-time"]
    with ix.lock():
        record = ix.load("keep-probe")
        record["yanked"]["1.0"] = "bad"
        ix.save("keep-probe", record)
        ix.publish("keep-probe", record)
    time.sleep(0.01)
    Syncer(ix, log=lambda text: None, rehash=True).sync()  # reindex
    item = project_page(ix, "keep-probe")["files"][0]
    assert (item["upload-time"], item["yanked"]) == (first, "bad")
    # The same bytes under a new inode (a restore), and after the disk was away.
    data = wheel.read_bytes()
    wheel.unlink()
    syncer.sync()
    assert project_page(ix, "keep-probe")["files"] == []  # still this index's name
    wheel.write_bytes(data)
    syncer.sync()
    item = project_page(ix, "keep-probe")["files"][0]
    assert (item["upload-time"], item["yanked"]) == (first, "bad")
    # Other bytes never take that name, before or after a reindex (replaced,
    # not deleted first: a new file may get a deleted one's inode).
    make_wheel(packages.parent, "1.0", project="keep-probe", metadata="Summary: other\n").replace(wheel)
    assert "was on this index with other contents" in syncer.sync()["invalid"][wheel.name]
    assert project_page(ix, "keep-probe")["files"] == []
    reindexed = Syncer(ix, log=lambda text: None, rehash=True).sync()
    assert "was on this index with other contents" in reindexed["invalid"][wheel.name]
    (packages.parent / "same").write_bytes(data)
    (packages.parent / "same").replace(wheel)
    assert syncer.sync()["added"] == [wheel.name]
    assert project_page(ix, "keep-probe")["files"][0]["upload-time"] == first


def test_a_name_is_held_until_released_and_an_upload_holds_it_again(index):
    ix, syncer, packages = index
    wheel = make_wheel(packages, "1.0", project="held-probe")
    syncer.sync()
    wheel.unlink()
    syncer.sync()
    root = json.loads(open(os.path.join(ix.simple, "index.json")).read())
    assert project_page(ix, "held-probe")["files"] == [] and {"name": "held-probe"} in root["projects"]
    assert json.loads(open(ix.status_file).read())["held-without-files"] == ["held-probe"]
    with ix.lock():
        record = ix.load("held-probe")
        record["released"] = True
        ix.save("held-probe", record)
        ix.publish("held-probe", record)
    syncer.sync()
    assert not os.path.exists(os.path.join(ix.simple, "held-probe"))
    make_wheel(packages, "2.0", project="held-probe")
    syncer.sync()
    assert [f["filename"] for f in project_page(ix, "held-probe")["files"]] == ["held_probe-2.0-py3-none-any.whl"]
    assert "released" not in ix.load("held-probe")


def test_pages_carry_the_pep_fields_escaped():
    record = {
        "files": {
            "a_b-1.0-py3-none-any.whl": {
                "version": "1.0",
                "sha256": "ab" * 32,
                "size": 10,
                "upload-time": "2026-01-02T03:04:05.000006Z",
                "requires-python": ">=3.8,<4",
                "metadata-sha256": "cd" * 32,
            },
            "a_b-1.0.tar.gz": {
                "version": "1.0",
                "sha256": "ef" * 32,
                "size": 20,
                "upload-time": "2026-01-02T03:04:05.000006Z",
                "requires-python": None,
            },
            "a_b-0.9.tar.gz": {
                "version": "0.9",
                "sha256": "01" * 32,
                "size": 5,
                "upload-time": "2025-01-02T03:04:05.000006Z",
                "requires-python": None,
            },
        },
        "yanked": {"1.0": '<"why">', "0.9": ""},
    }
    page, data = render_project("a-b", record)
    doc = json.loads(data)
    assert doc["meta"] == {"api-version": API_VERSION} and API_VERSION == "1.4"
    assert doc["versions"] == ["0.9", "1.0"]
    wheel = next(f for f in doc["files"] if f["filename"].endswith(".whl"))
    assert wheel["core-metadata"] == {"sha256": "cd" * 32}
    assert "dist-info-metadata" not in wheel  # PEP 714: pip 22.3-23.1 crash on it in JSON
    assert wheel["yanked"] == '<"why">' and wheel["url"] == "../../packages/a_b-1.0-py3-none-any.whl"
    assert next(f for f in doc["files"] if f["filename"] == "a_b-0.9.tar.gz")["yanked"] is True
    assert "requires-python" not in next(f for f in doc["files"] if f["filename"] == "a_b-1.0.tar.gz")
    html = page.decode()
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in html
    assert 'data-yanked="&lt;&quot;why&quot;&gt;"' in html and 'data-yanked=""' in html
    assert html.count("data-core-metadata=") == 1
    assert re.search(r'href="\.\./\.\./packages/a_b-1\.0\.tar\.gz#sha256=(ef){32}"', html)
    page, data = render_root(["a-b", "c"])
    assert json.loads(data) == {"meta": {"api-version": "1.4"}, "projects": [{"name": "a-b"}, {"name": "c"}]}
    assert b'<a href="c/">c</a>' in page


def test_release_specs_name_the_value():
    assert parse_release("Foo_Bar==1.0") == ("foo-bar", "1.0")
    for bad in ("foo", "foo==", "==1.0", "foo>=1.0"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_release(bad)


def test_pages_of_an_older_shape_are_written_again(index):
    """An upgrade from a version whose JSON pages carried dist-info-metadata
    (pip 22.3-23.1 crash on it): the first pass writes every page again."""
    ix, syncer, packages = index
    make_wheel(packages, "1.0", project="shape-probe")
    syncer.sync()
    path = os.path.join(ix.simple, "shape-probe", "index.json")
    old = project_page(ix, "shape-probe")
    old["files"][0]["dist-info-metadata"] = old["files"][0]["core-metadata"]
    with open(path, "w") as f:
        json.dump(old, f)
    os.unlink(ix.shape_path())
    fresh = Syncer(ix, log=lambda text: None)  # a restarted indexer
    fresh.sync()
    assert "dist-info-metadata" not in project_page(ix, "shape-probe")["files"][0]
    assert open(ix.shape_path()).read().strip() == "3"
    before = os.stat(path).st_mtime_ns
    Syncer(ix, log=lambda text: None).sync()  # the current shape: nothing written again
    assert os.stat(path).st_mtime_ns == before


def test_bombs_are_refused_with_the_bound_they_break_and_others_still_list(index, tmp_path):
    ix, syncer, packages = index
    sparse = bombs.sparse_sdist(packages)
    bzip2 = bombs.bzip2_wheel(packages, size=2**20)
    metadata = bombs.huge_metadata_wheel(packages, size=16 * 2**20)
    overlap = bombs.overlapping_wheel(packages, size=2**20)
    good = make_wheel(packages, "1.0", project="after-bombs")
    changes = syncer.sync()
    assert changes["added"] == [good.name]
    assert changes["invalid"] == {
        sparse.name: "member bomb_sparse-1.0/PKG-INFO is a sparse file",
        bzip2.name: "member bomb_bzip2/__init__.py is compressed with method 12; "
        "wheels and zip archives here use stored or deflate",
        metadata.name: "its bomb_metadata-1.0.dist-info/METADATA is 16 MiB, more than the 8 MiB the index reads",
        overlap.name: "members bomb_overlap/__init__.py and bomb_overlap/c0000000.py overlap",
    }
    assert json.loads(open(ix.status_file).read())["invalid"] == changes["invalid"]


def test_an_archive_that_unpacks_past_its_budget_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "UNPACKED_MAX", 2**20)  # in this process: the inspector's is 1 GiB
    path = tmp_path / "zeros-1.0.tar.gz"
    metadata = b"Metadata-Version: 2.1\nName: zeros\nVersion: 1.0\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("zeros-1.0/PKG-INFO", metadata), ("zeros-1.0/zeros.bin", bytes(4 * 2**20))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    limit = 2**20 + 32 * path.stat().st_size
    with pytest.raises(Invalid) as refused:
        inspect(str(path), path.name)
    assert str(refused.value) == (
        f"it unpacks to more than {limit / 2**20:,.0f} MiB (the index reads at most "
        "1 MiB plus 32 times the file's size)"
    )


def test_a_file_that_breaks_the_inspector_is_that_file_s_alone(index):
    """A pax header read whole into memory passes every check above: the
    inspector's address-space limit stops it, and the pass goes on."""
    ix, syncer, packages = index
    bomb = bombs.pax_sdist(packages)
    good = make_wheel(packages, "1.0", project="after-pax")
    changes = syncer.sync()
    assert changes["added"] == [good.name]
    assert changes["invalid"][bomb.name] == "checking it needs more than 256 MiB of memory"


def test_project_states_on_the_pages_and_the_markers_of_quarantined_files(index, tmp_path):
    """PEP 792: the state in both formats; a quarantined project lists no file
    and each of its files gets the marker the front door answers 410 with."""
    ix, syncer, packages = index
    make_wheel(packages, "1.0", project="state-probe")
    syncer.sync()
    assert project_page(ix, "state-probe")["project-status"] == {"status": "active"}
    states = os.path.join(os.path.dirname(ix.root), "policy", policy.STATUS_FILE)
    os.makedirs(os.path.dirname(states))
    marker = os.path.join(ix.withheld, "packages", "state_probe-1.0-py3-none-any.whl")
    for state, reason in (("deprecated", "use other-probe"), ("quarantined", "malware <script>"), ("archived", "")):
        with open(states, "w") as f:
            f.write(policy.statuses_json({"state-probe": {"status": state, "reason": reason}}))
        ix.publish("state-probe", ix.load("state-probe"))
        page = project_page(ix, "state-probe")
        assert page["project-status"] == ({"status": state, "reason": reason} if reason else {"status": state})
        html_page = open(os.path.join(ix.simple, "state-probe", "index.html")).read()
        assert f'<meta name="pypi:project-status" content="{state}">' in html_page
        assert "<script>" not in html_page
        if state == "quarantined":
            assert page["files"] == [] and page["versions"] == [] and "state_probe" not in html_page
            assert 'content="malware &lt;script&gt;"' in html_page
            assert "state-probe is quarantined on this index (malware <script>)" in open(marker).read()
        else:
            assert len(page["files"]) == 1 and not os.path.exists(marker)
    # A states file nobody can read: quarantined, with why (nothing offered by states nobody can check).
    with open(states, "w") as f:
        f.write("{broken")
    ix.publish("state-probe", ix.load("state-probe"))
    assert project_page(ix, "state-probe")["project-status"]["status"] == "quarantined"
