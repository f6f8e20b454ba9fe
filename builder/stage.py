"""Render debian/ and templates/ into a staging tree that dpkg-buildpackage can build."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import jinja2

from builder.config import SYSTEM_DIRS, USERNAME_PATTERN, Config

SUFFIX = ".j2"


def context(config: Config) -> dict:
    date = datetime.fromtimestamp(config.source_date_epoch, timezone.utc)
    return {
        "config": config,
        "changelog_date": format_datetime(date),
        "username_pattern": USERNAME_PATTERN,
        "system_dirs": SYSTEM_DIRS,
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


def render_tree(config: Config, src: Path, dest: Path) -> list[Path]:
    """Copy src to dest; files ending in .j2 are rendered and lose the suffix.
    Files starting with "_" are partials, only included by other templates."""
    written = []
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("_")):
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
    """A fresh source tree at staging: debian/ from tree/debian, root/ from tree/templates."""
    if staging.exists():
        shutil.rmtree(staging)
    render_tree(config, tree / "debian", staging / "debian")
    render_tree(config, tree / "templates", staging / "root")
    return staging
