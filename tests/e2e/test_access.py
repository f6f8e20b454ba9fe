"""Who may do what, and the front door under password guessing: read and
publish roles, generated credentials, throttling (429 + Retry-After) of an
address that keeps failing, credential checks that never starve uploads and
pages, the audit log, its rotation and the fail2ban filter."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import random
import re
import subprocess
import sys
import time

import pytest

from builder.services import BY_NAME
from tests.support.client import FLOODER, PASSWORD, USER, upload_form
from tests.support.dists import make_wheel

pytestmark = pytest.mark.e2e

AUDIT = "/var/log/pypi-appliance/audit.log"
# Source addresses inside the system container, one per simulated client
# machine (RFC 2544's benchmarking range), reaching the published port on the
# system's own address, as a client on the network would: through Docker's DNAT.
FLOOD = [f"198.18.0.{n}" for n in range(1, 17)]


def own_address(system) -> str:
    return system.sh("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1 | head -1").stdout.strip()


@pytest.fixture
def clients(system, installed):
    """Extra addresses on the system container (removed after)."""

    def add(addresses):
        for address in addresses:
            system.sh(f"ip addr add {address}/32 dev eth0 2>/dev/null || true")
        added.extend(addresses)
        return own_address(system)

    added = []
    yield add
    for address in added:
        system.sh(f"ip addr del {address}/32 dev eth0", check=False)


def flood(system, target, addresses, seconds, per_address=1):
    """Start the flood in the system container; the result is a future of its counts."""
    system.put("/root/flood.py", FLOODER.encode())
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(
        system.sh,
        f"python3 /root/flood.py https {target} 8080 {seconds} {per_address} {' '.join(addresses)}",
        timeout=150,
    )
    pool.shutdown(wait=False)
    return future


def test_generated_credentials_work_as_printed_on_another_machine(system, installed, tmp_path):
    """The shell lines of user add --generate --host, run as printed in a clean
    shell on another machine (the suite's host, with no CA variables): the CA
    is saved and trusted, pip downloads and twine uploads."""
    out = system.sh(f"pypi-appliance user add --generate --role publish --host localhost:{system.port} ci-lines").stdout
    try:
        shell = out.split("secret store):\n", 1)[1]
        assert "appliance:8080" not in shell and f"localhost:{system.port}" in shell
        wheel = make_wheel(tmp_path, "1.0", project="printed-lines")
        home = tmp_path / "home"
        home.mkdir()
        script = (
            f"set -e\n{shell}\n"
            f"{sys.executable} -m twine upload --non-interactive --disable-progress-bar {wheel}\n"
            f"{sys.executable} -m pip download --no-deps --no-cache-dir -d {tmp_path}/dl printed-lines==1.0\n"
        )
        done = subprocess.run(
            ["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "PIP_CONFIG_FILE=/dev/null", "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (home / ".config/pypi-appliance/ca.pem").read_text() == system.sh(
            "cat /etc/pypi-appliance/tls/ca.crt"
        ).stdout
        assert [p.name for p in (tmp_path / "dl").iterdir()] == [wheel.name]
    finally:
        system.sh(
            "pypi-appliance user remove ci-lines; rm -f /srv/pypi/packages/printed_lines-*; "
            "pypi-appliance reindex >/dev/null 2>&1",
            check=False,
        )


def test_guesses_from_many_addresses_starve_nothing(system, installed, clients, tmp_path, timings):
    target = clients(FLOOD)
    # The admin's credential is checked anew (an account change resets what
    # the front door knows), and a new account is checked for the first time,
    # both while 16 addresses send wrong passwords.
    password, _ = system.add_generated("fresh", "read")
    try:
        running = flood(system, target, FLOOD, seconds=10)
        time.sleep(2)
        page_times, upload_times = [], []
        for n in range(3):
            started = time.monotonic()
            assert system.http("/simple/", user="fresh", password=password) == 200
            page_times.append(time.monotonic() - started)
            body, content_type = upload_form(make_wheel(tmp_path, f"1.{n}", project="flood-probe"))
            system.sh("pypi-appliance user passwd --password-stdin fresh", input=f"{password}\n")
            started = time.monotonic()
            status, text, _ = system.fetch_all(
                "/", user=USER, password=PASSWORD, method="POST", data=body, headers={"Content-Type": content_type}
            )
            upload_times.append(time.monotonic() - started)
            assert status == 200, text
        counts = json.loads(running.result(timeout=150).stdout)
        timings.append(("flood: 16 addresses throttled after", counts["seconds"]))
    finally:
        system.sh(
            "pypi-appliance user remove fresh; rm -f /srv/pypi/packages/flood_probe-*; "
            "pypi-appliance reindex >/dev/null 2>&1",
            check=False,
        )
    timings.append(("flood: first check of a new credential, worst of 3", max(page_times)))
    timings.append(("flood: upload with a credential checked anew, worst of 3", max(upload_times)))
    # The flood ran (every address checked 10 times, then throttled), only
    # ever answered 401 or 429, and neither the page nor the upload waited
    # behind its bcrypt work: 160 guesses at cost 12 on 2 threads queue 20 s
    # or more of it, so a request served behind them takes that long. The
    # bound says "not behind the queue", not how fast: make bench measures
    # pages and uploads under a flood (a fixed 1 s bound here failed on a
    # slow machine at 1.1 s for the first check of a new credential).
    starved = len(FLOOD) * 10 * 0.25 / 2
    assert counts["throttled addresses"] == len(FLOOD) and counts["401"] >= len(FLOOD) * 10, counts
    assert set(counts) == {"401", "429", "seconds", "throttled addresses"}, counts
    assert max(page_times) < starved / 4 and max(upload_times) < starved / 4, (page_times, upload_times, counts)
    throttled = {t["client"] for t in json.loads(system.report("--json"))["throttled"]}
    assert throttled >= set(FLOOD)


def test_an_account_that_keeps_failing_from_an_address_is_throttled_there(system, installed, clients):
    """A guesser holds back only the account it guesses, from its address:
    others behind that address (a NAT) log in, never checked before."""
    # Addresses of their own each run: a throttle outlives a test.
    net = random.randint(1, 254)
    guesser, other = f"198.18.{net}.1", f"198.18.{net}.2"
    target = clients([guesser, other])
    # What the front door sees: this host's address from outside the system
    # (the suite's host reaches it through two port publishings), and a
    # machine's own address through Docker's DNAT.
    gateway = system.sh("ip route | awk '/^default/ {print $3}'").stdout.strip()
    assert system.http("/simple/", user="nobody", password="wrong") == 401
    assert system.audit_lines("login-failed")[-1].split()[2] == f"client={gateway}"

    probe = (
        "import base64, http.client, ssl, sys\n"
        "source, user = sys.argv[1:3]\n"
        "password = sys.stdin.read()\n"
        f"conn = http.client.HTTPSConnection('{target}', 8080, context=ssl._create_unverified_context(),\n"
        "                                    source_address=(source, 0), timeout=30)\n"
        "token = base64.b64encode(f'{user}:{password}'.encode()).decode()\n"
        "conn.request('GET', '/simple/', headers={'Authorization': 'Basic ' + token})\n"
        "response = conn.getresponse()\n"
        "print(response.status, response.getheader('Retry-After') or '-', response.read().decode().strip())\n"
    )
    system.put("/root/probe.py", probe.encode())

    def ask(source, user, password):
        """Status, Retry-After and body of one request from source (the password on stdin)."""
        return system.sh(f"python3 /root/probe.py {source} {user}", input=password).stdout.split(" ", 2)

    # The session's admin credential, known good from this address.
    assert ask(guesser, USER, PASSWORD)[0] == "200"
    answers = [ask(guesser, "ci", f"guess{n}")[0] for n in range(10)]
    assert answers == ["401"] * 10
    status, retry, text = ask(guesser, "ci", "guess10")
    assert status == "429" and retry == "60" and f"too many failed or unchecked logins from {guesser};" in text
    # Known-good credentials still work from there; other addresses are not affected.
    assert ask(guesser, USER, PASSWORD)[0] == "200"
    assert ask(other, USER, PASSWORD)[0] == "200"
    assert ask(other, "ci", "wrong")[0] == "401"
    # Another account from the guesser's address: its first login gets in,
    # and a wrong password for it is checked (401), not throttled.
    password, _ = system.add_generated("same-nat", "read")
    try:
        assert ask(guesser, "same-nat", password)[0] == "200"
        assert ask(guesser, "same-nat", "wrong")[0] == "401"
    finally:
        system.sh("pypi-appliance user remove same-nat")

    status_text = system.report()
    assert re.search(rf"^throttled\s.*\b{re.escape(guesser)} for ci \(\d+ s left\)", status_text, re.M), status_text
    report = json.loads(system.report("--json"))
    assert (guesser, "ci") in [(t["client"], t["account"]) for t in report["throttled"]]
    assert other not in status_text.split("throttled")[1]

    failed = [line for line in system.audit_lines("login-failed") if f"client={guesser} " in line]
    assert len(failed) == 11
    assert any(line.endswith(f"throttled client={guesser} account=ci seconds=60") for line in system.audit_lines())
    assert "guess" not in system.sh(f"cat {AUDIT}").stdout

    # The shipped fail2ban filter (disabled) matches every failed login, by address.
    out = system.sh(f"fail2ban-regex -v {AUDIT} /etc/fail2ban/filter.d/pypi-appliance.conf").stdout
    total = len(system.audit_lines("login-failed"))
    assert re.search(rf"Failregex: {total} total", out), out
    assert len(re.findall(rf"^\|\s+{re.escape(guesser)}\s", out, re.M)) == 11, out
    jail = system.sh("cat /etc/fail2ban/jail.d/pypi-appliance.conf").stdout
    assert "enabled = false" in jail and f"logpath = {AUDIT}" in jail


def test_audit_log_rotates_and_follows(system, installed):
    system.sh("logrotate -f /etc/logrotate.d/pypi-appliance")
    assert system.sh(f"stat -c '%a %U %g' {AUDIT}").stdout.split() == ["660", "root", "9898"]
    assert system.sh(f"test -s {AUDIT}.1 && echo rotated").stdout.strip() == "rotated"
    # The containers write to the new file (they open it for each line).
    following = system.sh(
        "timeout 5 pypi-appliance audit -f -n 0 & sleep 1; "
        "curl -sk -o /dev/null -u ghost:wrong https://127.0.0.1:8080/simple/; wait",
        check=False,
    )
    assert re.search(r" login-failed client=\S+ account=ghost$", following.stdout.strip()), following.stdout
    assert system.audit_lines()[-1].endswith("account=ghost")


# A reverse proxy on the system host (plain HTTP in, HTTPS to the appliance),
# adding the client's address to X-Forwarded-For as nginx's
# $proxy_add_x_forwarded_for does: PORT TARGET.
REVERSE_PROXY = r"""
import http.client, http.server, ssl, sys
port, target = int(sys.argv[1]), sys.argv[2]
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
        forwarded = self.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {self.client_address[0]}" if forwarded else self.client_address[0]
        conn = http.client.HTTPSConnection(target, 8080, context=ssl._create_unverified_context(), timeout=30)
        conn.request("GET", self.path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        self.send_response(response.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
"""
# One client machine behind the proxy: SOURCE USER PASSWORD COUNT [FORGED-XFF], the statuses.
BEHIND = r"""
import base64, http.client, sys
source, user, password, count = sys.argv[1:5]
headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
if len(sys.argv) > 5:
    headers["X-Forwarded-For"] = sys.argv[5]
statuses = []
for n in range(int(count)):
    conn = http.client.HTTPConnection("127.0.0.1", 9444, source_address=(source, 0), timeout=30)
    conn.request("GET", "/simple/", headers=headers)
    statuses.append(conn.getresponse().status)
    conn.close()
print(" ".join(map(str, statuses)))
"""


def test_behind_a_reverse_proxy_one_clients_failures_throttle_that_client_only(system, installed, clients):
    """PYPI_TRUSTED_PROXIES names the proxy: the client's address comes from
    X-Forwarded-For (a forged one is not believed), so one client's wrong
    passwords throttle it alone; PYPI_BIND_ADDRESS publishes the port on one
    address; client-config and generated credentials print PYPI_CLIENT_URL."""
    own = clients(["198.18.1.1", "198.18.1.2"])
    system.put("/root/reverse-proxy.py", REVERSE_PROXY)
    system.put("/root/behind.py", BEHIND)
    settings = f"PYPI_TRUSTED_PROXIES={own} PYPI_BIND_ADDRESS={own} PYPI_CLIENT_URL=https://pypi.example.test"
    password, out = None, ""
    try:
        system.sh(f"pypi-appliance write-config {settings} && systemctl restart pypi-appliance")
        system.wait_http("/simple/", 200, user=USER, password=PASSWORD)
        listening = system.sh("ss -Hltn 'sport = :8080'").stdout.split()
        assert f"{own}:8080" in listening and "0.0.0.0:8080" not in listening, listening
        assert system.sh("curl -sk -o /dev/null https://127.0.0.1:8080/simple/", check=False).returncode != 0
        system.report()  # exits 0: it probes the bound address
        config = system.sh("pypi-appliance client-config").stdout
        assert "index-url = https://pypi.example.test/simple/" in config and "Clients must reach" not in config
        password, out = system.add_generated("behind", "read")
        assert "@pypi.example.test/simple/" in out
        system.sh("systemd-run --unit reverse-proxy python3 /root/reverse-proxy.py 9444 " + own)
        run = lambda *args: system.sh("python3 /root/behind.py " + " ".join(args)).stdout.split()  # noqa: E731
        deadline = time.monotonic() + 30
        while system.sh("curl -s -o /dev/null http://127.0.0.1:9444/simple/", check=False).returncode:
            assert time.monotonic() < deadline, "the reverse proxy did not start"
            time.sleep(0.3)
        # Client 1 guesses, claiming to be client 2: throttled under its own address.
        guesses = run("198.18.1.1", "behind", "wrong", "14", "198.18.1.2")
        assert "429" in guesses, guesses
        # Client 2, through the same proxy: a new wrong password is 401, its own 200.
        assert run("198.18.1.2", "behind", "also-wrong", "1") == ["401"]
        assert run("198.18.1.2", "behind", f"'{password}'", "1") == ["200"]
        failed = [line for line in system.audit_lines("login-failed") if "account=behind" in line]
        clients_seen = [re.search(r" client=(\S+) ", line).group(1) for line in failed]
        assert clients_seen.count("198.18.1.2") == 1 and set(clients_seen) == {"198.18.1.1", "198.18.1.2"}, failed
    finally:
        system.sh("systemctl stop reverse-proxy", check=False)
        system.sh("pypi-appliance user remove behind", check=False)
        system.sh(
            "pypi-appliance write-config PYPI_TRUSTED_PROXIES= PYPI_BIND_ADDRESS= PYPI_CLIENT_URL= && "
            "systemctl restart pypi-appliance"
        )
        system.wait_http("/simple/", 200, user=USER, password=PASSWORD)


INTERNAL_PORTS = {  # what a local user could ask without the front door
    "pypiserver": ("GET", BY_NAME["pypiserver"].port, "/simple/"),
    "pypiserver ": ("GET", BY_NAME["pypiserver"].port, "/packages/"),
    "auth": ("GET", BY_NAME["auth"].port, "/check"),
    "indexer": ("POST", BY_NAME["indexer"].port, "/refresh"),
    "upstream": ("GET", BY_NAME["upstream"].port, "/simple/appliance-probe/"),
}


def test_a_local_user_on_the_host_cannot_read_the_packages_or_the_log(system, installed):
    """The data dir and the log dir are root's and the containers' group's:
    another local user lists no package, page or record, and reads no audit line."""
    modes = system.sh("stat -c '%U:%g %a' /srv/pypi /var/log/pypi-appliance").stdout.splitlines()
    assert modes == ["root:9898 750", "root:9898 750"], modes
    for path in ("/srv/pypi/packages/", "/srv/pypi/index/", AUDIT, "/var/log/pypi-appliance/downloads.log"):
        tried = system.sh(f"runuser -u nobody -- cat {path} || runuser -u nobody -- ls {path}", check=False)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, (path, tried.stdout, tried.stderr)


def test_a_local_user_on_the_host_cannot_ask_the_containers(system, installed):
    """The compose network's addresses are reachable from the host: without
    this start's key (root-only) each container's port answers 403, and the
    checker spends no bcrypt on the guess."""
    failures = system.sh(f"grep -c login-failed {AUDIT} || true").stdout.strip()
    basic = "Authorization: Basic " + base64.b64encode(f"{USER}:guess".encode()).decode()
    for name, (method, port, path) in INTERNAL_PORTS.items():
        service = name.strip()
        address = system.sh(
            f"docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' "
            f"pypi-appliance-{service}-1"
        ).stdout.strip()
        asked = system.sh(
            f"runuser -u nobody -- curl -s -X {method} -H '{basic}' -H 'X-Real-IP: 10.9.9.9' "
            f"-w '\\n%{{http_code}}' http://{address}:{port}{path}"
        )
        body, _, code = asked.stdout.rpartition("\n")
        assert code == "403" and "clients use the front door" in body, (name, asked.stdout)
    assert system.sh(f"grep -c login-failed {AUDIT} || true").stdout.strip() == failures
    # The front door holds the key: everything works through it.
    assert system.http("/simple/", user=USER, password=PASSWORD) == 200
    system.report()  # exits 0: every container healthy
