"""The result cache: hits, invalidation by data version, tenant isolation, TTL, size, clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql.cache import CacheKey, ResultCache, floor_clock, parse
from pql.demo import DemoData, generate
from pql.result import Result

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
GROUP = "FIND COUNT(*), AVG(receipts.latency_ms) GROUP BY receipts.region SINCE 30d"
TEXTS = [
    GROUP,
    "FIND COUNT(receipts.executionId) SINCE 7d",
    'FIND receipts WHERE receipts.status = "error" SINCE 30d LIMIT 20',
    'FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = receipts.executionId WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 30d',
]


class FakeTimer:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(3_000, seed=5, now=NOW, days=60)


def _engine(data: DemoData, **kwargs: object) -> pql.Engine:
    eng = pql.Engine.in_memory()
    eng.ingest("receipts", data.receipts)
    eng.ingest("decisions", data.decisions)
    for name, value in kwargs.items():
        setattr(eng, name, value)
    return eng


@pytest.fixture
def engine(data: DemoData) -> pql.Engine:
    return _engine(data)


def _tenants(data: DemoData) -> list[str]:
    return data.receipts["tenant"].value_counts(sort=True)["tenant"].to_list()


def _new_receipt(data: DemoData, tenant: str, suffix: str) -> pl.DataFrame:
    row = data.receipts.filter(pl.col("tenant") == tenant).tail(1)
    return row.with_columns(
        pl.lit(f"new-{suffix}").alias("executionId"),
        pl.lit(NOW - timedelta(hours=1)).cast(pl.Datetime("us", "UTC")).alias("ts"),
    )


def test_repeat_hits_and_equals_the_uncached_answer(engine: pql.Engine) -> None:
    first = engine.query(GROUP, tenant="acme", now=NOW)
    second = engine.query(GROUP, tenant="acme", now=NOW)
    fresh = engine.query(GROUP, tenant="acme", now=NOW, cache=False)
    assert first.stats["cache"] == {"hit": False, "age_ms": None}
    assert second.stats["cache"]["hit"] is True
    assert second.stats["cache"]["age_ms"] >= 0
    assert second.df.equals(first.df)
    assert fresh.df.equals(first.df)
    assert second.df is not first.df  # a caller cannot change the cached frame


def test_equivalent_texts_share_an_entry(engine: pql.Engine) -> None:
    engine.query("FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme", now=NOW)
    again = engine.query(
        "find   count(receipts.executionId)\n since 7d -- same query", tenant="acme", now=NOW
    )
    assert again.stats["cache"]["hit"] is True


def test_ingest_invalidates_only_that_tenant(engine: pql.Engine, data: DemoData) -> None:
    big, other = _tenants(data)[:2]
    before = engine.query(GROUP, tenant=big, now=NOW)
    engine.query(GROUP, tenant=other, now=NOW)
    engine.ingest("receipts", _new_receipt(data, big, "1"))
    after = engine.query(GROUP, tenant=big, now=NOW)
    assert after.stats["cache"]["hit"] is False
    assert after.df.select(pl.col(after.df.columns[1]).sum()).item() == (
        before.df.select(pl.col(before.df.columns[1]).sum()).item() + 1
    )
    assert engine.query(GROUP, tenant=other, now=NOW).stats["cache"]["hit"] is True


def test_cache_false_bypasses(engine: pql.Engine) -> None:
    assert engine.cache is not None
    engine.query(GROUP, tenant="acme", now=NOW)
    before = engine.cache.stats()
    result = engine.query(GROUP, tenant="acme", now=NOW, cache=False)
    assert result.stats["cache"] == {"hit": False, "age_ms": None}
    after = engine.cache.stats()
    assert (after.hits, after.misses, after.entries) == (before.hits, before.misses, before.entries)


def test_engine_without_cache(data: DemoData) -> None:
    eng = pql.Engine.in_memory()
    eng.cache = None
    eng.ingest("receipts", data.receipts)
    eng.query(GROUP, tenant="acme", now=NOW)
    assert eng.query(GROUP, tenant="acme", now=NOW).stats["cache"]["hit"] is False


def test_tighter_tenant_limits_miss(engine: pql.Engine) -> None:
    engine.query(GROUP, tenant="acme", now=NOW)
    engine.set_tenant_limits("acme", pql.Limits(deadline_ms=500))
    assert engine.query(GROUP, tenant="acme", now=NOW).stats["cache"]["hit"] is False


def test_safety_still_runs_on_a_cached_text(engine: pql.Engine) -> None:
    engine.query(GROUP, tenant="acme", now=NOW)
    engine.set_tenant_limits("acme", pql.Limits(max_window=timedelta(days=7)))
    with pytest.raises(pql.SafetyError):
        engine.query(GROUP, tenant="acme", now=NOW)


@given(text=st.sampled_from(TEXTS), pair=st.sampled_from([(0, 1), (1, 2), (0, 3), (2, 4)]))
def test_never_shared_across_tenants(data: DemoData, text: str, pair: tuple[int, int]) -> None:
    eng = _engine(data)
    tenants = _tenants(data)
    a, b = tenants[pair[0]], tenants[pair[1]]
    key_a = CacheKey.of(eng.prepare(text, tenant=a, now=NOW), eng.store.version(a))
    key_b = CacheKey.of(eng.prepare(text, tenant=b, now=NOW), eng.store.version(b))
    assert key_a != key_b
    eng.query(text, tenant=a, now=NOW)
    answer_b = eng.query(text, tenant=b, now=NOW)
    assert answer_b.stats["cache"]["hit"] is False
    assert answer_b.df.equals(eng.query(text, tenant=b, now=NOW, cache=False).df)


def _result(rows: int) -> Result:
    return Result(pl.DataFrame({"x": list(range(rows))}), False, {})


def _key(engine: pql.Engine, days: int) -> CacheKey:
    prepared = engine.prepare(f"FIND receipts SINCE {days}d", tenant="acme", now=NOW)
    return CacheKey.of(prepared, 1)


def test_ttl_expiry(engine: pql.Engine) -> None:
    timer = FakeTimer()
    cache = ResultCache(ttl_s=300, timer=timer)
    key = _key(engine, 1)
    cache.put(key, _result(3))
    timer.now += 299
    hit = cache.get(key)
    assert hit is not None
    assert hit[1] == pytest.approx(299_000)
    timer.now += 2
    assert cache.get(key) is None
    assert cache.stats().entries == 0


def test_ttl_expiry_through_the_engine(data: DemoData) -> None:
    timer = FakeTimer()
    eng = _engine(data, cache=ResultCache(ttl_s=60, timer=timer))
    eng.query(GROUP, tenant="acme", now=NOW)
    timer.now += 30
    assert eng.query(GROUP, tenant="acme", now=NOW).stats["cache"]["age_ms"] == 30_000
    timer.now += 31
    assert eng.query(GROUP, tenant="acme", now=NOW).stats["cache"]["hit"] is False


def test_byte_bound_evicts_least_recently_used(engine: pql.Engine) -> None:
    one = _result(1000)  # 8 kB of Int64 plus the per-entry overhead
    size = int(one.df.estimated_size()) + 1024
    cache = ResultCache(max_bytes=size * 2 + 10)
    k1, k2, k3 = (_key(engine, d) for d in (1, 2, 3))
    cache.put(k1, one)
    cache.put(k2, _result(1000))
    assert cache.get(k1) is not None  # k1 is now the most recently used
    cache.put(k3, _result(1000))
    assert cache.get(k2) is None
    assert cache.get(k1) is not None
    assert cache.get(k3) is not None
    assert cache.stats().bytes <= cache.max_bytes
    assert cache.put(_key(engine, 4), _result(10_000)) is False  # larger than the whole cache
    assert cache.get(_key(engine, 4)) is None


def test_floor_clock() -> None:
    moment = datetime(2026, 3, 2, 10, 0, 17, 900, tzinfo=UTC)
    assert floor_clock(moment, timedelta(seconds=10)) == datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC)
    assert floor_clock(moment, timedelta(minutes=1)) == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert floor_clock(moment, timedelta(0)) == moment


def test_wall_clock_is_exact_by_default(engine: pql.Engine) -> None:
    """The contract: without a fixed now, the window ends at the wall clock, not a rounded one."""
    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    ends = {engine.query(text, tenant="acme").stats["window"]["end"] for _ in range(3)}
    assert len(ends) == 3


def test_wall_clock_is_floored_when_opted_in_and_a_fixed_now_is_exact(data: DemoData) -> None:
    engine = _engine(data, cache_granularity=timedelta(seconds=10))
    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    first = engine.query(text, tenant="acme")
    end = datetime.fromisoformat(first.stats["window"]["end"])
    assert end.microsecond == 0
    assert end.second % 10 == 0
    second = engine.query(text, tenant="acme")
    if second.stats["window"]["end"] == first.stats["window"]["end"]:
        assert second.stats["cache"]["hit"] is True
    exact = NOW + timedelta(seconds=3, microseconds=7)
    fixed = engine.query(text, tenant="acme", now=exact)
    assert fixed.stats["window"]["end"] == "2026-03-02T12:00:03.000007Z"


def test_granularity_is_an_engine_setting(data: DemoData) -> None:
    eng = _engine(data, cache_granularity=timedelta(minutes=5))
    end = datetime.fromisoformat(eng.query(GROUP, tenant="acme").stats["window"]["end"])
    assert end.minute % 5 == 0
    assert end.second == 0


def test_parse_cache_returns_the_same_ast() -> None:
    assert parse(GROUP) is parse(GROUP)
    with pytest.raises(pql.ParseError):
        parse("FIND")


def test_cli_no_cache(tmp_path: object, data: DemoData, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from pql.cli import main

    root = Path(str(tmp_path)) / "lake"
    eng = pql.Engine(root)
    eng.ingest("receipts", data.receipts)
    args = ["query", "--data", str(root), "--tenant", "acme", "--format", "json"]
    assert main([*args, "--now", "2026-03-02T12:00:00Z", "--no-cache", GROUP]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stats"]["cache"] == {"hit": False, "age_ms": None}
    assert main([*args, "--no-cache", GROUP]) == 0
    assert main([*args, GROUP]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    # A one-shot command with the exact wall clock: a new window, so a miss.
    assert doc["stats"]["cache"]["hit"] is False


def test_exact_wall_clock_queries_bypass_the_cache(engine: pql.Engine) -> None:
    """Their keys never repeat, so they are neither looked up nor stored."""
    assert engine.cache is not None
    before = len(engine.cache)
    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    result = engine.query(text, tenant="acme")
    assert result.stats["cache"] == {"hit": False, "age_ms": None}
    assert len(engine.cache) == before


def test_changing_an_answer_does_not_change_the_cache(engine: pql.Engine) -> None:
    """Neither the answer of a miss nor that of a hit is the object the cache holds."""
    first = engine.query(GROUP, tenant="acme", now=NOW)
    assert first.stats["cache"]["hit"] is False
    expected = first.df.clone()
    expected_arrow = first.to_arrow()
    first.df[0, first.df.columns[1]] = 999_999
    first.stats["window"]["start"] = "changed"
    first.stats["estimate"]["rows"] = -1.0
    first.stats["would_refuse"].append({"code": "changed"})
    second = engine.query(GROUP, tenant="acme", now=NOW)
    assert second.stats["cache"]["hit"] is True
    assert second.df.equals(expected)
    assert second.to_arrow().equals(expected_arrow)
    assert second.stats["window"]["start"] != "changed"
    assert second.stats["estimate"]["rows"] != -1.0
    assert second.stats["would_refuse"] == []
    # A hit's answer is a copy too.
    second.df[0, second.df.columns[1]] = 888_888
    second.stats["window"]["end"] = "changed"
    third = engine.query(GROUP, tenant="acme", now=NOW)
    assert third.df.equals(expected)
    assert third.to_arrow().equals(expected_arrow)
    assert third.stats["window"]["end"] != "changed"


def test_the_cache_keeps_its_own_copy(engine: pql.Engine) -> None:
    """``ResultCache.put`` keeps a copy and ``get`` hands one out."""
    cache = ResultCache()
    prepared = engine.prepare(GROUP, tenant="acme", now=NOW)
    key = CacheKey.of(prepared, 1)
    result = Result(pl.DataFrame({"n": [1, 2]}), False, {"window": {"start": "a"}})
    cache.put(key, result)
    result.df[0, "n"] = 999
    result.stats["window"]["start"] = "changed"
    found = cache.get(key)
    assert found is not None
    assert found[0].df["n"].to_list() == [1, 2]
    assert found[0].stats == {"window": {"start": "a"}}
    found[0].df[1, "n"] = 999
    found[0].stats["window"]["start"] = "changed"
    again = cache.get(key)
    assert again is not None
    assert again[0].df["n"].to_list() == [1, 2]
    assert again[0].stats == {"window": {"start": "a"}}
