"""A LIMIT over rows sorted first on ``ts`` reads only the rows up to the ts of the last row it
keeps, when the store keeps rows in ts order (the memory store and the indexes): the answers
equal DuckDB's on every store path, with the first run shortened so that the probing runs even
on small data, at the window's edges and among rows that share an instant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
import pql.execute.compile as compile_module
from pql.ast import CompareOp
from pql.demo import DemoData, generate
from pql.plan.expr import Cmp
from tests.clock import TEST_NOW
from tests.paths import StorePath, open_path, split_tenants
from tests.test_differential import check

CASES = (
    'FIND receipts WHERE receipts.status = "error" SINCE 30d LIMIT 3',
    "FIND receipts ORDER BY receipts.ts DESC SINCE 7d LIMIT 5",
    "FIND receipts WHERE receipts.latency_ms > 250 ORDER BY receipts.ts DESC SINCE 30d LIMIT 4",
    'FIND decisions WHERE decisions.effect = "deny" SINCE 30d LIMIT 6',
    "FIND decisions ORDER BY decisions.ts DESC SINCE 1d LIMIT 2",
    "FIND receipts SINCE 90d LIMIT 1",
    'FIND receipts WHERE receipts.status = "no-such-status" SINCE 30d LIMIT 5',
    "FIND receipts ORDER BY ts DESC, workflow SINCE 30d LIMIT 7",
    "FIND receipts WHERE receipts.latency_ms > 100 ORDER BY receipts.latency_ms DESC "
    "SINCE 30d LIMIT 3",
    'FIND decisions WHERE decisions.executionId IN ("ex-edge-acme-001", "ex-edge-acme-002") '
    "SINCE 30d LIMIT 2",
)


@pytest.fixture
def short_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_module, "_MIN_ROWS", 0)
    monkeypatch.setattr(compile_module, "_FIRST_RUN", 1)


@pytest.mark.usefixtures("short_runs")
@pytest.mark.parametrize("text", CASES)
@pytest.mark.parametrize("which", [0, 3])
def test_first_rows_match_duckdb(
    store_path: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    edge_tenants: list[str],
    text: str,
    which: int,
) -> None:
    check(store_path.engine, edge_duck, text, edge_tenants[which], edge_data.now)


@pytest.fixture(scope="module")
def restarted(edge_data: DemoData, edge_lake: StorePath) -> pql.Engine:
    assert edge_lake.root is not None
    return open_path("restart", edge_data, edge_lake.root).engine


@pytest.mark.usefixtures("short_runs")
@pytest.mark.parametrize("text", CASES[:3])
def test_a_tenant_kept_in_parts_is_cut_part_by_part(
    restarted: pql.Engine,
    edge_lake: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
) -> None:
    """A tenant of several storage regions, restarted, keeps one part per region: the first
    rows are found in each part (not in the merge of their whole windows) and sorted together,
    and the answer is DuckDB's."""
    cut: list[int] = []
    firsts = compile_module._firsts

    def spied(parts: Any, *rest: Any, **named: Any) -> list[pl.LazyFrame]:
        cut.extend(part.rows for part in parts)
        return firsts(parts, *rest, **named)

    monkeypatch.setattr(compile_module, "_firsts", spied)
    assert edge_lake.root is not None
    split = split_tenants(edge_lake.root)
    assert split
    for tenant in split:
        cut.clear()
        check(restarted, edge_duck, text, tenant, edge_data.now)
        assert len(cut) >= 2 and all(rows >= 0 for rows in cut), tenant


