"""The estimator's statistics and models: histograms, value spans, combined conditions, groups.

``tests/test_cost.py`` checks the cost model and the budget; this file checks the parts of the
cardinality estimates that ``benchmarks/estimation.py`` measures at scale: heavy-tailed ranges,
values that come and go over time, conditions AND-ed on one column, contradictions, and the
number of groups when a filter pins a group key.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

import pql
from pql.catalog import DECISIONS
from pql.demo import DemoData
from pql.stats import LogHistogram, SubjectSummary, summarize


def _q_error(estimate: float, actual: float) -> float:
    est, act = estimate + 1, actual + 1
    return max(est / act, act / est)


def _node(engine: pql.Engine, demo: DemoData, text: str, kind: str) -> dict[str, float]:
    explained = engine.explain(text, tenant="acme", now=demo.now, analyze=True)
    return next(d for d in explained.node_details() if d["node"].endswith(kind))


# -- statistics --------------------------------------------------------------------------------


def test_log_histogram_keeps_heavy_tails() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(6, 2, 50_000), -rng.lognormal(1, 1, 500), [0.0] * 7])
    hist = LogHistogram.of(values)
    assert hist.total == values.size
    for x in (-3.0, 0.0, 1.0, 50.0, 400.0, 3_000.0, 1e5):
        assert abs(hist.below(x) / hist.total - float(np.mean(values < x))) < 0.005
    assert hist.below(0.0, inclusive=True) - hist.below(0.0) == 7
    half = LogHistogram.of(values[:20_000]).merge(LogHistogram.of(values[20_000:]))
    assert half.to_json() == hist.to_json()
    assert (
        LogHistogram.from_json(json.loads(json.dumps(hist.to_json()))).to_json() == hist.to_json()
    )


def test_summaries_keep_value_spans_integer_lists_and_histograms(
    engine: pql.Engine, demo: DemoData
) -> None:
    decisions = demo.decisions.filter(pl.col("tenant") == "acme")
    summary = summarize(DECISIONS, decisions)
    versions = summary.columns["policy_version"]
    first = decisions.group_by("policy_version").agg(pl.col("ts").min().dt.epoch("us"))
    for version, start in first.iter_rows():
        assert versions.spans[version][0] == start
    nulls = summary.columns["executionId"]
    assert nulls.null_span is not None
    with_attempt = engine.catalog.for_tenant("acme")["receipts"]  # acme's extra ``attempt``
    receipts = summarize(with_attempt, demo.receipts)
    attempt = receipts.columns["attempt"]
    assert attempt.mcv_complete and set(attempt.mcv) == {"1", "2", "3", "4"}
    assert receipts.columns["latency_ms"].hist is not None
    again = SubjectSummary.from_json(json.loads(json.dumps(summary.to_json())))
    assert again.columns["policy_version"].spans == versions.spans
    assert again.columns["executionId"].null_span == nulls.null_span
    half = decisions.height // 2
    merged = summarize(DECISIONS, decisions.head(half)).merge(
        summarize(DECISIONS, decisions.tail(-half))
    )
    assert merged.columns["policy_version"].spans == versions.spans
    assert merged.columns["executionId"].null_span == nulls.null_span


# -- estimates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "latency_ms < 50",  # the heavy tail: a uniform [min, max] would say almost nothing
        "latency_ms > 5000",
        "latency_ms >= 100 AND latency_ms < 1000",  # one interval, not two independent ranges
        "attempt > 1",  # a complete list of integers
        "attempt IN (2, 3) AND attempt >= 3",
        "workflow IN ('etl', 'billing', 'report') AND workflow = 'report'",
    ],
)
def test_ranges_and_combined_conditions(engine: pql.Engine, demo: DemoData, where: str) -> None:
    node = _node(engine, demo, f"FIND receipts WHERE {where} SINCE 180d", "Filter")
    assert _q_error(node["est_rows"], node["actual_rows"]) < 1.5, node


@pytest.mark.parametrize(
    "where",
    [
        "status = 'ok' AND status IN ('error', 'rollback')",
        "latency_ms > 1000 AND latency_ms <= 1000",
        "latency_ms IS NULL AND latency_ms > 5",
        "NOT (cost_usd IS NOT NULL) AND cost_usd < 1",
    ],
)
def test_contradictions_are_empty(engine: pql.Engine, demo: DemoData, where: str) -> None:
    node = _node(engine, demo, f"FIND receipts WHERE {where} SINCE 30d", "Filter")
    assert node["est_rows"] == node["actual_rows"] == 0


@pytest.mark.parametrize(
    "where",
    [
        "ts < '{cut}' OR status = 'rollback'",  # in an OR: not folded into the scan's window
        "NOT (ts >= '{cut}')",
        "(ts <= '{late}' AND ts > '{early}') OR latency_ms < 0",
    ],
)
def test_time_bounds_inside_the_window_count_the_partitions(
    engine: pql.Engine, demo: DemoData, where: str
) -> None:
    """A bound on ``ts`` the scan cannot take keeps the window's rows on its side of the bound."""
    cut, early, late = (
        (demo.now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in (3, 5, 2)
    )
    text = f"FIND receipts WHERE {where.format(cut=cut, early=early, late=late)} SINCE 7d"
    node = _node(engine, demo, text, "Filter")
    scanned = _node(engine, demo, text, "Scan")
    assert 0 < node["actual_rows"] < 0.7 * scanned["actual_rows"]
    assert _q_error(node["est_rows"], node["actual_rows"]) < 1.3, node


def test_values_that_come_and_go_count_in_the_window(engine: pql.Engine, demo: DemoData) -> None:
    versions = demo.decisions.filter(pl.col("tenant") == "acme").sort("ts")["policy_version"]
    oldest, current = versions[0], versions[-1]
    gone = _node(
        engine, demo, f"FIND decisions WHERE policy_version = '{oldest}' SINCE 7d", "Filter"
    )
    assert gone["actual_rows"] == 0 and gone["est_rows"] < 1
    live = _node(
        engine, demo, f"FIND decisions WHERE policy_version = '{current}' SINCE 7d", "Filter"
    )
    assert _q_error(live["est_rows"], live["actual_rows"]) < 1.5, live
    groups = _node(
        engine,
        demo,
        "FIND COUNT(*) AS n WHERE decisions.effect = 'deny' GROUP BY decisions.policy_version SINCE 7d",
        "Aggregate",
    )
    assert _q_error(groups["est_rows"], groups["actual_rows"]) < 1.5, groups


def test_a_filter_pins_the_group_keys_it_names(engine: pql.Engine, demo: DemoData) -> None:
    node = _node(
        engine,
        demo,
        "FIND COUNT(*) AS n WHERE receipts.workflow IN ('etl', 'billing') "
        "GROUP BY receipts.workflow, receipts.region SINCE 30d",
        "Aggregate",
    )
    assert node["est_rows"] <= 2 * 5 + 0.05
    assert _q_error(node["est_rows"], node["actual_rows"]) < 2, node
