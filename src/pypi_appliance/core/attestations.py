"""PEP 740 attestations: what an upload's `attestations` field may hold, and
the provenance object kept beside the file (FILE.provenance) and served at
that URL. Standard library only (pypiserver's upload hook runs it).

The appliance checks that each attestation is a version 1 object whose
in-toto statement names this file and its sha256, with a predicate type
PEP 740 allows: attestations for another file, or not attestations at all,
refuse the upload. It does not verify the Sigstore signature and certificate
(no Sigstore library in the image, and a private index has no Trusted
Publisher identity of PyPI's kind to bind them to): a client verifies them
against the publisher it expects (pypi-attestations verify pypi ...)."""

from __future__ import annotations

import base64
import binascii
import json
import re

from pypi_appliance.core.names import normalize

SUFFIX = ".provenance"
MEDIA_TYPE = "application/vnd.pypi.integrity.v1+json"
MAX_BYTES = 1 << 20  # twine sends one or two, of a few kB each
MAX_COUNT = 16
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATES = ("https://docs.pypi.org/attestations/publish/v1", "https://slsa.dev/provenance/v1")


def same_file(subject: object, filename: str) -> bool:
    """The statement may name the file normalized (pypi-attestations does:
    lower case, the project's name as PEP 503 spells it); versions and tags
    as they are, in lower case."""

    def plain(name: str) -> str:
        project, *rest = re.split(r"-(?=\d)", name.lower(), maxsplit=1)
        return "-".join([normalize(project), *rest])

    return isinstance(subject, str) and (subject == filename or plain(subject) == plain(filename))


def _statement(attestation, index: int) -> dict:
    where = f"attestation {index + 1}"
    if not isinstance(attestation, dict) or attestation.get("version") != 1:
        raise ValueError(f"are not PEP 740 attestations: {where} is not a version 1 attestation object")
    material, envelope = attestation.get("verification_material"), attestation.get("envelope")
    if not isinstance(material, dict) or not isinstance(material.get("certificate"), str):
        raise ValueError(f"are not PEP 740 attestations: {where} has no verification_material.certificate")
    if not isinstance(envelope, dict) or not all(isinstance(envelope.get(k), str) for k in ("statement", "signature")):
        raise ValueError(f"are not PEP 740 attestations: {where} has no envelope statement and signature")
    try:
        statement = json.loads(base64.b64decode(envelope["statement"], validate=True))
    except (binascii.Error, ValueError):
        raise ValueError(f"are not PEP 740 attestations: {where}'s statement is not base64 JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ValueError(f"are not PEP 740 attestations: {where}'s statement is not an in-toto v1 Statement")
    return statement


def check(text: str, filename: str, sha256: str) -> list:
    """The attestation objects of an upload's field, each checked against the
    file it came with; ValueError says which and why."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise ValueError(f"are over {MAX_BYTES} bytes")
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError("are not JSON") from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_COUNT:
        raise ValueError(f"are not a JSON array of 1 to {MAX_COUNT} attestation objects")
    for index, attestation in enumerate(items):
        statement = _statement(attestation, index)
        subject = statement.get("subject")
        if not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict):
            raise ValueError(f"do not fit the file: attestation {index + 1} has not exactly one subject")
        name, digest = subject[0].get("name"), (subject[0].get("digest") or {}).get("sha256")
        if not same_file(name, filename):
            raise ValueError(f"do not fit the file: attestation {index + 1} is for {name!r}, not {filename!r}")
        if not isinstance(digest, str) or digest.lower() != sha256:
            raise ValueError(f"do not fit the file: attestation {index + 1} is for other contents (sha256 {digest})")
        if statement.get("predicateType") not in PREDICATES:
            raise ValueError(
                f"are not PEP 740 attestations: attestation {index + 1}'s predicate type "
                f"{statement.get('predicateType')!r} is none of {', '.join(PREDICATES)}"
            )
    return items


def provenance(text: str, filename: str, sha256: str, publisher: dict) -> bytes:
    """The provenance object (PEP 740) of checked attestations, as served."""
    bundle = {"publisher": publisher, "attestations": check(text, filename, sha256)}
    return json.dumps({"version": 1, "attestation_bundles": [bundle]}, sort_keys=True).encode()


def count(provenance_bytes: bytes | None) -> int:
    if not provenance_bytes:
        return 0
    return sum(len(b["attestations"]) for b in json.loads(provenance_bytes)["attestation_bundles"])
