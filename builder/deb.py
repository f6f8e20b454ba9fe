"""Turn a staged tree into a .deb with debhelper."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from builder.config import Config


class BuildError(RuntimeError):
    """The build could not run; the message says what to do."""


def missing_build_deps(staging: Path) -> list[str]:
    """Build-Depends of the staged tree that this machine lacks, as apt package names."""
    if not shutil.which("dpkg-checkbuilddeps"):
        return ["dpkg-dev"]
    proc = subprocess.run(
        ["dpkg-checkbuilddeps"], cwd=staging, capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return []
    match = re.search(r"Unmet build dependencies: (.*)", proc.stderr)
    if not match:
        raise BuildError(f"dpkg-checkbuilddeps failed: {proc.stderr.strip()}")
    # Drop version relations, take the first of alternatives; debhelper provides debhelper-compat.
    deps = re.sub(r"\s*\|\s*", "|", re.sub(r"\s*\(.*?\)", "", match[1]))
    firsts = [alternatives.split("|")[0] for alternatives in deps.split()]
    names = {n.split(":")[0] for n in firsts if n}  # python3:any is python3 for apt
    return sorted({"debhelper" if n == "debhelper-compat" else n for n in names})


def install_build_deps(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise BuildError(
            f"missing build dependencies: {' '.join(packages)}. "
            f"Install them with: sudo apt-get install {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise BuildError(f"could not install build dependencies {' '.join(packages)}: '{' '.join(cmd)}' failed")


def build(config: Config, staging: Path, output_dir: Path) -> Path:
    """Run dpkg-buildpackage in staging and move the .deb into output_dir."""
    missing = missing_build_deps(staging)
    if missing:
        install_build_deps(missing)
        missing = missing_build_deps(staging)
        if missing:
            raise BuildError(f"build dependencies still missing after install: {' '.join(missing)}")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(config.source_date_epoch))
    proc = subprocess.run(
        ["dpkg-buildpackage", "--build=all", "--no-sign"],
        cwd=staging, env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"dpkg-buildpackage failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / config.deb_name
    shutil.move(str(staging.parent / config.deb_name), target)
    return target
