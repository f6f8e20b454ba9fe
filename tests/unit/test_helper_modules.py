"""The helper's modules, imported directly from the staged tree."""


def test_settings_are_typed_and_default_to_the_build(appliance, tmp_path):
    from pypi_appliance.settings import Settings, read_conf

    conf = tmp_path / "pypi-appliance.conf"
    conf.write_text("# a comment\nPYPI_PORT=9443\nPYPI_TLS=off\nSOMETHING_ELSE=x\n")
    settings = read_conf(str(conf))
    assert isinstance(settings, Settings)
    assert (settings.port, settings.tls, settings.data_dir, settings.admin_user) == ("9443", "off", "/srv/pypi", "admin")
    assert read_conf(str(tmp_path / "missing")).port == "8080"


def test_endpoint_adds_the_port_and_brackets(appliance):
    from pypi_appliance.host import endpoint, index_url
    from pypi_appliance.settings import read_conf

    conf = read_conf("/nonexistent")
    assert endpoint("pypi.example.org", conf) == "pypi.example.org:8080"
    assert endpoint("pypi.example.org:443", conf) == "pypi.example.org:443"
    assert endpoint("2001:db8::1", conf) == "[2001:db8::1]:8080"
    assert endpoint("[2001:db8::1]:9000", conf) == "[2001:db8::1]:9000"
    assert index_url(conf, "10.0.0.1") == "https://10.0.0.1:8080/simple/"


def test_a_failing_health_check_is_starting_only_while_the_service_comes_up(appliance):
    from pypi_appliance.status import STARTING_SECONDS, starting

    healthy = [{"name": "proxy", "state": "running", "health": "healthy"}]
    assert starting("activating", None, None)
    assert starting("active", 5, [])
    assert starting("active", STARTING_SECONDS * 2, [{"name": "proxy", "state": "running", "health": "starting"}])
    assert not starting("active", STARTING_SECONDS * 2, healthy)
    assert not starting("inactive", 1, [])
    assert not starting("failed", 1, healthy)
