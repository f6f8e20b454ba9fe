"""make deb IMAGES=1: the images come from this machine's engine, exactly as the
compose file pins them, or the build stops and names the image."""

import pytest
from click.testing import CliRunner

from builder import images as build_images
from builder.cli import main
from builder.config import ConfigError
from tests.support import images


def test_a_missing_image_fails_the_build_naming_it(tmp_path):
    out = tmp_path / "dist"
    result = CliRunner().invoke(
        main,
        [
            "build",
            "--with-images",
            "--proxy-image",
            "nginx:0.0.0-nowhere",
            "--output-dir",
            str(out),
            "--build-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1, result.output
    assert (
        "image 'nginx:0.0.0-nowhere' (named by the compose file) is not in this machine's Docker engine: "
        "docker pull nginx:0.0.0-nowhere"
    ) in " ".join(result.output.split())
    assert not out.exists()


def test_an_image_of_another_digest_or_architecture_is_refused():
    held = images.system_image()
    pinned = f"{held}@sha256:{'0' * 64}"
    with pytest.raises(ConfigError, match=r"this engine's copy has digests none, not sha256:0{64}: docker pull"):
        build_images.find([pinned], "amd64")
    with pytest.raises(
        ConfigError,
        match=rf"image '{held}' is for linux/amd64, but this machine builds arm64 "
        r"packages \(Docker's linux/arm64\)",
    ):
        build_images.find([held], "arm64")


def test_the_files_are_named_after_the_reference():
    assert build_images.Image("pypiserver/pypiserver:v2.4.2", "sha256:x").file == "pypiserver_pypiserver_v2.4.2.tar.zst"
    assert build_images.Image("registry:5000/a/b:1@sha256:" + "1" * 64, "x").file == "registry_5000_a_b_1.tar.zst"
