from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import __version__
from builder.config import Config
from builder.stage import context
from tests.support import images

ROOT = Path(__file__).resolve().parents[1]


def _checkout_defaults() -> None:
    """The product's package runs from src/ (setup.cfg's pythonpath), reading
    the defaults.json a default build installs, written here from the builder
    (what 'python -m builder defaults' prints), before any test imports it."""
    if "PYPI_APPLIANCE_DEFAULTS" in os.environ:
        return
    path = ROOT / ".cache" / "defaults.json"
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".defaults-{os.getpid()}.json")
    tmp.write_text(json.dumps(context(Config(version=__version__))["helper_defaults"], indent=2))
    tmp.replace(path)
    os.environ["PYPI_APPLIANCE_DEFAULTS"] = str(path)


_checkout_defaults()


@pytest.fixture(scope="session")
def deb() -> Path:
    """The .deb that `make deb` built: the very file that ships."""
    path = ROOT / "dist" / f"pypi-appliance_{__version__}_all.deb"
    if not path.exists():
        pytest.fail(f"{path} is missing: run 'make deb' first (make test does)")
    return path


@pytest.fixture(scope="session")
def server_images(deb) -> list[str]:
    """Stand-ins for every image the package's compose file names, tagged with those names."""
    return [images.stand_in(name) for name in images.compose_images(deb)]


def build_with_images(out: Path, *options: str) -> list[Path]:
    """`make deb IMAGES=1`'s build (the builder with --with-images) into out: the
    package and the images package, from the images in the host's engine."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "builder",
            "build",
            "--with-images",
            "--output-dir",
            str(out),
            "--build-dir",
            str(out / "build"),
            *options,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [Path(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("built ")]


@pytest.fixture(scope="session")
def images_deb(deb, tmp_path_factory) -> Path:
    """The images package of this version, holding the stand-ins tagged with the
    names the shipped compose file pins."""
    for ref in images.compose_images(deb):
        images.stand_in(ref)
    built = build_with_images(tmp_path_factory.mktemp("images"))
    assert built[0].read_bytes() == deb.read_bytes(), "the images build made another main package"
    return built[1]


TIMINGS: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def timings() -> list[tuple[str, float]]:
    """Measured durations, reported at the end of the run (not asserted: see make bench)."""
    return TIMINGS


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("e2e timings")
        for label, seconds in TIMINGS:
            terminalreporter.write_line(f"{label:<60} {seconds:6.1f} s")
