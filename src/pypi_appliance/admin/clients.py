"""What clients need: the CA, pip.conf, .pypirc and uv settings, and the index URL."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import urllib.parse

from pypi_appliance.admin.host import endpoint, host_name, is_ip, scheme
from pypi_appliance.admin.settings import CLIENT_BUNDLE, PACKAGE, Fail, Settings, refusal
from pypi_appliance.admin.tls import cert_info, ensure_certificate, openssl, tls_paths

# Where Debian and Ubuntu clients keep local CAs and their merged bundle.
CLIENT_CA_DIR = "/usr/local/share/ca-certificates"


def cmd_url(args, conf: Settings):
    print(base_url(conf, args.host) + "/simple/")


def pem_writer(pem, target, quote=shlex.quote):
    """One shell line that writes the PEM to target, its folder made first:
    nothing to download or copy. quote: how target is written (a path with
    $HOME in it is double-quoted, so the machine's shell expands it)."""
    quoted = " ".join(f"'{line}'" for line in pem.splitlines())
    folder = posixpath.dirname(target)
    mkdir = f"mkdir -p {quote(folder)} && " if folder not in ("", "/", ".") else ""
    return f"{mkdir}printf '%s\\n' {quoted} > {quote(target)}"


def base_url(conf: Settings, host=None, url=None) -> str:
    """What clients put before /simple/: --url, else PYPI_CLIENT_URL (a reverse
    proxy's), else this host by --host or its name, with the port."""
    chosen = url or (None if host else conf.client_url)
    if chosen:
        if why := refusal("PYPI_CLIENT_URL", chosen):
            raise Fail(why)
        return chosen.rstrip("/")
    return f"{scheme(conf)}://{endpoint(host or host_name(), conf)}"


def tls_at_proxy(conf: Settings, url: str) -> bool:
    """HTTPS that a reverse proxy ends: the clients verify the proxy's certificate."""
    return conf.tls == "off" and url.startswith("https://")


def appliance_ca(conf: Settings) -> str:
    ca = tls_paths()["ca.crt"]
    if not os.path.exists(ca):
        ensure_certificate(conf)
    with open(ca, encoding="ascii") as f:
        return f.read().strip()


def trust_section(conf: Settings, endpoint_text, cert):
    """How clients come to trust the server's certificate, ending where cert points."""
    if conf.tls == "provided":
        issuer = openssl("x509", "-in", conf.tls_cert, "-noout", "-issuer").strip()
        return (
            f"# TLS: the certificate in {conf.tls_cert} ({issuer}).\n"
            f"# Clients trust it if {cert} holds its CA (public CAs are in the system bundle).\n"
        )
    ca = tls_paths()["ca.crt"]
    pem = appliance_ca(conf)
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
    url = base_url(conf, args.host, args.url)
    parts = urllib.parse.urlsplit(url)
    where = parts.netloc
    index = url
    if conf.access == "private":
        index = parts._replace(netloc=f"{urllib.parse.quote(user, safe='')}@{where}").geturl()
    uv_name = PACKAGE.upper().replace("-", "_")
    hostname = parts.hostname
    reach = (
        ""
        if args.host or args.url or conf.client_url
        else (
            f"# Clients must reach this host as {hostname}; if they use another name or\n"
            "# an address, print this again with --host (or --url for a reverse proxy).\n"
        )
    )
    if tls_at_proxy(conf, url):
        trust = f"# TLS: ends at the proxy in front ({where}); clients verify its certificate.\n"
        pip_tls = "" if args.cert == CLIENT_BUNDLE else f"cert = {args.cert}"
        twine_tls = "" if args.cert == CLIENT_BUNDLE else f"ca_cert = {args.cert}\n"
        uv_tls = "# uv verifies the proxy's certificate with its own roots (UV_NATIVE_TLS=1: the system's)."
    elif parts.scheme == "http":
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
        if conf.upstream
        else ""
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


# Where a machine given generated credentials keeps the appliance's CA.
MACHINE_CA = f"$HOME/.config/{PACKAGE}/ca.pem"


def machine_snippet(conf: Settings, name: str, password: str, role: str, host=None, url=None) -> str:
    """What a machine given a generated password needs, as shell lines that
    work as printed there (the CA too): shown once, never stored."""
    url = base_url(conf, host, url)
    parts = urllib.parse.urlsplit(url)
    credentials = f"{urllib.parse.quote(name, safe='')}:{urllib.parse.quote(password, safe='')}"
    index = parts._replace(netloc=f"{credentials}@{parts.netloc}").geturl() + "/simple/"
    lines = [
        f"# {name}'s password, shown only now ({PACKAGE} keeps only its bcrypt hash):",
        password,
        f"# On the machine, for {url}/ (another name or a reverse proxy: --host or --url),",
        "# these shell lines set up pip, uv and twine as printed (keep them in its secret store):",
    ]
    if parts.scheme == "https" and not tls_at_proxy(conf, url) and conf.tls == "self-signed":
        pem = appliance_ca(conf)
        target = MACHINE_CA
        lines += [
            "# This appliance's CA, which pip, uv and twine must trust:",
            pem_writer(pem, target, quote=lambda path: f'"{path}"'),
            f'export PIP_CERT="{target}" SSL_CERT_FILE="{target}"'
            + (f' TWINE_CERT="{target}"' if role == "publish" else ""),
        ]
    elif parts.scheme == "https" and conf.tls == "provided":
        lines.append(f"# TLS: the certificate in {conf.tls_cert}; the machine must trust its CA.")
    elif parts.scheme == "http":
        lines.append(f"export PIP_TRUSTED_HOST={parts.hostname}  # plain HTTP: the password crosses the network")
    lines += [
        "# pip and uv:",
        f"export PIP_INDEX_URL={shlex.quote(index)}",
        f"export UV_DEFAULT_INDEX={shlex.quote(index)}",
    ]
    if role == "publish":
        lines += [
            "# twine:",
            f"export TWINE_REPOSITORY_URL={shlex.quote(url + '/')} TWINE_USERNAME={shlex.quote(name)} "
            f"TWINE_PASSWORD={shlex.quote(password)}",
        ]
    return "\n".join(lines)
