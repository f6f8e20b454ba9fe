"""Upload bombs: files of a few hundred bytes to a few hundred KiB that unpack
to far more (the kinds in the security review), for the unit and e2e tests."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path


def _metadata(project: str, version: str, body: bytes = b"") -> bytes:
    return f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n\n".encode() + body


def _wheel(
    directory: Path,
    project: str,
    version: str,
    members: dict[str, bytes],
    method=zipfile.ZIP_DEFLATED,
    metadata: bytes | None = None,
) -> tuple[Path, bytes]:
    path = directory / f"{project}-{version}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr(
            f"{project}-{version}.dist-info/METADATA", metadata if metadata is not None else _metadata(project, version)
        )
    return path, buffer.getvalue()


def sparse_sdist(directory: Path, project: str = "bomb_sparse", version: str = "1.0", hole: str = "4G") -> Path:
    """A .tar.gz whose PKG-INFO is a sparse file: GNU tar stores only the data."""
    tree = directory / f"{project}-{version}"
    tree.mkdir(parents=True)
    (tree / "PKG-INFO").write_bytes(_metadata(project, version))
    subprocess.run(["truncate", "-s", hole, str(tree / "PKG-INFO")], check=True)
    path = directory / f"{project}-{version}.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(path), "-C", str(directory), tree.name], check=True)
    shutil.rmtree(tree)
    return path


def bzip2_wheel(directory: Path, project: str = "bomb_bzip2", version: str = "1.0", size: int = 64 * 2**20) -> Path:
    """A wheel with one bzip2 member: zipfile inflates it with no bound per read."""
    path, data = _wheel(directory, project, version, {f"{project}/__init__.py": b"\0" * size}, zipfile.ZIP_BZIP2)
    path.write_bytes(data)
    return path


def huge_metadata_wheel(
    directory: Path, project: str = "bomb_metadata", version: str = "1.0", size: int = 200 * 2**20
) -> Path:
    """A wheel whose METADATA (served to every resolver) inflates to size bytes."""
    path, data = _wheel(
        directory, project, version, {f"{project}/__init__.py": b""}, metadata=_metadata(project, version, b"x" * size)
    )
    path.write_bytes(data)
    return path


def overlapping_wheel(
    directory: Path, project: str = "bomb_overlap", version: str = "1.0", copies: int = 16, size: int = 64 * 2**20
) -> Path:
    """A wheel whose central directory names one deflated kernel many times
    (other names, the same offset): each name inflates it again."""
    kernel = f"{project}/__init__.py"
    path, data = _wheel(directory, project, version, {kernel: b"\0" * size})
    end = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack("<HII", data[end + 10 : end + 20])
    directory_bytes = data[cd_offset : cd_offset + cd_size]
    first_name_length, extra, comment = struct.unpack("<HHH", directory_bytes[28:34])
    first = directory_bytes[: 46 + first_name_length + extra + comment]
    assert first[46 : 46 + first_name_length] == kernel.encode()
    added = b""
    for i in range(copies):
        name = f"{project}/c{i:0{len(kernel) - len(project) - 5}d}.py".encode()
        assert len(name) == first_name_length
        added += first[:46] + name + first[46 + first_name_length :]
    record = data[end : end + 22]
    record = (
        record[:8]
        + struct.pack("<HHI", count + copies, count + copies, cd_size + len(added))
        + struct.pack("<I", cd_offset)
        + record[20:]
    )
    path.write_bytes(data[:cd_offset] + directory_bytes + added + record + data[end + 22 :])
    return path


def pax_sdist(directory: Path, project: str = "bomb_pax", version: str = "1.0", size: int = 768 * 2**20) -> Path:
    """A .tar.gz that opens with a pax header of size bytes: tarfile reads a
    header whole, before any check on members can run."""
    path = directory / f"{project}-{version}.tar.gz"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, size
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.tobuf(tarfile.USTAR_FORMAT))
        zeros = bytes(2**20)
        for _ in range(size // len(zeros)):
            out.write(zeros)
    return path
