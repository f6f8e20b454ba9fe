"""What clients need: the CA, pip.conf, .pypirc and uv settings, and the index URL."""

from __future__ import annotations

import os
import re
import urllib.parse

from pypi_appliance.host import endpoint, host_name, index_url, is_ip, scheme
from pypi_appliance.settings import PACKAGE, Settings
from pypi_appliance.tls import cert_info, ensure_certificate, openssl, tls_paths

# Where Debian and Ubuntu clients keep local CAs and their merged bundle.
CLIENT_CA_DIR = "/usr/local/share/ca-certificates"
CLIENT_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def cmd_url(args, conf: Settings):
    print(index_url(conf, args.host))


def pem_writer(pem, target):
    """One shell line that writes the PEM to target: nothing to download or copy."""
    quoted = " ".join(f"'{line}'" for line in pem.splitlines())
    return f"printf '%s\\n' {quoted} > {target}"


def trust_section(conf: Settings, endpoint_text, cert):
    """How clients come to trust the server's certificate, ending where cert points."""
    if conf.tls == "provided":
        issuer = openssl("x509", "-in", conf.tls_cert, "-noout", "-issuer").strip()
        return (
            f"# TLS: the certificate in {conf.tls_cert} ({issuer}).\n"
            f"# Clients trust it if {cert} holds its CA (public CAs are in the system bundle).\n"
        )
    ca = tls_paths()["ca.crt"]
    if not os.path.exists(ca):
        ensure_certificate(conf)
    with open(ca, encoding="ascii") as f:
        pem = f.read().strip()
    fingerprint = cert_info(ca)[2]
    head = f"# TLS: this appliance's own CA ({ca}, SHA-256 {fingerprint}).\n"
    if cert != CLIENT_BUNDLE:
        return (
            head
            + f"# Save it on each client as {cert}, where the settings below look for it:\n"
            + pem_writer(pem, cert)
            + "\n"
        )
    target = f"{CLIENT_CA_DIR}/{PACKAGE}-{re.sub(r'[^A-Za-z0-9.-]+', '_', endpoint_text)}.crt"
    return (
        head
        + "# Debian/Ubuntu clients (install-ca), as root; the settings below then work as printed:\n"
        + pem_writer(pem, target)
        + " && update-ca-certificates\n"
        "# Other clients: save the CA below as a file and print these settings again\n"
        f"# with 'client-config --cert PATH'.\n{pem}\n"
    )


def cmd_client_config(args, conf: Settings):
    user = args.user or conf.admin_user
    where = endpoint(args.host or host_name(), conf)
    url = f"{scheme(conf)}://{where}"
    index = url
    if conf.access == "private":
        index = f"{scheme(conf)}://{urllib.parse.quote(user, safe='')}@{where}"
    uv_name = PACKAGE.upper().replace("-", "_")
    hostname = where.rsplit(":", 1)[0].strip("[]")
    reach = (
        ""
        if args.host
        else (
            f"# Clients must reach this host as {hostname}; if they use another name or\n"
            "# an address, print this again with --host.\n"
        )
    )
    if conf.tls == "off":
        trust, pip_tls, twine_tls = (
            "# WARNING: TLS is off; passwords cross the network in clear text.\n",
            f"trusted-host = {hostname}",
            "",
        )
        uv_tls = f"# uv: plain HTTP needs --allow-insecure-host {hostname}"
    else:
        trust = trust_section(conf, where, args.cert)
        pip_tls = f"cert = {args.cert}"
        if is_ip(hostname):
            pip_tls += (
                "\n# pip 24.2 and later fail on https://IP-address (pypa/pip#12906): use a name the\n"
                "# certificate covers (see 'pypi-appliance tls'), or add: use-deprecated = legacy-certs"
            )
        twine_tls = f"ca_cert = {args.cert}\n# (REQUESTS_CA_BUNDLE, when set, wins over ca_cert)\n"
        uv_tls = f"# uv trusts the CA through SSL_CERT_FILE={args.cert}" + (
            ", or once it is in\n# the system store (install-ca) through UV_NATIVE_TLS=1 (native-tls = true)."
            if args.cert == CLIENT_BUNDLE
            else "."
        )
    upstream = (
        f"# Names this index does not hold come from its upstream, {conf.upstream}:\n"
        "# one index is enough. No extra-index-url: with two indexes a public name\n"
        "# can shadow yours (dependency confusion); here yours always win.\n"
        if conf.upstream else ""
    )
    print(f"""\
{reach}{trust}
{upstream}# pip: /etc/pip.conf (all users) or ~/.config/pip/pip.conf
# pip asks for the user ({user}) and password, or takes them from keyring or
# ~/.netrc (mode 600), one line:  machine {hostname} login {user} password PASSWORD
# A password with spaces, quotes or backslashes goes in double quotes, with \\" and
# \\\\ for a quote and a backslash:  password "my \\"pass\\" phrase"  (Python 3.11 and
# later; older Pythons, such as Ubuntu 22.04's, cannot read it: use keyring).
# A user in index-url would make pip skip ~/.netrc.
[global]
index-url = {url}/simple/
{pip_tls}

# twine: ~/.pypirc, then: twine upload --repository {PACKAGE} dist/*
[distutils]
index-servers = {PACKAGE}

[{PACKAGE}]
repository = {url}/
username = {user}
{twine_tls}
# uv: pyproject.toml (or uv.toml without the "tool.uv." prefix)
[[tool.uv.index]]
name = "{PACKAGE}"
url = "{url}/simple/"
default = true
# uv takes the credentials from UV_INDEX_{uv_name}_USERNAME={user} and
# UV_INDEX_{uv_name}_PASSWORD, keyring or ~/.netrc. For one shell instead:
#   export UV_DEFAULT_INDEX={index}/simple/
{uv_tls}
""")


def machine_snippet(conf: Settings, name: str, password: str, role: str) -> str:
    """What a machine given a generated password needs: shown once, never stored."""
    where = endpoint(host_name(), conf)
    url = f"{scheme(conf)}://{where}"
    quoted = f"{urllib.parse.quote(name, safe='')}:{password}"
    lines = [
        f"# {name}'s password, shown only now ({PACKAGE} keeps only its bcrypt hash):",
        password,
        "# pip and uv on the machine (keep it in the CI system's secret store):",
        f"PIP_INDEX_URL={scheme(conf)}://{quoted}@{where}/simple/",
        f"UV_DEFAULT_INDEX={scheme(conf)}://{quoted}@{where}/simple/",
    ]
    if role == "publish":
        lines += [
            "# twine:",
            f"TWINE_REPOSITORY_URL={url}/ TWINE_USERNAME={name} TWINE_PASSWORD={password}",
        ]
    if conf.tls != "off":
        lines.append(f"# The machine must trust this appliance's CA: '{PACKAGE} client-config' shows how.")
    return "\n".join(lines)
