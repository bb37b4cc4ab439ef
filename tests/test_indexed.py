"""An indexed lake answers exactly like the plain lake, and ingest refreshes its index."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import pql
import pql.storage.memory as memory_module
from pql.demo import DemoData, generate
from pql.storage import IndexedLake
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame

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
            # Either may read the rollup (a tenant read from files does), which sums in
            # another order: floats to 1e-9 relative.
            assert_same_frame(b, a, text)
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


def _extra_bytes(store: IndexedLake, tenant: str, kind: str) -> int:
    """The bytes of ``tenant``'s ``kind`` (``"lookups"`` or ``"codes"``) over all its parts."""
    index = store._indexes[tenant].store
    return sum(
        array.nbytes
        for t in index._tables.values()
        for part in t.parts
        for array in getattr(part, kind).values()
    )


def test_an_index_builds_its_lookups_after_loading_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups (and join codes) are built once an index answers; ``wait_ready`` waits for
    them, ``memory_bytes`` counts them, and a filter on an id column then reads its rows by
    lookup."""
    monkeypatch.setattr(memory_module, "LOOKUP_MIN_WINDOW", 0)
    demo = _data()
    writer = pql.Engine(tmp_path / "lake", index=False)
    writer.ingest("receipts", demo.receipts)
    writer.ingest("decisions", demo.decisions)
    # Without snapshots, like the engine with a tight budget below: the same rows in the same
    # buffers (a load through snapshots keeps a tenant of several regions in parts).
    engine = pql.Engine(tmp_path / "lake", cache=False, preload=["acme"], snapshots=False)
    assert engine.wait_ready(timeout=120)
    store = engine.store
    assert isinstance(store, IndexedLake)
    index = store._indexes["acme"].store
    assert {tuple(p) for p in index.lookups_of("acme", "decisions")} == {
        ("decisionId", "executionId")
    }
    assert {tuple(p) for p in index.lookups_of("acme", "receipts")} == {("executionId",)}
    lookups = _extra_bytes(store, "acme", "lookups")
    decisions = demo.decisions.filter(pl.col("tenant") == "acme")
    receipts = demo.receipts.filter(pl.col("tenant") == "acme").height
    nulls = decisions["executionId"].null_count()
    assert lookups == 12 * receipts + 24 * decisions.height - 8 * nulls
    assert store.memory_bytes() == store._indexes["acme"].store.memory_bytes()
    wanted = decisions.sort("ts")["executionId"].drop_nulls()[-1]
    got = engine.query(
        f"FIND decisions WHERE executionId = '{wanted}' SINCE 30d", tenant="acme", now=demo.now
    )
    assert got.stats["path"] == "index"
    assert got.stats["lookups"] == ["decisions.executionId"]
    assert set(got.df["executionId"].to_list()) == {wanted}

    codes = _extra_bytes(store, "acme", "codes")
    assert codes >= 8 * (receipts + decisions.height)  # a 64-bit code a row, and null flags
    # A budget the rows fit but not their lookups: the index is kept, without lookups.
    rows_only = store.memory_bytes() - lookups - codes
    tight = pql.Engine(
        tmp_path / "lake", cache=False, preload=["acme"], memory_budget=rows_only, snapshots=False
    )
    assert tight.wait_ready(timeout=120)
    assert isinstance(tight.store, IndexedLake)
    assert tight.store.loaded() == ("acme",)
    assert _extra_bytes(tight.store, "acme", "lookups") == 0
    assert _extra_bytes(tight.store, "acme", "codes") == 0
    assert tight.store.memory_bytes() == rows_only
    again = tight.query(
        f"FIND decisions WHERE executionId = '{wanted}' SINCE 30d", tenant="acme", now=demo.now
    )
    assert again.stats["lookups"] == []
    assert again.df.equals(got.df)
