"""The builder packaged with stdeb builds the appliance from a checkout."""

import shutil
import subprocess

from builder import __version__
from builder.cli import TREE

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def test_stdeb_package_of_the_builder_builds_the_appliance(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(TREE / "builder", source / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy(TREE / name, source / name)
    stdeb = subprocess.run(
        ["/usr/bin/python3", "setup.py", "--command-packages=stdeb.command", "bdist_deb"],
        cwd=source,
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "HOME": str(tmp_path)},
    )
    assert stdeb.returncode == 0, stdeb.stdout[-2000:] + stdeb.stderr[-2000:]
    (package,) = (source / "deb_dist").glob("python3-pypi-appliance-builder_*_all.deb")
    depends = subprocess.run(["dpkg-deb", "-f", str(package), "Depends"], capture_output=True, text=True).stdout
    assert "python3-click" in depends and "python3-jinja2" in depends

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(package), str(root)], check=True)
    assert (root / "usr/bin/pypi-appliance-build").exists()
    # Run the packaged module on the system Python, as the installed command would.
    built = subprocess.run(
        [
            "/usr/bin/python3",
            "-m",
            "builder",
            "build",
            "--tree",
            str(TREE),
            "--output-dir",
            str(tmp_path / "out"),
            "--build-dir",
            str(tmp_path / "build"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "out" / f"pypi-appliance_{__version__}_all.deb").exists()

    wrong = subprocess.run(
        ["/usr/bin/python3", "-m", "builder", "build", "--tree", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")},
    )
    assert wrong.returncode == 2 and "point --tree at a pypi-appliance checkout" in wrong.stderr
