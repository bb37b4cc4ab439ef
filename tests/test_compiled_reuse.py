"""A reused plan runs the Polars query compiled a moment before when it reads the same rows
(pql.execute.reuse).

The compiled query depends on a plan's window only through the rows the store reads for it. It
must therefore be reused only by a plan of the same family (one plan memo entry, moved) whose
every scan (and rollup) reads the very same stored rows, and the answer must always be the one
a fresh compile gives: when a row enters or leaves the window, when data is ingested, for
another tenant, for a prepared query changed after it was made, and from several threads at
once.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
from pql.demo import DemoData
from pql.execute.compile import Compiled, FirstMatches
from pql.execute.reuse import CompiledQueries, Family, reuse_key
from pql.plan.nodes import RollupAggregate, walk
from pql.storage import IndexedLake
from pql.storage.base import conform, sort_columns
from pql.storage.memory import MemoryStore
from tests.reuse import engine_over, stop

QUERY = 'FIND COUNT(*) AS n WHERE receipts.status = "error" GROUP BY receipts.region SINCE 7d'
DAY = "FIND COUNT(receipts.executionId) AS n SINCE 1d"


def _ask(eng: pql.Engine, tenant: str, text: str = QUERY, **kw: object) -> pql.Result:
    return eng.query(text, tenant=tenant, cache=False, **kw)  # type: ignore[arg-type]


def _rows(result: pql.Result) -> list[str]:
    return sorted(map(repr, result.rows()))


def test_a_reused_plan_runs_the_query_compiled_for_the_same_rows(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    first = _ask(reusing, tenants[0])
    assert first.stats["compiled_reused"] is False
    with stop(at + timedelta(milliseconds=300)):
        again = _ask(reusing, tenants[0])
        fresh = _ask(planning, tenants[0])
    assert again.stats["plan_reused"] is True
    assert again.stats["compiled_reused"] is True
    assert fresh.stats["compiled_reused"] is False  # no plan kept, so no query either
    assert _rows(again) == _rows(fresh) == _rows(first)
    assert again.stats["rows_scanned"] == fresh.stats["rows_scanned"]
    assert "read" not in again.stats["timings_ms"]  # nothing was read to compile it
    assert (reusing.compiled.hits, reusing.compiled.misses) == (1, 1)
    assert len(reusing.compiled) == 1


def test_a_row_entering_the_window_compiles_afresh(
    demo: DemoData, planning: pql.Engine, tenants: list[str]
) -> None:
    """Two clocks 500 ms apart whose 1-day windows differ by one receipt: the second query
    reuses the plan but not the compiled query, and counts the receipt."""
    eng = engine_over(demo)
    tenant = tenants[0]
    mine = demo.receipts.filter(pl.col("tenant") == tenant).sort("ts")
    moment: datetime = mine.get_column("ts")[mine.height // 2]
    outside = moment + timedelta(days=1, milliseconds=250)  # its window starts just after it
    inside = moment + timedelta(days=1, milliseconds=-250)  # and here just before it
    with stop(outside):
        before = _ask(eng, tenant, DAY)
    with stop(inside):
        after = _ask(eng, tenant, DAY)
        expected = _ask(planning, tenant, DAY)
    assert after.stats["plan_reused"] is True
    assert after.stats["compiled_reused"] is False
    assert after.df.equals(expected.df)
    assert after.df["n"].item() >= before.df["n"].item() + 1
    with stop(inside + timedelta(milliseconds=10)):
        same = _ask(eng, tenant, DAY)
    assert same.stats["compiled_reused"] is True
    assert same.df.equals(after.df)


def test_new_data_is_compiled_afresh(demo: DemoData, tenants: list[str], at: datetime) -> None:
    eng = engine_over(demo)
    tenant = tenants[0]
    before = _ask(eng, tenant, DAY)
    _ask(eng, tenant, DAY)
    assert len(eng.compiled) == 1
    eng.ingest("receipts", _late(demo, tenant, at - timedelta(hours=1)))
    assert len(eng.compiled) == 0  # the old rows are let go of at once
    after = _ask(eng, tenant, DAY)
    assert after.stats["compiled_reused"] is False
    assert after.df["n"].item() == before.df["n"].item() + 3


def test_a_compiled_query_never_crosses_tenants(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    _ask(reusing, tenants[0])
    other = _ask(reusing, tenants[-1])
    assert other.stats["compiled_reused"] is False
    assert _rows(other) == _rows(_ask(planning, tenants[-1]))
    with stop(at + timedelta(milliseconds=5)):
        assert _ask(reusing, tenants[-1]).stats["compiled_reused"] is True
        assert _rows(_ask(reusing, tenants[0])) == _rows(_ask(planning, tenants[0]))


def test_another_query_reading_the_same_rows_is_compiled_afresh(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str]
) -> None:
    """Same tenant, same window, same rows read: only the plan's own family shares its query."""
    errors = QUERY
    fine = QUERY.replace('"error"', '"ok"')
    assert _ask(reusing, tenants[0], errors).df.equals(_ask(planning, tenants[0], errors).df)
    answer = _ask(reusing, tenants[0], fine)
    assert answer.stats["compiled_reused"] is False
    assert (
        _rows(answer)
        == _rows(_ask(planning, tenants[0], fine))
        != _rows(_ask(planning, tenants[0], errors))
    )


