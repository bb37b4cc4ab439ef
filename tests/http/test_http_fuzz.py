"""Property-based fuzzing of every operation in docs/api/openapi.json (schemathesis).

For a valid token (every scope) and an invalid one: no 5xx, and every response's status, content
type, headers and body conform to the document. ``PQL_FUZZ_EXAMPLES`` sets the examples per
operation (a modest default for CI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.http.conftest import Lake, Served

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "api" / "openapi.json"))
TENANCY = "^/api/tenants"
"""The tenancy operations change the registry: test_http_tenants.py fuzzes them on a lake of
their own, so that no tenant of this shared lake gets a random budget."""
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = int(os.environ.get("PQL_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="session")
def everything(lake: Lake) -> str:
    """A token with every scope, for tenant a."""
    from pql.server.tokens import SCOPES, TokenStore

    return TokenStore.in_data_dir(lake.path).create(lake.tenants[0], list(SCOPES))[1]


@pytest.mark.parametrize("who", ["valid", "invalid"])
@SCHEMA.exclude(path_regex=TENANCY).parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(
    case: schemathesis.Case[Any], who: str, server: Served, everything: str
) -> None:
    token = everything if who == "valid" else "pql_000000000000_" + "A" * 43
    case.call_and_validate(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
