from __future__ import annotations

from pathlib import Path

import pytest

from builder import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def deb() -> Path:
    """The .deb that `make deb` built: the very file that ships."""
    path = ROOT / "dist" / f"pypi-appliance_{__version__}_all.deb"
    if not path.exists():
        pytest.fail(f"{path} is missing: run 'make deb' first (make test does)")
    return path