def test_a_prepared_query_changed_after_it_was_made_is_compiled_afresh(
    reusing: pql.Engine, tenants: list[str]
) -> None:
    """A caller may ``replace`` a prepared query's plan or estimates: it must then run what it
    now holds, not what its family compiled."""
    prepared = reusing.prepare(QUERY, tenant=tenants[0])
    reusing.execute(prepared)
    other = reusing.prepare(DAY, tenant=tenants[0])
    swapped = reusing.execute(replace(prepared, plan=other.plan, estimates=other.estimates))
    assert swapped.stats["compiled_reused"] is False
    assert swapped.columns == ["n"] and swapped.df.height == 1
    no_estimates = reusing.execute(replace(prepared, estimates=None))
    assert no_estimates.stats["compiled_reused"] is False
    assert prepared.family is not None
    assert (
        reuse_key(prepared.family, other.plan, prepared.estimates, reusing.store, reusing.catalog)
        is None
    )


def test_a_fixed_now_reuses_its_compiled_query(
    reusing: pql.Engine, demo: DemoData, tenants: list[str]
) -> None:
    text = "FIND COUNT(receipts.executionId) AS n SINCE 2d TIMESERIES 1h"  # never moved
    first = _ask(reusing, tenants[0], text, now=demo.now)
    again = _ask(reusing, tenants[0], text, now=demo.now)
    assert (first.stats["compiled_reused"], again.stats["compiled_reused"]) == (False, True)
    assert again.df.equals(first.df)


def test_nothing_is_reused_without_a_plan_memo(demo: DemoData, tenants: list[str]) -> None:
    none_kept = engine_over(demo, plan_memo_size=0)
    assert none_kept.compiled.size == 0
    for _ in range(2):
        assert _ask(none_kept, tenants[0]).stats["compiled_reused"] is False


ROLLUP = "FIND COUNT(receipts.executionId) AS n GROUP BY receipts.region SINCE 30d"


def _late(demo: DemoData, tenant: str, ts: datetime) -> pl.DataFrame:
    """Three new receipts of ``tenant`` at ``ts``."""
    mine = demo.receipts.filter(pl.col("tenant") == tenant)
    return mine.head(3).with_columns(
        pl.lit(ts).cast(mine.schema["ts"]).alias("ts"),
        (pl.col("executionId") + "-late").alias("executionId"),
    )


