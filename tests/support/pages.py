"""Reading the index as pip does: pages in either format, and uploads with twine."""

from __future__ import annotations

import json

from tests.support.client import PASSWORD, USER, twine_upload

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def page(appliance, path, accept=None):
    status, body, headers = appliance.fetch_all(
        path, user=USER, password=PASSWORD, headers={"Accept": accept} if accept else {}
    )
    return status, body, {k.lower(): v for k, v in headers.items()}


def project_json(appliance, project):
    status, body, headers = page(appliance, f"/simple/{project}/", PIP_ACCEPT)
    assert status == 200, (status, body)
    assert headers["content-type"] == JSON
    return json.loads(body)


def upload(appliance, wheel):
    result = twine_upload(appliance, wheel, PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
