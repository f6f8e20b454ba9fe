"""The pypi-appliance command: one parser, one function a command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

import pypi_appliance.admin
from pypi_appliance.admin.settings import BUILD, CLIENT_BUNDLE, KEYS, PACKAGE, Fail, NeedsRoot, read_conf
from pypi_appliance.core import credentials
from pypi_appliance.core.policy import STATUSES
from pypi_appliance.core.roles import ROLES

# What argparse does not know: files and exit codes (in --help and the man
# page); the settings and what each means come from the build (builder/settings.py).
SETTINGS_TEXT = "\n".join(
    textwrap.fill(
        f"{key}: {meaning.replace('`', '')}",
        width=78,
        initial_indent="      ",
        subsequent_indent="        ",
        break_on_hyphens=False,
    )
    for key, meaning in BUILD["meanings"].items()
)
EPILOG = f"""\
Every command but status, url and client-config must be run as root; run as
another user, it says so and exits 4.

files:
  /etc/{PACKAGE}/{PACKAGE}.conf
      One KEY=VALUE line per setting; after editing, systemctl restart {PACKAGE}.
{SETTINGS_TEXT}
  /etc/{PACKAGE}/tls/
      The self-signed CA (ca.crt, and ca.key readable by root only) and the
      server certificate and key. Kept across upgrades; removed on purge (back
      it up with "backup --with-ca").
  /etc/{PACKAGE}/initial-admin-password
      The generated admin password, when none was given at install time.
  /usr/share/doc/{PACKAGE}/
      The manual: README.md and docs/.

