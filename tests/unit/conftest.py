from __future__ import annotations

import sys

import pytest

from builder.cli import TREE
from builder.config import Config
from builder.stage import stage


@pytest.fixture(scope="session")
def shipped_tree(tmp_path_factory):
    """A staged tree built with the default settings: what the .deb holds."""
    return stage(Config(version="1.0"), TREE, tmp_path_factory.mktemp("shipped") / "staging")


@pytest.fixture(scope="session")
def appliance(shipped_tree):
    """The admin helper's package, imported from the staged tree (with its defaults.json)."""
    sys.path.insert(0, str(shipped_tree / "root/usr/share/pypi-appliance"))
    sys.dont_write_bytecode = True
    import pypi_appliance.cli

    return pypi_appliance
