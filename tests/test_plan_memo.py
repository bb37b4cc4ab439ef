"""The plan memo (pql.plan.memo): a reused plan never crosses tenants, windows, limits or data
versions, and never skips a safety rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import pql
from pql.demo import DemoData
from pql.limits import TenantLimits
from pql.plan.memo import MemoEntry, PlanMemo, frozen_params, with_remembered_cost
from pql.plan.nodes import Node
from pql.plan.safety import RULES, SafetyContext, cost_budget

QUERY = 'FIND COUNT(*) AS n WHERE receipts.status = "error" GROUP BY receipts.region SINCE 7d'


@pytest.fixture
def fresh(demo: DemoData) -> pql.Engine:
    eng = pql.Engine.in_memory(cache=False)
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


def _ask(eng: pql.Engine, tenant: str, now: datetime, text: str = QUERY) -> pql.Result:
    return eng.query(text, tenant=tenant, now=now, cache=False)


def test_a_repeated_query_is_reused_with_the_same_answer(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    first = _ask(fresh, tenants[0], test_now)
    again = _ask(fresh, tenants[0], test_now)
    assert (fresh.plans.hits, fresh.plans.misses) == (1, 1)  # counted once each
    assert first.stats["plan_reused"] is False
    assert again.stats["plan_reused"] is True
    assert again.df.equals(first.df)
    assert again.stats["estimate"] == first.stats["estimate"]


def test_a_plan_never_crosses_tenants(
    fresh: pql.Engine, demo: DemoData, tenants: list[str], test_now: datetime
) -> None:
    a, b = tenants[0], tenants[1]
    _ask(fresh, a, test_now)
    other = _ask(fresh, b, test_now)
    assert other.stats["plan_reused"] is False
    assert other.stats["tenant"] == b
    alone = pql.Engine.in_memory(cache=False)
    alone.ingest("receipts", demo.receipts.filter(demo.receipts["tenant"] == b))
    assert other.df.sort("region").equals(_ask(alone, b, test_now).df.sort("region"))


def test_another_window_is_planned_again(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    _ask(fresh, tenants[0], test_now)
    later = _ask(fresh, tenants[0], test_now + timedelta(hours=1))
    assert later.stats["plan_reused"] is False
    assert later.stats["window"]["end"].startswith(
        (test_now + timedelta(hours=1)).date().isoformat()
    )


def test_tightened_tenant_limits_apply_to_a_reused_query(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    tenant = tenants[0]
    _ask(fresh, tenant, test_now)
    assert _ask(fresh, tenant, test_now).stats["plan_reused"] is True
    fresh.set_tenant_limits(tenant, TenantLimits(max_window=timedelta(days=3)))
    with pytest.raises(pql.SafetyError) as caught:
        _ask(fresh, tenant, test_now)
    assert caught.value.code == "PQL-S001"
    fresh.set_tenant_limits(tenant, TenantLimits(cost_budget=1.0))
    with pytest.raises(pql.SafetyError) as caught:
        _ask(fresh, tenant, test_now)
    assert caught.value.code == "PQL-S005"


def test_new_data_is_planned_again(
    fresh: pql.Engine, demo: DemoData, tenants: list[str], test_now: datetime
) -> None:
    tenant = tenants[0]
    before = _ask(fresh, tenant, test_now)
    row = demo.receipts.filter(demo.receipts["tenant"] == tenant).head(1)
    fresh.ingest("receipts", row.with_columns(row["executionId"] + "-again"))
    after = _ask(fresh, tenant, test_now)
    assert after.stats["plan_reused"] is False
    assert int(after.df["n"].sum()) >= int(before.df["n"].sum())


def test_every_safety_rule_runs_on_a_reused_plan(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    """A rule whose answer changes between two identical queries is asked both times."""
    refuse = {"now": False}
    asked: list[str] = []

    def stateful(plan: Node, ctx: SafetyContext) -> Node:
        asked.append(ctx.tenant)
        if refuse["now"]:
            raise pql.SafetyError("PQL-S099", "refused by a test rule")
        return plan

    fresh.safety_rules = (*fresh.safety_rules, stateful)
    tenant = tenants[0]
    _ask(fresh, tenant, test_now)
    assert _ask(fresh, tenant, test_now).stats["plan_reused"] is True
    refuse["now"] = True
    with pytest.raises(pql.SafetyError):
        _ask(fresh, tenant, test_now)
    assert asked == [tenant, tenant, tenant]


def test_a_refused_query_is_refused_every_time(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    for _ in range(2):
        with pytest.raises(pql.SafetyError):
            _ask(fresh, tenants[0], test_now, "FIND receipts SINCE 400d")
    assert len(fresh.plans) == 0


def test_parameters_are_part_of_the_key(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    text = "FIND COUNT(*) AS n WHERE latency_ms > $slow SINCE 7d"
    tenant = tenants[0]
    low = fresh.query(text, tenant=tenant, now=test_now, params={"slow": 1}, cache=False)
    high = fresh.query(text, tenant=tenant, now=test_now, params={"slow": 10**9}, cache=False)
    assert high.stats["plan_reused"] is False
    assert int(high.df["n"].item()) == 0 < int(low.df["n"].item())
    assert frozen_params({"a": 1}) != frozen_params({"a": 1.0}) != frozen_params({"a": True})
    assert frozen_params({"a": [1]}) is None  # unhashable: never reused


def test_the_remembered_cost_rule_estimates_any_other_plan(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    """Given a plan other than the one it estimated, the memo's cost rule estimates afresh."""
    tenant = tenants[0]
    first = fresh.prepare(QUERY, tenant=tenant, now=test_now)
    other = fresh.prepare("FIND receipts SINCE 7d", tenant=tenant, now=test_now)
    assert first.estimates is not None and other.estimates is not None
    entry = MemoEntry(
        fresh.catalog.for_tenant(tenant),
        first.analyzed,
        first.plan,
        first.plan,
        first.estimates,
        (),
        first.plan,
        test_now,
        test_now - timedelta(days=7),
    )
    rules = with_remembered_cost(RULES, entry)
    assert cost_budget not in rules and len(rules) == len(RULES)
    ctx = SafetyContext(tenant, test_now, first.limits, stats=fresh.statistics)
    remembered = rules[-1]
    remembered(other.plan, ctx)
    assert ctx.report.estimates is not None
    assert ctx.report.estimates is not first.estimates
    assert ctx.report.estimates.rows == pytest.approx(other.estimates.rows)


