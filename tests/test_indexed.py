"""An indexed lake answers exactly like the plain lake, and ingest refreshes its index."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

import pql
from pql.demo import DemoData, generate
from pql.storage import IndexedLake
from tests.clock import TEST_NOW

QUERIES = [
    "FIND receipts SINCE 7d",
    "FIND COUNT(*) AS n, AVG(receipts.latency_ms) GROUP BY receipts.region SINCE 180d",
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = receipts.executionId "
    "WHERE decisions.effect = 'deny' GROUP BY decisions.rule SINCE 30d",
]


def _data() -> DemoData:
    return generate(2_000, seed=9, now=TEST_NOW)


def test_indexed_matches_plain_lake(tmp_path: Path) -> None:
    demo = _data()
    plain = pql.Engine(tmp_path / "lake", cache=False)
    plain.ingest("receipts", demo.receipts)
    plain.ingest("decisions", demo.decisions)
    indexed = pql.Engine(tmp_path / "lake", index=True, cache=False)
    assert isinstance(indexed.store, IndexedLake)
    for text in QUERIES:
        for tenant in ("acme", "globex"):
            a = plain.query(text, tenant=tenant, now=demo.now).df
            b = indexed.query(text, tenant=tenant, now=demo.now).df
            assert a.equals(b), text
    assert set(indexed.store.loaded()) == {"acme", "globex"}


def test_ingest_drops_the_index_of_touched_tenants(tmp_path: Path) -> None:
    demo = _data()
    engine = pql.Engine(tmp_path / "lake", index=True, cache=False)
    first = demo.receipts.filter(pl.col("ts") < demo.now - timedelta(days=7))
    engine.ingest("receipts", first)
    text = "FIND COUNT(*) AS n WHERE receipts.status != 'none' SINCE 30d"
    before = engine.query(text, tenant="acme", now=demo.now).df["n"][0]
    engine.ingest("receipts", demo.receipts)
    after = engine.query(text, tenant="acme", now=demo.now).df["n"][0]
    window = (pl.col("ts") >= demo.now - timedelta(days=30)) & (pl.col("ts") <= demo.now)
    expected = demo.receipts.filter((pl.col("tenant") == "acme") & window).height
    assert before < after == expected
