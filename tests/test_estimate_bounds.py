"""The range arithmetic under the cost model's estimates, exactly (estimates elsewhere are only
checked within a factor, which small slips in these pieces would not break)."""

from __future__ import annotations

import math
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
    rows = 5
    frame = pl.DataFrame(
        {
            "executionId": [f"e{i}" for i in range(rows)],
            "tenant": ["acme"] * rows,
            "region": ["eu-west-1"] * rows,
            "ts": [test_now - timedelta(hours=i + 1) for i in range(rows)],
            "workflow": ["etl"] * rows,
            "status": ["ok"] * rows,
            "latency_ms": [1.0] * rows,
            "cost_usd": [0.5] * rows,
            "ratio": [math.inf] * rows,
        }
    )
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", frame)
    for text, expected in [
        ("FIND receipts WHERE ratio > 3 SINCE 1d", 5.0),
        ("FIND receipts WHERE ratio < 3 SINCE 1d", 0.0),
    ]:
        explained = engine.explain(text, tenant="acme", now=test_now)
        node = next(d for d in explained.node_details() if d["node"].startswith("Filter"))
        assert node["est_rows"] == expected, text
        assert engine.query(text, tenant="acme", now=test_now).df.height == expected


def test_zero_is_below_a_strict_bound_and_within_an_inclusive_one(test_now: datetime) -> None:
    """A histogram keeps zeros apart: ``x > 0`` counts none of them and ``x >= 0`` all of them
    (the bound's own value is left out of, or kept in, the share below it)."""
    rows = 400
    frame = pl.DataFrame(
        {
            "executionId": [f"e{i}" for i in range(rows)],
            "tenant": ["acme"] * rows,
            "region": ["eu-west-1"] * rows,
            "ts": [test_now - timedelta(minutes=i + 1) for i in range(rows)],
            "workflow": ["etl"] * rows,
            "status": ["ok"] * rows,
            "latency_ms": [0.0 if i % 4 else 1.0 + i for i in range(rows)],  # 3 in 4 are 0
            "cost_usd": [0.5] * rows,
        }
    )
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", frame)
    for text, expected in [
        ("FIND receipts WHERE latency_ms > 0 SINCE 1d", 100),
        ("FIND receipts WHERE latency_ms >= 0 SINCE 1d", 400),
    ]:
        explained = engine.explain(text, tenant="acme", now=test_now)
        node = next(d for d in explained.node_details() if d["node"].startswith("Filter"))
        assert node["est_rows"] == pytest.approx(expected, rel=0.1), text
        assert engine.query(text, tenant="acme", now=test_now).df.height == expected
