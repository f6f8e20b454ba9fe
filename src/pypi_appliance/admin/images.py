"""The images the compose file names: from the images package when it is
installed, else pulled, a bounded number of tries; and where each came from."""

from __future__ import annotations

import json
import os
import subprocess
import time

from pypi_appliance.admin.host import run
from pypi_appliance.admin.settings import BUILD, PACKAGE, RUN_DIR, Fail
from pypi_appliance.core.fsutil import write_atomic

IMAGES = BUILD["images"]
# Where the start says why it gave up, for status.
FAILURE = f"{RUN_DIR}/images-missing.json"
PULL_TRIES = 3
PULL_WAIT_SECONDS = 10
PULL_TIMEOUT_SECONDS = 300


class ImagesMissing(Fail):
    """Images that are neither in Docker nor could be pulled: the start gives up."""


def named(compose_cmd) -> list[str]:
    code, out = run(compose_cmd("config", "--images"))
    if code != 0:
        raise Fail("docker compose could not read the compose file's images")
    return list(dict.fromkeys(out.split()))


def inspect(ref: str) -> dict | None:
    """Docker's id and registry digests for ref; None when it holds no such image."""
    errors: list[str] = []
    code, out = run(["docker", "image", "inspect", ref], errors)
    if code != 0:
        if any("no such image" in e.lower() for e in errors):
            return None
        raise Fail(f"docker image inspect {ref} failed: {(errors or ['no answer'])[-1].splitlines()[-1]}")
    found = json.loads(out)[0]
    return {"id": found["Id"], "digests": found.get("RepoDigests") or []}


def shipped() -> dict[str, str]:
    """REF -> ID of the images the images package holds (none when it is not installed)."""
    try:
        with open(IMAGES["list"], encoding="utf-8") as f:
            return {ref: image_id for ref, image_id, _ in (line.split() for line in f if line.strip())}
    except OSError:
        return {}


def fix(missing: list[str]) -> str:
    arch = run(["dpkg", "--print-architecture"])[1] or "ARCH"
    return (
        f"install {IMAGES['package']}_{BUILD['version']}_{arch}.deb (made with 'make deb IMAGES=1' on a "
        f"machine with the images), or docker pull {' '.join(missing)}; then systemctl restart {PACKAGE}"
    )


def ensure(compose_cmd) -> None:
    """Every named image in Docker before compose starts (compose itself never pulls)."""
    if run(["docker", "info"])[0] != 0:
        raise Fail("Docker is not answering (the start is tried again until it does)")
    refs = named(compose_cmd)
    for attempt in range(1, PULL_TRIES + 1):
        notes = []
        if os.path.exists(IMAGES["loader"]):
            # The images package's loader (its lines go to the journal); a pull may still help.
            loaded = subprocess.run([IMAGES["loader"]], check=False).returncode
            if loaded != 0:
                notes.append(f"{IMAGES['loader']} failed with exit status {loaded}, see journalctl -u {PACKAGE}")
        missing = [ref for ref in refs if inspect(ref) is None]
        errors: dict[str, list[str]] = {}  # why -> the images it stopped
        for ref in missing:
            print(f"pulling image {ref} (try {attempt} of {PULL_TRIES})", flush=True)
            try:
                proc = subprocess.run(
                    ["docker", "pull", "-q", ref], capture_output=True, text=True, timeout=PULL_TIMEOUT_SECONDS
                )
                if proc.returncode != 0:
                    errors.setdefault((proc.stderr.strip().splitlines() or ["pull failed"])[-1], []).append(ref)
            except subprocess.TimeoutExpired:
                errors.setdefault(f"no answer within {PULL_TIMEOUT_SECONDS} s", []).append(ref)
        if not errors:
            _forget_failure()
            return
        why = "; ".join(
            [
                *notes,
                *(f"{', '.join(stopped)}: {error}" if len(errors) > 1 else error for error, stopped in errors.items()),
            ]
        )
        if attempt < PULL_TRIES:
            print(f"could not pull ({why}); trying again in {PULL_WAIT_SECONDS} s", flush=True)
            time.sleep(PULL_WAIT_SECONDS)
    missing = [ref for ref in refs if inspect(ref) is None]
    message = (
        f"gave up after {PULL_TRIES} tries: image{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
        f"{'are' if len(missing) > 1 else 'is'} not in Docker and could not be pulled ({why}). "
        f"Fix: {fix(missing)}"
    )
    write_atomic(FAILURE, json.dumps({"missing": missing, "message": message}))
    raise ImagesMissing(message)


def _forget_failure() -> None:
    try:
        os.unlink(FAILURE)
    except FileNotFoundError:
        pass


def failure() -> str | None:
    """Why the last start gave up on its images, if it did."""
    try:
        with open(FAILURE, encoding="utf-8") as f:
            return json.load(f)["message"]
    except (OSError, ValueError, KeyError):
        return None


def origins(compose_cmd) -> list[dict] | None:
    """Each named image and where it came from (None: Docker or compose did not answer)."""
    try:
        refs = named(compose_cmd)
        found_by_ref = {ref: inspect(ref) for ref in refs}
    except Fail:
        return None
    ours = shipped()
    version = run(["dpkg-query", "-W", "-f", "${Version}", IMAGES["package"]])[1] if ours else ""
    result = []
    for ref, found in found_by_ref.items():
        if found is None:
            origin = "missing"
        elif ours.get(ref) == found["id"]:
            origin = f"from {IMAGES['package']} {version}"
        elif found["digests"]:
            origin = f"pulled ({found['digests'][0]})"
        else:
            origin = f"in Docker, not from {IMAGES['package']} nor pulled (loaded or built by hand)"
        result.append({"ref": ref, "origin": origin})
    return result
