"""HTTPS by default: clients set up from client-config alone, clients without
the CA refused, a provided certificate, switching modes, renewal on restart."""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.client import PASSWORD, REFUSED, USER, client_env
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

CONF = "/etc/pypi-appliance/pypi-appliance.conf"
APPLIANCE_CA = "/etc/pypi-appliance/tls/ca.crt"
CLIENT, CLIENT_PASSWORD = "tls-client", "tls-client-password"
TEST_CA = "/root/test-ca"
# Typed, as teletype shows no defaults: the admin user, empty passwords (keep the current one), the port.
KEEP = [USER, "", "", "8080"]


def fingerprint(system, path: str) -> str:
    return system.sh(f"openssl x509 -in {path} -noout -fingerprint -sha256").stdout.strip()


def served_certificate(system) -> str:
    """The PEM certificate the appliance presents, fetched without verification."""
    return ssl.get_server_certificate(("127.0.0.1", system.port))


def sections(config: str) -> dict[str, str]:
    """client-config's output cut into the files it describes."""
    pem = re.search(r"^-----BEGIN CERTIFICATE-----\n.*?^-----END CERTIFICATE-----\n", config, re.M | re.S)
    pip = re.search(r"^\[global\]\n(?:.+\n)+", config, re.M)
    pypirc = re.search(r"^\[distutils\]\n(?:.*\n)+?ca_cert = .+\n", config, re.M)
    return {"ca": pem and pem.group(0), "pip.conf": pip.group(0), ".pypirc": pypirc and pypirc.group(0)}


def reconfigure(system, mode: str, cert: str = "", key: str = "") -> None:
    """dpkg-reconfigure on a terminal, as an admin runs it: the same user, port,
    access and data dir, empty passwords (keep the current one), and the TLS answers."""
    lines = [*KEEP, mode, *([cert, key] if mode == "provided" else []), "private", "", "/srv/pypi"]
    code, out = system.interact("DEBIAN_FRONTEND=teletype dpkg-reconfigure pypi-appliance", lines, timeout=180)
    assert code == 0, out
    system.trust(outside_ca(system) if mode == "provided" else None)
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


def outside_ca(system) -> bytes:
    return system.sh(f"cat {TEST_CA}/ca.crt").stdout.encode()


def make_test_ca(system) -> None:
    """An outside CA and a server certificate from it, as an admin would bring them."""
    system.sh(f"""set -e; mkdir -p {TEST_CA}; cd {TEST_CA}
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
            -days 120 -subj '/CN=Test Corp Root' 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
            -out server.csr -subj /CN=appliance 2>/dev/null
        printf 'subjectAltName=DNS:appliance,IP:127.0.0.1\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -days 90 -extfile ext.cnf -out server.crt 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
            -out other.csr -subj /CN=other 2>/dev/null
        openssl x509 -req -in other.csr -CA ca.crt -CAkey ca.key -days 20 -out other.crt 2>/dev/null
        openssl x509 -req -in other.csr -CA ca.crt -CAkey ca.key -not_before 20200101000000Z \
            -not_after 20200201000000Z -out expired.crt 2>/dev/null
        chmod 600 server.key other.key""")


@pytest.fixture(scope="module")
def client_account(system, installed):
    system.trust()
    system.sh(
        f"pypi-appliance user remove {CLIENT} 2>/dev/null; "
        f"pypi-appliance user add --role publish --password-stdin {CLIENT}",
        input=CLIENT_PASSWORD + "\n",
    )
    yield
    system.sh(f"pypi-appliance user remove {CLIENT}")