see also: dpkg-reconfigure(8), debconf-set-selections(1)"""

# Shell functions the generated bash completion calls (see builder/docs.py).
USERS = {"bash": "_pypi_appliance_users"}
FILES = {"bash": "_shtab_compgen_files"}


def command(sub, name, func, summary, description, root=False):
    """One command: summary for the list, description for its --help and the
    man page. func is "MODULE:FUNCTION" in pypi_appliance.admin, imported only
    when the command runs (a command does not pay for the others' imports)."""
    p = sub.add_parser(
        name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(func=func, root=root)
    return p


def parser():
    p = argparse.ArgumentParser(
        prog=PACKAGE,
        description=pypi_appliance.admin.__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = command(
        sub,
        "status",
        "status:cmd_status",
        "service, containers and health",
        """\
Show the version, the service and container state, the health check, the
URLs, the TLS mode and certificate, and the number of packages. Warns when TLS
is off or the certificate expires within 30 days. Exits 0 when the index and
every container answer their health checks (and the upstream, when set,
answers), 3 while the service is starting (the first minute after a start, or
while a container's health check is still starting), 2 when the index serves
its own names but the upstream fails (clients get 502 for the upstream's), 1
when it fails (the index, or a container's health check), and 4 when the
containers could not be listed for lack of permission (run as root or as a
member of the docker group).""",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")

    c = command(
        sub,
        "client-config",
        "clients:cmd_client_config",
        "print the CA, pip.conf, .pypirc and uv settings for clients",
        """\
Print what clients of this host need: the CA certificate and a one-line
command that installs it on Debian and Ubuntu clients (update-ca-certificates),
then pip.conf, ~/.pypirc and uv settings, and how to write a password with
spaces or quotes in ~/.netrc. The URL names this host by its fully qualified
name, else its host name (both are in the self-signed certificate; pip 24.2
and later fail on https://IP-address). With HTTPS off the settings carry
trusted-host and a warning. The password is never printed.""",
    )
    c.add_argument("--user", help="account name to put in the config (default: the admin)")
    c.add_argument(
        "--host",
        metavar="HOST[:PORT]",
        help="the name or address clients use (default: this host's "
        "fully qualified name, else its host name, and the configured port)",
    )
    c.add_argument(
        "--url",
        metavar="URL",
        help="the URL clients use when it is not this host's, such as a reverse proxy's "
        "https://pypi.example.com (default: PYPI_CLIENT_URL, else this host and --host)",
    )
    c.add_argument(
        "--cert",
        default=CLIENT_BUNDLE,
        metavar="PATH",
        help=f"CA file or bundle on the clients, "
        f"named by pip's cert, twine's ca_cert and uv's SSL_CERT_FILE (default: {CLIENT_BUNDLE}, which "
        "trusts this appliance after install-ca); another PATH makes the printed line write the CA there",
    ).complete = FILES

    u = command(
        sub,
        "url",
        "clients:cmd_url",
        "print the index URL for pip",
        "Print the index URL for pip, as client-config names it.",
    )
    u.add_argument("--host", metavar="HOST[:PORT]", help="the name or address clients use (as for client-config)")

    tl = command(
        sub,
        "tls",
        "tls:cmd_tls",
        "show the certificate; issue or renew the self-signed one as needed",
        """\
Show the TLS mode and certificate. In self-signed mode, first make the CA if
there is none, and issue a new server certificate from it when the current
one is missing, expires within 30 days, or does not cover this host's names
and addresses (and PYPI_TLS_NAMES) that the CA may sign for. The CA may sign
only for the names the host had when it was made, its addresses and the
local networks (name constraints), so its key is no key to other sites.
The service runs this on every start.""",
        root=True,
    )
    tl.add_argument(
        "--new-ca",
        action="store_true",
        help="make a new CA for this host's names now (after a rename); every client must trust it again",
    )

    lg = command(
        sub,
        "logs",
        "compose:cmd_logs",
        "the servers' logs as text",
        "Show the containers' logs as plain text.",
        root=True,
    )
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("-n", "--lines", type=int, default=100, metavar="N", help="lines to show (default 100)")

    b = command(
        sub,
        "backup",
        "backup:cmd_backup",
        "archive packages, passwords and config with a checksum manifest",
        """\
Write a tar.gz holding the packages, the password file and the configuration,
with a SHA-256 manifest. A file still being uploaded is left out, so the
archive is always consistent. The archive is written under a temporary name
and renamed when complete; it is readable by root only.""",
        root=True,
    )
    b.add_argument("file", nargs="?", help=f"archive to write (default {PACKAGE}-backup-DATE.tar.gz)").complete = FILES
    b.add_argument(
        "--with-ca",
        action="store_true",
        help="also the self-signed CA and its key, so a rebuilt host keeps its clients' trust",
    )

    r = command(
        sub,
        "restore",
        "backup:cmd_restore",
        "replace packages and passwords (and the CA) with a backup's",
        """\
Check the archive against its manifest first and refuse a missing, corrupt or
truncated one without touching anything. Then name what would be lost
(package files added since the backup or different from it, the password
file, a different CA) and ask. What it replaces is kept in
DATA_DIR/before-restore-DATE.tar.gz (root only). It stops the service, swaps
in the restored packages and password file by renaming (and the CA, when the
archive holds one), and starts it again.""",
        root=True,
    )
    r.add_argument("file", help="archive written by 'backup'").complete = FILES
    r.add_argument("-y", "--yes", action="store_true", help="do not ask (required when not on a terminal)")

    y = command(
        sub,
        "yank",
        "releases:cmd_yank",
        "mark a release yanked (PEP 592): pip skips it unless pinned exactly",
        """\
Mark every file of PROJECT==VERSION yanked in the index (data-yanked in the
HTML pages, "yanked" in the JSON ones, PEP 592): pip and uv then skip the
release unless it is pinned with ==. The files stay. Takes effect at once;
logged to the journal; kept in backups.""",
        root=True,
    )
    y.add_argument("release", metavar="PROJECT==VERSION")
    y.add_argument("--reason", metavar="TEXT", help="why, shown to pip's users")
    uy = command(
        sub, "unyank", "releases:cmd_unyank", "undo a yank", "List PROJECT==VERSION as installable again.", root=True
    )
    uy.add_argument("release", metavar="PROJECT==VERSION")
    rv = command(
        sub,
        "remove",
        "releases:cmd_remove",
        "delete a release's files, or a file the index refused",
        """\
Delete every file of PROJECT==VERSION from the packages dir and the index,
or one FILE in the packages dir that the index does not list ('status' names
them, with the reason). It names the files and asks on a terminal; without
one it needs --yes. A deleted release cannot come back under the same file
names with other contents (pip's caches may hold the old ones), and the name
stays this index's: the upstream does not answer for it until
'release-name'. Logged to the journal and the audit log.""",
        root=True,
    )
    rv.add_argument("release", metavar="PROJECT==VERSION|FILE")
    rv.add_argument("-y", "--yes", action="store_true", help="do not ask (required when not on a terminal)")
    rn = command(
        sub,
        "release-name",
        "releases:cmd_release_name",
        "let the upstream answer for a name this index no longer has files of",
        """\
A name is this index's from its first upload, whatever happens to its files:
with none left, pip finds no versions of it here rather than the upstream's
(dependency confusion). This gives a name with no files back to the upstream
(PYPI_UPSTREAM). An upload under it holds it again. Asks on a terminal;
without one it needs --yes. Logged to the audit log.""",
        root=True,
    )
    rn.add_argument("name", metavar="NAME")
    rn.add_argument("-y", "--yes", action="store_true", help="do not ask (required when not on a terminal)")
    ps = command(
        sub,
        "project-status",
        "releases:cmd_project_status",
        "set a project's state (PEP 792): active, archived, deprecated, quarantined",
        """\
Set the state of a project, held here or taken from the upstream, as PEP 792
defines it; its pages say it (project-status in JSON, a meta tag in HTML).
archived: its files are offered, every upload of it is refused (a name not
held yet is reserved: nobody can publish it). quarantined: its pages list no
files, its files answer 410 with the reason (cached upstream files too), and
every upload is refused. deprecated: as active, marked. active: as usual.
Takes effect at once; in the audit log with the reason. Without STATE, show
the project's state; without NAME, every state set.""",
        root=True,
    )
    ps.add_argument("name", nargs="?", metavar="NAME")
    ps.add_argument("state", nargs="?", choices=STATUSES, metavar="STATE")
    ps.add_argument("--reason", metavar="TEXT", help="why: shown on its pages and kept in the audit log")
    command(
        sub,
        "reindex",
        "releases:cmd_reindex",
        "rebuild the index from the packages dir",
        """\
Read every file in the packages dir again (check it is whole, hash it, take
its metadata) and rewrite every page, keeping upload times and yanks. The
indexer follows the packages dir by itself; this is for doubt. Exits 1 when
some file is not listed (it says which and why).""",
        root=True,
    )

    command(
        sub,
        "up",
        "compose:cmd_up",
        "run the containers in the foreground (what the service runs)",
        f"Run the containers in the foreground, with their output as plain text: what {PACKAGE}.service runs.",
        root=True,
    )
    command(
        sub,
        "down",
        "compose:cmd_down",
        "stop and remove the containers (what the service's stop runs)",
        f"Stop and remove the containers: what stopping {PACKAGE}.service runs.",
        root=True,
    )

    w = command(
        sub,
        "write-config",
        "settings:cmd_write_config",
        "set KEY=VALUE lines in the config file (the postinst does)",
        f"Set settings in /etc/{PACKAGE}/{PACKAGE}.conf, keeping every other line and comment. It does "
        f"not restart the service: they take effect at 'systemctl restart {PACKAGE}'. "
        f"dpkg-reconfigure {PACKAGE} is the usual way to change them (and restarts it).",
        root=True,
    )
    w.add_argument("settings", nargs="+", metavar="KEY=VALUE", help=f"one of {', '.join(KEYS)}")

    au = command(
        sub,
        "audit",
        "compose:cmd_audit",
        "show the audit log",
        """\
Show the audit log: one line per upload, yank, unyank, removal, account and
role change, setting change (the keys, not their values), cache clear, restore,
upstream rule (with its reason), failed login, throttle and slowed address,
with the time (UTC), the account, the client's address and the file. fail2ban
can act on its login-failed lines (see
/etc/fail2ban/jail.d/pypi-appliance.conf). "audit note TEXT" adds a line of
your own, with who wrote it.""",
        root=True,
    )
    au.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    au.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="lines to show (default 20)")
    au.add_argument(
        "action", nargs="?", choices=["note"], help="note TEXT: add a line of your own (an incident, a decision)"
    )
    au.add_argument("text", nargs="*", help="with note: its text")

    dl = command(
        sub,
        "downloads",
        "downloads:cmd_downloads",
        "who downloaded a project or release, or what an account downloaded",
        """\
Answer "who got it": every download of NAME (or of NAME==VERSION), from this
index or from the upstream, cached or not, with the time (UTC), the account,
the client's address and the file; or with --account, everything that
account downloaded. Read from /var/log/pypi-appliance/downloads.log and its
rotations (a year, compressed), which 'cache clear' does not touch.""",
        root=True,
    )
    dl.add_argument("release", nargs="?", metavar="NAME[==VERSION]")
    dl.add_argument("--account", metavar="NAME", help="what this account downloaded")
    dl.add_argument("--since", metavar="DATE", help="only from this ISO date or time on (such as 2026-12-01)")

    upstream = command(
        sub,
        "upstream",
        None,
        "what the upstream may offer: cooldown, allow and deny rules, held releases",
        """\
What names this index does not hold may take from the upstream
(PYPI_UPSTREAM). The cooldown (PYPI_UPSTREAM_MIN_AGE) offers a file only once
the upstream's own upload time is that old, PYPI_UPSTREAM_NOT_AFTER nothing
uploaded after a date, and with PYPI_UPSTREAM_ONLY_LISTED=yes only names on
the allow-list come from it; files without an upload time are not offered
while a cooldown or a date is on. Rules take effect at once, for pages and
files already cached too, and each change goes to the audit log with its
reason. A deny wins over an allow.""",
    )
    usub_ = upstream.add_subparsers(dest="upstream_command", metavar="ACTION", required=True)
    command(
        usub_,
        "rules",
        "upstream:cmd_upstream",
        "list the settings and rules",
        "List the cooldown, the date, the allow-list mode, and every allow and deny rule with who set it, "
        "when and why.",
        root=True,
    )
    ua = command(
        usub_,
        "allow",
        "upstream:cmd_upstream",
        "offer a release despite the cooldown, or put names on the allow-list",
        """\
NAME==VERSION: offer that release now, whatever the cooldown or
PYPI_UPSTREAM_NOT_AFTER (a security fix needed today); it needs --reason, and
the upstream must list the release. NAME or a glob (team-*): put it on the
allow-list that PYPI_UPSTREAM_ONLY_LISTED=yes uses.""",
        root=True,
    )
    ua.add_argument("target", metavar="NAME[==VERSION]|GLOB")
    ud = command(
        usub_,
        "deny",
        "upstream:cmd_upstream",
        "never take a name, a glob of names or one release from the upstream",
        """\
NAME or a glob of normalized names (*-nightly, leftpadx): the upstream does
not answer for it (404 with the reason), nothing of it is fetched, and files
of it already cached are refused too. NAME==VERSION: that release only; the
others stay.""",
        root=True,
    )
    ud.add_argument("target", metavar="NAME[==VERSION]|GLOB")
    for parser_ in (ua, ud):
        parser_.add_argument("--reason", metavar="TEXT", help="why: kept with the rule and in the audit log")
        parser_.add_argument("--remove", action="store_true", help="remove this rule instead")
    uh = command(
        usub_,
        "held",
        "upstream:cmd_upstream",
        "what the upstream lists of a name and is not offered, and until when",
        "Ask the upstream for NAME and list its releases that are not offered now: held by the cooldown (until "
        "when), uploaded after PYPI_UPSTREAM_NOT_AFTER, without an upload time, or denied.",
        root=True,
    )
    uh.add_argument("name", metavar="NAME")

    ca = command(
        sub,
        "cache",
        "cache:cmd_cache",
        "show or clear the upstream's cache",
        """\
Show the upstream's cache (PYPI_UPSTREAM): its size against
PYPI_UPSTREAM_CACHE_MAX, the files and pages kept, and the share of file
downloads served from it. "cache files [NAME]" lists the files it holds.
"cache clear" empties it without a restart: each page and file is fetched
again when next asked for; the log of what was fetched keeps its lines, and
the clear is in the audit log. Names this index holds are never in it.""",
        root=True,
    )
    ca.add_argument(
        "action", nargs="?", choices=["clear", "files"], help="clear: empty the cache; files: list the files it holds"
    )
    ca.add_argument("name", nargs="?", help="with files: that project's only")

    accounts = command(
        sub,
        "user",
        None,
        "manage accounts and their roles",
        f"""\
Manage accounts. Each is {ROLES[0]} (list and download) or {ROLES[1]} (also
upload). Yanking and removing are root's, on this host. Passwords are read from a prompt (asked twice) or,
with --password-stdin, from the first line of standard input; never from the
command line. Changes take effect at once, without a restart, also for
credentials the front door has already checked.""",
    )
    usub = accounts.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    ls = command(
        usub, "list", "users:cmd_user_list", "list accounts and their roles", "List the accounts: NAME ROLE.", root=True
    )
    ls.add_argument("--names", action="store_true", help="names only")
    a = command(usub, "add", "users:cmd_user_add", "add an account", "Add an account.", root=True)
    a.add_argument("name")
    a.add_argument("--role", choices=ROLES, default=ROLES[0], help=f"what it may do (default {ROLES[0]})")
    a.add_argument(
        "--projects",
        metavar="PATTERNS",
        help="with --role publish: the projects it may upload, names or globs, comma-separated, such as "
        "'team-a-*,shared-utils' (default: every project); a new name too must be covered",
    )
    a.add_argument(
        "--generate",
        action="store_true",
        help="make a long random password, print it once with the shell lines that set up pip, uv and "
        "twine with it on a machine (the CA included)",
    )
    a.add_argument(
        "--host",
        metavar="HOST[:PORT]",
        help="with --generate: the name or address the machine uses (as for client-config)",
    )
    a.add_argument("--url", metavar="URL", help="with --generate: the URL the machine uses (as for client-config)")
    p_ = command(
        usub,
        "passwd",
        "users:cmd_user_passwd",
        "change an account's password",
        "Change an account's password.",
        root=True,
    )
    p_.add_argument("name").complete = USERS
    for parser_ in (a, p_):
        parser_.add_argument(
            "--password-stdin", action="store_true", help="read the password from the first line of standard input"
        )
    ro = command(
        usub,
        "role",
        "users:cmd_user_role",
        "set accounts' role",
        f"Set the role of one or more accounts: {ROLES[0]} or {ROLES[1]}. Takes effect at once.",
        root=True,
    )
    ro.add_argument("names_role", nargs="+", metavar="NAME... ROLE").complete = USERS
    sc = command(
        usub,
        "scope",
        "users:cmd_user_scope",
        "set the projects a publish account may upload",
        """\
Set the projects a publish account may upload: names or globs, comma-separated
(team-a-*,shared-utils), or * for every project. An upload of another project,
a new name included, is refused with 403 naming the account's scope. Takes
effect at once.""",
        root=True,
    )
    sc.add_argument("name").complete = USERS
    sc.add_argument("projects", metavar="PATTERNS")
    rm = command(usub, "remove", "users:cmd_user_remove", "remove an account", "Remove an account.", root=True)
    rm.add_argument("name").complete = USERS

    tokens = command(
        sub,
        "token",
        None,
        "tokens for CI that expire: create, list, revoke",
        f"""\
Tokens: long random passwords of the user {credentials.TOKEN_USER} (as on PyPI), made for a
CI job or a machine, each with a role, for publish the projects it may upload,
and an expiry. A token is printed once and kept only as a keyed hash; checking
one costs no bcrypt. An expired or revoked token is refused at once, also where
the front door had cached it.""",
    )
    tsub = tokens.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tc = command(
        tsub,
        "create",
        "tokens:cmd_token_create",
        "make a token and print it once",
        "Make a token and print it once, on standard output.",
        root=True,
    )
    tc.add_argument("--role", choices=ROLES, default=ROLES[0], help=f"what it may do (default {ROLES[0]})")
    tc.add_argument(
        "--projects",
        metavar="PATTERNS",
        help="with --role publish: the projects it may upload (default: every project)",
    )
    tc.add_argument(
        "--expires",
        default="90d",
        metavar="DURATION",
        help="how long it works, such as 90d, 12h, 2w (default 90d; at most 366d)",
    )
    tc.add_argument("--name", help="what list, revoke and the audit log call it (default: token-XXXXXX)")
    command(
        tsub,
        "list",
        "tokens:cmd_token_list",
        "list tokens",
        "List the tokens, those minted for trusted publishers too: name, role, projects, created, expires, "
        "last used (to within 5 minutes), state, and who made it. Never the token.",
        root=True,
    )
    tr = command(
        tsub,
        "revoke",
        "tokens:cmd_token_revoke",
        "revoke tokens",
        "Revoke tokens by name; they stop working at once.",
        root=True,
    )
    tr.add_argument("names", nargs="+", metavar="NAME")

    trusts = command(
        sub,
        "trust",
        None,
        "trusted publishing: CI identities that may publish without a stored secret",
        """\
Trusted publishing (OIDC): a CI job trades the ID token its CI signs for it
(GitLab CI id_tokens:, GitHub Actions id-token: write) for a publish token of
15 minutes, limited to the projects its trust names. The index answers PEP 807's
discovery (/.well-known/pytp/) and PyPI's exchange routes (/_/oidc/audience,
/_/oidc/mint-token). Every exchange, minted or refused, is in the audit log.""",
    )
    rsub = trusts.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    ta = command(
        rsub,
        "add",
        "trust:cmd_trust_add",
        "register a CI identity",
        """\
Register a CI identity: ID tokens from --issuer whose claims match --claims
(NAME=VALUE, comma-separated; a VALUE may be a glob; true and false as JSON
spells them) may be traded for a publish token of --projects. The issuer's
OpenID configuration is fetched now, over HTTPS, to check it answers.""",
        root=True,
    )
    ta.add_argument(
        "--issuer",
        required=True,
        metavar="URL",
        help="the OIDC issuer: https://gitlab.example.com, https://token.actions.githubusercontent.com",
    )
    ta.add_argument(
        "--claims",
        required=True,
        metavar="NAME=VALUE,...",
        help="the claims that name the CI job, such as project_path=group/repo,ref_protected=true",
    )
    ta.add_argument(
        "--projects",
        required=True,
        metavar="PATTERNS",
        help="the projects its tokens may upload: names or globs, comma-separated",
    )
    ta.add_argument(
        "--audience", help="the aud the ID token must carry (default: this index's URL, which /_/oidc/audience answers)"
    )
    ta.add_argument("--lifetime", metavar="DURATION", help="how long a minted token works, 15m to 6h (default 15m)")
    ta.add_argument("--name", help="what list, remove and the audit log call it (default: ci-XXXXXX)")
    ta.add_argument("--no-check", action="store_true", help="add it without fetching the issuer's configuration now")
    command(rsub, "list", "trust:cmd_trust_list", "list trusted publishers", "List the trusted publishers.", root=True)
    tm = command(
        rsub,
        "remove",
        "trust:cmd_trust_remove",
        "remove a trusted publisher",
        "Remove a trusted publisher; the tokens it minted stop working at once.",
        root=True,
    )
    tm.add_argument("name")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    name = " ".join(
        filter(
            None,
            (
                args.command,
                *(getattr(args, f"{group}_command", None) for group in ("user", "upstream", "token", "trust")),
            ),
        )
    )
    try:
        if getattr(args, "root", False) and os.geteuid() != 0:
            raise NeedsRoot(f"'{name}' must be run as root: sudo {PACKAGE} {name}")
        module, _, function = args.func.partition(":")
        run = getattr(importlib.import_module(f"pypi_appliance.admin.{module}"), function)
        return run(args, read_conf()) or 0
    except NeedsRoot as err:
        print(f"{PACKAGE}: {err}", file=sys.stderr)
        return 4
    except Fail as err:
        print(f"{PACKAGE}: {err}", file=sys.stderr)
        return 1
    except PermissionError as err:
        print(f"{PACKAGE}: {err.filename}: permission denied; run as root: sudo {PACKAGE} {name}", file=sys.stderr)
        return 4
    except EOFError:
        print(f"{PACKAGE}: no answer given (end of input); nothing was changed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
