"""An indexed lake answers exactly like the plain lake, and ingest refreshes its index."""

from __future__ import annotations

import threading
import time
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
    # One loader thread loads the two tenants one after the other, in the background.
    deadline = time.monotonic() + 60
    while set(indexed.store.loaded()) != {"acme", "globex"} and time.monotonic() < deadline:
        time.sleep(0.01)
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


def test_one_load_at_a_time_the_most_demanded_first(tmp_path: Path) -> None:
    """Queued loads wait for the one loader; the tenant asked for most goes next, and queries
    are answered (from partitions) while a load is under way."""
    demo = _data()
    writer = pql.Engine(tmp_path / "lake", index=False, cache=False)
    writer.ingest("receipts", demo.receipts)
    engine = pql.Engine(tmp_path / "lake", cache=False)
    store = engine.store
    assert isinstance(store, IndexedLake)
    release = threading.Event()
    order: list[str] = []
    running: list[int] = [0, 0]  # now, most at once
    guard = threading.Lock()

    def on_load(tenant: str) -> None:
        with guard:
            order.append(tenant)
            running[0] += 1
            running[1] = max(running)
        release.wait(30)
        with guard:
            running[0] -= 1

    store.on_load = on_load
    text = "FIND COUNT(receipts.executionId) AS n SINCE 7d"
    first = engine.query(text, tenant="acme", now=demo.now)
    assert first.stats["path"] == "partitions"
    # initech is queued first and sorts last; globex is asked for most, so it goes next
    engine.query(text, tenant="initech", now=demo.now)
    for _ in range(3):
        engine.query(text, tenant="globex", now=demo.now)
    # acme's load is blocked: its queries are still answered, from partitions.
    assert engine.query(text, tenant="acme", now=demo.now).stats["path"] == "partitions"
    release.set()
    deadline = time.monotonic() + 60
    while len(store.loaded()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["acme", "globex", "initech"]
    assert running[1] == 1
    assert engine.query(text, tenant="acme", now=demo.now).stats["path"] == "index"
