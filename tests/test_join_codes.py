"""Join codes: joins on ``executionId`` compare 64-bit codes, only where no two values share one.

The differential tests check the answers of every join shape on the memory store and the
indexed lake (which join on codes); these check when codes are used, that a shared code keeps
them from being used, and that codes made before an ingest are never compared with codes made
after it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
import pql.storage.memory as memory_module
from pql.catalog import Catalog
from pql.demo import DemoData
from pql.execute.compile import compile_plan
from pql.execute.reuse import CompiledQueries
from pql.plan.nodes import Join, walk
from pql.storage import IndexedLake, MemoryStore
from pql.storage.base import JOIN_CODE
from pql.storage.codes import code_values, join_columns, prove
from tests.clock import TEST_NOW

JOIN = (
    "FIND COUNT(*), COUNT(decisions.decisionId) "
    "JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
)
GROUPED = (
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = receipts.executionId "
    'WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 30d'
)
CODED = ["receipts.executionId", "decisions.executionId"]


def _memory(demo: DemoData) -> pql.Engine:
    """An in-memory engine over ``demo`` that compiles every query afresh (these tests change
    a store's codes behind its back, where a compiled query would still hold the old ones)."""
    engine = pql.Engine.in_memory(cache=False)
    engine.compiled = CompiledQueries(0)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    return engine


def _values(engine: pql.Engine, text: str) -> tuple[list[tuple[object, ...]], list[str]]:
    got = engine.query(text, tenant="acme", now=TEST_NOW)
    return sorted(got.df.rows()), got.stats["join_codes"]


def test_the_built_in_subjects_join_on_execution_id_codes() -> None:
    assert join_columns(Catalog()) == {
        "receipts": ("executionId",),
        "decisions": ("executionId",),
    }


def test_codes_are_null_where_the_value_is() -> None:
    values = pl.Series("executionId", ["ex-1", None, "ex-1", "ex-2"])
    codes = code_values(values)
    assert codes.dtype == pl.UInt64
    assert codes.is_null().to_list() == [False, True, False, False]
    assert codes[0] == codes[2] != codes[3]


def test_prove_refuses_a_code_two_values_share() -> None:
    values = [pl.Series(["a", "b"]), pl.Series(["b", "c", None])]
    honest = [code_values(v) for v in values]
    assert prove(values, honest) is not None
    shared = [pl.Series([1, 2], dtype=pl.UInt64), pl.Series([2, 1, None], dtype=pl.UInt64)]
    assert prove(values, shared) is None  # "a" and "c" share code 1
    first, second = prove(values, honest), prove(values, honest)
    assert first != second  # each proof is a domain of its own


@pytest.mark.parametrize("text", [JOIN, GROUPED])
def test_a_join_of_two_scans_compares_codes_and_answers_alike(demo: DemoData, text: str) -> None:
    engine = _memory(demo)
    rows, codes = _values(engine, text)
    assert sorted(codes) == sorted(CODED)
    store = engine.store
    assert isinstance(store, MemoryStore)
    for key, table in list(store._tables.items()):  # the same rows without their codes
        assert isinstance(table, memory_module._Table)
        store._tables[key] = replace(table, codes={})
    plain, none = _values(engine, text)
    assert none == []
    count = rows[0][-1]
    assert isinstance(count, int)
    assert rows == plain and count > 0


def test_a_join_on_codes_gives_its_inputs_columns_and_no_code(demo: DemoData) -> None:
    """The pairs of a join on codes carry both sides' columns and neither side's code."""
    engine = _memory(demo)
    prepared = engine.prepare(JOIN, tenant="acme", now=TEST_NOW)
    join = next(n for n in walk(prepared.plan) if isinstance(n, Join))
    compiled = compile_plan(join, engine.store, engine.catalog, prepared.estimates)
    assert compiled.join_codes == CODED
    names = compiled.frame.collect_schema().names()
    assert not [name for name in names if name.startswith(JOIN_CODE)]
    assert set(names) == {name for name, _ in join.schema()}


def test_a_shared_code_leaves_the_join_on_the_values(
    demo: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Codes that two values share are never kept: with every value given code 0, joining on
    codes would pair every receipt with every decision; the join compares the values instead."""
    expected, _ = _values(_memory(demo), JOIN)

    def collide(table: memory_module._Table, name: str) -> pl.Series:
        return pl.Series(name, [0] * table.frame.height, dtype=pl.UInt64)

    monkeypatch.setattr(memory_module._Table, "code_values", collide)
    engine = _memory(demo)
    store = engine.store
    assert isinstance(store, MemoryStore)
    assert all(not part.codes for t in store._tables.values() for part in t.parts)
    rows, codes = _values(engine, JOIN)
    assert codes == [] and rows == expected


def test_codes_of_two_domains_are_never_compared(demo: DemoData) -> None:
    """A side whose codes come from another proof (made before the rows changed) is joined on
    the values."""
    engine = _memory(demo)
    expected, _ = _values(engine, JOIN)
    store = engine.store
    assert isinstance(store, MemoryStore)
    table = store._tables[("acme", "receipts")]
    assert isinstance(table, memory_module._Table)
    old = table.codes["executionId"]
    store._tables[("acme", "receipts")] = replace(
        table, codes={"executionId": replace(old, domain=old.domain + 10_000)}
    )
    rows, codes = _values(engine, JOIN)
    assert codes == [] and rows == expected


def test_an_ingest_makes_the_codes_again(demo: DemoData) -> None:
    """New rows get codes in a new domain, and the join counts them."""
    first = demo.receipts.filter(pl.col("tenant") == "acme")
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", first.head(first.height // 2))
    engine.ingest("decisions", demo.decisions)
    before, codes = _values(engine, JOIN)
    assert codes
    store = engine.store
    assert isinstance(store, MemoryStore)
    domain = store._tables[("acme", "receipts")].parts[0].codes["executionId"].domain
    engine.ingest("receipts", first.tail(first.height - first.height // 2))
    after, codes = _values(engine, JOIN)
    assert sorted(codes) == sorted(CODED)
    tables = [store._tables[("acme", s)].parts[0] for s in ("receipts", "decisions")]
    domains = {t.codes["executionId"].domain for t in tables}
    assert len(domains) == 1 and domains.pop() > domain
    assert after == _values(_memory(demo), JOIN)[0]
    counted_after, counted_before = after[0][0], before[0][0]
    assert isinstance(counted_after, int) and isinstance(counted_before, int)
    assert counted_after > counted_before


def test_an_indexed_lake_joins_on_codes_once_ready(tmp_path: Path, demo: DemoData) -> None:
    writer = pql.Engine(tmp_path / "lake", index=False)
    writer.ingest("receipts", demo.receipts)
    writer.ingest("decisions", demo.decisions)
    plain = writer.query(JOIN, tenant="acme", now=TEST_NOW)
    assert plain.stats["join_codes"] == []  # the partitions keep no codes
    engine = pql.Engine(tmp_path / "lake", cache=False, preload=["acme"], snapshots=False)
    assert engine.wait_ready(timeout=120)
    assert isinstance(engine.store, IndexedLake)
    got = engine.query(JOIN, tenant="acme", now=TEST_NOW)
    assert got.stats["path"] == "index"
    assert sorted(got.stats["join_codes"]) == sorted(CODED)
    assert got.df.rows() == plain.df.rows()


_KEYS = st.sampled_from(["ex-1", "ex-2", "ex-3", "ex-\u00e9", "EX-1", "ex-1 ", "ex-10"])


@settings(max_examples=40, deadline=None)
@given(
    receipts=st.lists(_KEYS, max_size=6, unique=True),
    decisions=st.lists(st.one_of(_KEYS, st.none()), max_size=10),
)
def test_joined_pairs_are_exactly_the_equal_values(
    receipts: list[str], decisions: list[str | None]
) -> None:
    """Over any values (nulls, strings that differ in case, accent or a space), a join on codes
    pairs exactly the rows whose values are equal."""
    at = TEST_NOW.replace(microsecond=0)
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", _receipts(receipts, at))
    engine.ingest("decisions", _decisions(decisions, at))
    got = engine.query(JOIN, tenant="acme", now=TEST_NOW)
    pairs = sum(1 for d in decisions for r in receipts if d == r)
    assert got.df.rows() == [(pairs, pairs)]
    assert sorted(got.stats["join_codes"]) == (sorted(CODED) if receipts and decisions else [])


def _receipts(ids: list[str], at: datetime) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "executionId": ids,
            "tenant": ["acme"] * n,
            "region": ["eu-west-1"] * n,
            "ts": [at] * n,
            "workflow": ["w"] * n,
            "status": ["ok"] * n,
            "latency_ms": [1.0] * n,
            "cost_usd": [0.1] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def _decisions(ids: list[str | None], at: datetime) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "decisionId": [f"d-{i}" for i in range(n)],
            "executionId": pl.Series(ids, dtype=pl.String),
            "tenant": ["acme"] * n,
            "region": ["eu-west-1"] * n,
            "ts": [at] * n,
            "rule": ["r"] * n,
            "effect": ["allow"] * n,
            "policy_version": ["v1"] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_codes_put_back_from_a_lookup_are_the_codes_made_from_the_values(demo: DemoData) -> None:
    """A table with a lookup takes its codes from it (no string hashed again): the same codes,
    nulls included, as hashing the values."""
    store = _memory(demo).store
    assert isinstance(store, MemoryStore)
    table = store._tables[("acme", "decisions")]
    assert isinstance(table, memory_module._Table)
    column = table.frame.get_column("executionId")
    assert column.null_count() > 0
    bare = replace(table, codes={})
    from_lookup = bare.code_values("executionId")
    assert from_lookup.equals(code_values(column), check_names=False)
    assert from_lookup.null_count() == column.null_count()
    assert replace(bare, lookups={}).code_values("executionId").equals(from_lookup)


def test_a_side_read_by_its_lookup_joins_on_the_values(
    demo: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter pinning ``executionId`` reads its few rows by lookup, not its window with
    codes; the join then compares the values of those rows."""
    monkeypatch.setattr(memory_module, "LOOKUP_MIN_WINDOW", 0)
    engine = _memory(demo)
    mine = demo.decisions.filter(pl.col("tenant") == "acme").sort("ts")
    wanted = mine["executionId"].drop_nulls()[-1]
    text = (
        f"FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId "
        f'WHERE decisions.executionId = "{wanted}" SINCE 30d'
    )
    got = engine.query(text, tenant="acme", now=TEST_NOW)
    assert got.stats["lookups"] == ["decisions.executionId"]
    assert got.stats["join_codes"] == []
    assert got.df.item() == mine.filter(pl.col("executionId") == wanted).height > 0
