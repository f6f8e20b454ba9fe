"""pypi-appliance-build: the thin command line over config -> stage -> deb."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click

from builder import __version__, deb, stage
from builder import config as cfg
from builder import images as imgs
from builder.settings import BY_KEY

# The checkout this module sits in, when run from one; an installed builder
# (the stdeb package) is pointed at a checkout with --tree.
TREE = Path(__file__).resolve().parent.parent


def _tree(ctx, param, value: Path) -> Path:
    missing = [d for d in ("debian", "templates", "src") if not (value / d).is_dir()]
    if missing:
        raise click.BadParameter(
            f"{value} has no {' or '.join(d + '/' for d in missing)}; point --tree at a pypi-appliance checkout",
            ctx=ctx,
            param=param,
        )
    return value.resolve()


def _checked(check):
    """Click callback running one of config's checks, turning ConfigError into a usage error."""

    def callback(ctx, param, value):
        try:
            return check(value)
        except cfg.ConfigError as err:
            raise click.BadParameter(str(err), ctx=ctx, param=param) from None

    return callback


def default_epoch(tree: Path) -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else the newest file: same tree, same .deb."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    proc = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip().isdigit():
        return int(proc.stdout.strip())
    return int(max(p.stat().st_mtime for d in ("debian", "templates") for p in (tree / d).rglob("*")))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--builder-version", prog_name="pypi-appliance-build")
def main() -> None:
    """Build the pypi-appliance Debian package: a private PyPI server in one .deb."""


@main.command()
@click.option(
    "--version",
    "version",
    default=__version__,
    show_default=True,
    callback=_checked(cfg.check_version),
    help="Debian version of the package, e.g. 1.2.3 or 1.2.3~rc1.",
)
@click.option(
    "--port",
    type=int,
    default=int(BY_KEY["PYPI_PORT"].default),
    show_default=True,
    callback=_checked(cfg.check_port),
    help="Default TCP port the index listens on (admins can change it with debconf).",
)
@click.option(
    "--data-dir",
    default=BY_KEY["PYPI_DATA_DIR"].default,
    show_default=True,
    callback=_checked(cfg.check_data_dir),
    help="Absolute path on the host holding packages/ and auth/.",
)
@click.option(
    "--image",
    default=cfg.DEFAULT_IMAGE,
    show_default=True,
    callback=_checked(cfg.check_image),
    help="pypiserver container image, pinned to a release tag or digest (never 'latest').",
)
@click.option(
    "--proxy-image",
    default=cfg.DEFAULT_PROXY_IMAGE,
    show_default=True,
    callback=_checked(cfg.check_image),
    help="nginx container image (with the njs module) for the front door, pinned like --image.",
)
@click.option(
    "--tree",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_tree,
    default=TREE if (TREE / "templates").is_dir() else Path("."),
    show_default="this checkout",
    help="Source tree holding debian/, templates/ and src/.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Where the .deb is written.",
)
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Scratch directory for the staged source tree.",
)
@click.option(
    "--with-images",
    is_flag=True,
    help="Also build pypi-appliance-images_VERSION_ARCH.deb: the images the compose file names, "
    "from this machine's Docker engine, for hosts that reach no registry.",
)
def build(version, port, data_dir, image, proxy_image, tree, output_dir, build_dir, with_images) -> None:
    """Render debian/ and templates/ and build dist/pypi-appliance_VERSION_all.deb."""
    config = cfg.Config(
        version=version,
        port=port,
        data_dir=data_dir,
        image=image,
        proxy_image=proxy_image,
        source_date_epoch=default_epoch(tree),
    )
    staging = stage.stage(config, tree, build_dir.resolve() / f"{config.package}-{config.version}")
    try:
        # Before anything slow: a missing image fails the build at once.
        found = (
            imgs.find(
                imgs.compose_refs((staging / "root/etc" / config.package / "compose.yaml").read_text()), deb.host_arch()
            )
            if with_images
            else None
        )
        paths = deb.build(config, staging, output_dir, found)
    except cfg.ConfigError as err:
        raise click.ClickException(str(err)) from None
    except deb.BuildError as err:
        raise click.ClickException(str(err)) from None
    for path in paths:
        click.echo(f"built {path}")


@main.command()
def defaults() -> None:
    """Print the defaults.json a default build installs: the helper reads it
    (PYPI_APPLIANCE_DEFAULTS=FILE) when run from a checkout."""
    config = cfg.Config(version=__version__)
    click.echo(json.dumps(stage.context(config)["helper_defaults"], indent=2))
