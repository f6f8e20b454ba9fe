"""What the build chose: the package's name, paths, patterns and each
setting's default, in the defaults.json that builder/stage.py writes beside
this package (/usr/share/pypi-appliance/defaults.json). Read when first
asked, not at import. PYPI_APPLIANCE_DEFAULTS names another file (the
tests' conftest writes one from the builder for a checkout)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

INSTALLED = Path(__file__).resolve().parents[2] / "defaults.json"


@functools.cache
def defaults() -> dict:
    path = Path(os.environ.get("PYPI_APPLIANCE_DEFAULTS") or INSTALLED)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeError(
            f"{path} is missing: the package installs it; in a checkout, set "
            "PYPI_APPLIANCE_DEFAULTS to a file 'python -m builder defaults' writes"
        ) from None
