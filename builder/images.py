"""The images package's payload: the images the compose file names, taken from
this machine's Docker engine, saved and compressed, with the list the loader reads."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.config import PACKAGE, ConfigError

IMAGES_PACKAGE = f"{PACKAGE}-images"
# Where the images package puts them, and its list: "REF ID FILE" a line.
IMAGES_DIR = f"/usr/lib/{IMAGES_PACKAGE}"
LIST = "images.list"
# What its loader put into Docker ("REF ID" a line): only these do upgrades and purge remove.
LOADED = f"/var/lib/{IMAGES_PACKAGE}/loaded"
# The start's exit status once images can be neither found nor pulled: the
# unit does not restart on it (RestartPreventExitStatus), status explains it.
GAVE_UP_STATUS = 78
# Docker's architecture names for dpkg's (the images must run where the package installs).
DOCKER_ARCH = {
    "amd64": "amd64",
    "arm64": "arm64",
    "armhf": "arm",
    "i386": "386",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# zstd level: -19 saves another 10% and takes seven times as long.
ZSTD_LEVEL = "-10"


def images_deb_name(version: str, arch: str) -> str:
    return f"{IMAGES_PACKAGE}_{version}_{arch}.deb"


@dataclass(frozen=True)
class Image:
    ref: str
    id: str

    @property
    def file(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.ref.split("@")[0]) + ".tar.zst"


def compose_refs(compose: str) -> list[str]:
    """The image references a rendered compose file pins, in order, once each."""
    return list(dict.fromkeys(re.findall(r"^\s*image:\s*(\S+)\s*$", compose, flags=re.M)))


def _repository(name: str) -> str:
    """NAME:TAG without its tag (a registry's port is not one)."""
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def _inspect(ref: str) -> dict | None:
    try:
        proc = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError("--with-images needs the docker command and an engine holding the images") from None
    if proc.returncode != 0:
        if "no such image" in proc.stderr.lower():
            return None
        raise ConfigError(f"Docker did not answer for image {ref!r}: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)[0]
    return {"id": info["Id"], "os": info["Os"], "arch": info["Architecture"], "digests": info["RepoDigests"] or []}


def find(refs: list[str], dpkg_arch: str) -> list[Image]:
    """Each ref as this engine holds it; a clear error for one that is missing,
    of another digest, or built for another architecture."""
    found = []
    for ref in refs:
        name, _, digest = ref.partition("@")
        # NAME:TAG@DIGEST: the image of that tag, which must carry that digest.
        info = _inspect(name if digest and name != _repository(name) else ref)
        if info is None:
            raise ConfigError(
                f"image {ref!r} (named by the compose file) is not in this machine's Docker "
                f"engine: docker pull {ref} (or load it), then build again"
            )
        if digest and f"{_repository(name)}@{digest}" not in info["digests"]:
            raise ConfigError(
                f"image {ref!r}: this engine's copy has digests {info['digests'] or 'none'}, "
                f"not {digest}: docker pull {ref}, then build again"
            )
        want = DOCKER_ARCH.get(dpkg_arch)
        if info["os"] != "linux" or info["arch"] != want:
            raise ConfigError(
                f"image {ref!r} is for {info['os']}/{info['arch']}, but this machine builds "
                f"{dpkg_arch} packages (Docker's linux/{want}): docker pull --platform "
                f"linux/{want} {ref}, or build on a {dpkg_arch} machine"
            )
        found.append(Image(ref, info["id"]))
    return found


def save(found: list[Image], dest: Path) -> None:
    """docker save each image into dest as FILE.tar.zst, and the list of them."""
    dest.mkdir(parents=True, exist_ok=True)
    for image in found:
        target = dest / image.file
        with open(target, "wb") as out:
            saver = subprocess.Popen(["docker", "save", image.ref], stdout=subprocess.PIPE)
            zstd = subprocess.run(["zstd", "-q", "-T0", ZSTD_LEVEL, "-c"], stdin=saver.stdout, stdout=out, check=False)
            if saver.stdout is not None:
                saver.stdout.close()
            if saver.wait() != 0 or zstd.returncode != 0:
                target.unlink(missing_ok=True)
                raise ConfigError(f"could not save image {image.ref!r} (docker save | zstd failed)")
    (dest / LIST).write_text("".join(f"{i.ref} {i.id} {i.file}\n" for i in found))
