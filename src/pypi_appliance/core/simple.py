"""The simple repository API's pages: PEP 503 HTML and PEP 691 JSON, rendered
from one PEP 691 dict (as warehouse does), with PEP 700's fields, PEP 714's
metadata names, PEP 740's provenance URLs and PEP 792's project status (API
version 1.4). The indexer writes them; the upstream service renders the
upstream's pages through the same code. Standard library only."""

from __future__ import annotations

import html
import json
import os
from urllib.parse import quote

from pypi_appliance.core.names import version_key

API_VERSION = "1.4"


def _file_json(name: str, entry: dict, yanked) -> dict:
    item = {
        "filename": os.path.basename(name),
        "url": f"../../packages/{quote(name)}",
        "hashes": {"sha256": entry["sha256"]},
        "size": entry["size"],
        "upload-time": entry["upload-time"],
        "yanked": yanked,
    }
    if entry.get("requires-python"):
        item["requires-python"] = entry["requires-python"]
    # PEP 714: JSON carries core-metadata only. The old name there crashes
    # pip 22.3-23.1 (Debian 12's 23.0.1 among them: pypa/pip#12042).
    item["core-metadata"] = {"sha256": entry["metadata-sha256"]} if entry.get("metadata-sha256") else False
    if entry.get("provenance"):  # PEP 740: beside the file
        item["provenance"] = item["url"] + ".provenance"
    return item


def project_status(status: dict | None) -> dict:
    """PEP 792's project-status: active unless an admin set another state."""
    status = status or {}
    out = {"status": status.get("status", "active")}
    if status.get("reason"):
        out["reason"] = status["reason"]
    return out


def render_project(project: str, record: dict, status: dict | None = None) -> tuple[bytes, bytes]:
    """A project's page: (PEP 503 HTML, PEP 691 JSON); a quarantined project's lists no files."""
    files = []
    quarantined = (status or {}).get("status") == "quarantined"
    for name in [] if quarantined else sorted(record["files"]):
        entry = record["files"][name]
        reason = record.get("yanked", {}).get(entry["version"])
        files.append(_file_json(name, entry, (reason or True) if reason is not None else False))
    versions = [] if quarantined else sorted({e["version"] for e in record["files"].values()}, key=version_key)
    return render_page(
        {
            "meta": {"api-version": API_VERSION},
            "name": project,
            "versions": versions,
            "files": files,
            "project-status": project_status(status),
        }
    )


def render_page(page: dict) -> tuple[bytes, bytes]:
    """A PEP 691 project page as (PEP 503 HTML, JSON); also the upstream's pages."""
    links = []
    for item in page["files"]:
        href = item["url"]
        if item.get("hashes"):
            algorithm = "sha256" if "sha256" in item["hashes"] else sorted(item["hashes"])[0]
            href += f"#{algorithm}={item['hashes'][algorithm]}"
        attrs = [f'href="{html.escape(href)}"']
        if item.get("requires-python"):
            attrs.append(f'data-requires-python="{html.escape(item["requires-python"])}"')
        meta = item.get("core-metadata", False)
        if meta:  # PEP 714 keeps the old attribute name in HTML, for pips before 23.2
            meta = "true" if meta is True else "".join(f"{k}={v}" for k, v in sorted(meta.items())[:1])
            attrs += [f'data-dist-info-metadata="{html.escape(meta)}"', f'data-core-metadata="{html.escape(meta)}"']
        if item.get("provenance"):
            attrs.append(f'data-provenance="{html.escape(item["provenance"])}"')
        yanked = item.get("yanked", False)
        if yanked is not False:
            attrs.append(f'data-yanked="{html.escape(yanked if yanked is not True else "")}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(item['filename'])}</a><br>\n")
    title = html.escape(f"Links for {page['name']}")
    status = page.get("project-status", {"status": "active"})
    meta = f'<meta name="pypi:project-status" content="{html.escape(status["status"])}">'
    if status.get("reason"):
        meta += f'<meta name="pypi:project-status-reason" content="{html.escape(status["reason"])}">'
    body = (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="{API_VERSION}">{meta}'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n{''.join(links)}</body></html>\n"
    )
    return body.encode(), json.dumps(page, indent=None, separators=(",", ":")).encode() + b"\n"


def render_root(projects: list[str]) -> tuple[bytes, bytes]:
    page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    links = "".join(f'<a href="{quote(p)}/">{html.escape(p)}</a><br>\n' for p in projects)
    body = (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="{API_VERSION}">'
        f"<title>Simple index</title></head>\n<body>\n{links}</body></html>\n"
    )
    return body.encode(), json.dumps(page, separators=(",", ":")).encode() + b"\n"
