"""The manual (README.md and docs/): the tables the model makes are its copies,
every link between pages resolves, and no command names a version by hand."""

from __future__ import annotations

import re

from builder import services, settings
from builder.cli import TREE

PAGES = [TREE / "README.md", *sorted((TREE / "docs").glob("*.md"))]


def test_the_tables_are_the_models():
    reference = (TREE / "docs/reference.md").read_text()
    assert settings.markdown_table() in reference, "docs/reference.md's settings table differs from builder/settings.py"
    assert services.markdown_table() in reference, "docs/reference.md's services table differs from builder/services.py"


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(TREE)}: {target}")
    assert broken == []


def test_no_version_written_by_hand_in_a_package_name():
    """Commands name the built package with a glob or <version>: the version
    comes from the build (make deb prints it)."""
    found = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if re.search(r"pypi-appliance(-images)?_[0-9]", line):
                found.append(f"{page.relative_to(TREE)}:{n}: {line.strip()}")
    assert found == []


def test_every_page_is_in_the_readme_map():
    readme = (TREE / "README.md").read_text()
    missing = [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme]
    assert missing == []
