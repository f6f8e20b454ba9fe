"""Accounts: bcrypt hashes in the htpasswd file and roles beside it, each
replaced atomically; every change takes effect at the front door at once."""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import sys
import time

from pypi_appliance.admin.host import container, run
from pypi_appliance.admin.settings import BCRYPT_MAX_BYTES, CONF, PACKAGE, SERVER_GID, USERNAME, Fail, Settings
from pypi_appliance.core import audit, credentials
from pypi_appliance.core.fsutil import write_atomic
from pypi_appliance.core.roles import READ, ROLES, Grant, format_roles, read_roles

# The front door's compose service.
PROXY = "proxy"


def htpasswd_path(conf: Settings):
    return os.path.join(conf.data_dir, "auth", "htpasswd")


def roles_path(conf: Settings):
    return os.path.join(conf.data_dir, "auth", "roles")


def check_username(name):
    if not USERNAME.fullmatch(name):
        raise Fail(
            f"invalid username {name!r}: use 1-64 letters, digits and ._@+- "
            "starting with a letter or digit (no ':' or spaces)"
        )
    return name


def check_password(password):
    if not password:
        raise Fail("the password is empty")
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise Fail(f"the password is longer than bcrypt's {BCRYPT_MAX_BYTES}-byte limit")
    return password


def read_password(args):
    """From stdin (one line) or an interactive prompt with confirmation; never from argv."""
    if args.password_stdin:
        line = sys.stdin.buffer.readline().decode("utf-8")
        return check_password(line[:-1] if line.endswith("\n") else line)
    password = check_password(getpass.getpass(f"Password for {args.name}: "))
    if getpass.getpass("Repeat the password: ") != password:
        raise Fail("the passwords do not match; nothing was changed")
    return password


def load_users(conf: Settings):
    logging.getLogger("passlib").setLevel(logging.ERROR)  # bcrypt version probe noise
    from passlib.apache import HtpasswdFile

    path = htpasswd_path(conf)
    return HtpasswdFile(path, new=not os.path.exists(path), default_scheme="bcrypt")


def version_path(conf: Settings):
    return os.path.join(conf.data_dir, "auth", "passwords-version.conf")


def new_version(conf: Settings) -> None:
    """A new version of the password file for the front door's credential cache."""
    token = secrets.token_hex(8)
    write_atomic(
        version_path(conf),
        f'map "" $passwords_version {{ default "{token}"; }}\n',
        mode=0o640,
        owner=(0, SERVER_GID),
        durable=True,
    )


def ensure_version(conf: Settings) -> None:
    """The front door includes the file: it must exist before it starts."""
    if not os.path.exists(version_path(conf)) and os.path.isdir(os.path.dirname(version_path(conf))):
        new_version(conf)


def nginx_workers(found: str) -> dict[str, str]:
    """The worker processes of the front door's container found: pid -> title
    ("... is shutting down" once old). Fail when they cannot be listed: its
    cached credentials would stay good (5 minutes)."""
    errors: list[str] = []
    code, out = run(["docker", "top", found, "-eo", "pid,args"], errors)
    if code != 0:
        raise Fail(
            f"the front door ({PROXY}) runs, but its processes could not be listed "
            f"({'; '.join(errors) or f'docker top exited {code}'}); the change is saved, and "
            f"'systemctl restart {PACKAGE}' makes it take effect now (credentials the front door "
            "has checked stay good up to 5 minutes until then)"
        )
    rows = (line.split(None, 1) for line in out.splitlines()[1:])
    return {row[0]: row[1] for row in rows if len(row) == 2 and "worker process" in row[1]}


