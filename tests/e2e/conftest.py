"""The system-container harness: a Debian trixie host with systemd and its own
Docker engine, started with pytest-docker, on which the real .deb is installed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.client import PASSWORD, USER, preseed
from tests.support.system import System

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
def system(docker_services, docker_compose_project_name, server_images) -> System:
    name = f"{docker_compose_project_name}-system-1"
    host = System(name, port=docker_services.port_for("system", 8080))
    host.wait_booted()
    host.load_images(server_images)
    return host


@pytest.fixture(scope="session")
def installed(system, deb, timings):
    system.put("/root/pypi-appliance.deb", deb.read_bytes())
    system.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    started = time.monotonic()
    result = system.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/pypi-appliance.deb 2>&1")
    system.trust()
    system.wait_http("/simple/", 200, timeout=120, user=USER, password=PASSWORD)
    timings.append(("apt install to first authenticated 200", time.monotonic() - started))
    return result.stdout