def test_pip_and_twine_work_with_only_the_printed_configuration(system, client_account, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ca = home / "appliance-ca.pem"
    out = system.sh(f"pypi-appliance client-config --user {CLIENT} --host 127.0.0.1:{system.port} --cert {ca}").stdout
    files = sections(out)
    assert "--trusted-host" not in out and "trusted-host" not in files["pip.conf"]
    # The printed line writes the CA where --cert says; run as printed.
    subprocess.run(["sh", "-c", next(x for x in out.splitlines() if x.startswith("mkdir -p "))], check=True)
    assert ca.read_text() == system.sh(f"cat {APPLIANCE_CA}").stdout
    (home / "pip.conf").write_text(files["pip.conf"])
    (home / ".pypirc").write_text(files[".pypirc"])
    # The password comes from ~/.netrc for pip and from the environment for twine, as the comments say.
    (home / ".netrc").write_text(f"machine 127.0.0.1 login {CLIENT} password {CLIENT_PASSWORD}\n")
    env = client_env(HOME=str(home), PIP_CONFIG_FILE=str(home / "pip.conf"), TWINE_PASSWORD=CLIENT_PASSWORD)

    wheel = make_wheel(tmp_path, "4.2", project="tls-probe")
    upload = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--config-file",
            str(home / ".pypirc"),
            "--repository",
            "pypi-appliance",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "site"), "tls-probe==4.2"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (tmp_path / "site" / "tls_probe" / "__init__.py").read_text() == 'VERSION = "4.2"\n'


def test_a_client_without_the_ca_is_refused(system, client_account, tmp_path):
    index = f"https://{CLIENT}:{CLIENT_PASSWORD}@127.0.0.1:{system.port}/simple/"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path), "--retries", "0", "tls-probe"],
        capture_output=True,
        text=True,
        timeout=180,
        env=client_env(PIP_INDEX_URL=index),
    )
    assert pip.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in pip.stdout + pip.stderr
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://127.0.0.1:{system.port}/simple/", timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_on_the_port_redirects_to_https(system, installed):
    connection = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
    connection.request("GET", "/simple/appliance-probe/")
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://127.0.0.1:{system.port}/simple/appliance-probe/"
    # Only the configured port listens: no port 80 behind the user's back.
    assert system.sh("ss -Hltn 'sport = :80'").stdout == ""


def test_install_ca_line_makes_a_debian_client_trust_the_appliance(system, installed):
    out = system.sh("pypi-appliance client-config --host 127.0.0.1").stdout
    line = next(x for x in out.splitlines() if x.startswith("mkdir -p "))
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in out
    try:
        # The appliance's host stands in for a Debian client: the line runs as printed.
        system.sh(line)
        status = system.sh("curl -s -o /dev/null -w '%{http_code}' https://127.0.0.1:8080/simple/").stdout
        assert status == "401"  # TLS verified with the system bundle; credentials are next
    finally:
        system.sh(
            "rm -f /usr/local/share/ca-certificates/pypi-appliance-127.0.0.1_8080.crt "
            "&& update-ca-certificates --fresh >/dev/null"
        )


def test_the_ca_survives_restart_and_reconfigure(system, installed):
    ca, server = fingerprint(system, APPLIANCE_CA), served_certificate(system)
    system.sh("systemctl restart pypi-appliance")
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    reconfigure(system, "self-signed")
    assert fingerprint(system, APPLIANCE_CA) == ca
    assert served_certificate(system) == server


def test_a_certificate_near_expiry_is_replaced_on_restart(system, installed, tmp_path):
    ca = fingerprint(system, APPLIANCE_CA)
    system.sh("""set -e; cd /etc/pypi-appliance/tls
        openssl req -new -key server.key -subj /CN=appliance -out /root/near.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\\n' > /root/near.cnf
        openssl x509 -req -in /root/near.csr -CA ca.crt -CAkey ca.key -days 2 -extfile /root/near.cnf \
            -out server.crt 2>/dev/null""")
    system.sh("systemctl restart pypi-appliance")
    system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
    served = tmp_path / "served.pem"
    served.write_text(served_certificate(system))
    check = subprocess.run(
        ["openssl", "x509", "-in", str(served), "-noout", "-checkend", str(300 * 86400)], capture_output=True, text=True
    )
    assert check.returncode == 0, "the served certificate still expires within 300 days"
    assert fingerprint(system, APPLIANCE_CA) == ca
    assert (
        "issued a new server certificate (it expires on"
        in system.sh("journalctl -u pypi-appliance --no-pager -o cat").stdout
    )


