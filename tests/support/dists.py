"""The one builder of test distributions (wheels and sdists), made without any
network or build backend, for every tier: unit tests, the system tier and
the benchmark's host side."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

PROJECT = "appliance-probe"


def make_wheel(
    directory: Path, version: str = "1.0", project: str = PROJECT, metadata: str = "", payload: int = 0
) -> Path:
    """A minimal, valid pure-Python wheel, built without any network; metadata adds
    METADATA lines, payload that many random (incompressible) bytes."""
    path = directory / wheel_name(project, version)
    with open(path, "wb") as f:
        write_wheel(f, version, project, metadata, payload)
    return path


def wheel_name(project: str, version: str) -> str:
    return f"{project.replace('-', '_')}-{version}-py3-none-any.whl"


def wheel_bytes(project: str = "probe", version: str = "1.0") -> bytes:
    """A wheel's bytes, for tests that write it under a name of their own."""
    buffer = io.BytesIO()
    write_wheel(buffer, version, project)
    return buffer.getvalue()


def write_wheel(target, version: str, project: str, metadata: str = "", payload: int = 0) -> None:
    name = project.replace("-", "_")
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        f"Summary: probe package for pypi-appliance tests\n{metadata}",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(target, "w") as wheel:
        for arcname, text in files.items():
            wheel.writestr(arcname, text)
        if payload:
            with wheel.open(f"{name}/payload.bin", "w") as out:
                for _ in range(0, payload, 2**20):
                    out.write(os.urandom(min(2**20, payload)))
            files[f"{name}/payload.bin"] = ""
        record = "".join(f"{arcname},,\n" for arcname in files) + f"{dist_info}/RECORD,,\n"
        wheel.writestr(f"{dist_info}/RECORD", record)


def make_sdist(directory: Path, name: str, version: str, pkg_info: bool = True) -> Path:
    """A minimal sdist (tar.gz); without pkg_info it lacks PKG-INFO, which the index refuses."""
    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        members = {f"{name}-{version}/setup.py": b"from setuptools import setup\nsetup()\n"}
        if pkg_info:
            members[f"{name}-{version}/PKG-INFO"] = (
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.9\n"
            ).encode()
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def make_attestation(dist: Path, predicate: str = "https://docs.pypi.org/attestations/publish/v1", **subject) -> Path:
    """A PEP 740 attestation file for dist, where twine --attestations finds it
    (DIST.publish.attestation): an in-toto statement naming the file and its
    sha256. Its certificate and signature are placeholders: the index checks
    what the statement says of the file, a client verifies the signature."""
    import base64
    import hashlib
    import json

    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": subject.get("name", dist.name),
                "digest": {"sha256": subject.get("sha256", hashlib.sha256(dist.read_bytes()).hexdigest())},
            }
        ],
        "predicateType": predicate,
        "predicate": None,
    }
    attestation = {
        "version": 1,
        "verification_material": {
            "certificate": base64.b64encode(b"test certificate").decode(),
            "transparency_entries": [{}],
        },
        "envelope": {
            "statement": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signature": base64.b64encode(b"test signature").decode(),
        },
    }
    path = dist.parent / f"{dist.name}.publish.attestation"
    path.write_text(json.dumps(attestation))
    return path
