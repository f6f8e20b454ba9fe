from __future__ import annotations

import pytest

from builder.cli import TREE
from builder.config import Config
from builder.stage import stage


@pytest.fixture(scope="session")
def shipped_tree(tmp_path_factory):
    """A staged tree built with the default settings: what the .deb holds."""
    return stage(Config(version="1.0"), TREE, tmp_path_factory.mktemp("shipped") / "staging")
