"""The tenancy adapter's routes over a real ``pql serve``: create and migrate, by token only.

The server runs on a lake of its own (the routes change the registry and move files), with
admin tokens for tenants that have data but are not registered yet: a token may be made for a
tenant before it exists, and its first ``POST /api/tenants`` creates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.migrate import KILL_AT
from pql.adapters.tenancy.registry import resolve
from pql.server.tokens import TokenStore
from tests.http.conftest import NOW, Served, make_lake, serve

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "docs" / "api" / "openapi.json").read_text(encoding="utf-8"))
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "api" / "openapi.json"))
EXAMPLES = int(os.environ.get("PQL_FUZZ_EXAMPLES", "12"))
QUERIES = (
    "FIND COUNT(*) AS n, SUM(receipts.cost_usd) AS c GROUP BY receipts.region SINCE 30d",
    "FIND receipts WHERE receipts.status = 'error' SINCE 7d ORDER BY executionId LIMIT 20",
    "FIND COUNT(*) AS n GROUP BY decisions.rule SINCE 30d",
)
# Each test has tenants of its own, so the tests do not depend on their order.
HOMES = {
    "acme": "us-east-1",
    "globex": "eu-west-1",
    "initech": "us-west-2",
    "umbrella": "eu-central-1",
    "hooli": "us-west-2",
    "stark": "us-east-1",
    "wayne": "us-east-1",
}
TARGET = "ap-south-1"
"""A storage region every test tenant allows."""


@dataclass
class Site:
    served: Served
    admin: dict[str, str]
    query: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("tenancy-http")
    data = root / "lake"
    tenants, _ = make_lake(data, 3_000)
    assert set(HOMES) <= set(tenants)
    store = TokenStore.in_data_dir(data)
    admin = {t: store.create(t, ["admin"], f"{t} admin")[1] for t in (*HOMES, "fresh", "bad")}
    query = {t: store.create(t, ["query", "saved", "incidents:read"])[1] for t in HOMES}
    admin["everything"] = store.create("fuzzed", ["query", "saved", "admin", "incidents:read"])[1]
    for served in serve(data, root / "serve.log", env={"PQL_ADAPTERS": "tenancy"}):
        yield Site(served, admin, query)


def _post(site: Site, token: str, path: str, body: Any) -> httpx.Response:
    with site.served.client(token) as client:
        if isinstance(body, bytes):
            return client.post(path, content=body)
        return client.post(path, json=body)


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def _conforms(response: httpx.Response, path: str) -> None:
    """The body matches the document's schema of this operation and status."""
    op = DOCUMENT["paths"][path]["post"]
    declared = op["responses"][str(response.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": DOCUMENT["components"]})


def _create(site: Site, tenant: str, **extra: Any) -> httpx.Response:
    # A generous latency budget: the first query after a migration reloads the tenant's index,
    # which can take longer than the default budget's second on a loaded machine.
    body = {
        "region": HOMES[tenant],
        "allowed_regions": [HOMES[tenant], TARGET],
        "latency_ms": 60_000,
        **extra,
    }
    return _post(site, site.admin[tenant], "/api/tenants", body)


def _migrate(site: Site, tenant: str, body: Any, token: str | None = None) -> httpx.Response:
    return _post(site, token or site.admin[tenant], f"/api/tenants/{tenant}:migrate", body)


def _answers(site: Site, tenant: str) -> list[Any]:
    out = []
    with site.served.client(site.query[tenant]) as client:
        for text in QUERIES:
            response = client.post("/api/pql", json={"query": text, "now": NOW, "cache": False})
            assert response.status_code == 200, response.text
            out.append(response.json()["rows"])
    return out


def _snapshot(data: Path) -> dict[str, str]:
    """Every file of the data directory and its digest (the registry as its rows)."""
    out = {}
    for path in sorted(data.rglob("*")):
        if path.is_file() and "tenants.sqlite" not in path.name:
            out[path.relative_to(data).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    registry = Registry(data).connection()
    for table in ("tenants", "migrations", "migration_files"):
        rows = registry.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        out[f"registry:{table}"] = json.dumps(rows)
    return out


def _pql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pql.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PQL_ADAPTERS": "tenancy", **(env or {})},
    )


# --- create ----------------------------------------------------------------------------------


def test_create_reports_defaults_is_idempotent_and_conflicts(site: Site, tmp_path: Path) -> None:
    first = _post(site, site.admin["fresh"], "/api/tenants", {"region": "eu-west-1"})
    assert first.status_code == 201, first.text
    _conforms(first, "/api/tenants")
    body = first.json()
    expected, defaulted = resolve(TenantSpec("fresh", "eu-west-1"))
    assert body["created"] is True
    assert body["defaulted"] == list(defaulted)
    assert "allowed_regions" in body["defaulted"] and "max_rows" in body["defaulted"]
    assert {k: body["tenant"][k] for k in expected.profile()} == expected.profile()
    # the command line's create gives the same document
    tmp_path.joinpath("d").mkdir()
    cli = _pql("tenants", "create", "fresh", "--region", "eu-west-1", "--data", str(tmp_path / "d"))
    assert cli.returncode == 0, cli.stderr
    cli_json = _pql(
        "tenants",
        "create",
        "fresh",
        "--region",
        "eu-west-1",
        "--format",
        "json",
        "--data",
        str(tmp_path / "d"),
    )
    from_cli = json.loads(cli_json.stdout)
    assert from_cli["defaulted"] == body["defaulted"]
    assert {k: v for k, v in from_cli["tenant"].items() if k not in ("created", "updated")} == {
        k: v for k, v in body["tenant"].items() if k not in ("created", "updated")
    }

    again = _post(site, site.admin["fresh"], "/api/tenants", {"region": "eu-west-1"})
    assert again.status_code == 200
    _conforms(again, "/api/tenants")
    assert again.json()["created"] is False
    assert again.json()["tenant"] == body["tenant"]

    other = _post(site, site.admin["fresh"], "/api/tenants", {"region": "eu-west-1", "max_rows": 5})
    assert other.status_code == 409
    _conforms(other, "/api/tenants")
    error = _error(other)
    assert error["code"] == "PQL-E203"
    assert "max_rows: 10000 vs 5" in error["message"]
    assert error["details"]["existing"]["id"] == "fresh"
    assert Registry(site.served.data).require("fresh").budget.max_rows == 10_000


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"region": "US East"}, "PQL-E204"),
        ({"region": "us-east-1", "allowed_regions": ["eu-west-1"]}, "PQL-E205"),
        ({"region": "us-east-1", "allowed_regions": ["us-east-1", "Mars!"]}, "PQL-E204"),
        ({"region": "us-east-1", "max_rows": -1}, "PQL-E207"),
        ({"region": "us-east-1", "max_window_days": 10**9}, "PQL-E207"),
        ({"region": "us-east-1", "cost_budget": 2**60}, "PQL-E207"),
        ({"region": "us-east-1", "max_rows": "5"}, "PQL-E302"),
        ({"region": "us-east-1", "max_rows": 1.5}, "PQL-E302"),
        ({"region": "us-east-1", "max_rows": True}, "PQL-E302"),
        ({"region": "us-east-1", "trusted_keys": "k1"}, "PQL-E302"),
        ({"region": "us-east-1", "tenant": "acme"}, "PQL-E302"),
        ({"region": "us-east-1", "id": "acme"}, "PQL-E302"),
        ({"allowed_regions": ["us-east-1"]}, "PQL-E303"),
        (b'{"region": "us-east-1", "cost_budget": NaN}', "PQL-E301"),
        (b"[]", "PQL-E301"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(site: Site, body: Any, code: str) -> None:
    response = _post(site, site.admin["bad"], "/api/tenants", body)
    assert response.status_code == 400, response.text
    _conforms(response, "/api/tenants")
    assert _error(response)["code"] == code
    assert Registry(site.served.data).get("bad") is None
    if isinstance(body, dict) and ("tenant" in body or "id" in body):
        assert "bearer token" in _error(response)["hints"][0]


def test_scopes_are_checked_first(site: Site) -> None:
    for path in ("/api/tenants", "/api/tenants/acme:migrate"):
        denied = _post(site, site.query["acme"], path, b"not even json")
        assert (denied.status_code, _error(denied)["code"]) == (403, "PQL-A102")
        anonymous = httpx.post(f"{site.served.url}{path}", json={"region": "us-east-1"})
        assert (anonymous.status_code, _error(anonymous)["code"]) == (401, "PQL-A100")


# --- migrate ---------------------------------------------------------------------------------


def test_dry_run_is_the_cli_plan_and_writes_nothing(site: Site) -> None:
    assert _create(site, "acme").status_code in (200, 201)
    before = _snapshot(site.served.data)
    response = _migrate(site, "acme", {"to": TARGET, "dry_run": True})
    assert response.status_code == 200, response.text
    _conforms(response, "/api/tenants/{id}:migrate")
    assert _snapshot(site.served.data) == before
    plan = response.json()
    cli = _pql(
        "tenants", "migrate", "acme", "--to", TARGET, "--dry-run", "--format", "json",
        "--data", str(site.served.data),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    measured = ("throughput_bytes_s", "expected_s")  # timings of this run
    assert {k: v for k, v in plan.items() if k not in measured} == {
        k: v for k, v in expected.items() if k not in measured
    }
    assert plan["partitions"] and plan["source"] == "us-east-1" and plan["target"] == TARGET
    assert Registry(site.served.data).require("acme").state == "active"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"to": "sa-east-1"}, 422, "PQL-S054"),
        ({"to": "sa-east-1", "dry_run": True}, 422, "PQL-S054"),
        ({"to": "Nowhere"}, 400, "PQL-E204"),
        ({"to": "europe"}, 400, "PQL-E210"),
        ({"to": "us-east-1"}, 409, "PQL-E213"),
        ({}, 400, "PQL-E220"),
        ({"to": TARGET, "rollback": True}, 400, "PQL-E220"),
        ({"rollback": True, "dry_run": True}, 400, "PQL-E220"),
        ({"to": 5}, 400, "PQL-E302"),
        ({"to": TARGET, "dry_run": "yes"}, 400, "PQL-E302"),
        ({"to": TARGET, "operator": "me"}, 400, "PQL-E302"),
        ({"rollback": True}, 409, "PQL-E212"),
    ],
)
def test_migrate_refusals(site: Site, body: dict[str, Any], status: int, code: str) -> None:
    assert _create(site, "stark").status_code in (200, 201)
    before = _snapshot(site.served.data)
    response = _migrate(site, "stark", body)
    assert response.status_code == status, response.text
    _conforms(response, "/api/tenants/{id}:migrate")
    assert _error(response)["code"] == code
    assert _snapshot(site.served.data) == before


