"""Compiled predicates compare values exactly, beyond what a float can hold."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

import pql
from pql.catalog import DataType
from pql.demo import DemoData
from pql.errors import InternalError
from pql.execute.compile import compile_plan
from pql.plan.expr import Col
from pql.plan.nodes import Join, Scan
from pql.storage import MemoryStore

BIG = 2**53  # the first integer whose successor a float64 cannot tell apart


def test_in_over_integers_compares_integers_not_floats(demo: DemoData) -> None:
    engine = pql.Engine.in_memory(cache=False)
    rows = demo.receipts.filter(pl.col("tenant") == "acme").tail(2)
    engine.ingest("receipts", rows.with_columns(attempt=pl.Series([BIG, BIG + 1])))
    text = f"FIND receipts WHERE attempt IN ({BIG + 1}) SINCE 180d"
    got = engine.query(text, tenant="acme", now=demo.now).df
    assert got["attempt"].to_list() == [BIG + 1]


def test_a_join_without_a_condition_never_runs(demo: DemoData) -> None:
    """The safety phase refuses a Cartesian product; should one reach the executor anyway, it
    stops with an internal error instead of multiplying two tables."""
    key = Col("receipts", "executionId", DataType.STRING)
    other = Col("decisions", "executionId", DataType.STRING)
    start = demo.now - timedelta(days=1)
    join = Join(
        Scan("receipts", "acme", start, demo.now, (key,)),
        Scan("decisions", "acme", start, demo.now, (other,)),
        None,
        None,
    )
    catalog = pql.Engine.in_memory().catalog
    with pytest.raises(InternalError) as err:
        compile_plan(join, MemoryStore(catalog), catalog)
    assert err.value.code == "PQL-X004"
    assert Join(join.left, join.right, key, other).keys() == (key, other)
