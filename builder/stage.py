"""Render debian/ and templates/ into a staging tree that dpkg-buildpackage can build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import jinja2

from builder.config import (
    AUDIT_LOG,
    BCRYPT_MAX_BYTES,
    PACKAGE,
    SERVER_ID,
    SYSTEM_DIRS,
    USERNAME_PATTERN,
    Config,
)
from builder.images import GAVE_UP_STATUS, IMAGES_DIR, IMAGES_PACKAGE, LIST, LOADED
from builder.services import BY_NAME, FRONT_PORT, MODULES, SERVICES
from builder.settings import (
    ACCESS_MODES,
    COUNTS,
    DURATION_PATTERN,
    SETTINGS,
    SIZE_PATTERN,
    TLS_LISTENERS,
    UPSTREAM_PATTERN,
)

SUFFIX = ".j2"
# The product's Python package, installed as it is (never rendered).
SOURCE = Path("src/pypi_appliance")


def defaults(config: Config) -> dict[str, str]:
    """Each setting's default, with what this build chose for the port and data dir."""
    chosen = {"PYPI_PORT": str(config.port), "PYPI_DATA_DIR": config.data_dir}
    return {s.key: chosen.get(s.key, s.default) for s in SETTINGS}


def context(config: Config) -> dict:
    date = datetime.fromtimestamp(config.source_date_epoch, timezone.utc)
    # The images package: its files, its loader's record, and the start's give-up status.
    images = {
        "package": IMAGES_PACKAGE,
        "dir": IMAGES_DIR,
        "list": f"{IMAGES_DIR}/{LIST}",
        "loader": f"{IMAGES_DIR}/load",
        "loaded": LOADED,
        "gave_up_status": GAVE_UP_STATUS,
    }
    chosen = defaults(config)
    return {
        "defaults": chosen,
        # Each service's settings from the config file, as compose environment
        # (builder/settings.py: env): an empty list of hosts is a value; other
        # settings left empty take their default.
        "settings_env": {
            name: [(x.key, "-" if x.kind == "hosts" else ":-", chosen[x.key]) for x in SETTINGS if name in x.env]
            for name in BY_NAME
        },
        "tls_modes": tuple(TLS_LISTENERS),
        "tls_listeners": TLS_LISTENERS,
        "config": config,
        "changelog_date": format_datetime(date),
        "username_pattern": USERNAME_PATTERN,
        "system_dirs": SYSTEM_DIRS,
        "access_modes": ACCESS_MODES,
        "server_id": SERVER_ID,
        "bcrypt_max_bytes": BCRYPT_MAX_BYTES,
        "audit_log": AUDIT_LOG,
        "upstream_pattern": UPSTREAM_PATTERN,
        "duration_pattern": DURATION_PATTERN,
        "images": images,
        "services": BY_NAME,
        "front_port": FRONT_PORT,
        "service_modules": MODULES,
        # What the admin helper reads at run time (/usr/share/pypi-appliance/defaults.json).
        "helper_defaults": {
            "package": config.package,
            "settings": chosen,
            # What each setting means: the helper's --help and the man page list them.
            "meanings": {s.key: s.meaning for s in SETTINGS},
            "tls_modes": list(TLS_LISTENERS),
            "access_modes": list(ACCESS_MODES),
            "counts": list(COUNTS),
            "username_pattern": USERNAME_PATTERN,
            "server_id": SERVER_ID,
            "bcrypt_max_bytes": BCRYPT_MAX_BYTES,
            "audit_log": AUDIT_LOG,
            # The helper asks them by name and port (status), and refuses a
            # compose file (an admin's copy kept from an older version) that lacks one.
            "services": {s.name: {"port": s.port} for s in SERVICES},
            "upstream_pattern": UPSTREAM_PATTERN,
            "size_pattern": SIZE_PATTERN,
            "version": config.version,
            "images": images,
        },
    }


def environment(src: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(src)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # Shell's ${#var} would open a default "{#" Jinja comment.
        comment_start_string="{##",
        comment_end_string="##}",
    )


def render(config: Config, src: Path, name: str) -> str:
    """One template (or partial) under src, rendered."""
    return environment(src).get_template(name).render(context(config))


def partial(name: str) -> bool:
    return name.startswith("_")


def shipped(path: Path) -> bool:
    return path.is_file() and not partial(path.name) and "__pycache__" not in path.parts


def render_tree(config: Config, src: Path, dest: Path) -> list[Path]:
    """Copy src to dest; files ending in .j2 are rendered and lose the suffix.
    Files starting with "_" are partials, only included by other templates."""
    written = []
    for path in sorted(p for p in src.rglob("*") if shipped(p)):
        rel = path.relative_to(src)
        if path.name.endswith(SUFFIX):
            target = dest / rel.with_name(path.name[: -len(SUFFIX)])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render(config, src, rel.as_posix()))
            shutil.copymode(path, target)
        else:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        written.append(target)
    return written


def stage(config: Config, tree: Path, staging: Path) -> Path:
    """A fresh source tree at staging: debian/ from tree/debian, root/ from
    tree/templates, and, copied as they are, the product's Python package
    (src/, which debian/install puts in /usr/share/PACKAGE) and the manual."""
    if staging.exists():
        shutil.rmtree(staging)
    render_tree(config, tree / "debian", staging / "debian")
    render_tree(config, tree / "templates", staging / "root")
    shutil.copytree(tree / SOURCE, staging / SOURCE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # The manual, installed in /usr/share/doc/PACKAGE (debian/PACKAGE.docs, debian/install).
    shutil.copy2(tree / "README.md", staging / "README.md")
    shutil.copytree(tree / "docs", staging / "docs")
    write_docs(staging)
    return staging


def write_docs(staging: Path) -> None:
    """The man page and the bash completion, from the helper's parser (builder/docs.py)."""
    completion = staging / "root/usr/share/bash-completion/completions" / PACKAGE
    completion.parent.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(staging / SOURCE.parent), str(here)]),
        PYPI_APPLIANCE_DEFAULTS=str(staging / "root/usr/share" / PACKAGE / "defaults.json"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    subprocess.run(
        [sys.executable, "-m", "builder.docs", str(staging / "debian" / f"{PACKAGE}.8"), str(completion)],
        check=True,
        env=env,
    )
