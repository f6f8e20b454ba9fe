"""The product package's layers (src/pypi_appliance/__init__.py says why):
core/ runs everywhere, so it is the standard library alone; services/ run on
the pypiserver image's Python, which has core, passlib, bcrypt and pypiserver
and nothing else; admin/ runs on the host with python3-passlib and python3-jwt."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

from builder.cli import TREE

SOURCE = TREE / "src" / "pypi_appliance"
PACKAGE = "pypi_appliance"
# What each layer may import beyond the standard library.
ALLOWED = {
    "core": (f"{PACKAGE}.core",),
    "services": (f"{PACKAGE}.core", f"{PACKAGE}.services", "passlib", "bcrypt", "pypiserver"),
    "admin": (f"{PACKAGE}.core", f"{PACKAGE}.services", f"{PACKAGE}.admin", "passlib", "jwt"),
    # The package's own __init__ and __main__: the helper's entry point.
    "": (f"{PACKAGE}.admin",),
}


def imported(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (a function's import counts)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import; write {PACKAGE}.LAYER.MODULE"
            found += [
                (node.lineno, f"{node.module}.{alias.name}" if node.module == PACKAGE else node.module)
                for alias in node.names
            ]
    return found


def violations(root: Path) -> list[str]:
    """FILE:LINE: MODULE for each import a layer may not make."""
    wrong = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        layer = rel.parts[0] if len(rel.parts) > 1 else ""
        for line, module in imported(path):
            if module.split(".")[0] in sys.stdlib_module_names and module.split(".")[0] != PACKAGE:
                continue
            if not any(module == allowed or module.startswith(f"{allowed}.") for allowed in ALLOWED[layer]):
                wrong.append(
                    f"{rel}:{line}: {module} (the {layer or 'top'} layer may import "
                    f"{', '.join(ALLOWED[layer])} and the standard library)"
                )
    return wrong


def test_each_layer_imports_only_what_its_runtime_has():
    assert sorted(p.name for p in SOURCE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        layer for layer in ALLOWED if layer
    )
    assert violations(SOURCE) == []


def test_a_planted_violation_is_named(tmp_path):
    """The check can fail: core reaching into admin, a service importing what
    the image lacks, and a function-level import are each found."""
    planted = tmp_path / PACKAGE
    shutil.copytree(SOURCE, planted, ignore=shutil.ignore_patterns("__pycache__"))
    with open(planted / "core" / "names.py", "a") as f:
        f.write("\nfrom pypi_appliance.admin.settings import PACKAGE\n")
    with open(planted / "services" / "auth.py", "a") as f:
        f.write("\n\ndef later():\n    import requests\n")
    with open(planted / "core" / "simple.py", "a") as f:
        f.write("\nfrom pypi_appliance import services\n")
    found = violations(planted)
    assert len(found) == 3, found
    assert found[0].startswith("core/names.py:") and ": pypi_appliance.admin.settings (the core layer" in found[0]
    assert found[1].startswith("core/simple.py:") and ": pypi_appliance.services (the core layer" in found[1]
    assert found[2].startswith("services/auth.py:") and ": requests (the services layer" in found[2]
