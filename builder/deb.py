"""Turn a staged tree into a .deb with debhelper."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from builder.config import Config
from builder.images import Image, images_deb_name, save


class BuildError(RuntimeError):
    """The build could not run; the message says what to do."""


def missing_build_deps(staging: Path, arch: bool = False) -> list[str]:
    """Build-Depends of the staged tree that this machine lacks, as apt package names
    (with Build-Depends-Arch only when the images package is built too)."""
    if not shutil.which("dpkg-checkbuilddeps"):
        return ["dpkg-dev"]
    proc = subprocess.run(
        ["dpkg-checkbuilddeps", *([] if arch else ["-A"])],
        cwd=staging,
        capture_output=True,
        text=True,
        check=False,
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


def build(config: Config, staging: Path, output_dir: Path, images: list[Image] | None = None) -> list[Path]:
    """Run dpkg-buildpackage in staging and move the .debs into output_dir: the
    package, and with images the images package for this machine's architecture."""
    missing = missing_build_deps(staging, arch=images is not None)
    if missing:
        install_build_deps(missing)
        missing = missing_build_deps(staging, arch=images is not None)
        if missing:
            raise BuildError(f"build dependencies still missing after install: {' '.join(missing)}")
    names = [config.deb_name]
    if images is not None:
        save(images, staging / "images")  # a ConfigError naming the image, when it fails
        names.append(images_deb_name(config.version, host_arch()))
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(config.source_date_epoch))
    proc = subprocess.run(
        ["dpkg-buildpackage", "--build=all" if images is None else "--build=any,all", "--no-sign"],
        cwd=staging,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"dpkg-buildpackage failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    output_dir.mkdir(parents=True, exist_ok=True)
    targets = []
    for name in names:
        targets.append(output_dir / name)
        shutil.move(str(staging.parent / name), targets[-1])
    return targets


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
