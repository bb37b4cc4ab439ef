"""The query log and the warmer: demand counted per tenant and shape, top shapes re-run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import pql
from pql.demo import generate
from pql.parser import parse
from pql.warm import QueryLog

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOT = "FIND COUNT(*) GROUP BY receipts.region SINCE 7d"
WARM = "FIND AVG(receipts.latency_ms) GROUP BY receipts.workflow SINCE 30d"
COLD = "FIND COUNT(receipts.executionId) SINCE 1d"


@pytest.fixture
def engine() -> pql.Engine:
    data = generate(2_000, seed=3, now=NOW, days=40)
    # Warming serves dashboards that accept a floored wall clock (an opt-in); a day-long step
    # keeps the test from straddling a step boundary.
    eng = pql.Engine.in_memory(cache_granularity=timedelta(days=1))
    eng.ingest("receipts", data.receipts)
    return eng


def test_log_counts_canonical_shapes_per_tenant() -> None:
    log = QueryLog()
    log.record("acme", parse(HOT))
    log.record("acme", parse(HOT.lower().replace(" ", "  ")))
    log.record("acme", parse(COLD))
    log.record("globex", parse(HOT))
    top = log.top("acme")
    assert [(s.text, s.count) for s in top] == [(HOT, 2), (COLD, 1)]
    assert log.top("acme", 1)[0].text == HOT
    assert [s.count for s in log.top("globex")] == [1]
    assert log.tenants() == ("acme", "globex")


def test_log_is_bounded() -> None:
    log = QueryLog(max_shapes=4)
    for _ in range(3):
        log.record("acme", parse(HOT))
    for days in range(1, 6):
        log.record("acme", parse(f"FIND receipts SINCE {days}d"))
    assert len(log) <= 4
    assert log.top("acme", 1)[0].text == HOT


def test_engine_records_successful_queries_only(engine: pql.Engine) -> None:
    engine.query(HOT, tenant="acme", now=NOW)
    engine.query(HOT, tenant="acme", now=NOW)
    with pytest.raises(pql.ParseError):
        engine.query("FIND", tenant="acme", now=NOW)
    with pytest.raises(pql.SafetyError):
        engine.query("FIND receipts SINCE 999d", tenant="acme", now=NOW)
    engine.query(COLD, tenant="acme", now=NOW, record=False)
    assert [(s.text, s.count) for s in engine.query_log.top("acme")] == [(HOT, 2)]


def test_warm_fills_the_cache_for_top_shapes(engine: pql.Engine) -> None:
    for _ in range(3):
        engine.query(HOT, tenant="acme", now=NOW, cache=False)
    for _ in range(2):
        engine.query(WARM, tenant="acme", now=NOW, cache=False)
    engine.query(COLD, tenant="globex", now=NOW, cache=False)
    report = engine.warm(top_n=1)
    assert (report.ran, report.already_cached, report.failed) == (2, 0, [])
    # The warmer ran with the (floored) wall clock, as a dashboard without a fixed now does.
    assert engine.query(HOT, tenant="acme").stats["cache"]["hit"] is True
    assert engine.query(COLD, tenant="globex").stats["cache"]["hit"] is True
    assert engine.query(WARM, tenant="acme").stats["cache"]["hit"] is False
    # Warming does not count as demand.
    assert engine.query_log.top("acme", 1)[0].count == 4


def test_warm_reports_shapes_that_now_fail(engine: pql.Engine) -> None:
    engine.query("FIND receipts SINCE 90d LIMIT 5", tenant="acme", now=NOW)
    engine.set_tenant_limits("acme", pql.Limits(max_window=timedelta(days=30)))
    report = engine.warm(tenants=["acme"])
    assert report.ran == 0
    assert [(shape.text, code) for shape, code in report.failed] == [
        ("FIND receipts SINCE 90d LIMIT 5", "PQL-S001")
    ]
