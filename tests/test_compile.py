"""Compiled predicates compare values exactly, beyond what a float can hold."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
import pql.storage.memory as memory_module
from pql.ast import AggFunc, CompareOp
from pql.catalog import DECISIONS, DataType
from pql.demo import DemoData
from pql.errors import InternalError
from pql.execute.compile import _aggregate, compile_plan, key_part, predicate
from pql.plan.expr import AggSpec, AllOf, AnyOf, Cmp, Col, Const, In, Negate, Null, Pred
from pql.plan.nodes import Join, RollupAggregate, Scan, walk
from pql.storage import MemoryStore
from pql.storage.memory import LOOKUP_ROWS

BIG = 2**53  # the first integer whose successor a float64 cannot tell apart


def test_in_over_integers_compares_integers_not_floats(demo: DemoData) -> None:
    engine = pql.Engine.in_memory(cache=False)
    rows = demo.receipts.filter(pl.col("tenant") == "acme").tail(2)
    engine.ingest("receipts", rows.with_columns(attempt=pl.Series([BIG, BIG + 1])))
    text = f"FIND receipts WHERE attempt IN ({BIG + 1}) SINCE 180d"
    got = engine.query(text, tenant="acme", now=demo.now).df
    assert got["attempt"].to_list() == [BIG + 1]


def test_in_with_a_float_over_a_number_column_compares_as_floats(demo: DemoData) -> None:
    """An IN list holding a float over a number column compares every value as a float: an
    integer column matches its whole values, a float column its exact values."""
    engine = pql.Engine.in_memory(cache=False)
    rows = demo.receipts.filter(pl.col("tenant") == "acme").tail(3)
    latencies = pl.Series([250.5, 3.0, 99.25])
    engine.ingest("receipts", rows.with_columns(latency_ms=latencies, attempt=pl.Series([1, 2, 3])))
    got = engine.query(
        "FIND receipts WHERE latency_ms IN (250.5, 3) SINCE 180d", tenant="acme", now=demo.now
    ).df
    assert sorted(got["latency_ms"].to_list()) == [3.0, 250.5]
    got = engine.query(
        "FIND receipts WHERE attempt IN (2.0, 3.5) SINCE 180d", tenant="acme", now=demo.now
    ).df
    assert got["attempt"].to_list() == [2]


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
    assert err.value.message == "a join without a condition reached an executor"
    assert Join(join.left, join.right, key, other).keys() == (key, other)


_EXEC = Col("decisions", "executionId", DataType.STRING)
_DEC = Col("decisions", "decisionId", DataType.STRING)
_RULE = Col("decisions", "rule", DataType.STRING)
_IDS = ("decisions.executionId", "decisions.decisionId")


def _s(value: str) -> Const:
    return Const(value, DataType.STRING)


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        (Cmp(_EXEC, CompareOp.EQ, _s("a")), ("decisions.executionId", {"a"}, False)),
        (In(_EXEC, (_s("a"), _s("b"))), ("decisions.executionId", {"a", "b"}, False)),
        (Null(_EXEC), ("decisions.executionId", set(), True)),
        (
            AnyOf((Null(_EXEC), In(_EXEC, (_s("a"),)), Cmp(_EXEC, CompareOp.EQ, _s("c")))),
            ("decisions.executionId", {"a", "c"}, True),
        ),
        # an AND narrows to its key part with the fewest values
        (
            AllOf((In(_EXEC, (_s("a"), _s("b"))), Cmp(_RULE, CompareOp.EQ, _s("x")))),
            ("decisions.executionId", {"a", "b"}, False),
        ),
        (
            AllOf((In(_EXEC, (_s("a"), _s("b"))), Cmp(_DEC, CompareOp.EQ, _s("d")))),
            ("decisions.decisionId", {"d"}, False),
        ),
        # none of these pins an id column to a few values
        (Cmp(_EXEC, CompareOp.NE, _s("a")), None),
        (In(_EXEC, (_s("a"),), negated=True), None),
        (Null(_EXEC, negated=True), None),
        (Negate(Cmp(_EXEC, CompareOp.EQ, _s("a"))), None),
        (Cmp(_RULE, CompareOp.EQ, _s("a")), None),
        (AnyOf((Cmp(_EXEC, CompareOp.EQ, _s("a")), Cmp(_DEC, CompareOp.EQ, _s("d")))), None),
        (AnyOf((Cmp(_EXEC, CompareOp.EQ, _s("a")), Cmp(_RULE, CompareOp.EQ, _s("x")))), None),
        (Cmp(_EXEC, CompareOp.LT, _s("a")), None),
    ],
)
def test_key_part_finds_the_values_a_predicate_pins(
    pred: Pred, expected: tuple[str, set[str], bool] | None
) -> None:
    got = key_part(pred, _IDS)
    assert (None if got is None else (got[0], set(got[1]), got[2])) == expected


def test_lookup_reads_only_the_rows_found(demo: DemoData, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter on an id column reads its rows by lookup (stats say so) once the window is
    large enough to make it worth it; a negated one scans the window."""
    memory = pql.Engine.in_memory(cache=False)
    memory.ingest("receipts", demo.receipts)
    wanted = demo.receipts.filter(pl.col("tenant") == "acme").sort("ts")["executionId"][-1]
    text = f"FIND receipts WHERE executionId = '{wanted}' SINCE 30d"
    small = memory.query(text, tenant="acme", now=demo.now)
    assert small.stats["lookups"] == []
    monkeypatch.setattr(memory_module, "LOOKUP_MIN_WINDOW", small.stats["rows_scanned"])
    memory.compiled.clear()  # compiled under the old setting, for the same rows
    got = memory.query(text, tenant="acme", now=demo.now)
    assert got.df.equals(small.df)
    assert got.stats["lookups"] == ["receipts.executionId"]
    assert got.stats["rows_scanned"] == 1
    prepared = memory.prepare(text, tenant="acme", now=demo.now)
    compiled = compile_plan(prepared.plan, memory.store, memory.catalog, prepared.estimates)
    assert [(s.subject, s.lookup, s.rows) for s in compiled.scans] == [
        ("receipts", "receipts.executionId", 1)
    ]
    assert got.df["executionId"].to_list() == [wanted]
    scanned = memory.query(text.replace("=", "!="), tenant="acme", now=demo.now)
    assert scanned.stats["lookups"] == []
    assert scanned.stats["rows_scanned"] > 1


