"""Adapter routes: mounted from the ``pql.adapters`` entry points of what is installed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.conftest import Lake, Served, serve

PLUGIN = Path(__file__).parent / "plugin"


@pytest.fixture(scope="module")
def with_adapter(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with the test adapter installed (its dist-info on the path)."""
    log = tmp_path_factory.mktemp("adapter") / "serve.log"
    path = os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])
    # Only the test adapter: the real incidents adapter serves the same paths.
    env = {"PYTHONPATH": path, "PQL_ADAPTERS": "test_incidents"}
    for served in serve(lake.path, log, env=env):
        served.tokens = lake.tokens
        yield served


def test_adapter_routes_are_mounted_behind_the_edge(with_adapter: Served, lake: Lake) -> None:
    a = lake.tenants[0]
    with with_adapter.client(lake.tokens["a-admin"]) as client:
        listed = client.get("/api/incidents")
        mine = client.get(f"/api/incidents/inc-{a}-1")
    assert listed.status_code == 200
    assert listed.json() == {"incidents": [{"id": f"inc-{a}-1", "tenant": a}]}
    assert mine.status_code == 200
    assert httpx.get(f"{with_adapter.url}/api/incidents").status_code == 401
    with with_adapter.client(lake.tokens["a"]) as client:  # no incidents:read scope
        assert client.get("/api/incidents").json()["error"]["code"] == "PQL-A102"


def test_wall_adapter_resource_of_another_tenant_looks_absent(
    with_adapter: Served, lake: Lake
) -> None:
    b = lake.tenants[1]
    with with_adapter.client(lake.tokens["a-admin"]) as client:
        theirs = client.get(f"/api/incidents/inc-{b}-1")
        nobody = client.get("/api/incidents/inc-nobody-1")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["error"]["code"] == nobody.json()["error"]["code"]


def test_adapter_statuses_conflict_and_bug(with_adapter: Served, lake: Lake) -> None:
    with with_adapter.client(lake.tokens["a-admin"]) as client:
        conflict = client.post("/api/tenants", json={})
        bug = client.get("/api/boom")
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "PQL-E319")
    assert bug.status_code == 500
    body = bug.json()
    assert body["error"]["code"] == "PQL-X300"
    assert "internal detail" not in bug.text and "Traceback" not in bug.text
    request_id = body["request_id"]
    log = with_adapter.log.read_text()
    assert request_id in log and "internal detail that must not leak" in log


def test_adapter_routes_appear_in_the_served_openapi(with_adapter: Served) -> None:
    paths = httpx.get(f"{with_adapter.url}/openapi.json").json()["paths"]
    assert {"/api/incidents", "/api/incidents/{id}", "/api/tenants", "/api/pql"} <= set(paths)


def test_without_the_adapter_its_routes_do_not_exist(server: Served) -> None:
    with server.client(server.tokens["a-admin"]) as client:
        response = client.get("/api/boom")  # served only by the test adapter
    assert (response.status_code, response.json()["error"]["code"]) == (404, "PQL-E305")
    assert "/api/boom" not in json.dumps(httpx.get(f"{server.url}/openapi.json").json())
