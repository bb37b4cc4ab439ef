"""Deadlines (PQL-S006) and admission (PQL-S007): limits that apply while a query runs."""

from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
import pql.engine
import pql.stats
from pql.analyze import analyze
from pql.cli import main
from pql.errors import SafetyError
from pql.execute.admission import Hold
from pql.execute.run import collect
from pql.limits import Limits
from pql.storage import IndexedLake

NOW = datetime(2026, 11, 27, 11, tzinfo=UTC)
SLOW = "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
ROWS = 300_000


def _receipts(n: int) -> pl.DataFrame:
    ts = pl.datetime_range(
        NOW - timedelta(days=20), NOW, interval="1s", time_zone="UTC", eager=True
    )
    return pl.DataFrame(
        {
            "executionId": [f"ex-{i}" for i in range(n)],
            "tenant": "acme",
            "region": "us-east-1",
            "ts": ts.head(n),
            "workflow": "etl",
            "status": "ok",
            "latency_ms": 1.0,
            "cost_usd": 0.5,
        }
    )


def _decisions(receipts: pl.DataFrame) -> pl.DataFrame:
    return receipts.select(
        pl.format("dc-{}", pl.col("executionId")).alias("decisionId"),
        "executionId",
        "tenant",
        "region",
        "ts",
        pl.lit("rule.a").alias("rule"),
        pl.lit("allow").alias("effect"),
        pl.lit("v1").alias("policy_version"),
    )


@pytest.fixture(scope="module")
def big() -> tuple[pl.DataFrame, pl.DataFrame]:
    receipts = _receipts(ROWS)
    return receipts, _decisions(receipts)


def _engine(big: tuple[pl.DataFrame, pl.DataFrame], **limits: Any) -> pql.Engine:
    engine = pql.Engine.in_memory(limits=Limits(**limits))
    engine.ingest("receipts", big[0])
    engine.ingest("decisions", big[1])
    return engine


def test_collect_cancels_a_slow_query_at_its_deadline() -> None:
    keys = pl.LazyFrame({"k": [0] * 6_000, "v": range(6_000)})
    slow = keys.join(keys, on="k").select(pl.col("v").sum())  # 36 million rows
    started = time.perf_counter()
    with pytest.raises(SafetyError) as caught:
        collect(slow, 5)
    assert time.perf_counter() - started < 1.0
    assert caught.value.code == "PQL-S006" and caught.value.exit_code == 3
    assert caught.value.setting == "Limits.deadline_ms"
    assert "5 ms" in caught.value.message


def test_a_streaming_collect_past_its_deadline_runs_out_holding_its_slots() -> None:
    """The streaming engine cannot be cancelled: the caller gets PQL-S006 at the deadline, the
    query goes on, and what it holds is released only when it ends."""
    keys = pl.LazyFrame({"k": [0] * 15_000, "v": range(15_000)})
    slow = keys.join(keys, on="k").select(pl.col("v").sum())  # 225 million pairs
    hold, freed = Hold(), threading.Event()
    started = time.perf_counter()
    with pytest.raises(SafetyError) as caught:
        collect(slow, 5, streaming=True, hold=hold)
    assert time.perf_counter() - started < 1.0
    hold.release(freed.set)
    assert not freed.is_set()  # still running: not cancelled
    assert freed.wait(60)  # and it ends on its own
    error = caught.value
    assert error.code == "PQL-S006" and error.setting == "Limits.deadline_ms"
    assert error.details == {"deadline_ms": 5, "stage": "execute", "cancelled": False}
    assert "left to finish in the background" in error.message


def test_a_hold_without_work_left_releases_at_once() -> None:
    freed: list[bool] = []
    Hold().release(lambda: freed.append(True))
    assert freed == [True]


def test_fast_queries_finish_under_the_deadline() -> None:
    # The deadline is generous on purpose: a query cancelled just before (the test above) may
    # still hold Polars' threads until its operator ends, and on a loaded machine that has taken
    # over 2 s. What is tested is that an answer in time is returned, not how fast it comes.
    assert collect(pl.LazyFrame({"a": [1, 2]}).select(pl.len()), 60_000).item() == 2