def reload_front_door() -> None:
    """Reload nginx, and wait until the workers that knew the old passwords
    take no new connection: credentials checked with them stop working now."""
    found = container(PROXY)  # a reload keeps the container: found once
    if found is None:
        return  # not running: it reads the version when it starts
    old = [pid for pid, title in nginx_workers(found).items() if "shutting down" not in title]
    if not old:
        return
    if run(["docker", "kill", "--signal", "HUP", found])[0] != 0:
        raise Fail(
            f"the front door ({PROXY}) did not take the signal to reload; the change is saved, and "
            f"'systemctl restart {PACKAGE}' makes it take effect now"
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = nginx_workers(found)
        if all(pid not in now or "shutting down" in now[pid] for pid in old) and set(now) - set(old):
            return
        time.sleep(0.05)
    print(
        f"{PACKAGE}: the front door did not reload within 10 s; "
        f"'systemctl restart {PACKAGE}' makes the change take effect",
        file=sys.stderr,
    )


def save_users(conf: Settings, users, roles: dict[str, Grant]):
    """Replace the htpasswd and roles files atomically (the credential checker
    and pypiserver read them again when they change), then the front door's
    version of them: credentials it has cached are checked again."""
    directory = os.path.dirname(htpasswd_path(conf))
    if not os.path.isdir(directory):
        raise Fail(f"{directory} does not exist; run 'dpkg-reconfigure {PACKAGE}' to create the data dir")
    names = set(users.users())
    write_atomic(
        roles_path(conf),
        format_roles({n: r for n, r in roles.items() if n in names}),
        mode=0o640,
        owner=(0, SERVER_GID),
        durable=True,
    )
    write_atomic(htpasswd_path(conf), users.to_string(), mode=0o640, owner=(0, SERVER_GID), durable=True)
    new_version(conf)
    reload_front_door()


# Where the postinst put a generated admin password (nobody was asked).
INITIAL = os.path.join(os.path.dirname(CONF), "initial-admin-password")


def forget_initial(conf: Settings, name: str) -> None:
    """The generated password stops being the admin's: its file goes."""
    if name == conf.admin_user and os.path.exists(INITIAL):
        os.unlink(INITIAL)
        print(f"removed {INITIAL}: it no longer holds {name!r}'s password", file=sys.stderr)


def account(users, name):
    if name not in users.users():
        raise Fail(f"no user {name!r}; 'user add {name}' creates it")
    return name


def describe(grant: Grant) -> str:
    """ROLE, and for publish the projects it covers."""
    if grant.role != "publish":
        return grant.role
    return f"{grant.role} {credentials.format_scope(grant.projects) or '(no project)'}"


def scope_option(role: str, projects: str | None) -> tuple[str, ...]:
    if projects is not None and role != "publish":
        raise Fail("--projects limits what may be published: it goes with --role publish")
    try:
        return credentials.parse_scope(projects or "*")
    except ValueError as err:
        raise Fail(f"--projects: {err}") from None


def cmd_user_list(args, conf: Settings):
    roles = read_roles(roles_path(conf))
    for name in sorted(load_users(conf).users()):
        print(name if args.names else f"{name} {describe(roles.get(name, READ))}")


def cmd_user_add(args, conf: Settings):
    name = check_username(args.name)
    users = load_users(conf)
    if name in users.users():
        raise Fail(f"user {name!r} already exists; use 'user passwd {name}' to change the password")
    if args.generate and args.password_stdin:
        raise Fail("--generate and --password-stdin both give the password; choose one")
    if (args.host or args.url) and not args.generate:
        raise Fail("--host and --url name where the printed settings point: they go with --generate")
    if args.generate:
        from pypi_appliance.admin.clients import base_url

        base_url(conf, args.host, args.url)  # a bad --url is refused before the account exists
    projects = scope_option(args.role, args.projects)
    password = secrets.token_urlsafe(30) if args.generate else read_password(args)
    users.set_password(name, password)
    roles = read_roles(roles_path(conf))
    roles[name] = grant = Grant(args.role, projects)
    save_users(conf, users, roles)
    scope = {"projects": credentials.format_scope(projects)} if args.role == "publish" else {}
    audit.record("user-add", by=audit.actor(), account=name, role=args.role, **scope)
    print(f"added user {name!r} ({describe(grant)})", file=sys.stderr)
    if args.generate:
        from pypi_appliance.admin.clients import machine_snippet

        print(machine_snippet(conf, name, password, args.role, args.host, args.url))


def cmd_user_passwd(args, conf: Settings):
    users = load_users(conf)
    name = account(users, args.name)
    users.set_password(name, read_password(args))
    save_users(conf, users, read_roles(roles_path(conf)))
    audit.record("user-passwd", by=audit.actor(), account=name)
    forget_initial(conf, name)
    print(f"changed the password of {name!r}", file=sys.stderr)


def cmd_user_role(args, conf: Settings):
    *names, role = args.names_role
    if not names or role not in ROLES:
        raise Fail(f"'user role {' '.join(args.names_role)}': give NAME... then the role, {' or '.join(ROLES)}")
    users = load_users(conf)
    roles = read_roles(roles_path(conf))
    for name in names:
        roles[account(users, name)] = Grant(role, roles.get(name, READ).projects)
    save_users(conf, users, roles)
    for name in names:
        audit.record("user-role", by=audit.actor(), account=name, role=role)
    print(f"{', '.join(repr(n) for n in names)} may now {role}", file=sys.stderr)


def cmd_user_scope(args, conf: Settings):
    users = load_users(conf)
    name = account(users, args.name)
    try:
        projects = credentials.parse_scope(args.projects)
    except ValueError as err:
        raise Fail(f"'user scope {name} {args.projects}': {err}") from None
    roles = read_roles(roles_path(conf))
    grant = roles.get(name, READ)
    if grant.role != "publish":
        raise Fail(f"{name!r} may only read: a scope limits publishing (user role {name} publish, then the scope)")
    roles[name] = Grant(grant.role, projects)
    save_users(conf, users, roles)
    audit.record("user-scope", by=audit.actor(), account=name, projects=credentials.format_scope(projects))
    print(f"{name!r} may now publish {credentials.format_scope(projects)}", file=sys.stderr)


def cmd_user_remove(args, conf: Settings):
    users = load_users(conf)
    name = account(users, args.name)
    if users.users() == [name] and conf.access == "private":
        raise Fail(f"{name!r} is the last user and downloads need a password; add another user first")
    users.delete(name)
    save_users(conf, users, read_roles(roles_path(conf)))
    audit.record("user-remove", by=audit.actor(), account=name)
    forget_initial(conf, name)
    print(f"removed user {name!r}", file=sys.stderr)