def test_a_tenant_kept_in_parts_is_not_merged_for_readers_that_need_no_order(
    restarted: pql.Engine,
    edge_lake: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the first rows of a window need its rows in ts order: other readers (a filter and a
    count here) get a tenant's parts side by side, not merged in ts order (3x faster on the
    largest tenant of 10M receipts), and answer like DuckDB."""
    plans: list[str] = []
    scan = compile_module._Compiler.scan

    def spied(self: Any, node: Any) -> pl.LazyFrame:
        frame = scan(self, node)
        plans.append(frame.explain())
        return frame

    monkeypatch.setattr(compile_module._Compiler, "scan", spied)
    text = "FIND COUNT(*) AS n WHERE receipts.latency_ms > 100 GROUP BY receipts.status SINCE 30d"
    assert edge_lake.root is not None
    for tenant in split_tenants(edge_lake.root):
        plans.clear()
        check(restarted, edge_duck, text, tenant, edge_data.now)
        assert plans and not any("MERGE SORTED" in plan for plan in plans), tenant
        assert any(plan.count("DF [") >= 2 for plan in plans), tenant  # read in its parts


@pytest.fixture(scope="module")
def tied() -> pql.Engine:
    """Rows on few instants (truncated to the hour): long runs of rows share a ts."""
    data = generate(1_200, seed=5, tenants=1, now=TEST_NOW)
    engine = pql.Engine.in_memory(cache=False)
    for subject, frame in (("receipts", data.receipts), ("decisions", data.decisions)):
        engine.ingest(subject, frame.with_columns(pl.col("ts").dt.truncate("1h")))
    return engine


@pytest.mark.usefixtures("short_runs")
@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(0, 40),
    latency=st.integers(0, 1_000),
    descending=st.booleans(),
    subject=st.sampled_from(["receipts", "decisions"]),
)
def test_first_rows_among_tied_instants_equal_the_full_sort(
    tied: pql.Engine, count: int, latency: int, descending: bool, subject: str
) -> None:
    where = (
        f"WHERE receipts.latency_ms > {latency} "
        if subject == "receipts"
        else ('WHERE decisions.effect = "deny" ' if latency % 2 else "")
    )
    order = f"ORDER BY {subject}.ts {'DESC' if descending else 'ASC'} "
    text = f"FIND {subject} {where}{order}SINCE 30d LIMIT {count}"
    tenant = tied.store.tenants()[0]
    fast = tied.query(text, tenant=tenant, now=TEST_NOW).df
    whole = tied.query(
        f"FIND {subject} {where}{order}SINCE 30d", tenant=tenant, now=TEST_NOW
    ).df.head(count)
    assert fast.equals(whole), text
    assert fast.height == min(count, whole.height)
    if whole.height:
        assert fast.get_column("ts").is_sorted(descending=descending)


def _one_tenant(
    receipts: int, *, seed: int, limits: pql.Limits | None = None
) -> tuple[DemoData, pql.Engine, str]:
    """One tenant's generated receipts in an in-memory engine (cache off), and its name."""
    data = generate(receipts, seed=seed, tenants=1, now=TEST_NOW)
    engine = pql.Engine.in_memory(cache=False, limits=limits)
    engine.ingest("receipts", data.receipts)
    return data, engine, engine.store.tenants()[0]


def _count_sorted_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each frame the compiler sorts, appended as queries compile."""
    sorted_rows: list[int] = []
    whole_sort = compile_module._sorted

    def counted(frame: pl.LazyFrame, keys: Any) -> pl.LazyFrame:
        sorted_rows.append(frame.collect().height)
        return whole_sort(frame, keys)

    monkeypatch.setattr(compile_module, "_sorted", counted)
    return sorted_rows


def test_a_limit_reads_only_a_prefix_of_a_large_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a window far longer than the first run, the rows sorted are a prefix, not the window:
    the answer still equals the full sort's."""
    monkeypatch.setattr(compile_module, "_MIN_ROWS", 0)
    monkeypatch.setattr(compile_module, "_FIRST_RUN", 64)
    data, engine, tenant = _one_tenant(30_000, seed=2)
    early = compile_module._Compiler.first_rows
    filtered: list[bool] = []

    def spied(self: Any, scan: Any, pred: Any, *rest: Any) -> pl.LazyFrame:
        filtered.append(pred is not None)
        return early(self, scan, pred, *rest)

    monkeypatch.setattr(compile_module._Compiler, "first_rows", spied)
    sorted_rows = _count_sorted_rows(monkeypatch)
    for text in (
        'FIND receipts WHERE receipts.status = "error" SINCE 90d LIMIT 10',
        "FIND receipts ORDER BY receipts.ts DESC SINCE 90d LIMIT 10",
    ):
        fast = engine.query(text, tenant=tenant, now=TEST_NOW).df
        plain = data.receipts.filter(
            pl.col("ts").is_between(TEST_NOW - timedelta(days=90), TEST_NOW)
        )
        if "status" in text:
            expected = plain.filter(pl.col("status") == "error").sort("ts", "executionId")
        else:
            expected = plain.sort(["ts", "executionId"], descending=[True, False])
        assert fast.get_column("executionId").to_list() == (
            expected.get_column("executionId").head(10).to_list()
        ), text
    assert filtered == [True, False]  # both the filtered and the plain LIMIT stopped early
    # Only the rows up to the 10th match were sorted (the instants are all distinct here).
    assert sorted_rows == [10, 10]


