"""Locally built images: the system container and stand-ins for the images the
package's compose file names. Cached in the host's engine under a tag derived
from the build script, so a rebuild happens only when a script changes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from builder.images import compose_refs

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "tests" / "images"
CACHE = ROOT / ".cache"
REQUIREMENTS = SCRIPTS / "pypiserver-requirements.txt"
# The official pypiserver image's Python (python:3.14-alpine): the stand-in's.
SERVER_PYTHON = "3.14"
# Which script builds a stand-in for which image repository.
STAND_INS = {"pypiserver/pypiserver": "pypiserver.sh", "nginx": "nginx.sh"}


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def system_image() -> str:
    ref = f"pypi-appliance-test/system:{_digest(SCRIPTS / 'system.sh')}"
    if not _exists(ref):
        subprocess.run([SCRIPTS / "system.sh", ref], check=True)
    return ref


def compose_binary(system_ref: str) -> Path:
    """Compose v2, copied out of the system image (trixie's docker-compose package)."""
    path = CACHE / "bin" / f"docker-compose-{system_ref.rsplit(':', 1)[1]}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cid = subprocess.run(
            ["docker", "create", system_ref], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            subprocess.run(
                ["docker", "cp", f"{cid}:/usr/libexec/docker/cli-plugins/docker-compose", str(path)],
                check=True,
                capture_output=True,
            )
        finally:
            subprocess.run(["docker", "rm", cid], capture_output=True, check=True)
    return path


def wheels() -> Path:
    """pypiserver and its server's wheels, downloaded on the host: pip in a chroot lacks its CA."""
    directory = CACHE / "wheels" / f"{_digest(REQUIREMENTS)}-py{SERVER_PYTHON}"
    stamp = directory / ".done"
    if not stamp.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "python3",
                "-m",
                "pip",
                "download",
                "-q",
                "--only-binary=:all:",
                "--python-version",
                SERVER_PYTHON,
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux_2_28_x86_64",
                "-d",
                str(directory),
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            env=dict(os.environ, PIP_CONFIG_FILE="/dev/null"),
        )
        stamp.touch()
    return directory


def newest_pip() -> Path:
    """The newest pip's wheel from PyPI, fetched on the host once a day, for client tests."""
    directory = CACHE / "newest-pip" / time.strftime("%Y-%m-%d")
    if not list(directory.glob("pip-*.whl")):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["python3", "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(directory), "pip"],
            check=True,
            env=dict(os.environ, PIP_CONFIG_FILE="/dev/null"),
        )
    return sorted(directory.glob("pip-*.whl"))[-1]


def pip_wheel(version: str) -> Path:
    """One pip release's wheel from PyPI, fetched on the host once, for the client matrix."""
    directory = CACHE / "pips"
    found = list(directory.glob(f"pip-{version}-*.whl"))
    if not found:
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "python3",
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(directory),
                f"pip=={version}",
            ],
            check=True,
            env=dict(os.environ, PIP_CONFIG_FILE="/dev/null"),
        )
        found = list(directory.glob(f"pip-{version}-*.whl"))
    return found[0]


def stand_in(ref: str) -> str:
    """Build (or reuse) a stand-in for image ref and tag it as ref."""
    repository = ref.split("@")[0].rsplit(":", 1)[0]
    if repository not in STAND_INS:
        raise LookupError(f"no stand-in build script for image {ref!r}; add one to {SCRIPTS}")
    script = SCRIPTS / STAND_INS[repository]
    inputs = [script] + ([REQUIREMENTS] if script.name == "pypiserver.sh" else [])
    cached = f"pypi-appliance-test/{script.stem}:{_digest(*inputs)}"
    if not _exists(cached):
        extra = [str(wheels())] if script.name == "pypiserver.sh" else []
        subprocess.run([script, cached, *extra], check=True)
    subprocess.run(["docker", "tag", cached, ref], check=True)
    return ref


def compose_images(deb: Path) -> list[str]:
    """The image references in the compose file inside the .deb, once each."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    compose = subprocess.run(
        ["tar", "-xO", "./etc/pypi-appliance/compose.yaml"], input=tar, capture_output=True, check=True
    ).stdout.decode()
    return compose_refs(compose)
