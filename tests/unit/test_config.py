import shutil
import subprocess

import pytest

from builder.config import (
    DEFAULT_IMAGE,
    Config,
    ConfigError,
    check_data_dir,
    check_image,
    check_port,
    check_version,
)


@pytest.mark.parametrize("value", ["0.1.0", "1.2.3~rc1", "2026.11+local1", "1"])
def test_versions_dpkg_accepts(value):
    assert check_version(value) == value


@pytest.mark.parametrize("value", ["1.0 beta", "", "v1.0", "1:2.0", "1.0-1", "1.0_2", "é1"])
def test_versions_dpkg_rejects_name_the_value(value):
    with pytest.raises(ConfigError, match="version"):
        check_version(value)


def test_version_rule_agrees_with_dpkg():
    if not shutil.which("dpkg"):
        pytest.fail("dpkg is needed to cross-check version rules")
    for good in ["0.1.0", "1.2.3~rc1", "2026.11+local1"]:
        assert subprocess.run(["dpkg", "--validate-version", good]).returncode == 0
    assert subprocess.run(["dpkg", "--validate-version", "1.0 beta"], capture_output=True).returncode != 0


@pytest.mark.parametrize("value", [1, 8080, 65535])
def test_ports_in_range(value):
    assert check_port(value) == value


@pytest.mark.parametrize("value", [0, -1, 65536, 70000])
def test_ports_out_of_range(value):
    with pytest.raises(ConfigError, match=f"port {value} is outside 1-65535"):
        check_port(value)


def test_data_dir_is_normalized():
    assert check_data_dir("/srv/pypi/") == "/srv/pypi"
    assert check_data_dir("/srv//pypi/") == "/srv/pypi"


@pytest.mark.parametrize(
    "value, message",
    [
        ("srv/pypi", "not an absolute path"),
        ("", "not an absolute path"),
        ("/srv/my pypi", "may only contain"),
        ("/srv/$HOME", "may only contain"),
        ("/", "not a dedicated directory"),
        ("/srv/../pypi", "not a dedicated directory"),
        ("/etc/", "under /etc"),
        ("/usr/local/pypi", "under /usr"),
        ("/tmp/pypi", "under /tmp"),
    ],
)
def test_bad_data_dirs(value, message):
    with pytest.raises(ConfigError, match=message) as err:
        check_data_dir(value)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize(
    "value",
    [
        DEFAULT_IMAGE,
        "nginx:1.28.0-alpine",
        "registry.local:5000/team/pypiserver:v2.4.2",
        "pypiserver/pypiserver@sha256:" + "a" * 64,
    ],
)
def test_pinned_images(value):
    assert check_image(value) == value


@pytest.mark.parametrize(
    "value, message",
    [
        ("pypiserver/pypiserver", "has no tag"),
        ("pypiserver/pypiserver:latest", "uses 'latest'"),
        ("pypiserver/pypi server:v1", "not a valid image reference"),
        ("PyPIServer/pypiserver:v1", "not a valid image reference"),
        ("pypiserver:v1 --privileged", "not a valid image reference"),
    ],
)
def test_bad_images(value, message):
    with pytest.raises(ConfigError, match=message):
        check_image(value)


def test_config_validates_itself():
    with pytest.raises(ConfigError):
        Config(version="1.0 beta")
    with pytest.raises(ConfigError):
        Config(version="1.0", data_dir="/srv/pypi/")
    assert Config(version="1.0").deb_name == "pypi-appliance_1.0_all.deb"
