"""Accounts in the htpasswd file: bcrypt hashes, replaced atomically."""

from __future__ import annotations

import getpass
import logging
import os
import sys
import tempfile

from pypi_appliance.settings import BCRYPT_MAX_BYTES, PACKAGE, SERVER_GID, USERNAME, Fail, Settings


def htpasswd_path(conf: Settings):
    return os.path.join(conf.data_dir, "auth", "htpasswd")


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


def save_users(conf: Settings, users):
    """Replace the htpasswd file atomically: pypiserver re-reads it on every login."""
    path = htpasswd_path(conf)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise Fail(f"{directory} does not exist; run 'dpkg-reconfigure {PACKAGE}' to create the data dir")
    fd, tmp = tempfile.mkstemp(prefix=".htpasswd.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(users.to_string())
            os.fchmod(f.fileno(), 0o640)
            os.fchown(f.fileno(), 0, SERVER_GID)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def cmd_user_list(args, conf: Settings):
    for name in sorted(load_users(conf).users()):
        print(name)


def cmd_user_add(args, conf: Settings):
    name = check_username(args.name)
    users = load_users(conf)
    if name in users.users():
        raise Fail(f"user {name!r} already exists; use 'user passwd {name}' to change the password")
    users.set_password(name, read_password(args))
    save_users(conf, users)
    print(f"added user {name!r}", file=sys.stderr)


def cmd_user_passwd(args, conf: Settings):
    name = args.name
    users = load_users(conf)
    if name not in users.users():
        raise Fail(f"no user {name!r}; 'user add {name}' creates it")
    users.set_password(name, read_password(args))
    save_users(conf, users)
    print(f"changed the password of {name!r}", file=sys.stderr)


def cmd_user_remove(args, conf: Settings):
    name = args.name
    users = load_users(conf)
    if name not in users.users():
        raise Fail(f"no user {name!r}")
    if users.users() == [name] and conf.access == "private":
        raise Fail(f"{name!r} is the last user and downloads need a password; add another user first")
    users.delete(name)
    save_users(conf, users)
    print(f"removed user {name!r}", file=sys.stderr)
