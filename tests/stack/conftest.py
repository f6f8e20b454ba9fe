"""The stack tier: the package's compose stack on this host's Docker engine,
configured and started by its own helper, without systemd or dpkg. What runs
here is the front door and the containers (routing, credentials, roles,
pages, uploads, the upstream); what needs a real Debian host (install,
upgrade, purge, debconf, systemd, recovery) is the system tier's."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import images
from tests.support.client import PASSWORD, USER
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def stack(deb, server_images):
    # Not below pytest's 0700 temp dirs: the helper works in the data dir as the
    # containers' user, which must reach it as it reaches /srv/pypi on a host.
    root = Path(tempfile.mkdtemp(prefix="pypi-appliance-stack."))
    root.chmod(0o755)
    try:
        appliance = Stack.unpack(deb, root, images.compose_binary(images.system_image()))
        try:
            appliance.configure(USER, PASSWORD)
            appliance.up(USER, PASSWORD)
            yield appliance
        finally:
            appliance.down()
    finally:
        shutil.rmtree(root)
