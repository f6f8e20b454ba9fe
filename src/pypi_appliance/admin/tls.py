"""The self-signed CA and server certificate, and what status says about TLS."""

from __future__ import annotations

import calendar
import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from pypi_appliance.admin.host import host_addresses, is_ip, normal_name
from pypi_appliance.admin.settings import PACKAGE, TLS_DIR, Fail, Settings, check_choices

# Server certificates last 397 days (the most browsers accept) and are renewed
# on the restart after they come within 30 days of expiry; the CA lasts 10 years.
CA_DAYS, CERT_DAYS, RENEW_DAYS = 3650, 397, 30


def openssl(*args):
    try:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise Fail("openssl is not installed (apt install openssl)") from None
    if proc.returncode != 0:
        raise Fail(f"openssl {args[0]} {args[-1]}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout


def tls_paths():
    return {name: os.path.join(TLS_DIR, name) for name in ("ca.crt", "ca.key", "server.crt", "server.key")}


def cert_info(path):
    """Expiry (epoch seconds), names and SHA-256 fingerprint of a PEM file's first certificate."""
    out = openssl("x509", "-in", path, "-noout", "-enddate", "-fingerprint", "-sha256", "-ext", "subjectAltName")
    end = re.search(r"^notAfter=(.+)$", out, re.M).group(1).strip()
    fingerprint = re.search(r"^sha256 Fingerprint=(\S+)$", out, re.M | re.I).group(1)
    names = {normal_name(n) for n in re.findall(r"(?:DNS|IP Address):([^,\s]+)", out)}
    return calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y GMT")), names, fingerprint


def tls_names(conf: Settings):
    """What the self-signed certificate must cover: this host's names and
    addresses, loopback, and the admin's PYPI_TLS_NAMES."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn(), *host_addresses()]
    names += re.split(r"[\s,]+", conf.tls_names)
    return sorted({normal_name(n) for n in names if n}, key=lambda n: (is_ip(n), n))


def issue(tmp, key, *args):
    """A new P-256 key in tmp and what openssl req makes of it."""
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        os.path.join(tmp, key),
        *args,
    )


# Addresses a host may get from DHCP or a VPN without a new CA: the CA may
# sign for any of them, and for this host's other addresses when it is made.
LOCAL_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)


def permitted(names):
    """What the CA may sign for (RFC 5280 name constraints): these DNS names
    (and names under them), the local networks and these addresses. The CA
    goes into clients' system stores: without constraints its key could vouch
    for any site those clients visit."""
    networks = [ipaddress.ip_network(n) for n in LOCAL_NETWORKS]
    networks += [ipaddress.ip_network(n) for n in names if is_ip(n) and not allows(([], networks), n)]
    return sorted(n for n in names if not is_ip(n)), networks


def name_constraints(names) -> str:
    dns, networks = permitted(names)
    return "nameConstraints=critical," + ",".join(
        [f"permitted;DNS:{n}" for n in dns] + [f"permitted;IP:{net.network_address}/{net.netmask}" for net in networks]
    )


def ca_permits(path):
    """(DNS names, networks) the CA may sign for; None: any name (a CA made
    before 0.7.0)."""
    out = openssl("x509", "-in", path, "-noout", "-ext", "nameConstraints")
    if "Permitted" not in out:
        return None
    dns = re.findall(r"^\s*DNS:(\S+)$", out, re.M)
    networks = [
        ipaddress.ip_network(f"{a}/{bin(int(ipaddress.ip_address(m))).count('1')}")
        for a, m in re.findall(r"^\s*IP:([0-9A-Fa-f.:]+)/([0-9A-Fa-f.:]+)$", out, re.M)
    ]
    return dns, networks


def allows(permits, name) -> bool:
    if permits is None:
        return True
    dns, networks = permits
    if is_ip(name):
        return any(ipaddress.ip_address(name) in net for net in networks)
    return any(name == d or name.endswith("." + d) for d in dns)


def issue_ca(paths, names):
    with tempfile.TemporaryDirectory(dir=TLS_DIR) as tmp:
        issue(
            tmp,
            "ca.key",
            "-x509",
            "-days",
            str(CA_DAYS),
            "-out",
            os.path.join(tmp, "ca.crt"),
            "-subj",
            f"/CN={PACKAGE} CA {socket.gethostname()}"[:68],
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            name_constraints(names),
        )
        os.chmod(os.path.join(tmp, "ca.crt"), 0o644)
        # Key first: a certificate without its key is an error, a key without a certificate is not.
        os.replace(os.path.join(tmp, "ca.key"), paths["ca.key"])
        os.replace(os.path.join(tmp, "ca.crt"), paths["ca.crt"])


def issue_server(paths, names):
    sans = ",".join(("IP:" if is_ip(n) else "DNS:") + n for n in names)
    with tempfile.TemporaryDirectory(dir=TLS_DIR) as tmp:
        ext = os.path.join(tmp, "ext.cnf")
        with open(ext, "w", encoding="ascii") as f:
            f.write(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                f"authorityKeyIdentifier=keyid\nsubjectAltName={sans}\n"
            )
        issue(tmp, "server.key", "-out", os.path.join(tmp, "server.csr"), "-subj", f"/CN={socket.gethostname()}"[:68])
        openssl(
            "x509",
            "-req",
            "-in",
            os.path.join(tmp, "server.csr"),
            "-CA",
            paths["ca.crt"],
            "-CAkey",
            paths["ca.key"],
            "-set_serial",
            "0x" + os.urandom(16).hex(),
            "-days",
            str(CERT_DAYS),
            "-extfile",
            ext,
            "-out",
            os.path.join(tmp, "server.crt"),
        )
        os.chmod(os.path.join(tmp, "server.crt"), 0o644)
        os.replace(os.path.join(tmp, "server.key"), paths["server.key"])
        os.replace(os.path.join(tmp, "server.crt"), paths["server.crt"])


def server_problem(paths, names):
    """Why the server certificate must be issued again, or None."""
    if not (os.path.exists(paths["server.crt"]) and os.path.exists(paths["server.key"])):
        return "there was none"
    try:
        expires, covered, _ = cert_info(paths["server.crt"])
        openssl("verify", "-CAfile", paths["ca.crt"], paths["server.crt"])
        if openssl("x509", "-in", paths["server.crt"], "-noout", "-pubkey") != openssl(
            "pkey", "-in", paths["server.key"], "-pubout"
        ):
            return "it does not match its key"
    except Fail as err:
        return str(err)
    if expires - time.time() < RENEW_DAYS * 86400:
        return f"it expires on {time.strftime('%Y-%m-%d', time.gmtime(expires))}"
    missing = sorted(set(names) - covered)
    if missing:
        return f"it does not cover {', '.join(missing)}"
    return None


def ensure_certificate(conf: Settings, new_ca=False):
    """In self-signed mode, make the CA once (or again, new_ca) and the server
    certificate whenever it is missing, near expiry or short of a name the CA
    may sign for; returns what was done."""
    if conf.tls != "self-signed":
        return []
    paths = tls_paths()
    os.makedirs(TLS_DIR, mode=0o755, exist_ok=True)
    done = []
    names = tls_names(conf)
    umask = os.umask(0o077)  # keys are born root-only
    try:
        if new_ca or not os.path.exists(paths["ca.crt"]):
            issue_ca(paths, names)
            done.append(f"made a new CA, {paths['ca.crt']}: clients must trust it (see client-config)")
        elif not os.path.exists(paths["ca.key"]):
            raise Fail(
                f"{paths['ca.key']} is missing: restore it, or delete {paths['ca.crt']} "
                "to make a new CA that every client must trust again"
            )
        permits = ca_permits(paths["ca.crt"])
        outside = [n for n in names if not allows(permits, n)]
        names = [n for n in names if allows(permits, n)]
        if outside:
            done.append(
                f"the CA may not sign for {', '.join(outside)} (it was made for this host's names then); "
                f"'{PACKAGE} tls --new-ca' makes one for the names now, which every client must trust again"
            )
        why = "a new CA" if new_ca else server_problem(paths, names)
        if why:
            issue_server(paths, names)
            first = why == "there was none"
            done.append(
                f"issued the server certificate for {', '.join(names)}"
                if first
                else f"issued a new server certificate ({why}) for {', '.join(names)}"
            )
    finally:
        os.umask(umask)
    return done


def tls_state(conf: Settings):
    """Mode, certificate and a warning when clients are at risk or about to fail."""
    mode = conf.tls
    if mode == "off":
        return {
            "mode": mode,
            "warning": "TLS is off: passwords cross the network in clear text; "
            f"turn it on with dpkg-reconfigure {PACKAGE}",
        }
    state = {"mode": mode, "certificate": conf.tls_cert or tls_paths()["server.crt"]}
    try:
        expires, names, fingerprint = cert_info(state["certificate"])
        if mode == "self-signed":
            state["ca"] = tls_paths()["ca.crt"]
            state["ca_fingerprint"] = cert_info(state["ca"])[2]
            permits = ca_permits(state["ca"])
            if permits is None:
                state["ca_may_sign"] = (
                    f"any name (a CA made before 0.7.0; '{PACKAGE} tls --new-ca' makes one "
                    "limited to this host's names, which every client must trust again)"
                )
            else:
                state["ca_may_sign"] = [*permits[0], *map(str, permits[1])]
        else:
            state["fingerprint"] = fingerprint
    except Fail as err:
        state["warning"] = str(err)
        return state
    state["expires"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
    state["names"] = sorted(names)
    days = (expires - time.time()) / 86400
    renew = "restart to renew it" if mode == "self-signed" else "install a renewed one and restart"
    if days < 0:
        state["warning"] = f"the certificate expired on {state['expires']}; {renew}"
    elif days < RENEW_DAYS:
        state["warning"] = f"the certificate expires in {days:.0f} days; {renew}"
    return state


def cmd_tls(args, conf: Settings):
    check_choices(conf)
    if args.new_ca and conf.tls != "self-signed":
        raise Fail(f"--new-ca: PYPI_TLS is {conf.tls}, not self-signed; there is no CA of the appliance's own")
    for line in ensure_certificate(conf, new_ca=args.new_ca):
        print(f"{PACKAGE}: {line}", file=sys.stderr)
    state = tls_state(conf)
    for key, value in state.items():
        print(f"{key:<15} {', '.join(value) if isinstance(value, list) else value}")
    return 0
