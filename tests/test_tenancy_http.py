"""The tenancy routes' pieces in Python: bodies, bounds, one migration at a time, the document.

``tests/http/test_http_tenants.py`` drives the same routes over a real server.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import pql
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.http import _migrate, _Running, create_spec, migrate_args, parse_body
from pql.adapters.tenancy.registry import MAX_NUMBER, MAX_WINDOW_DAYS
from pql.server.app import openapi_committed, openapi_without_adapters
from tests.clock import TEST_NOW


def test_a_body_gives_the_spec_of_the_tokens_tenant() -> None:
    spec = create_spec("acme", {"region": "us-east-1", "max_rows": 50, "cost_budget": 2})
    assert spec == TenantSpec("acme", "us-east-1", max_rows=50, cost_budget=2)
    listed = create_spec("acme", {"region": "us-east-1", "trusted_keys": ["k2", "k1"]})
    assert listed.trusted_keys == ("k2", "k1")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"region": "us-east-1", "tenant": "other"}', "PQL-E302"),
        (b'{"region": "us-east-1", "max_rows": Infinity}', "PQL-E301"),
        (b'{"region": "us-east-1", "allowed_regions": [1]}', "PQL-E302"),
        (b'{"region": 7}', "PQL-E302"),
        (b"{}", "PQL-E303"),
        (b"", "PQL-E303"),
        (b"\xff", "PQL-E301"),
    ],
)
def test_bad_create_bodies(raw: bytes, code: str) -> None:
    fields = ("region", "allowed_regions", "trusted_keys", "max_rows", "cost_budget")
    with pytest.raises(pql.InputError) as caught:
        create_spec("acme", parse_body(raw, fields))
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_rows", 0),
        ("max_rows", MAX_NUMBER + 1),
        ("cost_budget", math.nan),
        ("cost_budget", math.inf),
        ("max_window_days", MAX_WINDOW_DAYS + 1),
    ],
)
def test_budgets_are_bounded_so_no_query_overflows_later(
    tmp_path: Any, field: str, value: float
) -> None:
    given: dict[str, Any] = {field: value}
    spec = TenantSpec("acme", "us-east-1", **given)
    with pytest.raises(pql.InputError) as caught:
        Registry(tmp_path).create(spec, now=TEST_NOW)
    assert caught.value.code == "PQL-E207"
    widest = TenantSpec("acme", "us-east-1", max_window_days=MAX_WINDOW_DAYS, max_rows=MAX_NUMBER)
    tenant, _, _ = Registry(tmp_path).create(widest, now=TEST_NOW)
    assert tenant.budget.limits().max_rows == MAX_NUMBER


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"to": "eu-west-1"}, ("eu-west-1", False, False)),
        ({"to": "eu-west-1", "dry_run": True}, ("eu-west-1", True, False)),
        ({"rollback": True}, (None, False, True)),
    ],
)
def test_migrate_bodies(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert migrate_args(body) == expected


@pytest.mark.parametrize(
    "body",
    [{}, {"to": "eu-west-1", "rollback": True}, {"rollback": True, "dry_run": True}, {"to": 1}],
)
def test_bad_migrate_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(pql.InputError) as caught:
        migrate_args(body)
    assert caught.value.code in ("PQL-E220", "PQL-E302")


def test_one_migration_of_a_tenant_at_a_time_in_one_server(tmp_path: Any) -> None:
    engine = pql.Engine(tmp_path)
    running = _Running()
    assert running.claim("acme")
    with pytest.raises(pql.InputError) as caught:
        _migrate(engine, running, "acme", "ops", ("eu-west-1", False, False))
    assert caught.value.code == "PQL-E211"
    running.release("acme")
    with pytest.raises(pql.InputError) as unknown:  # released: the registry answers again
        _migrate(engine, running, "acme", "ops", ("eu-west-1", False, False))
    assert unknown.value.code == "PQL-E202"
    assert running.claim("acme")  # a failed run releases its claim


def test_the_committed_document_has_the_tenancy_operations() -> None:
    doc = openapi_committed()
    create = doc["paths"]["/api/tenants"]["post"]
    migrate = doc["paths"]["/api/tenants/{id}:migrate"]["post"]
    assert {"200", "201", "400", "401", "403", "409"} <= set(create["responses"])
    assert {"200", "404", "409", "422"} <= set(migrate["responses"])
    assert create["security"] == migrate["security"] == [{"bearer": []}]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["region"] and body["additionalProperties"] is False
    assert "/api/tenants" not in openapi_without_adapters()["paths"]