@pytest.mark.parametrize("order", ["", "ORDER BY receipts.ts DESC "])
def test_the_row_cap_sorts_only_the_rows_up_to_its_last(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """``FIND receipts`` without a LIMIT returns at most ``max_rows`` rows in ts order (one
    more tells it was cut): only the rows up to the ts of that row are sorted, without probing
    (no filter), and the rows and the truncated flag are the full sort's."""
    data, engine, tenant = _one_tenant(3_000, seed=4, limits=pql.Limits(max_rows=20))
    sorted_rows = _count_sorted_rows(monkeypatch)
    result = engine.query(f"FIND receipts {order}SINCE 90d", tenant=tenant, now=TEST_NOW)
    window = data.receipts.filter(pl.col("ts").is_between(TEST_NOW - timedelta(days=90), TEST_NOW))
    expected = window.sort(["ts", "executionId"], descending=[bool(order), False])
    assert window.height > 100 and window.get_column("ts").n_unique() == window.height
    assert result.truncated
    assert result.df.get_column("executionId").to_list() == (
        expected.get_column("executionId").head(20).to_list()
    )
    assert sorted_rows == [21]  # the cap's rows and the one that tells it was cut


def test_the_first_run_holds_the_matches_the_estimate_expects() -> None:
    """A probe's first run is long enough to hold four times the LIMIT's matches at the share
    of rows its filter is estimated to keep; nothing estimated to match, no run is."""
    first_run_rows = compile_module._first_run_rows
    assert first_run_rows(3, None) == first_run_rows(3, 0.05) == compile_module._FIRST_RUN
    assert first_run_rows(1_000, None) == 16_000
    assert first_run_rows(100, 0.01) == 40_000
    assert first_run_rows(100, 0.0) > 10**15


def test_an_estimated_share_lets_a_window_under_the_minimum_be_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the filter's share estimated, a window shorter than ``_MIN_ROWS`` is probed when
    four first runs fit in it (a common status), and not when they do not (a rare
    combination) or when nothing is estimated: every answer is the full sort's."""
    monkeypatch.setattr(compile_module, "_MIN_ROWS", 10**9)  # never, without an estimate
    monkeypatch.setattr(compile_module, "_FIRST_RUN", 64)
    data, engine, tenant = _one_tenant(30_000, seed=2)
    shares: list[float | None] = []
    runs: list[int] = []
    kept_share = compile_module._Compiler.kept_share
    firsts = compile_module._firsts

    def spied_share(self: Any, kept: Any) -> float | None:
        shares.append(kept_share(self, kept))
        return shares[-1]

    def spied_firsts(parts: Any, *rest: Any, **named: Any) -> list[pl.LazyFrame]:
        runs.append(rest[-1])
        return firsts(parts, *rest, **named)

    monkeypatch.setattr(compile_module._Compiler, "kept_share", spied_share)
    monkeypatch.setattr(compile_module, "_firsts", spied_firsts)
    window = data.receipts.filter(pl.col("ts").is_between(TEST_NOW - timedelta(days=90), TEST_NOW))
    common = 'WHERE receipts.status = "error"'
    rare = 'WHERE receipts.status = "error" AND receipts.latency_ms > 2500 AND workflow = "etl"'
    for where, probed in ((common, True), (rare, False)):
        shares.clear()
        runs.clear()
        text = f"FIND receipts {where} SINCE 90d LIMIT 10"
        fast = engine.query(text, tenant=tenant, now=TEST_NOW).df
        (share,) = shares
        assert share is not None and 0 <= share < 0.2, text
        run = compile_module._first_run_rows(10, share)
        assert (4 * run <= window.height) is probed, (text, share, run, window.height)
        assert runs == ([run] if probed else []), text
        whole = engine.query(text.replace(" LIMIT 10", ""), tenant=tenant, now=TEST_NOW).df
        assert fast.height == min(10, whole.height) and fast.equals(whole.head(10)), text
    monkeypatch.setattr(compile_module._Compiler, "kept_share", lambda self, kept: None)
    runs.clear()
    engine.compiled.clear()
    engine.plans.clear()
    engine.query(f"FIND receipts {common} SINCE 90d LIMIT 10", tenant=tenant, now=TEST_NOW)
    assert runs == []  # no estimate: the window is under _MIN_ROWS


def test_the_cut_uses_the_stores_times_without_reading_ts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store that keeps rows in ts order hands over their ts as microseconds: the cut is found
    in them, and the ts column is not read through the query engine (nor copied) to find it."""
    monkeypatch.setattr(compile_module, "_MIN_ROWS", 0)
    monkeypatch.setattr(compile_module, "_FIRST_RUN", 64)
    data, engine, tenant = _one_tenant(20_000, seed=3)

    def no_read(*args: Any) -> Any:
        raise AssertionError("the ts column was read to find the cut")

    cut: list[int] = []
    up_to = compile_module._up_to

    def spied(part: Any, *rest: Any) -> pl.LazyFrame:
        assert part.times is not None
        cut.append(part.rows)
        return up_to(part, *rest)

    monkeypatch.setattr(compile_module, "_ts_values", no_read)
    monkeypatch.setattr(compile_module, "_up_to", spied)
    window = data.receipts.filter(pl.col("ts").is_between(TEST_NOW - timedelta(days=90), TEST_NOW))
    errors = window.filter(pl.col("status") == "error").sort("ts", "executionId")
    latest = window.sort(["ts", "executionId"], descending=[True, False])
    for text, expected in (
        ('FIND receipts WHERE receipts.status = "error" SINCE 90d LIMIT 10', errors),
        ("FIND receipts ORDER BY receipts.ts DESC SINCE 90d LIMIT 10", latest),
    ):
        fast = engine.query(text, tenant=tenant, now=TEST_NOW).df
        assert fast.get_column("executionId").to_list() == (
            expected.get_column("executionId").head(10).to_list()
        ), text
    assert cut == [window.height, window.height]  # each cut in the window's own times


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("filtered", [False, True])
def test_parts_without_the_stores_times_read_their_ts(descending: bool, filtered: bool) -> None:
    """A store that gives no times: each part's ``ts`` is read through the query engine (as µs,
    whatever the column's unit) and the cut is the same as with the times given."""
    from pql.plan.expr import Col, Const

    start = TEST_NOW - timedelta(days=1)
    frames = [
        pl.DataFrame(
            {
                "receipts.ts": [start + timedelta(seconds=7 * i + k) for i in range(2_000)],
                "receipts.latency_ms": [float((i * 37 + k) % 100) for i in range(2_000)],
            }
        ).with_columns(pl.col("receipts.ts").dt.cast_time_unit("ns"))
        for k in (0, 3)
    ]
    latency = Col("receipts", "latency_ms", pql.catalog.DataType.FLOAT)
    pred = Cmp(latency, CompareOp.GT, Const(90.0, pql.catalog.DataType.FLOAT)) if filtered else None
    times = [
        f.get_column("receipts.ts").dt.cast_time_unit("us").to_physical().to_numpy() for f in frames
    ]
    answers = []
    for handed in (times, [None, None]):
        parts = [
            compile_module._Part(f.lazy(), f.height, at)
            for f, at in zip(frames, handed, strict=True)
        ]
        cut = compile_module._firsts(parts, pred, "receipts.ts", descending, 5, 64)
        answers.append([c.collect() for c in cut])
    for with_times, without, frame in zip(*answers, frames, strict=True):
        assert with_times.equals(without)
        kept = frame if pred is None else frame.filter(pl.col("receipts.latency_ms") > 90.0)
        ordered = kept.sort("receipts.ts", descending=descending)
        assert 5 <= without.height < frame.height // 4
        assert without.sort("receipts.ts", descending=descending).head(5).equals(ordered.head(5))


@pytest.mark.usefixtures("short_runs")
@settings(max_examples=30, deadline=None)
@given(
    moves=st.lists(st.integers(-600, 600), min_size=2, max_size=6),
    count=st.integers(1, 12),
    latency=st.integers(0, 1_000),
    descending=st.booleans(),
)
def test_moved_windows_among_tied_instants_equal_the_full_sort(
    tied: pql.Engine, moves: list[int], count: int, latency: int, descending: bool
) -> None:
    """A filtered LIMIT asked again and again as its window moves (minutes either way) is cut
    where an earlier probe found its matches while they stay in the window: on rows sharing
    instants every answer is still the full sort's."""
    order = f"ORDER BY receipts.ts {'DESC' if descending else 'ASC'} "
    where = f"WHERE receipts.latency_ms > {latency} "
    tenant = tied.store.tenants()[0]
    now = TEST_NOW
    for minutes in moves:
        now += timedelta(minutes=minutes)
        text = f"FIND receipts {where}{order}SINCE 2d LIMIT {count}"
        fast = tied.query(text, tenant=tenant, now=now).df
        whole = tied.query(f"FIND receipts {where}{order}SINCE 2d", tenant=tenant, now=now).df
        assert fast.equals(whole.head(count)), (text, now)


@pytest.mark.parametrize("descending", [False, True])
def test_a_moved_window_is_cut_where_the_last_probe_found_its_matches(
    monkeypatch: pytest.MonkeyPatch, descending: bool
) -> None:
    """Asked again with its window moved, a filtered LIMIT compiled afresh probes only when a
    match the last probe found has left the window: otherwise it is cut at the same ts. An
    ingest lets go of what the probes found. Every answer is the full sort's."""
    monkeypatch.setattr(compile_module, "_MIN_ROWS", 0)
    monkeypatch.setattr(compile_module, "_FIRST_RUN", 64)
    data, engine, tenant = _one_tenant(90_000, seed=5)
    monkeypatch.setattr(engine.compiled, "get", lambda key: None)  # compiled afresh each time
    probes: list[int] = []
    probe = compile_module._probe

    def spied(*args: Any) -> pl.LazyFrame:
        probes.append(1)
        return probe(*args)

    monkeypatch.setattr(compile_module, "_probe", spied)
    order = "ORDER BY receipts.ts DESC " if descending else ""
    text = f'FIND receipts WHERE receipts.status = "error" {order}SINCE 7d LIMIT 5'
    found: tuple[Any, Any] | None = None
    kept = cut = 0
    now = TEST_NOW - timedelta(days=20)
    for step in (0, 1, 1, 30, 60, 600, -120, 4_000, 1, -9_000, 2):
        now += timedelta(minutes=step)
        window = data.receipts.filter(pl.col("ts").is_between(now - timedelta(days=7), now))
        expected = window.filter(pl.col("status") == "error").sort(
            ["ts", "executionId"], descending=[descending, False]
        )
        before = len(probes)
        got = engine.query(text, tenant=tenant, now=now).df
        assert got.get_column("executionId").to_list() == (
            expected.get_column("executionId").head(5).to_list()
        ), now
        inside = found is not None and now - timedelta(days=7) <= found[0] and found[1] <= now
        assert (len(probes) == before) == inside, now
        if inside:
            cut += 1
        else:
            kept += 1
            found = (got.get_column("ts").min(), got.get_column("ts").max())
    assert kept >= 2 and cut >= 3  # both were met
    assert engine.compiled.first_matches is not None and len(engine.compiled.first_matches)
    engine.ingest("receipts", data.receipts.head(0))
    assert not len(engine.compiled.first_matches)