def test_unregistered_tenant_cannot_migrate(site: Site) -> None:
    response = _migrate(site, "wayne", {"to": TARGET, "dry_run": True})
    assert (response.status_code, _error(response)["code"]) == (404, "PQL-E202")


def test_run_answers_the_same_then_rolls_back(site: Site) -> None:
    assert _create(site, "initech").status_code in (200, 201)
    before = _answers(site, "initech")
    response = _migrate(site, "initech", {"to": TARGET})
    assert response.status_code == 200, response.text
    _conforms(response, "/api/tenants/{id}:migrate")
    report = response.json()
    assert (report["kind"], report["source"], report["target"]) == ("migrate", "us-west-2", TARGET)
    assert report["unchanged"] is True and report["digest_before"] == report["digest_after"]
    assert report["operator"].startswith("token ")
    for path in report["evidence"]:
        assert not Path(path).is_absolute()
        assert (site.served.data / path).is_file()
    assert str(site.served.data) not in response.text
    assert _answers(site, "initech") == before
    manifest = json.loads((site.served.data / "_pql" / "manifest.json").read_text())
    assert {e["storage"] for e in manifest["files"] if e["tenant"] == "initech"} == {TARGET}
    assert manifest["homes"]["initech"] == TARGET
    assert Registry(site.served.data).require("initech").home_region == TARGET

    again = _migrate(site, "initech", {"to": TARGET})
    assert (again.status_code, _error(again)["code"]) == (409, "PQL-E213")

    back = _migrate(site, "initech", {"rollback": True})
    assert back.status_code == 200, back.text
    _conforms(back, "/api/tenants/{id}:migrate")
    assert (back.json()["kind"], back.json()["target"]) == ("rollback", "us-west-2")
    assert _answers(site, "initech") == before
    assert Registry(site.served.data).require("initech").home_region == "us-west-2"
    twice = _migrate(site, "initech", {"rollback": True})
    assert (twice.status_code, _error(twice)["code"]) == (409, "PQL-E212")