def test_bad_provided_certificates_change_nothing(system, installed):
    make_test_ca(system)
    before = (system.sh(f"cat {CONF}").stdout, served_certificate(system))
    # Each bad answer is refused and asked again; the admin then gives up (end of input).
    typed = [
        *KEEP,
        "provided",
        "/root/missing.crt",
        "relative.crt",
        f"{TEST_CA}/server.key",
        f"{TEST_CA}/expired.crt",
        f"{TEST_CA}/server.crt",
        f"{TEST_CA}/other.key",
        f"{TEST_CA}/server.crt",
        "/root/missing.key",
    ]
    code, out = system.interact("DEBIAN_FRONTEND=teletype dpkg-reconfigure pypi-appliance", typed, timeout=180)
    for message in [
        "certificate '/root/missing.crt' does not exist or cannot be read",
        "certificate path 'relative.crt' is not an absolute path",
        f"'{TEST_CA}/server.key' does not hold a PEM certificate",
        "expired on Feb  1 00:00:00 2020 GMT",
        f"the key '{TEST_CA}/other.key' does not match the certificate '{TEST_CA}/server.crt'",
        "key '/root/missing.key' does not exist or cannot be read",
    ]:
        # Teletype wraps long lines: compare with whitespace collapsed.
        assert " ".join(message.split()) in " ".join(out.split()), (message, out)
    assert code != 0, out
    assert (system.sh(f"cat {CONF}").stdout, served_certificate(system)) == before
    assert system.http("/simple/", user=USER, password=PASSWORD) == 200


def test_switching_modes_in_every_direction(system, client_account):
    make_test_ca(system)
    own_ca = fingerprint(system, APPLIANCE_CA)
    test_ca_pem = outside_ca(system).decode()
    # self-signed -> off -> provided -> self-signed -> provided -> off -> self-signed
    for mode in ["off", "provided", "self-signed", "provided", "off", "self-signed"]:
        reconfigure(system, mode, f"{TEST_CA}/server.crt", f"{TEST_CA}/server.key")
        conf = system.sh(f"cat {CONF}").stdout
        assert f"PYPI_TLS={mode}\n" in conf, mode
        status = system.sh("pypi-appliance status", check=False).stdout
        assert system.http("/simple/", user=CLIENT, password=CLIENT_PASSWORD) == 200, mode
        assert system.http("/simple/", user=CLIENT, password="wrong") in REFUSED, mode
        if mode == "off":
            assert system.scheme == "http"
            assert "TLS is off: passwords cross the network in clear text" in status
            assert "trusted-host = " in system.sh("pypi-appliance client-config").stdout
            continue
        served = served_certificate(system)
        issuer = subprocess.run(
            ["openssl", "x509", "-noout", "-issuer"], input=served, capture_output=True, text=True
        ).stdout
        if mode == "provided":
            assert "Test Corp Root" in issuer
            assert served == system.sh(f"cat {TEST_CA}/server.crt").stdout
            assert system.context.get_ca_certs()[0]["subject"] == ((("commonName", "Test Corp Root"),),)
            assert "provided, certificate valid until" in status
            assert test_ca_pem not in system.sh("pypi-appliance client-config").stdout
        else:
            assert "pypi-appliance CA" in issuer
            assert fingerprint(system, APPLIANCE_CA) == own_ca, "switching modes replaced the CA"
        assert "WARNING" not in status


def test_a_bad_mode_in_the_config_file_changes_nothing(system, installed):
    before = system.sh(f"cat {CONF}").stdout
    system.sh(f"sed -i 's/^PYPI_TLS=.*/PYPI_TLS=sometimes/' {CONF}")
    try:
        result = system.sh("DEBIAN_FRONTEND=noninteractive dpkg-reconfigure pypi-appliance 2>&1", check=False)
        assert result.returncode != 0
        assert (
            f"TLS mode 'sometimes' is not one of self-signed, provided, off (PYPI_TLS in {CONF}); nothing was changed"
        ) in result.stdout
    finally:
        system.sh(f"cat > {CONF}", input=before)
    assert system.http("/simple/", user=USER, password=PASSWORD) == 200
