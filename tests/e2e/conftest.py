"""The system-container harness: a Debian trixie host with systemd and its own
Docker engine, started with pytest-docker, on which the real .deb is installed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e import images
from tests.e2e.client import PASSWORD, USER, preseed
from tests.e2e.system import System

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def system_image() -> str:
    return images.system_image()


@pytest.fixture(scope="session")
def docker_compose_command(system_image, monkeypatch_session) -> str:
    # Compose v2 from the system image itself: the host's Debian only has v1.
    monkeypatch_session.setenv("SYSTEM_IMAGE", system_image)
    return str(images.compose_binary(system_image))


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(HERE / "docker-compose.yml")


@pytest.fixture(scope="session")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="session")
def server_images(deb) -> list[str]:
    """Stand-ins for every image the package's compose file names, tagged with those names."""
    return [images.stand_in(name) for name in images.compose_images(deb)]


@pytest.fixture(scope="session")
def system(docker_services, docker_compose_project_name, server_images) -> System:
    name = f"{docker_compose_project_name}-system-1"
    host = System(name, port=docker_services.port_for("system", 8080))
    host.wait_booted()
    host.load_images(server_images)
    return host


@pytest.fixture(scope="session")
def installed(system, deb):
    system.put("/root/pypi-appliance.deb", deb.read_bytes())
    system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    started = time.monotonic()
    result = system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb 2>&1")
    system.trust()
    system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
    TIMINGS.append(("apt install to first authenticated 200", time.monotonic() - started))
    return result.stdout


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
