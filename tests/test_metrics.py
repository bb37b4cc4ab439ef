"""Prometheus metrics: latency by outcome, cache hits and misses, rows scanned."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import pql
from pql.demo import generate
from pql.metrics import Metrics, available

prometheus_client = pytest.importorskip("prometheus_client")

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
TEXT = "FIND COUNT(*) GROUP BY receipts.region SINCE 7d"


def _value(registry: object, name: str, labels: dict[str, str] | None = None) -> float:
    got = registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return 0.0 if got is None else float(got)


def test_metrics_by_outcome() -> None:
    assert available()
    registry = prometheus_client.CollectorRegistry()
    engine = pql.Engine.in_memory()
    engine.metrics = Metrics(registry)
    data = generate(1_000, seed=2, now=NOW, days=20)
    engine.ingest("receipts", data.receipts)

    first = engine.query(TEXT, tenant="acme", now=NOW)
    engine.query(TEXT, tenant="acme", now=NOW)
    with pytest.raises(pql.ParseError):
        engine.query("FIND", tenant="acme", now=NOW)
    with pytest.raises(pql.SafetyError):
        engine.query("FIND receipts SINCE 999d", tenant="acme", now=NOW)

    count = "mc_pql11_query_ms_count"
    assert _value(registry, count, {"outcome": "ok"}) == 1
    assert _value(registry, count, {"outcome": "cache_hit"}) == 1
    assert _value(registry, count, {"outcome": "invalid"}) == 1
    assert _value(registry, count, {"outcome": "refused"}) == 1
    assert _value(registry, count, {"outcome": "error"}) == 0
    assert _value(registry, "mc_pql11_query_ms_sum", {"outcome": "ok"}) > 0
    assert _value(registry, "mc_pql11_cache_hits_total") == 1
    assert _value(registry, "mc_pql11_cache_misses_total") == 1
    assert _value(registry, "mc_pql11_rows_scanned_total") == first.stats["rows_scanned"] > 0


def test_disabled_metrics_are_noops() -> None:
    metrics = Metrics(prometheus_client.CollectorRegistry(), enabled=False)
    metrics.query("ok", 1.0)
    metrics.cache(hit=True)
    metrics.rows_scanned(10)
    assert metrics.enabled is False
