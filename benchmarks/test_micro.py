"""Micro-benchmarks of the stages before execution: parse, analyze+plan+safety, compile."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import pql
from pql.execute import compile_plan

NOW = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
QUERIES = {
    "rows": 'FIND receipts WHERE receipts.status = "error" AND latency_ms > 250 SINCE 30d LIMIT 100',
    "group": "FIND COUNT(*), AVG(receipts.latency_ms), SUM(receipts.cost_usd) "
    "GROUP BY receipts.region SINCE 180d",
    "join": "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
    'receipts.executionId WHERE decisions.effect = "deny" AND NOT (receipts.status = "ok") '
    "GROUP BY decisions.rule SINCE 7d",
}


@pytest.fixture(scope="module")
def engine() -> pql.Engine:
    from pql.demo import generate

    data = generate(20_000, seed=1, now=NOW)
    eng = pql.Engine.in_memory()
    eng.ingest("receipts", data.receipts)
    eng.ingest("decisions", data.decisions)
    return eng


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_parse(benchmark: Any, name: str) -> None:
    benchmark(pql.parse, QUERIES[name])


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_prepare(benchmark: Any, engine: pql.Engine, name: str) -> None:
    benchmark(engine.prepare, QUERIES[name], tenant="acme", now=NOW)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_compile(benchmark: Any, engine: pql.Engine, name: str) -> None:
    prepared = engine.prepare(QUERIES[name], tenant="acme", now=NOW)
    benchmark(compile_plan, prepared.plan, engine.store, engine.catalog)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query(benchmark: Any, engine: pql.Engine, name: str) -> None:
    benchmark(engine.query, QUERIES[name], tenant="acme", now=NOW)
