import subprocess
import sys

import pytest
from click.testing import CliRunner

from builder.cli import main


@pytest.mark.parametrize(
    "args, named",
    [
        (["--port", "70000"], "port 70000 is outside 1-65535"),
        (["--port", "http"], "'http' is not a valid integer"),
        (["--version", "1.0 beta"], "version '1.0 beta'"),
        (["--data-dir", "srv/pypi"], "data dir 'srv/pypi' is not an absolute path"),
        # The config script would refuse it as a debconf default: every unattended install would abort.
        (["--data-dir", "/usr/local/pypi"], "data dir '/usr/local/pypi' is under /usr"),
        (["--image", "pypiserver/pypi server:v2"], "image 'pypiserver/pypi server:v2'"),
        (["--image", "pypiserver/pypiserver:latest"], "uses 'latest'"),
        (["--proxy-image", "nginx"], "image 'nginx' has no tag"),
    ],
)
def test_bad_values_are_rejected_by_name(tmp_path, args, named):
    out = tmp_path / "dist"
    result = CliRunner().invoke(main, ["build", *args, "--output-dir", str(out), "--build-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not out.exists()


def test_every_command_has_help():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0 and "build" in top.output
    build = runner.invoke(main, ["build", "--help"])
    assert build.exit_code == 0
    for option in ["--version", "--port", "--data-dir", "--image", "--output-dir"]:
        assert option in build.output
    # Gone: PYPI_UPSTREAM proxies unknown names without letting them shadow yours.
    assert "--fallback" not in build.output


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "builder", "build", "--port", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "port 0 is outside 1-65535" in proc.stderr
