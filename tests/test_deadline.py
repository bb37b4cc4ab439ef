"""Deadlines (PQL-S006) and admission (PQL-S007): limits that apply while a query runs."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql.cli import main
from pql.errors import SafetyError
from pql.execute.run import collect
from pql.limits import Limits

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


def test_fast_queries_finish_under_the_deadline() -> None:
    assert collect(pl.LazyFrame({"a": [1, 2]}).select(pl.len()), 2_000).item() == 2


def test_engine_deadline(big: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    engine = _engine(big, deadline_ms=1)
    with pytest.raises(SafetyError, match="PQL-S006"):
        engine.query(SLOW, tenant="acme", now=NOW, cache=False)
    relaxed = _engine(big)
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
