"""Every example of the contract and of LANGUAGE.md, reused on the wall clock, answers as a
fresh preparation does (see tests/test_plan_reuse.py for the reuse itself; this file reads the
docs, so it is kept apart from the files the mutation runs select)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

import pql
from benchmarks.examples import PARAMS, examples
from pql.demo import DemoData
from pql.plan.nodes import RollupAggregate, walk
from tests.compare import assert_same_frame
from tests.reuse import engine_over


def _ask(eng: pql.Engine, tenant: str, text: str) -> pql.Result:
    return eng.query(text, tenant=tenant, params=PARAMS, cache=False)


@pytest.mark.parametrize("rollup_min_rows", [None, 0], ids=["default", "rollups"])
@pytest.mark.parametrize("name", sorted(examples()))
def test_every_example_reused_answers_as_planned_afresh(
    demo: DemoData, tenants: list[str], at: datetime, name: str, rollup_min_rows: int | None
) -> None:
    """Every example of the contract and LANGUAGE.md: reused 400 ms later, the plan and the
    answer are those of a fresh preparation at that moment; with the engine's default rollup
    threshold (these data are too small for rollups) and with every eligible aggregate read
    from the rollups."""
    options = {} if rollup_min_rows is None else {"rollup_min_rows": rollup_min_rows}
    reusing = engine_over(demo, **options)
    planning = engine_over(demo, plan_reuse=timedelta(0), plan_memo_size=0, **options)
    text = examples()[name]
    try:
        _ask(reusing, tenants[0], text)
    except pql.PQLError as exc:
        with pytest.raises(pql.PQLError) as again:
            _ask(planning, tenants[0], text)
        assert again.value.code == exc.code
        return
    with time_machine.travel(at + timedelta(milliseconds=400), tick=False):
        reused = _ask(reusing, tenants[0], text)
        expected = _ask(planning, tenants[0], text)
        moved = reusing.prepare(text, tenant=tenants[0], params=PARAMS)
        fresh = planning.prepare(text, tenant=tenants[0], params=PARAMS)
    assert moved.plan == fresh.plan
    # A rollup's plan moves while its whole days stay the same (a time series while its buckets do).
    of_day = at - datetime.combine(at.date(), time(), UTC)
    if any(isinstance(n, RollupAggregate) and n.buckets is None for n in walk(fresh.plan)) and (
        timedelta(seconds=1) < of_day < timedelta(days=1, seconds=-1)
    ):
        assert reused.stats["plan_reused"] is True
    assert reused.stats["window"] == expected.stats["window"]
    assert reused.columns == expected.columns
    # The same rows; a float may differ in its last bits (sums are added in parallel).
    order = list(expected.df.columns)
    assert_same_frame(reused.df.sort(order), expected.df.sort(order), name)
