"""Details of plans, estimates and messages that answers do not show: each one is what a user
reads in ``explain`` or an error, or a bound the estimator must keep exactly.

``tests/golden/plan_details.txt`` pins explain output the plain golden plans never reach: rollup
time series, long IN lists, timestamp constants, an over-budget plan and the JSON form.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

import pql
from pql.ast import CompareOp
from pql.catalog import DataType
from pql.demo import generate
from pql.errors import InternalError, QueryError, SafetyError
from pql.execute.admission import Admission
from pql.plan.cost import _Bounds
from pql.plan.explain import describe
from pql.plan.expr import Cmp, Col, Const
from pql.plan.nodes import Filter, RollupAggregate, Scan, walk
from pql.plan.safety import _window_text
from pql.stats import ColumnSummary
from tests.golden import check_golden
from tests.test_estimator_cases import TENANT, _estimator

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

DETAIL_CASES = [
    # a time series of whole days read from rollups: the node says how many buckets it fills
    "FIND COUNT(*) AS n GROUP BY receipts.region TIMESERIES 1d SINCE 30d",
    # an IN list longer than eight values is shortened in the plan text
    "FIND receipts WHERE workflow IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j') SINCE 7d",
    # a timestamp constant inside an OR stays a filter, written in UTC with a Z
    "FIND receipts WHERE ts >= '2026-03-01T06:00:00+01:00' OR status = 'error' SINCE 7d",
]


@pytest.fixture(scope="module")
def rolled() -> pql.Engine:
    demo = generate(3_000, seed=5, now=NOW, tenants=3)
    engine = pql.Engine.in_memory(rollup_min_rows=0)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    return engine


def test_plan_details(rolled: pql.Engine, update_golden: bool) -> None:
    parts = [
        f"-- {text}\n{rolled.explain(text, tenant='acme', now=NOW)}\n" for text in DETAIL_CASES
    ]
    over = pql.Engine.in_memory(limits=pql.Limits(cost_budget=10, enforce_cost=False))
    text = "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d"
    over.ingest("receipts", generate(500, seed=5, now=NOW, tenants=1).receipts)
    parts.append(
        f"-- {text} [budget 10, not enforced]\n{over.explain(text, tenant='acme', now=NOW)}\n"
    )
    as_json = json.dumps(
        rolled.explain(DETAIL_CASES[0], tenant="acme", now=NOW).to_dict(), indent=1
    )
    parts.append(f"-- {DETAIL_CASES[0]} [json]\n{as_json}\n")
    check_golden("plan_details.txt", "\n".join(parts), update_golden)


# -- the estimator's bounds ----------------------------------------------------------------------


@pytest.mark.parametrize("order", [(CompareOp.GT, CompareOp.GE), (CompareOp.GE, CompareOp.GT)])
def test_the_stricter_of_two_equal_lower_bounds_wins(order: tuple[CompareOp, CompareOp]) -> None:
    """``x > 5 AND x >= 5`` is ``x > 5``, in either order (likewise for upper bounds)."""
    low = _Bounds()
    for op in order:
        low.add(op, 5)
    assert not low.admit(5) and low.admit(6)
    high = _Bounds()
    for op in (
        (CompareOp.LT, CompareOp.LE) if order[0] is CompareOp.GT else (CompareOp.LE, CompareOp.LT)
    ):
        high.add(op, 5)
    assert not high.admit(5) and high.admit(4)


def test_a_range_on_a_column_of_only_nulls_keeps_nothing() -> None:
    estimator = _estimator({"ratio": ColumnSummary(nulls=4)}, rows=4)
    bounds = _Bounds()
    bounds.add(CompareOp.GT, 1.0)
    assert estimator.interval(Col("receipts", "ratio", DataType.FLOAT), bounds, TENANT) == 0.0


def test_a_value_list_is_read_only_for_listed_types() -> None:
    """A FLOAT column is estimated from its range, even if a summary says its list is complete."""
    ratio = ColumnSummary(mcv_complete=True, low=0.0, high=10.0)
    estimator = _estimator({"ratio": ratio}, rows=4)
    bounds = _Bounds()
    bounds.add(CompareOp.LE, 5.0)
    assert estimator.interval(
        Col("receipts", "ratio", DataType.FLOAT), bounds, TENANT
    ) == pytest.approx(0.5)


# -- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2 * 86400, "2d"), (180 * 86400, "180d"), (86400, "24h"), (36 * 3600, "36h"), (5400, "2h")],
)
def test_window_text(seconds: float, text: str) -> None:
    assert _window_text(seconds) == text


def test_explain_names_a_node_it_does_not_know() -> None:
    with pytest.raises(InternalError, match="unknown node object") as caught:
        describe(object())  # type: ignore[arg-type]
    assert caught.value.code == "PQL-X007"


def test_a_full_queue_names_the_setting_to_raise() -> None:
    gate = Admission(running=1, queued=0, where="this engine")
    with gate.slot(timeout=0.01), pytest.raises(SafetyError) as caught:
        gate.enter(0.01)
    assert caught.value.code == "PQL-S007"
    assert caught.value.setting == "Limits.max_concurrent"
    assert caught.value.details == {"max_concurrent": 1, "max_queued": 0}


def test_order_by_bucket_without_timeseries_is_refused() -> None:
    engine = pql.Engine.in_memory()
    with pytest.raises(QueryError) as caught:
        engine.explain(
            "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 7d ORDER BY bucket",
            tenant="acme",
            now=NOW,
        )
    assert caught.value.code in {"PQL-E019", "PQL-E010", "PQL-E011"}, caught.value


def test_a_boolean_compared_with_text_is_quoted_as_pql_spells_it() -> None:
    engine = pql.Engine.in_memory()
    for literal in ("true", "false"):
        with pytest.raises(QueryError) as caught:
            engine.explain(f"FIND receipts WHERE status = {literal}", tenant="acme", now=NOW)
        assert any(f'receipts.status = "{literal}"' in hint for hint in caught.value.hints)


# -- rollup nodes refuse what they cannot answer -------------------------------------------------


def test_a_rollup_node_checks_its_days_and_its_columns(rolled: pql.Engine) -> None:
    plan = rolled.prepare(
        "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d", tenant="acme", now=NOW
    ).plan
    node = next(n for n in walk(plan) if isinstance(n, RollupAggregate))
    with pytest.raises(ValueError, match=r"^a rollup aggregate needs at least one whole day$"):
        replace(node, first_day=node.last_day, last_day=node.first_day)
    latency = Col("receipts", "latency_ms", DataType.FLOAT)
    with pytest.raises(ValueError, match=r"non-grain columns: \{.*latency_ms.*\}"):
        replace(node, keys=(*node.keys, latency))
    only_ts = Scan("receipts", "acme", NOW, NOW, (Col("receipts", "ts", DataType.TIMESTAMP),))
    with pytest.raises(
        ValueError, match=r"^an edge lacks columns the aggregate reads: \{'receipts.region'\}$"
    ):
        replace(node, edges=(only_ts,))


def test_a_filter_names_the_columns_its_input_lacks() -> None:
    only_ts = Scan("receipts", "acme", NOW, NOW, (Col("receipts", "ts", DataType.TIMESTAMP),))
    status = Col("receipts", "status", DataType.STRING)
    with pytest.raises(
        ValueError, match=r"^filter reads columns its input lacks: \['receipts.status'\]$"
    ):
        Filter(only_ts, Cmp(status, CompareOp.EQ, Const("error", DataType.STRING)))


# -- parameters ----------------------------------------------------------------------------------

PARAM_QUERY = "FIND receipts WHERE status = $p SINCE 7d"


@pytest.mark.parametrize(
    ("text", "value", "says"),
    [
        (PARAM_QUERY, NOW, "has a value of type datetime"),
        (PARAM_QUERY, [1], "has a value of type list"),
        ("FIND receipts WHERE attempt = $p SINCE 7d", 2**70, "does not fit in 64 bits"),
        (PARAM_QUERY, "a\ud800b", "lone surrogate"),
    ],
)
def test_a_bad_parameter_is_refused_where_it_stands(text: str, value: object, says: str) -> None:
    """PQL-E024, pointing at the parameter (line 1, the column of ``$p``)."""
    engine = pql.Engine.in_memory()
    engine.ingest("receipts", generate(50, seed=5, now=NOW, tenants=1).receipts)
    with pytest.raises(QueryError) as caught:
        engine.explain(text, tenant="acme", now=NOW, params={"p": value})
    error = caught.value
    assert error.code == "PQL-E024" and says in str(error), error
    assert error.span is not None
    assert (error.span.line, error.span.column) == (1, text.index("$p") + 1)


def test_a_timestamp_parameter_binds_only_to_a_timestamp() -> None:
    engine = pql.Engine.in_memory()
    text = "FIND receipts WHERE ts >= $p OR status = 'error' SINCE 7d"
    plan = str(engine.explain(text, tenant="acme", now=NOW, params={"p": NOW}))
    assert "receipts.ts >= '2026-03-02T12:00:00Z'" in plan


# -- the estimator without statistics, and values outside a column's range ----------------------


def test_equality_without_statistics_uses_the_documented_defaults() -> None:
    from pql.plan.cost import DEFAULT_EQ, DEFAULT_SELECTIVITY

    estimator = _estimator({}, rows=10)
    text = Const("x", DataType.STRING)
    assert estimator.equal(Col("receipts", "workflow", DataType.STRING), text, TENANT) == DEFAULT_EQ
    flag = Col("receipts", "flag", DataType.BOOL)
    assert estimator.equal(flag, Const(True, DataType.BOOL), TENANT) == DEFAULT_SELECTIVITY


def test_equality_outside_a_number_columns_range_keeps_nothing() -> None:
    estimator = _estimator({"ratio": ColumnSummary(low=0.0, high=10.0)}, rows=4)
    col = Col("receipts", "ratio", DataType.FLOAT)
    assert estimator.equal(col, Const(20.0, DataType.FLOAT), TENANT) == 0.0
    assert estimator.equal(col, Const(5.0, DataType.FLOAT), TENANT) > 0.0


def test_the_compiler_names_a_predicate_it_does_not_know() -> None:
    from pql.execute.compile import predicate

    with pytest.raises(InternalError, match="unknown predicate object") as caught:
        predicate(object())  # type: ignore[arg-type]
    assert caught.value.code == "PQL-X006"