def test_the_partitions_path_never_looks_up(demo: DemoData, tmp_path: Path) -> None:
    engine = pql.Engine(tmp_path / "lake", index=False, cache=False)
    engine.ingest("receipts", demo.receipts)
    wanted = demo.receipts.filter(pl.col("tenant") == "acme").sort("ts")["executionId"][-1]
    got = engine.query(
        f"FIND receipts WHERE executionId = '{wanted}' SINCE 30d", tenant="acme", now=demo.now
    )
    assert got.stats["path"] == "partitions"
    assert got.stats["lookups"] == []
    assert got.df["executionId"].to_list() == [wanted]


def test_a_lookup_of_many_rows_is_declined(demo: DemoData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nulls of most of a window are cheaper to filter from the slice than to gather."""
    monkeypatch.setattr(memory_module, "LOOKUP_MIN_WINDOW", 0)
    store = MemoryStore(pql.Catalog())
    rows = demo.decisions.filter(pl.col("tenant") == "acme")
    store.ingest(DECISIONS, rows.with_columns(executionId=pl.lit(None, pl.String)))
    start, end = demo.now - timedelta(days=180), demo.now
    assert rows.height > LOOKUP_ROWS
    assert store.lookup("acme", DECISIONS, "executionId", (), True, start, end) is None
    few = store.lookup("acme", DECISIONS, "executionId", ("x",), False, start, end)
    assert few is not None and few.rows == 0
    assert store.lookup("acme", DECISIONS, "rule", ("x",), False, start, end) is None


def test_a_query_still_running_at_its_deadline_is_stopped_then() -> None:
    """``collect`` waits the milliseconds left, not more: a query held up by a step that would
    only finish 20 s later is given up after 50 ms with ``PQL-S006``."""
    import threading

    from pql.errors import SafetyError
    from pql.execute.run import collect

    release = threading.Event()

    def held(values: pl.Series) -> pl.Series:
        release.wait(20)
        return values

    frame = pl.LazyFrame({"a": [1, 2]}).select(pl.col("a").map_batches(held, pl.Int64))
    try:
        with pytest.raises(SafetyError) as caught:
            collect(frame, 50)
        assert caught.value.code == "PQL-S006" and "50 ms" in caught.value.message
    finally:
        release.set()  # the cancelled query's worker ends its step and reports back


def test_a_node_the_compiler_does_not_know_is_an_internal_error_with_its_code() -> None:
    catalog = pql.Engine.in_memory().catalog
    with pytest.raises(InternalError) as err:
        compile_plan(object(), MemoryStore(catalog), catalog)  # type: ignore[arg-type]
    assert err.value.code == "PQL-X005" and "object" in err.value.message


def test_the_data_compiling_reads_is_timed_as_read_not_compile(
    demo: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's reads made while compiling (here each side of a join: 2 x 25 ms) are the
    ``read`` stage of ``timings_ms``, added up; ``compile`` is only the rest."""
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    # The join reads its sides with their join codes (``scan_coded``): both reads are slowed.
    for name in ("scan", "scan_coded"):
        read = getattr(engine.store, name)

        def slow(*args: object, _read: Any = read, **kwargs: object) -> object:
            time.sleep(0.025)
            return _read(*args, **kwargs)

        monkeypatch.setattr(engine.store, name, slow)
    text = "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId SINCE 7d"
    stats = engine.query(text, tenant="acme", now=demo.now).stats
    assert stats["join_codes"] == ["receipts.executionId", "decisions.executionId"]
    timings = stats["timings_ms"]
    assert timings["read"] >= 50
    assert timings["compile"] < 25
    assert timings["total"] >= timings["read"] + timings["compile"] + timings["execute"]


def test_a_rollup_plan_over_a_store_without_rollups_is_an_internal_error(demo: DemoData) -> None:
    """A plan that reads a rollup, given to a store that keeps none, stops with its code."""
    engine = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    engine.ingest("receipts", demo.receipts)
    text = "FIND COUNT(*) GROUP BY receipts.region SINCE 30d"
    plan = engine.prepare(text, tenant="acme", now=demo.now).plan
    rollup = next(node for node in walk(plan) if isinstance(node, RollupAggregate))
    with pytest.raises(InternalError) as err:
        compile_plan(rollup, object(), engine.catalog)  # type: ignore[arg-type]
    assert err.value.code == "PQL-X060" and "keeps no rollups" in err.value.message


def test_an_in_list_of_integers_compares_integers_exactly() -> None:
    """Only a float among the values makes IN compare as floats: integers stay integers, which
    past 2**53 a float could no longer tell apart."""
    big = 2**53
    frame = pl.LazyFrame({"receipts.attempt": [big, big + 1]})
    col = Col("receipts", "attempt", DataType.INT)
    exact = In(col, (Const(big + 1, DataType.INT),))
    kept = frame.filter(predicate(exact)).collect().get_column("receipts.attempt")
    assert kept.to_list() == [big + 1]
    with_float = In(col, (Const(big + 1, DataType.INT), Const(0.5, DataType.FLOAT)))
    assert frame.filter(predicate(with_float)).collect().height == 2  # compared as floats


@pytest.mark.parametrize(
    ("column", "reads"),
    [
        ("decisionId", False),  # the key
        ("tenant", False),
        ("ts", False),
        ("executionId", True),  # a reference: a decision may have none
        ("policy_version", True),
    ],
)
def test_count_of_a_column_never_null_reads_no_value(column: str, reads: bool) -> None:
    """COUNT of the key, tenant or ts counts rows (``pl.len()``), so a join below it gathers
    none of the column's values; COUNT of a column that may be null reads it."""
    catalog = pql.Engine.in_memory().catalog
    kind = DECISIONS.column(column)
    assert kind is not None
    spec = AggSpec(AggFunc.COUNT, Col("decisions", column, kind.type), "n", DataType.INT)
    expr = _aggregate(spec, catalog)
    assert expr.meta.root_names() == ([f"decisions.{column}"] if reads else [])
    assert DECISIONS.never_null(column) is not reads
    frame = pl.DataFrame({f"decisions.{column}": ["a", None, "b"]})
    if reads:  # and counts only values, as SQL does
        assert frame.select(expr).item() == 2
