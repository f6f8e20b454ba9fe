"""Air-gapped hosts: a system container whose Docker engine holds no images and
reaches no registry. Without the images package the start gives up and says
how to fix it; with it the appliance serves; upgrades and purge touch only the
images it loaded.

The steps run in order on one container (each builds on the last)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from builder import __version__
from builder.images import LOADED
from tests.conftest import build_with_images
from tests.e2e.conftest import HERE
from tests.support import images
from tests.support.client import PASSWORD, USER, preseed
from tests.support.system import System

pytestmark = pytest.mark.e2e

PROJECT = "pypi-appliance-airgap"
MAIN, IMAGES = "/root/pypi-appliance.deb", "/root/pypi-appliance-images.deb"
# The registry's names point nowhere: pulls fail at once, whatever the network.
REGISTRY_HOSTS = "registry-1.docker.io index.docker.io auth.docker.io production.cloudflare.docker.com"
# An image the admin loaded by hand: no upgrade or purge of ours may touch it.
ADMINS = "mine/nginx:keep"


@pytest.fixture(scope="module")
def bare(system_image, deb, images_deb):
    compose = [str(images.compose_binary(system_image)), "-f", str(HERE / "docker-compose.yml"), "-p", PROJECT]
    env = {"SYSTEM_IMAGE": system_image, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    subprocess.run([*compose, "up", "-d", "--wait"], check=True, env=env, capture_output=True, timeout=300)
    try:
        host = System(f"{PROJECT}-system-1", port=0)
        host.refresh_port()
        host.wait_booted()
        host.sh(f"echo '127.0.0.1 {REGISTRY_HOSTS}' >> /etc/hosts")
        assert host.sh("docker images -q").stdout.strip() == ""
        host.put(MAIN, deb.read_bytes())
        host.put(IMAGES, images_deb.read_bytes())
        host.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
        yield host
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, timeout=300)


def install(host: System, *debs: str) -> str:
    return host.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y {' '.join(debs)} 2>&1").stdout


def serving(host: System) -> float:
    host.trust()
    return host.wait_http("/simple/", 200, timeout=180, user=USER, password=PASSWORD)


def image_ids(host: System) -> dict[str, str]:
    out = host.sh("docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'").stdout
    return dict(line.split() for line in out.splitlines())


def shipped(host: System) -> dict[str, str]:
    return dict(
        line.split()[:2] for line in host.sh("cat /usr/lib/pypi-appliance-images/images.list").stdout.splitlines()
    )


def test_without_images_or_registry_the_start_gives_up_and_says_how(bare, deb, timings):
    refs = images.compose_images(deb)
    started = time.monotonic()
    install(bare, MAIN)
    bare.wait_unit("failed", timeout=180)
    timings.append(("no images, no registry: install to the start giving up", time.monotonic() - started))
    props = bare.sh("systemctl show -p ExecMainStatus -p NRestarts pypi-appliance").stdout.split()
    # The start tried three times, then stopped for good: systemd did not start it again.
    assert sorted(props) == ["ExecMainStatus=78", "NRestarts=0"], props
    journal = bare.sh("journalctl -u pypi-appliance -o cat").stdout
    assert journal.count("(try 3 of 3)") == len(refs) and "(try 4 of" not in journal
    status = bare.sh("pypi-appliance status", check=False)
    assert status.returncode == 1
    text = " ".join(status.stdout.split())
    assert "the service stopped: gave up after 3 tries: images" in text, text
    assert "are not in Docker and could not be pulled" in text
    assert f"Fix: install pypi-appliance-images_{__version__}_amd64.deb" in text
    pull = re.search(r"or docker pull ([^;]+); then systemctl restart pypi-appliance", text)
    assert pull and sorted(pull[1].split()) == sorted(refs), text
    for ref in refs:
        assert f"{ref} missing" in text


def test_installing_the_images_package_loads_them_and_the_appliance_serves(bare, images_deb, timings):
    started = time.monotonic()
    out = install(bare, IMAGES)
    timings.append(
        (f"images package ({images_deb.stat().st_size / 2**20:.0f} MiB): apt install", time.monotonic() - started)
    )
    serving(bare)
    timings.append(("images package: apt install to first authenticated 200", time.monotonic() - started))
    ours = shipped(bare)
    assert all(f"image {ref}: loaded from" in out for ref in ours), out
    held = image_ids(bare)
    assert {ref: held.get(ref) for ref in ours} == ours
    assert bare.sh(f"cat {LOADED}").stdout.split() == [w for ref, i in ours.items() for w in (ref, i)]
    status = " ".join(bare.report().split())
    for ref in ours:
        assert f"{ref} from pypi-appliance-images {__version__}" in status, status


def test_both_packages_at_once_while_docker_is_down(bare, timings):
    bare.sh("apt-get purge -y pypi-appliance-images pypi-appliance >/dev/null 2>&1 && rm -rf /srv/pypi")
    assert bare.sh("docker images -q").stdout.strip() == ""
    bare.sh("debconf-set-selections", input=preseed(USER, PASSWORD))
    bare.sh("systemctl stop docker.socket docker.service && systemctl mask --runtime docker.service docker.socket")
    try:
        out = install(bare, MAIN, IMAGES)
        assert "Docker is not answering: the images are loaded when pypi-appliance starts" in out, out
    finally:
        bare.sh("systemctl unmask --runtime docker.service docker.socket && systemctl start docker")
    started = time.monotonic()
    serving(bare)
    timings.append(("both packages installed while Docker was down: Docker up to 200", time.monotonic() - started))
    assert "loaded from /usr/lib/pypi-appliance-images/" in bare.sh("journalctl -u pypi-appliance -o cat").stdout


def test_upgrade_replaces_and_removes_only_the_images_it_loaded(bare, deb, tmp_path):
    # The next version renames its nginx image (another image under a new name);
    # pypiserver's is the same.
    old = next(ref for ref in images.compose_images(deb) if ref.startswith("nginx:"))
    new = f"{old}-next"
    container = subprocess.run(["docker", "create", old], capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(
            ["docker", "commit", "--change", "LABEL pypi-appliance-test=next", container, new],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["docker", "rm", container], check=True, capture_output=True)
    version = f"{__version__}+next"
    try:
        main, images_next = build_with_images(tmp_path, "--version", version, "--proxy-image", new)
    finally:
        subprocess.run(["docker", "rmi", new], check=True, capture_output=True)
    bare.put("/root/next.deb", main.read_bytes())
    bare.put("/root/next-images.deb", images_next.read_bytes())
    before = image_ids(bare)
    bare.sh(f"docker tag {old} {ADMINS}")

    out = install(bare, "/root/next.deb", "/root/next-images.deb")
    serving(bare)
    after = image_ids(bare)
    assert f"image {new}: loaded from" in out and f"removed image {old}" in out, out
    assert old not in after and new in after
    assert after[ADMINS] == before[old], "an image the admin tagged went with ours"
    server = next(ref for ref in before if ref.startswith("pypiserver/"))
    assert f"image {server}: already in Docker" in out and after[server] == before[server]
    assert sorted(bare.sh(f"cut -d' ' -f1 {LOADED}").stdout.split()) == sorted([new, server])
    status = " ".join(bare.report().split())
    assert f"{new} from pypi-appliance-images {version}" in status, status


def test_purge_removes_the_images_it_loaded_and_no_other(bare):
    bare.sh("apt-get purge -y pypi-appliance pypi-appliance-images >/dev/null 2>&1")
    assert sorted(image_ids(bare)) == [ADMINS]
    assert bare.sh(f"test -e {LOADED.rsplit('/', 1)[0]}", check=False).returncode == 1