def test_migrating_tenant_is_refused_then_resumed(site: Site) -> None:
    assert _create(
        site, "hooli", allowed_regions=["us-west-2", TARGET, "eu-west-1"]
    ).status_code in (
        200,
        201,
    )
    before = _answers(site, "hooli")
    killed = _pql(
        "tenants", "migrate", "hooli", "--to", TARGET, "--data", str(site.served.data),
        env={KILL_AT: "copied:1"},
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert Registry(site.served.data).require("hooli").state == "migrating"
    for body in ({"to": "eu-west-1"}, {"to": TARGET, "dry_run": True}, {"rollback": True}):
        refused = _migrate(site, "hooli", body)
        assert (refused.status_code, _error(refused)["code"]) == (409, "PQL-E211"), body
        _conforms(refused, "/api/tenants/{id}:migrate")
    assert _answers(site, "hooli") == before  # answered throughout
    resumed = _migrate(site, "hooli", {"to": TARGET})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["resumed"] is True and resumed.json()["unchanged"] is True
    assert _answers(site, "hooli") == before


# --- the tenant wall -------------------------------------------------------------------------


def test_wall_another_tenant_looks_the_same_whether_it_exists_or_not(site: Site) -> None:
    assert _create(site, "umbrella").status_code in (200, 201)
    assert _create(site, "globex").status_code in (200, 201)
    state = Registry(site.served.data).require("umbrella")
    token = site.admin["globex"]
    for body in (
        {"to": TARGET},
        {"to": TARGET, "dry_run": True},
        {"rollback": True},
        {"to": "sa-east-1"},
        b"not json",
    ):
        theirs = _migrate(site, "umbrella", body, token=token)
        nobody = _migrate(site, "no-such-tenant", body, token=token)
        assert theirs.status_code == nobody.status_code == 404
        first, second = _error(theirs), _error(nobody)
        assert first["code"] == second["code"] == "PQL-E202"
        assert first["message"].replace("umbrella", "X") == second["message"].replace(
            "no-such-tenant", "X"
        )
        assert first["hints"] == second["hints"]
        assert "eu-central-1" not in theirs.text and "allowed" not in theirs.text
    assert Registry(site.served.data).require("umbrella") == state
    # the body cannot name another tenant either
    named = _post(site, token, "/api/tenants", {"region": "eu-west-1", "tenant": "umbrella"})
    assert (named.status_code, _error(named)["code"]) == (400, "PQL-E302")


def test_committed_budget_applies_to_queries_at_once(site: Site) -> None:
    created = _post(
        site, site.admin["wayne"], "/api/tenants", {"region": "us-east-1", "max_window_days": 3}
    )
    assert created.status_code == 201, created.text
    with site.served.client(site.query["wayne"]) as client:
        response = client.post("/api/pql", json={"query": QUERIES[0], "now": NOW})
    assert response.status_code == 422
    assert _error(response)["code"].startswith("PQL-S")


# --- fuzzing ---------------------------------------------------------------------------------

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize("who", ["valid", "invalid"])
@SCHEMA.include(path_regex="^/api/tenants").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_tenancy_operations_conform(case: schemathesis.Case[Any], who: str, site: Site) -> None:
    token = site.admin["everything"] if who == "valid" else "pql_000000000000_" + "A" * 43
    case.call_and_validate(
        base_url=site.served.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