def test_engine_deadline(big: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    engine = _engine(big, deadline_ms=1)
    with pytest.raises(SafetyError, match="PQL-S006"):
        engine.query(SLOW, tenant="acme", now=NOW, cache=False)
    relaxed = _engine(big, deadline_ms=60_000)  # the first query also summarises 600,000 rows
    assert relaxed.query(SLOW, tenant="acme", now=NOW).df.item() == ROWS


def test_cli_deadline_exits_3(
    capsys: Any, big: tuple[pl.DataFrame, pl.DataFrame], lake_dir: Path
) -> None:
    engine = pql.Engine(lake_dir)
    engine.ingest("receipts", big[0])
    engine.ingest("decisions", big[1])
    argv = ["query", "--data", str(lake_dir), "--tenant", "acme", "--now", NOW.isoformat()]
    assert main([*argv, "--deadline-ms", "1", "--no-cache", SLOW]) == 3
    err = capsys.readouterr().err
    assert "PQL-S006" in err and "Limits.deadline_ms" in err
    assert main([*argv, "--deadline-ms", "0", SLOW]) == 2


def test_admission_refuses_when_the_engine_is_full(demo: Any) -> None:
    engine = pql.Engine.in_memory(limits=Limits(max_concurrent=1, max_queued=0))
    engine.ingest("receipts", demo.receipts)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine._admitted("acme"):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(SafetyError) as caught:
            engine.query("FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme", cache=False)
        assert caught.value.code == "PQL-S007"
        assert caught.value.setting == "Limits.max_concurrent"
    finally:
        release.set()
        holder.join()
    assert (
        engine.query(
            "FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme", cache=False
        ).df.height
        == 1
    )


def test_a_tenant_refused_by_a_full_engine_gives_its_share_back(demo: Any) -> None:
    """A query that got a slot of its tenant's share but none of the engine's is refused, and
    leaves the share's slot free: the tenant's next query runs once the engine has room."""
    engine = pql.Engine.in_memory(limits=Limits(max_concurrent=2, max_queued=0))
    engine.ingest("receipts", demo.receipts)
    engine.set_tenant_limits("acme", pql.TenantLimits(max_concurrent=1, max_queued=0))
    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    for _ in range(2):  # the engine's two slots, taken by others
        engine._admission.enter(0)
    try:
        with pytest.raises(SafetyError) as caught:
            engine.query(text, tenant="acme", cache=False)
        assert caught.value.message.endswith("waiting in this engine; the queue is full")
        assert engine._tenant_slots["acme"].running == 0
    finally:
        for _ in range(2):
            engine._admission.leave()
    assert engine.query(text, tenant="acme", cache=False).df.height == 1
    assert (engine._admission.running, engine._tenant_slots["acme"].running) == (0, 0)


def test_admission_with_a_query_running(big: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    """A real query holds the only slot; one arriving meanwhile is refused, none is lost."""
    engine = _engine(big, max_concurrent=1, max_queued=0, deadline_ms=60_000)
    outcomes: list[str] = []

    def ask() -> None:
        try:
            engine.query(SLOW, tenant="acme", now=NOW, cache=False)
            outcomes.append("ok")
        except SafetyError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ok" in outcomes
    assert set(outcomes) <= {"ok", "PQL-S007"}
    assert len(outcomes) == 4


JOINED = (
    "FIND AVG(receipts.latency_ms) JOIN decisions ON receipts.executionId = "
    "decisions.executionId GROUP BY decisions.rule SINCE 30d"
)


class GatedThreads:
    """A stand-in for the streaming threads whose work starts only once ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=1)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        def later() -> Any:
            assert self.gate.wait(60)
            return fn(*args, **kwargs)

        return self.pool.submit(later)


def test_a_streaming_join_past_its_deadline_keeps_its_admission_slot(
    big: tuple[pl.DataFrame, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot of a query left running is taken until the query ends, so ``max_concurrent``
    bounds the work in flight, not only the callers waiting."""
    engine = _engine(big, max_concurrent=1, max_queued=0, deadline_ms=300)
    engine.deadline_clock = FakeClock()  # the stages pass; the collect waits 300 real ms
    engine.streaming_rows = 0  # every inner join streams
    threads = GatedThreads()
    runner = importlib.import_module("pql.execute.run")  # the module, not the function
    monkeypatch.setattr(runner, "_STREAMERS", threads)
    with pytest.raises(SafetyError) as caught:
        engine.query(JOINED, tenant="acme", now=NOW, cache=False)
    assert caught.value.code == "PQL-S006" and caught.value.details["cancelled"] is False
    assert engine._admission.running == 1  # still held by the query left running
    with pytest.raises(SafetyError) as refused:
        engine.query(WINDOWED, tenant="acme", now=NOW, cache=False)
    assert refused.value.code == "PQL-S007"
    threads.gate.set()
    give_up = time.monotonic() + 60
    while engine._admission.running and time.monotonic() < give_up:
        time.sleep(0.01)
    assert engine._admission.running == 0
    engine.limits = Limits(max_concurrent=1, max_queued=0, deadline_ms=60_000)
    answer = engine.query(JOINED, tenant="acme", now=NOW, cache=False)
    assert answer.stats["polars_engine"] == "streaming" and answer.df.height == 1


def test_a_cancelled_query_frees_its_slot_at_once(big: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    engine = _engine(big, max_concurrent=1, max_queued=0, deadline_ms=1)
    engine.deadline_clock = FakeClock()  # the stages pass; the collect waits 1 real ms
    engine.streaming_rows = None  # every query on the in-memory engine, cancellable
    with pytest.raises(SafetyError) as caught:
        engine.query(JOINED, tenant="acme", now=NOW, cache=False)
    assert caught.value.details == {"deadline_ms": 1, "stage": "execute"}
    assert engine._admission.running == 0


# -- work before execution: bounded by the window, and under the deadline -------------------------

DAYS = 60
WINDOWED = (
    'FIND COUNT(receipts.executionId) WHERE receipts.status = "error" '
    "AND receipts.latency_ms > 0 SINCE 1d"
)
"""Estimated from the window's column statistics: a filter on a measure keeps it off the
rollup, which a tenant read from files would otherwise take for any window of a whole day."""


class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A lake with one receipts file per day for 60 days, and no statistics sidecar."""
    hours = DAYS * 24
    ts = pl.datetime_range(
        NOW - timedelta(hours=hours - 1), NOW, interval="1h", time_zone="UTC", eager=True
    )
    receipts = pl.DataFrame(
        {
            "executionId": [f"ex-{i}" for i in range(hours)],
            "tenant": "acme",
            "region": "us-east-1",
            "ts": ts,
            "workflow": "etl",
            "status": ["error" if i % 7 == 0 else "ok" for i in range(hours)],
            "latency_ms": 1.0,
            "cost_usd": 0.5,
        }
    )
    lake = tmp_path / "lake"
    pql.Engine(lake).ingest("receipts", receipts)
    shutil.rmtree(lake / "_pql" / "stats")  # as if written by another tool or an older pql
    return lake


def _count_summaries(monkeypatch: pytest.MonkeyPatch, clock: FakeClock | None = None) -> list[int]:
    """The rows of each batch of data files summarised (each batch takes 10 ms on ``clock``)."""
    calls: list[int] = []
    real = pql.stats.summarize

    def counting(subject: Any, frame: pl.DataFrame) -> Any:
        calls.append(frame.height)
        if clock is not None:
            clock.now += 0.010
        return real(subject, frame)

    monkeypatch.setattr(pql.stats, "summarize", counting)
    return calls


def _in_window(lake: Path, start: datetime, end: datetime) -> tuple[int, int]:
    """The data files of the window and their rows."""
    from pql.catalog import Catalog
    from pql.storage import Lake
    from pql.storage.base import micros

    entries = Lake(lake, Catalog()).manifest().files_of("acme", "receipts")
    assert len(entries) >= DAYS
    inside = [e for e in entries if e.ts_max >= micros(start) and e.ts_min <= micros(end)]
    return len(inside), sum(e.rows for e in inside)


@pytest.mark.parametrize("index", [False, True])
def test_planning_summarises_only_the_window(
    history: Path, monkeypatch: pytest.MonkeyPatch, index: bool
) -> None:
    calls = _count_summaries(monkeypatch)
    engine = pql.Engine(history, index=index)
    prepared = engine.prepare(WINDOWED, tenant="acme", now=NOW)
    assert prepared.estimates is not None
    in_window, rows = _in_window(history, NOW - timedelta(days=1), NOW)
    assert 1 <= in_window <= 2
    assert sum(calls) == rows  # not the 60 days of the tenant's history
    sidecar = json.loads((history / "_pql" / "stats" / "acme" / "receipts.json").read_text())
    assert len(sidecar["files"]) == in_window
    if index:
        assert isinstance(engine.store, IndexedLake)
        assert engine.store.loaded() == ()  # planning never loads the tenant's index
    # The same window again summarises nothing; a longer one adds only its new files.
    engine.prepare(WINDOWED, tenant="acme", now=NOW)
    assert sum(calls) == rows
    engine.prepare(WINDOWED.replace("1d", "7d"), tenant="acme", now=NOW)
    week, rows = _in_window(history, NOW - timedelta(days=7), NOW)
    assert sum(calls) == rows
    sidecar = json.loads((history / "_pql" / "stats" / "acme" / "receipts.json").read_text())
    assert len(sidecar["files"]) == week
    # Batches double (1, 2, 4 files): a week's new files take three summaries, not one each.
    assert len(calls) < week
    hours = DAYS * 24  # row i is at NOW - (hours - 1 - i) h, an error when i % 7 == 0
    errors = sum(1 for i in range(hours) if i % 7 == 0 and hours - 1 - i <= 24)
    assert engine.query(WINDOWED, tenant="acme", now=NOW).df.item() == errors


def test_a_tiny_deadline_stops_the_query_while_it_summarises(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    calls = _count_summaries(monkeypatch, clock)
    engine = pql.Engine(history, limits=Limits(deadline_ms=5))
    engine.deadline_clock = clock
    ran: list[bool] = []
    monkeypatch.setattr(engine, "execute", lambda *a, **k: ran.append(True))
    with pytest.raises(SafetyError) as caught:
        engine.query(WINDOWED.replace("1d", "30d"), tenant="acme", now=NOW, cache=False)
    assert caught.value.code == "PQL-S006" and caught.value.exit_code == 3
    assert caught.value.details["stage"] == "safety"
    assert "5 ms" in caught.value.message
    assert len(calls) == 1  # the first batch (one of the window's 30 files), then the deadline
    assert ran == []
    # What was summarised is kept: the next query goes on from there.
    sidecar = json.loads((history / "_pql" / "stats" / "acme" / "receipts.json").read_text())
    assert len(sidecar["files"]) == 1


def test_the_deadline_covers_every_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    engine = pql.Engine.in_memory(limits=Limits(deadline_ms=5))
    engine.deadline_clock = clock
    real = analyze

    def slow_analyze(*args: Any, **kwargs: Any) -> Any:
        clock.now += 0.010
        return real(*args, **kwargs)

    monkeypatch.setattr(pql.engine, "analyze", slow_analyze)
    with pytest.raises(SafetyError) as caught:
        engine.query(WINDOWED, tenant="acme", now=NOW, cache=False)
    assert caught.value.code == "PQL-S006"
    assert caught.value.details["stage"] == "analyze"
    monkeypatch.setattr(pql.engine, "analyze", real)
    engine.limits = Limits(deadline_ms=60_000)  # the final collect waits on the real clock
    assert engine.query(WINDOWED, tenant="acme", now=NOW, cache=False).df.item() == 0