def test_a_rollup_plan_reuses_its_compiled_query(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """Moved within its days, a rollup plan reads the same rollup rows and edges: the compiled
    query runs again, and answers as a fresh compile does."""
    eng = engine_over(demo, rollup_min_rows=0)
    fresh = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    first = _ask(eng, tenants[0], ROLLUP)
    assert first.stats["compiled_reused"] is False
    assert "RollupAggregate" in str(eng.explain(ROLLUP, tenant=tenants[0]))
    with stop(at + timedelta(milliseconds=300)):
        again = _ask(eng, tenants[0], ROLLUP)
        expected = _ask(fresh, tenants[0], ROLLUP)
    assert again.stats["plan_reused"] is True and again.stats["compiled_reused"] is True
    assert _rows(again) == _rows(expected) == _rows(first)


def test_a_row_entering_a_rollup_edge_compiles_afresh(demo: DemoData, tenants: list[str]) -> None:
    """Two clocks 500 ms apart, far from midnight: the rollup reads the same whole days, but a
    receipt enters the window's last, partial day. The plan moves; the compiled query does not
    (each edge has its own key beside the whole days'), and the receipt is counted."""
    eng = engine_over(demo, rollup_min_rows=0)
    fresh = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    tenant = tenants[0]
    mine = demo.receipts.filter(
        (pl.col("tenant") == tenant) & pl.col("ts").dt.hour().is_between(2, 21)
    ).sort("ts")
    moment: datetime = mine.get_column("ts")[mine.height // 2]
    with stop(moment - timedelta(milliseconds=250)):
        before = _ask(eng, tenant, ROLLUP)
    with stop(moment + timedelta(milliseconds=250)):
        after = _ask(eng, tenant, ROLLUP)
        expected = _ask(fresh, tenant, ROLLUP)
        plan = eng.explain(ROLLUP, tenant=tenant)
    assert "RollupAggregate" in str(plan)
    assert after.stats["plan_reused"] is True
    assert after.stats["compiled_reused"] is False
    assert _rows(after) == _rows(expected) != _rows(before)


def test_a_rollup_over_new_data_is_compiled_afresh(demo: DemoData, tenants: list[str]) -> None:
    """An ingest into the whole days a rollup reads compiles afresh. A window of the language
    always has an edge, whose rows change too; the rollup's own key is what tells for a plan
    of whole days only."""
    eng = engine_over(demo, rollup_min_rows=0)
    tenant = tenants[0]
    midnight = datetime.combine(demo.now.date(), time(), UTC)
    before = _ask(eng, tenant, ROLLUP, now=midnight)
    assert _ask(eng, tenant, ROLLUP, now=midnight).stats["compiled_reused"] is True
    prepared = eng.prepare(ROLLUP, tenant=tenant, now=midnight)
    (rollup,) = (n for n in walk(prepared.plan) if isinstance(n, RollupAggregate))
    days = replace(rollup, edges=())
    family = Family(object(), days, None)
    kept = reuse_key(family, days, None, eng.store, eng.catalog)
    assert kept is not None
    assert reuse_key(family, days, None, eng.store, eng.catalog) == kept
    eng.ingest("receipts", _late(demo, tenant, midnight - timedelta(days=10, hours=5)))
    assert reuse_key(family, days, None, eng.store, eng.catalog) not in (None, kept)
    after = _ask(eng, tenant, ROLLUP, now=midnight)
    assert after.stats["compiled_reused"] is False
    total = sum(int(n) for n in after.df["n"])
    assert total == sum(int(n) for n in before.df["n"]) + 3


def test_threads_asking_at_once_get_the_same_answer(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str]
) -> None:
    expected = {t: _rows(_ask(planning, t)) for t in tenants}
    answers: list[tuple[str, list[str], bool]] = []
    lock = threading.Lock()

    def ask(tenant: str) -> None:
        for _ in range(15):
            result = _ask(reusing, tenant)
            with lock:
                answers.append((tenant, _rows(result), result.stats["compiled_reused"]))

    threads = [threading.Thread(target=ask, args=(t,)) for t in tenants for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 30 * len(tenants)
    assert all(rows == expected[tenant] for tenant, rows, _ in answers)
    assert sum(reused for *_, reused in answers) >= len(answers) - 2 * len(tenants) * 2


def _served(demo: DemoData, lake: Path, tenant: str) -> tuple[pql.Engine, pql.Engine, IndexedLake]:
    """A lake of ``demo`` (its writer reads partitions only) and an engine serving it with
    ``tenant``'s index loaded (no snapshots), and that engine's store."""
    writer = pql.Engine(lake, index=False, cache=False)
    writer.ingest("receipts", demo.receipts)
    writer.ingest("decisions", demo.decisions)
    served = pql.Engine(lake, cache=False, preload=[tenant], snapshots=False)
    assert served.wait_ready(timeout=120)
    assert isinstance(served.store, IndexedLake)
    return writer, served, served.store


def test_an_index_in_memory_reuses_and_partitions_do_not(
    demo: DemoData, tmp_path: Path, tenants: list[str]
) -> None:
    writer, served, store = _served(demo, tmp_path / "lake", tenants[0])
    for _ in range(2):  # a lake's partitions cannot say which rows a window reads
        assert _ask(writer, tenants[0], now=demo.now).stats["compiled_reused"] is False
    first = _ask(served, tenants[0], now=demo.now)
    again = _ask(served, tenants[0], now=demo.now)
    assert (first.stats["path"], again.stats["compiled_reused"]) == ("index", True)
    assert again.df.equals(first.df)
    window = [(demo.now, demo.now)]
    assert store.rows_keys(tenants[-1], served.catalog["receipts"], window) is None


def test_rows_are_told_only_at_the_version_the_plan_was_made_at(
    demo: DemoData, tmp_path: Path, tenants: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prepared query's family carries the tenant's version as its plan memo key read it, and
    the store tells rows only at that version, without reading it again: a plan made after
    another writer's ingest never runs the query compiled for the rows before it."""
    writer, served, store = _served(demo, tmp_path / "lake", tenants[0])
    version = store.version(tenants[0])
    prepared = served.prepare(QUERY, tenant=tenants[0], now=demo.now)
    assert prepared.family is not None and prepared.family.version == version
    subject = served.catalog["receipts"]
    window = [(demo.now - timedelta(days=7), demo.now)]
    keys = store.rows_keys(tenants[0], subject, window)
    assert keys is not None and store.rows_keys(tenants[0], subject, window, version) == keys
    assert store.rows_keys(tenants[0], subject, window, version + 1) is None
    before = _ask(served, tenants[0], now=demo.now)
    reads: list[str] = []
    read_version = store.lake.version

    def noted_version(tenant: str) -> int:
        reads.append(tenant)
        return read_version(tenant)

    monkeypatch.setattr(store.lake, "version", noted_version)
    assert _ask(served, tenants[0], now=demo.now).stats["compiled_reused"] is True
    assert reads == [tenants[0]]  # once, for the plan memo's key; not again to compile
    late = _late(demo, tenants[0], demo.now - timedelta(hours=1)).head(1)
    late = late.with_columns(status=pl.lit("error"))
    writer.ingest("receipts", late)  # another writer: the index in memory is the rows before
    assert store.version(tenants[0]) == version + 1
    assert store.rows_keys(tenants[0], subject, window) is None
    assert store.rows_keys(tenants[0], subject, window, version) == keys
    after = _ask(served, tenants[0], now=demo.now)
    assert after.stats["compiled_reused"] is False
    region = late.get_column("region")[0]
    counts = dict(before.df.select("region", "n").iter_rows())
    assert dict(after.df.select("region", "n").iter_rows()) == {
        **counts,
        region: counts.get(region, 0) + 1,
    }
    memory = engine_over(demo).store
    assert isinstance(memory, MemoryStore)
    assert memory.rows_keys(tenants[0], subject, window) is not None
    assert memory.rows_keys(tenants[0], subject, window, memory.version(tenants[0]) + 1) is None


def test_a_query_asked_every_second_and_a_half_stays_compiled(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    """Each use keeps a compiled query another ``ttl`` (2 s): a dashboard asking every 1.5 s
    never compiles again, however long it asks; left unasked for 2 s, it is compiled afresh."""
    clock = [0.0]
    reusing.compiled = CompiledQueries(ttl=2.0, timer=lambda: clock[0])
    first = _ask(reusing, tenants[0])
    assert first.stats["compiled_reused"] is False
    for step in range(1, 5):  # 6 s in all, three times the ttl
        clock[0] = 1.5 * step
        with stop(at + timedelta(seconds=1.5 * step)):
            again = _ask(reusing, tenants[0])
            expected = _ask(planning, tenants[0])
        assert again.stats["compiled_reused"] is True, step
        assert _rows(again) == _rows(expected)
    clock[0] += 2.1
    with stop(at + timedelta(seconds=8.1)):
        assert _ask(reusing, tenants[0]).stats["compiled_reused"] is False


def test_an_index_loaded_again_is_compiled_afresh(
    demo: DemoData, tmp_path: Path, tenants: list[str]
) -> None:
    """A compiled query holds views of an index's rows: when the index is let go of (here
    evicted under the memory budget) the engine drops its compiled queries at once, and once
    loaded again the new rows get new keys, so nothing compiled for the old ones is used."""
    _, served, store = _served(demo, tmp_path / "lake", tenants[0])
    first = _ask(served, tenants[0], now=demo.now)
    assert _ask(served, tenants[0], now=demo.now).stats["compiled_reused"] is True
    window = [(demo.now - timedelta(days=7), demo.now)]
    keys = store.rows_keys(tenants[0], served.catalog["receipts"], window)
    assert keys is not None and len(served.compiled) == 1
    # Room for one index at a time: tenants[1] has fewer rows than tenants[0], so it fits.
    store.memory_budget = store.memory_bytes() + 1
    store.load(tenants[1])
    assert store.loaded() == (tenants[1],)
    assert len(served.compiled) == 0  # dropped with the index, not kept until they expire
    store.memory_budget = 1 << 40
    store.load(tenants[0])
    assert set(store.loaded()) == {tenants[0], tenants[1]}
    assert store.rows_keys(tenants[0], served.catalog["receipts"], window) != keys
    again = _ask(served, tenants[0], now=demo.now)
    assert (again.stats["path"], again.stats["compiled_reused"]) == ("index", False)
    assert again.df.equals(first.df)
    assert _ask(served, tenants[0], now=demo.now).stats["compiled_reused"] is True


def test_compiled_queries_are_kept_a_short_while_after_their_last_use_and_bounded() -> None:
    clock = [0.0]
    queries = CompiledQueries(size=2, ttl=2.0, timer=lambda: clock[0])
    compiled = Compiled(pl.LazyFrame({"n": [1]}), 5, [], 0.25)
    queries.put("a", compiled)
    found = queries.get("a")
    assert found is not None and found.reused and found.read_s == 0.0 and found.cap == 5
    assert found.frame is compiled.frame and not compiled.reused
    clock[0] = 1.9
    assert queries.get("a") is not None  # used: kept 2 s from now
    clock[0] = 3.8
    assert queries.get("a") is not None
    clock[0] = 5.9
    assert queries.get("a") is None and len(queries) == 0  # 2.1 s unused
    for key in ("a", "b", "c"):
        queries.put(key, compiled)
    assert len(queries) == 2 and queries.get("a") is None
    assert (queries.hits, queries.misses) == (3, 2)
    assert queries.get("b") is not None  # used: "c" is now the least recently used
    queries.put("d", compiled)
    assert queries.get("c") is None and queries.get("b") is not None
    clock[0] = 7.0
    assert queries.get("d") is not None  # "d" kept to 9.0, "b" (used at 5.9) to 7.9
    clock[0] = 7.9
    assert len(queries) == 1 and queries.get("b") is None and queries.get("d") is not None
    assert queries.first_matches is not None
    queries.first_matches.put("f", (1, 2))
    queries.clear()
    assert len(queries) == 0 and len(queries.first_matches) == 0  # let go of together
    none = CompiledQueries(size=0)
    none.put("a", compiled)
    assert none.get("a") is None and len(none) == 0 and none.first_matches is None
    with pytest.raises(ValueError, match=r"^size and ttl must not be negative$"):
        CompiledQueries(size=-1)
    with pytest.raises(ValueError, match=r"^size and ttl must not be negative$"):
        CompiledQueries(ttl=-1)
    at_once = CompiledQueries(ttl=0)  # kept for no time at all
    at_once.put("a", compiled)
    assert at_once.get("a") is None


def test_first_matches_are_kept_bounded_least_recently_used_first() -> None:
    kept = FirstMatches(size=2)
    assert kept.get("a") is None and len(kept) == 0
    kept.put("a", (1, 5))
    kept.put("b", (2, 6))
    assert kept.get("a") == (1, 5)  # used: "b" is now the least recently used
    kept.put("c", (3, 7))
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == ((1, 5), None, (3, 7))
    kept.put("a", (0, 9))
    assert kept.get("a") == (0, 9) and len(kept) == 2
    kept.clear()
    assert len(kept) == 0 and kept.get("c") is None


@settings(max_examples=40, deadline=None)
@given(
    windows=st.lists(
        st.tuples(st.integers(-200, 200), st.integers(-5, 300)), min_size=0, max_size=4
    )
)
def test_the_rows_keys_are_each_parts_window_for_every_window(
    demo: DemoData, windows: list[tuple[int, int]]
) -> None:
    """For a tenant kept in parts, the key of each of a plan's windows is, part by part, the
    part's rows and the rows the window reads in it (none for a window that ends before it
    starts, or lies outside the rows)."""
    catalog = pql.Catalog()
    subject = catalog["receipts"]
    tenant = demo.receipts.get_column("tenant")[0]
    rows = conform(demo.receipts.filter(pl.col("tenant") == tenant), subject)
    rows = rows.sort(sort_columns(subject))
    halves = [rows.filter(pl.col("region") == r) for r in sorted(set(rows["region"]))][:2]
    store = MemoryStore(catalog)
    store.load_stored(tenant, subject, halves, ordered=True)
    asked = [
        (demo.now + timedelta(hours=start), demo.now + timedelta(hours=start + length))
        for start, length in windows
    ]
    keys = store.rows_keys(tenant, subject, asked)
    table = store._tables[(tenant, "receipts")]
    assert len(table.parts) == len(halves) > 1
    assert keys == tuple(
        tuple((part.rows, *part.window(start, end)) for part in table.parts) for start, end in asked
    )
