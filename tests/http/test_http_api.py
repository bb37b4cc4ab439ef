"""``pql serve`` over real HTTP: answers, errors and statuses, tokens, the tenant wall, the log."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from pql.server import spec
from pql.server.app import openapi_committed
from pql.server.tokens import TokenStore
from tests.http.conftest import NOW, Lake, Served

ROOT = Path(__file__).resolve().parents[2]
COUNT = "FIND COUNT(receipts.executionId) AS n SINCE 30d"


def _query(server: Served, token: str, body: Mapping[str, object]) -> httpx.Response:
    with server.client(token) as client:
        return client.post("/api/pql", json=body)


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body["error"])


# --- answers ---------------------------------------------------------------------------------


def test_query_answers_as_the_engine_does_for_the_tokens_tenant(server: Served, lake: Lake) -> None:
    text = "FIND COUNT(*) AS n, AVG(receipts.latency_ms) AS ms GROUP BY receipts.region SINCE 30d"
    response = _query(server, server.tokens["a"], {"query": text, "now": NOW})
    assert response.status_code == 200
    body = response.json()
    expected = json.loads(lake.engine.query(text, tenant=lake.tenants[0], now=NOW).to_json())
    assert body["columns"] == expected["columns"] == ["region", "n", "ms"]
    assert body["rows"] == expected["rows"]
    assert body["stats"]["tenant"] == lake.tenants[0]


def test_params_and_csv(server: Served, lake: Lake) -> None:
    text = "FIND receipts WHERE receipts.status = $s AND latency_ms > $ms SINCE 7d LIMIT 5"
    body = {"query": text, "now": NOW, "params": {"s": "error", "ms": 10}, "format": "csv"}
    response = _query(server, server.tokens["a"], body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    expected = lake.engine.query(
        text, tenant=lake.tenants[0], now=NOW, params={"s": "error", "ms": 10}
    )
    assert len(lines) == 1 + expected.df.height
    assert lines[0].split(",")[0] == expected.columns[0]


def test_explain(server: Served, lake: Lake) -> None:
    with server.client(server.tokens["a"]) as client:
        response = client.post("/api/explain", json={"query": COUNT, "now": NOW})
    assert response.status_code == 200, response.text
    assert f"tenant: {lake.tenants[0]}" in response.json()["text"]
    assert "plan" in response.json()


def test_saved_query_runs_with_typed_params(server: Served, lake: Lake) -> None:
    with server.client(server.tokens["a"]) as client:
        names = client.get("/api/saved").json()["names"]
        response = client.post(
            "/api/saved/errors:run", json={"params": {"status": "error"}, "now": NOW}
        )
        wrong = client.post("/api/saved/errors:run", json={"params": {"status": 5}, "now": NOW})
        missing = client.post("/api/saved/errors:run", json={"now": NOW})
    assert names == ["errors"]
    assert response.status_code == 200, response.text
    expected = lake.engine.query(
        'FIND COUNT(*) AS n WHERE receipts.status = "error" SINCE 30d',
        tenant=lake.tenants[0],
        now=NOW,
    )
    assert response.json()["rows"] == [[expected.df.item()]]
    assert (wrong.status_code, _error(wrong)["code"]) == (400, "PQL-A007")
    assert (missing.status_code, _error(missing)["code"]) == (400, "PQL-A008")


def test_saved_query_without_trusted_keys_is_forbidden(lake: Lake, tmp_path: Path) -> None:
    from tests.http.conftest import serve

    for served in serve(lake.path, tmp_path / "log"):  # no --keys: nothing is trusted
        with served.client(lake.tokens["a"]) as client:
            response = client.post("/api/saved/errors:run", json={"params": {"status": "ok"}})
        assert (response.status_code, _error(response)["code"]) == (403, "PQL-A002")


# --- errors ----------------------------------------------------------------------------------


def test_invalid_query_is_400_with_span_and_hints(server: Served) -> None:
    response = _query(server, server.tokens["a"], {"query": "FIND receipts WHER x", "now": NOW})
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "PQL-E001"
    assert (error["line"], error["column"], error["token"]) == (1, 15, "WHER")
    assert "did you mean WHERE?" in error["hints"]  # type: ignore[operator]


def test_safety_refusal_is_422(server: Served) -> None:
    response = _query(server, server.tokens["a"], {"query": "FIND receipts SINCE 365d"})
    assert response.status_code == 422
    assert _error(response)["code"] == "PQL-S001"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "PQL-E301"),
        (b"[1, 2]", "PQL-E301"),
        (b'{"query": 5}', "PQL-E302"),
        (b'{"query": "FIND receipts", "tenant": "other"}', "PQL-E302"),
        (b'{"query": "FIND receipts", "format": "xml"}', "PQL-E302"),
        (b'{"now": "2026-01-01T00:00:00Z"}', "PQL-E303"),
        (b'{"query": "FIND receipts", "now": "yesterday"}', "PQL-E031"),
    ],
)
def test_bad_bodies_are_400(server: Served, body: bytes, code: str) -> None:
    with server.client(server.tokens["a"]) as client:
        response = client.post("/api/pql", content=body)
    assert response.status_code == 400
    assert _error(response)["code"] == code


def test_tenant_in_the_body_is_refused_with_a_hint(server: Served) -> None:
    body = {"query": COUNT, "tenant": "someone-else"}
    error = _error(_query(server, server.tokens["a"], body))
    assert "bearer token" in error["hints"][0]  # type: ignore[index]


def test_body_too_large_is_413_declared_or_streamed(server: Served) -> None:
    big = json.dumps({"query": "FIND receipts", "params": {"x": "y" * 70_000}}).encode()
    with server.client(server.tokens["a"]) as client:
        declared = client.post("/api/pql", content=big)
        streamed = client.post("/api/pql", content=iter([big[:40_000], big[40_000:]]))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert _error(response)["code"] == "PQL-E304"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "PQL-A100"),
        ({"Authorization": "Basic abc"}, "PQL-A100"),
        ({"Authorization": "Bearer pql_000000000000_" + "x" * 43}, "PQL-A101"),
        ({"Authorization": "Bearer nonsense"}, "PQL-A101"),
    ],
)
def test_missing_or_invalid_token_is_401(
    server: Served, headers: dict[str, str], code: str
) -> None:
    with httpx.Client(base_url=server.url, headers=headers) as client:
        for response in (
            client.post("/api/pql", json={"query": COUNT}),
            client.get("/api/saved"),
            client.get("/api/no-such-route"),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert _error(response)["code"] == code


def test_scope_is_checked_before_anything_else(server: Served) -> None:
    with server.client(server.tokens["a-saved"]) as client:
        query = client.post("/api/pql", json={"query": COUNT})
        explain = client.post("/api/explain", content=b"not even json")
        saved = client.get("/api/saved")
    assert (query.status_code, _error(query)["code"]) == (403, "PQL-A102")
    assert (explain.status_code, _error(explain)["code"]) == (403, "PQL-A102")
    assert saved.status_code == 200
    with server.client(server.tokens["a-admin"]) as client:
        response = client.get("/api/saved")
    assert (response.status_code, _error(response)["code"]) == (403, "PQL-A102")


def test_unknown_route_and_wrong_method(server: Served) -> None:
    with server.client(server.tokens["a"]) as client:
        missing = client.get("/api/no-such-route")
        method = client.get("/api/pql")
    assert (missing.status_code, _error(missing)["code"]) == (404, "PQL-E305")
    assert (method.status_code, _error(method)["code"]) == (405, "PQL-E306")
    assert method.headers["allow"] == "POST"


def test_revoked_token_is_refused_at_once(server: Served, lake: Lake) -> None:
    store = TokenStore.in_data_dir(lake.path)
    record, token = store.create(lake.tenants[0], ["query"], "short-lived")
    assert _query(server, token, {"query": COUNT, "now": NOW}).status_code == 200
    out = subprocess.run(
        [sys.executable, "-m", "pql.cli", "tokens", "revoke", "--data", str(lake.path), record.id],
        capture_output=True,
        text=True,
        check=True,
    )
    assert record.id in out.stdout
    response = _query(server, token, {"query": COUNT, "now": NOW})
    assert (response.status_code, _error(response)["code"]) == (401, "PQL-A101")


# --- the tenant wall -------------------------------------------------------------------------


def test_wall_query_cannot_reach_another_tenant(server: Served, lake: Lake) -> None:
    a, b = lake.tenants[:2]
    mine = _query(server, server.tokens["a"], {"query": COUNT, "now": NOW}).json()
    assert mine["rows"] == [[lake.engine.query(COUNT, tenant=a, now=NOW).df.item()]]
    other = f'FIND COUNT(receipts.executionId) AS n WHERE receipts.tenant = "{b}" SINCE 30d'
    assert _query(server, server.tokens["a"], {"query": other, "now": NOW}).json()["rows"] == [[0]]
    rows = f'FIND receipts WHERE tenant = "{b}" SINCE 180d'
    assert _query(server, server.tokens["a"], {"query": rows, "now": NOW}).json()["rows"] == []


def test_wall_explain_names_only_the_tokens_tenant(server: Served, lake: Lake) -> None:
    a, b = lake.tenants[:2]
    with server.client(server.tokens["a"]) as client:
        text = client.post("/api/explain", json={"query": COUNT, "now": NOW}).text
    assert a in text
    assert b not in text


def test_wall_saved_queries_of_another_tenant_look_absent(server: Served, lake: Lake) -> None:
    with server.client(server.tokens["a"]) as client:
        names = client.get("/api/saved").json()["names"]
        theirs = client.post("/api/saved/b-only:run", json={"params": {"status": "ok"}})
        nobody = client.post("/api/saved/zz-none:run", json={"params": {"status": "ok"}})
    assert "b-only" not in names
    assert theirs.status_code == nobody.status_code == 404
    first, second = _error(theirs), _error(nobody)
    assert first["code"] == second["code"] == "PQL-A011"
    assert str(first["message"]).replace("b-only", "X") == str(second["message"]).replace(
        "zz-none", "X"
    )
    assert lake.tenants[1] not in theirs.text
    with server.client(server.tokens["b"]) as client:  # it does exist, for its own tenant
        assert (
            client.post("/api/saved/b-only:run", json={"params": {"status": "ok"}}).status_code
            == 200
        )


def test_wall_open_routes_reveal_no_tenant(server: Served, lake: Lake) -> None:
    _query(server, server.tokens["b"], {"query": COUNT, "now": NOW})
    with httpx.Client(base_url=server.url) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 200
            for tenant in lake.tenants:
                assert f'"{tenant}"' not in response.text
                assert f"tenant={tenant}" not in response.text


# --- operations ------------------------------------------------------------------------------


def test_metrics_count_queries_and_requests(server: Served) -> None:
    _query(server, server.tokens["a"], {"query": COUNT, "now": NOW})
    text = httpx.get(f"{server.url}/metrics").text
    assert "mc_pql11_query_ms_bucket" in text
    assert 'mc_pql11_http_requests_total{method="POST",route="/api/pql",status="200"}' in text


def test_access_log_is_json_lines_with_the_request_id(server: Served) -> None:
    response = _query(server, server.tokens["a"], {"query": "FIND x", "now": NOW})
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 10  # a listener thread writes the lines: wait for ours
    while True:
        lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
        mine = [line for line in lines if line["request_id"] == request_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert mine[0]["status"] == 400
    assert mine[0]["error"] == response.json()["error"]["code"]
    assert mine[0]["route"] == "/api/pql"
    assert server.tokens["a"] not in server.log.read_text()


def test_committed_openapi_document_matches_the_app() -> None:
    committed = (ROOT / "docs" / "api" / "openapi.json").read_text(encoding="utf-8")
    generated = spec.dumps(openapi_committed())
    assert committed == generated, "regenerate: python -m pql.server.spec > docs/api/openapi.json"
    assert json.loads(committed)["openapi"].startswith("3.1")


def test_served_openapi_document_is_the_committed_one(server: Served) -> None:
    served = httpx.get(f"{server.url}/openapi.json").json()
    assert served == json.loads((ROOT / "docs" / "api" / "openapi.json").read_text())


# --- tokens on the command line ---------------------------------------------------------------


def _pql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pql.cli", *args], capture_output=True, text=True)


def test_tokens_are_stored_only_as_digests(tmp_path: Path) -> None:
    tmp_path.joinpath("d").mkdir()
    data = str(tmp_path / "d")
    made = _pql("tokens", "create", "--data", data, "--tenant", "acme", "--scope", "query")
    assert made.returncode == 0, made.stderr
    token = made.stdout.split("token:")[1].split()[0]
    stored = tmp_path / "d" / "_pql" / "tokens.json"
    assert token not in stored.read_text()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    listed = _pql("tokens", "list", "--data", data)
    assert "acme" in listed.stdout and token not in listed.stdout
    bad = _pql("tokens", "create", "--data", data, "--tenant", "Bad Tenant", "--scope", "query")
    assert bad.returncode == 2 and "PQL-E030" in bad.stderr
    unknown = _pql("tokens", "revoke", "--data", data, "000000000000")
    assert unknown.returncode == 4 and "PQL-A103" in unknown.stderr


def test_core_does_not_import_the_web_stack() -> None:
    code = "import sys, pql, pql.cli; print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; from pql.cli import main; "
        f"sys.exit(main(['serve', '--data', {str(tmp_path)!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "PQL-E300" in out.stderr and 'pip install "pql[server]"' in out.stderr
    assert "Traceback" not in out.stderr
