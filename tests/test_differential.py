"""pql's answers equal DuckDB's for the equivalent SQL on the same data."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import polars as pl
import pytest
from hypothesis import given

import pql
from pql import ast
from pql.examples import CONTRACT_EXAMPLES
from tests.compare import assert_same_frame
from tests.sqlref import translate
from tests.strategies import queries

MORE = [
    "FIND receipts",
    "FIND decisions SINCE 2w ORDER BY rule DESC LIMIT 50",
    "FIND COUNT(*) AS n, MIN(receipts.latency_ms), MAX(receipts.ts) GROUP BY status, region SINCE 90d",
    "FIND SUM(receipts.latency_ms) AS s WHERE latency_ms IS NULL SINCE 180d",
    "FIND AVG(receipts.cost_usd) WHERE receipts.status = 'no-such-status' SINCE 30d",
    "FIND COUNT(receipts.latency_ms), COUNT(*) AS rows_ GROUP BY receipts.workflow SINCE 180d ORDER BY rows_ DESC",
    "FIND decisions WHERE executionId IS NULL SINCE 180d",
    "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
    "WHERE rule IN ('budget.cap', 'pii.mask') OR receipts.latency_ms >= 1000 SINCE 30d",
    "FIND receipts WHERE ts >= '2026-11-01' AND NOT status IN ('ok') SINCE 60d",
    "FIND COUNT(*) AS n WHERE decisions.effect != 'allow' GROUP BY decisions.policy_version SINCE 180d",
    "FIND receipts WHERE attempt > 1 SINCE 30d ORDER BY attempt DESC, latency_ms",
    "FIND SUM(receipts.attempt), AVG(receipts.attempt) GROUP BY receipts.attempt SINCE 180d",
    "FIND receipts SINCE 180d",  # more than the row cap for the largest tenant: truncated
]


def check(engine: pql.Engine, duck: Any, text: str, tenant: str, now: Any) -> pql.Result:
    prepared = engine.prepare(text, tenant=tenant, now=now)
    result = engine.execute(prepared)
    max_rows = prepared.limits.max_rows
    sql = translate(
        prepared.analyzed,
        tenant=tenant,
        now=prepared.now,
        window=prepared.window,
        max_rows=max_rows,
    )
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    truncated = theirs.height > max_rows
    assert result.truncated == truncated, f"truncated differs for {text!r}"
    assert_same_frame(result.df, theirs.head(max_rows), f"for {text!r} ({tenant})\nSQL: {sql}")
    return result


@pytest.mark.parametrize("text", [*CONTRACT_EXAMPLES, *MORE])
@pytest.mark.parametrize("which", [0, 3])
def test_examples_match_duckdb(
    engine: pql.Engine, duck: Any, demo: Any, tenants: list[str], text: str, which: int
) -> None:
    check(engine, duck, text, tenants[which], demo.now)


def test_row_cap_truncates_like_sql(
    engine: pql.Engine, duck: Any, demo: Any, tenants: list[str]
) -> None:
    small = pql.Engine.in_memory(limits=pql.Limits(max_rows=25))
    small.ingest("receipts", demo.receipts)
    result = check(small, duck, "FIND receipts SINCE 30d", tenants[0], demo.now)
    assert result.truncated
    assert result.df.height == 25


def test_contract_examples_return_rows(engine: pql.Engine, demo: Any, tenants: list[str]) -> None:
    """Guard against a vacuous differential test: the examples must find data."""
    nonempty = sum(
        engine.query(text, tenant=tenants[0], now=demo.now).df.height > 0
        for text in CONTRACT_EXAMPLES
    )
    assert nonempty == len(CONTRACT_EXAMPLES)


@given(query=queries())
def test_generated_queries_match_duckdb(
    engine: pql.Engine, duck: Any, demo: Any, tenants: list[str], query: ast.Query
) -> None:
    text = ast.to_text(query)
    for tenant in (tenants[0], tenants[-1]):
        check(engine, duck, text, tenant, demo.now.astimezone(UTC))
