"""The range arithmetic under the cost model's estimates, exactly (estimates elsewhere are only
checked within a factor, which small slips in these pieces would not break)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

import pql
from pql.ast import CompareOp
from pql.plan.cost import _Bounds, _rows_between, _uniform
from pql.stats import PartitionArrays


def _bounds(*conditions: tuple[CompareOp, int]) -> _Bounds:
    bounds = _Bounds()
    for op, value in conditions:
        bounds.add(op, value)
    return bounds


def test_one_side_is_enough_to_be_bounded() -> None:
    assert not _Bounds().bounded()
    assert _bounds((CompareOp.GT, 5)).bounded()
    assert _bounds((CompareOp.LE, 5)).bounded()


@pytest.mark.parametrize(
    ("low", "high", "empty"),
    [
        (CompareOp.GE, CompareOp.LE, False),  # 5 <= x <= 5
        (CompareOp.GT, CompareOp.LE, True),  # 5 < x <= 5
        (CompareOp.GE, CompareOp.LT, True),  # 5 <= x < 5
        (CompareOp.GT, CompareOp.LT, True),
    ],
)
def test_a_single_point_is_empty_unless_both_ends_include_it(
    low: CompareOp, high: CompareOp, empty: bool
) -> None:
    assert _bounds((low, 5), (high, 5)).empty() is empty


def test_null_lies_within_no_bounds() -> None:
    assert not _Bounds().admit(None)
    assert _Bounds().admit(3)
    assert _bounds((CompareOp.GE, 5)).admit(5) and not _bounds((CompareOp.GT, 5)).admit(5)
    assert _bounds((CompareOp.LE, 5)).admit(5) and not _bounds((CompareOp.LT, 5)).admit(5)


def test_uniform_share_of_a_range() -> None:
    assert _uniform(0.0, 10.0, 2.0, 4.0) == pytest.approx(0.2)
    assert _uniform(0.0, 10.0, None, 5.0) == pytest.approx(0.5)
    assert _uniform(0.0, 10.0, 5.0, None) == pytest.approx(0.5)
    assert _uniform(0.0, 10.0, 20.0, None) == 0.0
    assert _uniform(3.0, 3.0, None, None) == 1.0
    assert _uniform(3.0, 3.0, 4.0, None) == 0.0


def test_window_share_of_a_partition_one_microsecond_long() -> None:
    """The estimator's vectorized row count agrees with the scalar one at every window edge,
    down to a partition whose rows span exactly one microsecond."""
    arrays = PartitionArrays(
        np.array([100.0, 200.0, 300.0]), np.array([101.0, 200.0, 400.0]), np.array([4.0, 3.0, 10.0])
    )
    windows = [(0.0, 100.0), (101.0, 150.0), (100.0, 101.0), (100.5, 101.0), (200.0, 200.0)]
    windows += [(0.0, 1000.0), (350.0, 400.0), (401.0, 500.0)]
    starts = np.array([s for s, _ in windows])
    ends = np.array([e for _, e in windows])
    rows = _rows_between(arrays, starts, ends)
    assert rows.tolist() == [arrays.in_window(s, e)[0] for s, e in windows]
    # touching either end of the 1-µs partition covers none of its length, so none of its rows
    assert rows.tolist() == [0.0, 0.0, 4.0, 2.0, 3.0, 17.0, 5.0, 0.0]


def test_range_on_a_number_column_without_a_histogram(test_now: datetime) -> None:
    """A column whose values are all infinite has no histogram (which keeps finite values):
    a range on it is estimated from the column's [min, max], and here exactly."""
    engine = _receipts(test_now, 5, timedelta(hours=1), ratio=[math.inf] * 5)
    for text, expected in [
        ("FIND receipts WHERE ratio > 3 SINCE 1d", 5.0),
        ("FIND receipts WHERE ratio < 3 SINCE 1d", 0.0),
    ]:
        assert _filter_estimate(engine, text, test_now) == expected, text
        assert engine.query(text, tenant="acme", now=test_now).df.height == expected


def test_zero_is_below_a_strict_bound_and_within_an_inclusive_one(test_now: datetime) -> None:
    """A histogram keeps zeros apart: ``x > 0`` counts none of them and ``x >= 0`` all of them
    (the bound's own value is left out of, or kept in, the share below it)."""
    latency = [0.0 if i % 4 else 1.0 + i for i in range(400)]  # 3 in 4 are 0
    engine = _receipts(test_now, 400, timedelta(minutes=1), latency_ms=latency)
    for text, expected in [
        ("FIND receipts WHERE latency_ms > 0 SINCE 1d", 100),
        ("FIND receipts WHERE latency_ms >= 0 SINCE 1d", 400),
    ]:
        estimate = _filter_estimate(engine, text, test_now)
        assert estimate == pytest.approx(expected, rel=0.1), text
        assert engine.query(text, tenant="acme", now=test_now).df.height == expected


def _receipts(
    now: datetime, rows: int, apart: timedelta, **columns: Sequence[float | str | None]
) -> pql.Engine:
    """An in-memory engine over ``rows`` receipts of tenant ``acme``, one every ``apart`` back
    from ``now``, latency 1.0 and cost 0.5 unless ``columns`` give them (or an extra column)."""
    frame = pl.DataFrame(
        {
            "executionId": [f"e{i}" for i in range(rows)],
            "tenant": ["acme"] * rows,
            "region": ["eu-west-1"] * rows,
            "ts": [now - apart * (i + 1) for i in range(rows)],
            "workflow": ["etl"] * rows,
            "status": ["ok"] * rows,
            "latency_ms": [1.0] * rows,
            "cost_usd": [0.5] * rows,
            **columns,
        }
    )
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", frame)
    return engine


def _filter_estimate(engine: pql.Engine, text: str, now: datetime) -> float:
    """The rows ``explain`` estimates for the plan's filter."""
    explained = engine.explain(text, tenant="acme", now=now)
    node = next(d for d in explained.node_details() if d["node"].startswith("Filter"))
    return float(node["est_rows"])


def test_an_equality_on_many_distinct_values_keeps_the_non_null_share(test_now: datetime) -> None:
    """A string column of more distinct values than are counted one by one has no most common
    values: ``col = v`` keeps the column's non-null share over its distinct count. 1,000 rows,
    every other one null, 500 distinct values: 1,000 x 0.5 / 500 = 1 row."""
    team = [f"t{i}" if i % 2 == 0 else None for i in range(1_000)]
    engine = _receipts(test_now, 1_000, timedelta(minutes=1), team=team)
    text = 'FIND COUNT(*) AS n WHERE team = "t10" SINCE 7d'
    assert _filter_estimate(engine, text, test_now) == pytest.approx(1.0, rel=0.05)
