import pytest

from builder import deb


def test_missing_build_deps_are_named(tmp_path):
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian/control").write_text(
        "Source: probe\nBuild-Depends: debhelper-compat (= 13), no-such-package-xyz (>= 1) | other-xyz\n"
        "Maintainer: x <x@example.org>\n\nPackage: probe\nArchitecture: all\nDescription: x\n x\n"
    )
    assert deb.missing_build_deps(tmp_path) == ["no-such-package-xyz"]


def test_without_root_the_missing_packages_are_listed(monkeypatch):
    monkeypatch.setattr(deb.os, "geteuid", lambda: 1000)
    with pytest.raises(deb.BuildError, match="sudo apt-get install no-such-package-xyz"):
        deb.install_build_deps(["no-such-package-xyz"])
