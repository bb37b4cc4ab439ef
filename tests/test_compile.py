"""Compiled predicates compare values exactly, beyond what a float can hold."""

from __future__ import annotations

import polars as pl

import pql
from pql.demo import DemoData

BIG = 2**53  # the first integer whose successor a float64 cannot tell apart


def test_in_over_integers_compares_integers_not_floats(demo: DemoData) -> None:
    engine = pql.Engine.in_memory(cache=False)
    rows = demo.receipts.filter(pl.col("tenant") == "acme").tail(2)
    engine.ingest("receipts", rows.with_columns(attempt=pl.Series([BIG, BIG + 1])))
    text = f"FIND receipts WHERE attempt IN ({BIG + 1}) SINCE 180d"
    got = engine.query(text, tenant="acme", now=demo.now).df
    assert got["attempt"].to_list() == [BIG + 1]
