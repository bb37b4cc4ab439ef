"""Which of Polars' engines collects a query (:func:`pql.execute.run.streams`).

That the streaming engine answers like DuckDB is the ``streaming`` store path of the differential
tests (``tests/paths.py``); its deadline is in ``tests/test_deadline.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

import pql
from pql.execute import Compiled, compile_plan
from pql.execute.run import STREAMING_ROWS, streams

INNER = (
    "FIND AVG(receipts.latency_ms) JOIN decisions ON receipts.executionId = "
    "decisions.executionId GROUP BY decisions.rule SINCE 30d"
)
SEMI = "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
PLAIN = "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d"


def _compiled(engine: pql.Engine, demo: Any, tenant: str, text: str) -> Compiled:
    prepared = engine.prepare(text, tenant=tenant, now=demo.now)
    return compile_plan(prepared.plan, engine.store, engine.catalog, prepared.estimates)


def test_an_inner_join_streams_from_the_rows_it_reads(
    engine: pql.Engine, demo: Any, tenants: list[str]
) -> None:
    compiled = _compiled(engine, demo, tenants[0], INNER)
    rows = compiled.rows_scanned
    assert compiled.pairs and rows > 0
    assert streams(compiled, rows) and streams(compiled, 0)
    assert not streams(compiled, rows + 1)
    assert not streams(compiled, None)


@pytest.mark.parametrize("text", [SEMI, PLAIN])
def test_a_semi_join_or_no_join_never_streams(
    engine: pql.Engine, demo: Any, tenants: list[str], text: str
) -> None:
    compiled = _compiled(engine, demo, tenants[0], text)
    assert compiled.rows_scanned > 0 and not compiled.pairs
    assert not streams(compiled, 0)


def test_the_engine_streams_from_its_setting(demo: Any, tenants: list[str]) -> None:
    engine = pql.Engine.in_memory()
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    assert engine.streaming_rows == STREAMING_ROWS

    def used() -> Any:
        result = engine.query(INNER, tenant=tenants[0], now=demo.now, cache=False)
        return result.stats["polars_engine"]

    assert used() == "in-memory"  # a join of thousands of rows
    engine.streaming_rows = 0
    assert used() == "streaming"
    engine.streaming_rows = None
    assert used() == "in-memory"
