"""The front door's njs module, unit-tested with the njs CLI (no nginx), as
nginx-s3-gateway tests its modules: tests/njs/appliance_test.js."""

from __future__ import annotations

import shutil
import subprocess

from builder.cli import TREE

MODULES = TREE / "templates/usr/share/pypi-appliance"
TESTS = TREE / "tests/njs/appliance_test.js"


def njs(modules) -> subprocess.CompletedProcess:
    tool = shutil.which("njs")
    assert tool, "the njs CLI is missing: apt-get install njs (make check installs it)"
    return subprocess.run([tool, "-p", str(modules), str(TESTS)], capture_output=True, text=True, timeout=60)


def test_appliance_js():
    result = njs(MODULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checks passed" in result.stdout


def test_a_broken_negotiation_fails_the_njs_tests(tmp_path):
    broken = (MODULES / "appliance.js").read_text().replace("json > 0 && json >=", "json > 0 && json >")
    assert broken != (MODULES / "appliance.js").read_text()
    (tmp_path / "appliance.js").write_text(broken)
    result = njs(tmp_path)
    assert result.returncode != 0 and 'expected "json", got "html"' in result.stdout + result.stderr
