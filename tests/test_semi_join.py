"""A join whose answer needs no column of one side, joined on that side's key, is a semi join.

The key is unique within a tenant (the contract: an ingest stores a record once), so each row of
the other side meets at most one row of it: the inner join's rows are the other side's rows
that have a match. The compiler then keeps those rows (``how="semi"``) and neither builds the
pairs nor gathers the key side's rows. The differential tests check every join shape's answers
against DuckDB; these check which shapes are semi joins, and the answers over any ids, on join
codes and on the values.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
from pql.demo import DemoData
from pql.execute import compile as compile_module
from pql.execute.compile import compile_plan
from pql.execute.joins import semi_side
from pql.plan.nodes import Aggregate, Join, walk
from tests.clock import TEST_NOW
from tests.test_join_codes import CODED, _decisions, _receipts

_ON_RECEIPTS = "JOIN receipts ON decisions.executionId = receipts.executionId"
_ON_DECISIONS = "JOIN decisions ON receipts.executionId = decisions.executionId"


def _frame_plan(engine: pql.Engine, text: str, now: datetime) -> str:
    prepared = engine.prepare(text, tenant="acme", now=now)
    compiled = compile_plan(prepared.plan, engine.store, engine.catalog, prepared.estimates)
    return compiled.frame.explain()


@pytest.mark.parametrize(
    ("text", "semi"),
    [
        # only decisions' columns above the join; receipts joins on its key
        (f"FIND COUNT(decisions.decisionId) {_ON_RECEIPTS} GROUP BY decisions.rule SINCE 7d", True),
        (f"FIND COUNT(*) {_ON_DECISIONS} SINCE 30d", True),
        # COUNT of receipts' key counts rows: no receipts column is read
        (f"FIND COUNT(receipts.executionId) {_ON_DECISIONS} SINCE 30d", True),
        (f"FIND COUNT(*) {_ON_RECEIPTS} TIMESERIES 1d SINCE 7d", True),
        # a receipts column is read
        (f"FIND AVG(receipts.latency_ms) {_ON_DECISIONS} GROUP BY decisions.rule SINCE 30d", False),
        (f"FIND COUNT(*) {_ON_DECISIONS} GROUP BY receipts.workflow SINCE 30d", False),
        # only receipts' columns, but decisions joins on a reference, not its key: a receipt
        # with two decisions counts twice
        (f"FIND SUM(receipts.cost_usd) {_ON_DECISIONS} SINCE 30d", False),
        # rows, not an aggregate
        (f"FIND decisions {_ON_RECEIPTS} SINCE 7d", False),
    ],
)
def test_which_joins_are_semi_joins(
    engine: pql.Engine, demo: DemoData, text: str, semi: bool
) -> None:
    assert ("SEMI JOIN" in _frame_plan(engine, text, demo.now)) is semi


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"FIND COUNT(decisions.decisionId) {_ON_RECEIPTS} GROUP BY decisions.rule SINCE 7d", True),
        (f"FIND COUNT(*) {_ON_DECISIONS} SINCE 30d", True),
        (f"FIND SUM(receipts.cost_usd) {_ON_DECISIONS} SINCE 30d", False),
    ],
)
def test_the_side_kept_is_the_one_not_joined_on_its_key(
    engine: pql.Engine, demo: DemoData, text: str, kept: bool
) -> None:
    """``semi_side`` names the side whose rows are kept: the decisions, whichever side of the
    join they are on (receipts join on their key)."""
    plan = engine.prepare(text, tenant="acme", now=demo.now).plan
    (aggregate,) = [n for n in walk(plan) if isinstance(n, Aggregate)]
    assert isinstance(aggregate.input, Join)
    side = semi_side(aggregate, engine.catalog)
    if not kept:
        assert side is None
        return
    assert side in ("left", "right")
    rows = aggregate.input.left if side == "left" else aggregate.input.right
    assert {name.split(".")[0] for name, _ in rows.schema()} == {"decisions"}


_KEYS = st.sampled_from(["ex-1", "ex-2", "ex-3", "ex-\u00e9", "EX-1", "ex-1 ", "ex-10"])
_TEXTS = [
    f"FIND COUNT(*), COUNT(decisions.decisionId) {_ON_DECISIONS} SINCE 30d",
    f"FIND COUNT(receipts.executionId) {_ON_DECISIONS} GROUP BY decisions.rule SINCE 30d",
    f"FIND COUNT(decisions.executionId) {_ON_RECEIPTS} GROUP BY decisions.rule SINCE 30d",
]


@settings(max_examples=40, deadline=None)
@given(
    receipts=st.lists(_KEYS, max_size=6, unique=True),
    decisions=st.lists(st.one_of(_KEYS, st.none()), max_size=10),
    coded=st.booleans(),
)
def test_a_semi_join_counts_every_pair(
    receipts: list[str], decisions: list[str | None], coded: bool
) -> None:
    """Over any ids (a receipt with several decisions or none, decisions without a receipt or
    with a null id), each count is the number of equal pairs, joined on codes or on values."""
    at = TEST_NOW.replace(microsecond=0)
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", _receipts(receipts, at))
    engine.ingest("decisions", _decisions(decisions, at))
    pairs = sum(1 for d in decisions for r in receipts if d == r)
    with pytest.MonkeyPatch.context() as patch:
        if not coded:
            patch.setattr(compile_module._Compiler, "coded_inputs", lambda *_: None)
        for text in _TEXTS:
            assert "SEMI JOIN" in _frame_plan(engine, text, TEST_NOW)
            got = engine.query(text, tenant="acme", now=TEST_NOW)
            if text == _TEXTS[0]:
                assert got.df.rows() == [(pairs, pairs)]
            else:  # one rule: one group, or none without a pair
                assert got.df.rows() == ([("r", pairs)] if pairs else []), text
            joined_on_codes = coded and bool(receipts) and bool(decisions)
            assert sorted(got.stats["join_codes"]) == (sorted(CODED) if joined_on_codes else [])