def test_what_the_store_offers_the_optimizer_is_worked_out_only_for_an_estimate(
    fresh: pql.Engine, tenants: list[str], test_now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost rule asks what the store offers the optimizer (its rollups) when it estimates;
    a query whose cost the memo answers never works it out."""
    asked: list[object] = []
    offer = fresh._optimizer_context

    def counted(stats: object, min_rows: int) -> object:
        asked.append(stats)
        return offer(stats, min_rows)  # type: ignore[arg-type]

    monkeypatch.setattr(fresh, "_optimizer_context", counted)
    first = _ask(fresh, tenants[0], test_now)
    assert len(asked) == 1
    again = _ask(fresh, tenants[0], test_now)
    assert again.stats["plan_reused"] is True
    assert len(asked) == 1
    assert again.df.equals(first.df)
    fresh.set_tenant_limits(tenants[0], TenantLimits(max_rows=5_000))  # a new key: estimated
    _ask(fresh, tenants[0], test_now)
    assert len(asked) == 2


def test_the_memo_is_bounded() -> None:
    memo = PlanMemo(size=0)
    assert len(memo) == 0
    with pytest.raises(ValueError, match="negative"):
        PlanMemo(size=-1)


@pytest.mark.parametrize(("size", "reused"), [(0, False), (1, True)])
def test_a_memo_of_size_zero_keeps_nothing_and_of_one_keeps_its_plan(
    demo: DemoData, tenants: list[str], test_now: datetime, size: int, reused: bool
) -> None:
    eng = pql.Engine.in_memory(cache=False)
    eng.plans = PlanMemo(size)
    eng.ingest("receipts", demo.receipts)
    _ask(eng, tenants[0], test_now)
    assert len(eng.plans) == size
    assert _ask(eng, tenants[0], test_now).stats["plan_reused"] is reused


def test_no_plan_reuse_keeps_nothing_for_the_wall_clock(demo: DemoData, tenants: list[str]) -> None:
    """With ``plan_reuse=0`` every wall-clock query has a window of its own: nothing is kept."""
    eng = pql.Engine.in_memory(cache=False, plan_reuse=timedelta(0))
    eng.ingest("receipts", demo.receipts)
    for _ in range(2):
        assert eng.query(QUERY, tenant=tenants[0], cache=False).stats["plan_reused"] is False
    assert len(eng.plans) == 0


def test_a_full_memo_drops_the_least_recently_used_plan(
    fresh: pql.Engine, tenants: list[str], test_now: datetime
) -> None:
    fresh.plans = PlanMemo(2)
    first, second, third = (f"{QUERY[: -len('SINCE 7d')]}SINCE {d}d" for d in (7, 8, 9))
    for text in (first, second, first, third):  # ``first`` used again: ``second`` is oldest
        _ask(fresh, tenants[0], test_now, text)
    assert len(fresh.plans) == 2
    assert _ask(fresh, tenants[0], test_now, first).stats["plan_reused"] is True
    assert _ask(fresh, tenants[0], test_now, third).stats["plan_reused"] is True
    assert _ask(fresh, tenants[0], test_now, second).stats["plan_reused"] is False
