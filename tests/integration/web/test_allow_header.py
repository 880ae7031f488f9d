"""A 405 names in `Allow` every method its path serves (RFC 9110 §15.5.6), also where several routes share a path
(a job: GET and DELETE)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from kilo_bridge.web.routes import api


def allowed(resp_allow: str) -> set[str]:
    return {m.strip() for m in resp_allow.split(",")}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_a_405_on_a_job_lists_get_and_delete(app_client: TestClient, method: str) -> None:
    resp = app_client.request(method, "/api/kilo/job/0123456789abcdef0123456789abcdef")
    assert resp.status_code == 405
    assert {"GET", "DELETE"} <= allowed(resp.headers["allow"])
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_every_path_s_405_lists_all_its_methods(app_client: TestClient) -> None:
    by_path: dict[str, set[str]] = {}
    for endpoint in api.endpoints:
        by_path.setdefault(endpoint.path, set()).add(endpoint.method)
    for path, methods in by_path.items():
        concrete = path.replace("{model_id:path}", "fake/model-a")
        concrete = "/".join("x" if part.startswith("{") else part for part in concrete.split("/"))
        resp = app_client.request("TRACE", concrete)
        assert resp.status_code == 405, (path, resp.status_code)
        assert methods <= allowed(resp.headers["allow"]), (path, resp.headers["allow"])
