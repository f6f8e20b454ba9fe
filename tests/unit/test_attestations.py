"""PEP 740: what an upload's attestations must say of the file they came
with, the provenance object kept beside it, and its URL on the pages."""

from __future__ import annotations

import hashlib
import json

import pytest

from pypi_appliance.core import attestations
from pypi_appliance.core.simple import render_project
from pypi_appliance.services.index import Index, Syncer
from tests.support.dists import make_attestation, make_wheel


def field(*paths):
    """The upload's field as twine sends it: a JSON array of the files' objects."""
    return json.dumps([json.loads(p.read_text()) for p in paths])


def test_attestations_that_fit_the_file_make_its_provenance(tmp_path):
    wheel = make_wheel(tmp_path, "1.0", project="Team_A.Core")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    # pypi-attestations names the file normalized: still this file.
    normalized = make_attestation(wheel, name=wheel.name.lower().replace("team_a.core", "team_a_core"))
    text = field(normalized)
    publisher = {"kind": "pypi-appliance", "claims": {"account": "ci"}}
    provenance = json.loads(attestations.provenance(text, wheel.name, sha, publisher))
    assert provenance == {
        "version": 1,
        "attestation_bundles": [{"publisher": publisher, "attestations": json.loads(text)}],
    }
    assert attestations.count(attestations.provenance(text, wheel.name, sha, publisher)) == 1


@pytest.mark.parametrize(
    "change, why",
    [
        ({"name": "other-1.0-py3-none-any.whl"}, "is for 'other-1.0-py3-none-any.whl'"),
        ({"sha256": "0" * 64}, "is for other contents"),
        ({"predicate": "https://example.com/mine"}, "predicate type 'https://example.com/mine'"),
    ],
)
def test_attestations_for_another_file_refuse_it(tmp_path, change, why):
    wheel = make_wheel(tmp_path, "1.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=why):
        attestations.check(field(make_attestation(wheel, **change)), wheel.name, sha)


@pytest.mark.parametrize(
    "text, why",
    [
        ("not json", "are not JSON"),
        ("[]", "not a JSON array of 1 to 16"),
        (json.dumps([{}] * 17), "not a JSON array of 1 to 16"),
        ('[{"version": 2}]', "not a version 1 attestation"),
        (
            '[{"version": 1, "verification_material": {"certificate": "x"}, "envelope": {"statement": "@@", '
            '"signature": "x"}}]',
            "not base64 JSON",
        ),
        ('"' + "x" * (1 << 20) + '"', "over 1048576 bytes"),
    ],
)
def test_what_is_not_attestations_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        attestations.check(text, "probe-1.0-py3-none-any.whl", "0" * 64)


def test_the_pages_link_a_file_s_provenance(tmp_path):
    (tmp_path / "packages").mkdir()
    index = Index(str(tmp_path))
    wheel = make_wheel(tmp_path / "packages", "1.0", project="probe")
    plain = make_wheel(tmp_path / "packages", "2.0", project="probe")
    (tmp_path / "packages" / f"{wheel.name}.provenance").write_bytes(b'{"version": 1}')
    result = Syncer(index, log=lambda text: None).sync()
    # The provenance is the file's, not a file to list (nor one refused).
    assert sorted(result["added"]) == sorted([wheel.name, plain.name]) and result["invalid"] == {}
    record = index.load("probe")
    html, data = render_project("probe", record)
    files = {f["filename"]: f for f in json.loads(data)["files"]}
    assert files[wheel.name]["provenance"] == f"../../packages/{wheel.name}.provenance"
    assert "provenance" not in files[plain.name]
    assert f'data-provenance="../../packages/{wheel.name}.provenance"' in html.decode()
