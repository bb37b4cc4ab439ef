"""Every example of the contract and of LANGUAGE.md, reused on the wall clock, answers as a
fresh preparation does (see tests/test_plan_reuse.py for the reuse itself; this file reads the
docs, so it is kept apart from the files the mutation runs select)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

import pql
from benchmarks.examples import PARAMS, examples


def _ask(eng: pql.Engine, tenant: str, text: str) -> pql.Result:
    return eng.query(text, tenant=tenant, params=PARAMS, cache=False)


@pytest.mark.parametrize("name", sorted(examples()))
def test_every_example_reused_answers_as_planned_afresh(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime, name: str
) -> None:
    """Every example of the contract and LANGUAGE.md: reused 400 ms later, the plan and the
    answer are those of a fresh preparation at that moment."""
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
    assert reused.stats["window"] == expected.stats["window"]
    assert reused.columns == expected.columns
    assert sorted(map(repr, reused.rows())) == sorted(map(repr, expected.rows()))
