"""Wall-clock queries reuse a prepared plan moved to their own window (pql.plan.memo).

A query without ``now`` is asked at a new instant every time; within the engine's ``plan_reuse``
it reuses the plan of the same query, moved. The moved plan must be exactly the plan a fresh
preparation makes for the new window, answer for that window, and keep the cost estimate it was
prepared with. Plans whose times do not move with the window (a ``ts`` constant inside it) are
never kept so. A plan with ``ts`` constants outside it moves less than the distance to the
nearest one, a rollup plan less than the distance to the day boundaries that would change its
whole days or edges, and a time series less than the distance to the bucket starts that would
change its buckets.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

import pql
from pql.catalog import DataType
from pql.demo import DemoData
from pql.errors import InputError, InternalError
from pql.plan.expr import Buckets, Col, Const
from pql.plan.memo import (
    DEFAULT_PLAN_REUSE_SHARE,
    MemoEntry,
    PlanMemo,
    _copier,
    reach,
    retimable,
    retimed,
    reuse_limit,
)
from pql.plan.memo import _buckets_reach as buckets_reach
from pql.plan.nodes import Join, Limit, Node, RollupAggregate, Scan, walk
from tests.reuse import engine_over, stop

QUERY = 'FIND COUNT(*) AS n WHERE receipts.status = "error" GROUP BY receipts.region SINCE 7d'
JOIN = (
    "FIND COUNT(decisions.decisionId) AS n JOIN receipts ON decisions.executionId = "
    'receipts.executionId WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 7d'
)


def _ask(eng: pql.Engine, tenant: str, text: str = QUERY) -> pql.Result:
    return eng.query(text, tenant=tenant, cache=False)


def test_a_wall_clock_query_reuses_the_plan_moved_to_its_window(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    first = _ask(reusing, tenants[0])
    assert first.stats["plan_reused"] is False
    later = at + timedelta(milliseconds=700)
    with stop(later):
        again = _ask(reusing, tenants[0])
        moved = reusing.prepare(QUERY, tenant=tenants[0])
        fresh = planning.prepare(QUERY, tenant=tenants[0])
        expected = _ask(planning, tenants[0])
    assert again.stats["plan_reused"] is True and moved.reused is True
    assert again.stats["window"] == expected.stats["window"] != first.stats["window"]
    assert moved.plan == fresh.plan  # exactly the plan of the new window
    assert all(s.end == later for s in walk(moved.plan) if isinstance(s, Scan))
    assert again.df.sort("region").equals(expected.df.sort("region"))
    assert again.stats["estimate"] == first.stats["estimate"]  # made for the first window


def test_the_moved_plan_answers_for_its_own_window(
    demo: DemoData, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    """A reuse far apart (here 2 days, and earlier) still reads the new window, not the old."""
    eng = engine_over(demo, plan_reuse=timedelta(days=2))
    text = "FIND COUNT(receipts.executionId) AS n SINCE 1d"
    now_n = int(_ask(eng, tenants[0], text).df["n"].item())
    with stop(at - timedelta(days=1, hours=5)):
        before = _ask(eng, tenants[0], text)
        expected = _ask(planning, tenants[0], text)
    assert before.stats["plan_reused"] is True
    assert int(before.df["n"].item()) == int(expected.df["n"].item()) != now_n


@pytest.mark.parametrize("apart", [timedelta(seconds=1), -timedelta(seconds=1)])
def test_reuse_reaches_plan_reuse_either_way(
    reusing: pql.Engine, tenants: list[str], at: datetime, apart: timedelta
) -> None:
    _ask(reusing, tenants[0])
    with stop(at + apart):
        assert _ask(reusing, tenants[0]).stats["plan_reused"] is True


@pytest.mark.parametrize("apart", [timedelta(seconds=1, microseconds=1), -timedelta(seconds=2)])
def test_a_query_further_apart_is_planned_again_and_kept(
    demo: DemoData, tenants: list[str], at: datetime, apart: timedelta
) -> None:
    eng = engine_over(demo, plan_reuse_share=0)  # plan_reuse alone
    _ask(eng, tenants[0])
    with stop(at + apart):
        assert _ask(eng, tenants[0]).stats["plan_reused"] is False
    with stop(at + apart + timedelta(milliseconds=10)):
        assert _ask(eng, tenants[0]).stats["plan_reused"] is True  # the new one was kept
    assert len(eng.plans) == 1


SHARE_OF_7D = timedelta(seconds=604.8)
"""A thousandth of 7 days, the default share: how far a 7-day plan moves."""


@pytest.mark.parametrize(
    ("apart", "reused"),
    [
        (SHARE_OF_7D, True),
        (-SHARE_OF_7D, True),
        (SHARE_OF_7D + timedelta(microseconds=1), False),
        (-SHARE_OF_7D - timedelta(microseconds=1), False),
    ],
)
def test_a_plan_moves_a_share_of_its_window(
    demo: DemoData,
    planning: pql.Engine,
    tenants: list[str],
    at: datetime,
    apart: timedelta,
    reused: bool,
) -> None:
    """Past ``plan_reuse``, a plan still moves up to ``plan_reuse_share`` of its window (ten
    minutes of 7 days), and answers for its own window."""
    eng = engine_over(demo)
    first = _ask(eng, tenants[0])
    with stop(at + apart):
        again = _ask(eng, tenants[0])
        expected = _ask(planning, tenants[0])
    assert again.stats["plan_reused"] is reused
    assert again.stats["window"] == expected.stats["window"] != first.stats["window"]
    assert again.df.sort("region").equals(expected.df.sort("region"))


def test_the_reuse_limit_is_plan_reuse_or_a_share_of_the_window() -> None:
    second = timedelta(seconds=1)
    assert reuse_limit(second, timedelta(days=7), DEFAULT_PLAN_REUSE_SHARE) == SHARE_OF_7D
    assert reuse_limit(second, timedelta(minutes=15), DEFAULT_PLAN_REUSE_SHARE) == second
    assert reuse_limit(second, timedelta(minutes=90), DEFAULT_PLAN_REUSE_SHARE) == timedelta(
        seconds=5.4
    )
    assert reuse_limit(second, timedelta(days=7), 0.0) == second
    assert reuse_limit(timedelta(0), timedelta(days=7), DEFAULT_PLAN_REUSE_SHARE) == timedelta(0)


@pytest.mark.parametrize("bad", [-0.1, 1, 1.5, True, "0.1", None])
def test_a_share_that_is_not_one_is_refused(bad: object) -> None:
    with pytest.raises(InputError) as caught:
        pql.Engine.in_memory(plan_reuse_share=bad)  # type: ignore[arg-type]
    assert caught.value.code == "PQL-E162"
    assert "plan_reuse_share" in str(caught.value)


def test_a_wall_clock_plan_never_crosses_tenants(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    _ask(reusing, tenants[0])
    other = _ask(reusing, tenants[1])
    assert other.stats["plan_reused"] is False and other.stats["tenant"] == tenants[1]
    assert other.df.sort("region").equals(_ask(planning, tenants[1]).df.sort("region"))


def _literal(moment: datetime) -> str:
    """``moment`` as a PQL time literal."""
    return str(Const(moment, DataType.TIMESTAMP))


@pytest.mark.parametrize(
    "template",
    [
        "FIND receipts WHERE receipts.ts >= {inside} SINCE 7d LIMIT 5",
        'FIND receipts WHERE receipts.status = "ok" AND receipts.ts < {inside} SINCE 7d LIMIT 5',
        'FIND receipts WHERE receipts.ts >= "2020-01-01" AND receipts.ts <= {inside} '
        "SINCE 7d LIMIT 5",
        "FIND COUNT(receipts.executionId) AS n WHERE receipts.ts < {inside} SINCE 2d TIMESERIES 1h",
    ],
)
def test_plans_whose_times_do_not_move_are_not_kept(
    demo: DemoData, tenants: list[str], at: datetime, template: str
) -> None:
    eng = engine_over(demo, rollup_min_rows=0)
    text = template.format(inside=_literal(at - timedelta(days=1)))
    for _ in range(2):
        assert _ask(eng, tenants[0], text).stats["plan_reused"] is False
    assert len(eng.plans) == 0
    eng.query(text, tenant=tenants[0], now=at, cache=False)  # kept, as before
    assert len(eng.plans) == 1


def test_the_moved_estimates_find_the_moved_join_inputs(
    reusing: pql.Engine, tenants: list[str], at: datetime
) -> None:
    """Each join builds on the side estimated smaller: the moved plan's nodes must be found."""
    first = reusing.prepare(JOIN, tenant=tenants[0])
    with stop(at + timedelta(milliseconds=300)):
        moved = reusing.prepare(JOIN, tenant=tenants[0])
    assert moved.reused is True and moved.estimates is not None and first.estimates is not None
    joins = [n for n in walk(moved.plan) if isinstance(n, Join)]
    assert joins
    for join in joins:
        for side in (join.left, join.right):
            found = moved.estimates.find(side)
            assert found is not None
            assert found == first.estimates.find(_back(side, moved.plan, first.plan))
    assert moved.estimates.cost == first.estimates.cost


def _back(node: Node, moved: Node, first: Node) -> Node:
    """The node of ``first`` at the place of ``node`` in ``moved`` (the same walk order)."""
    index = next(i for i, n in enumerate(walk(moved)) if n is node)
    return walk(first)[index]


def test_retimed_moves_only_the_window(
    reusing: pql.Engine, tenants: list[str], at: datetime
) -> None:
    reusing.prepare(JOIN, tenant=tenants[0])
    (entry,) = (e for e in reusing.plans._entries.values())
    assert retimable(entry)
    assert retimed(entry, timedelta(0)) is entry
    delta = timedelta(minutes=5)
    moved = retimed(entry, delta)
    assert (moved.clock, moved.start) == (entry.clock + delta, entry.start + delta)
    assert retimable(moved)
    for old, new in zip(walk(entry.final), walk(moved.final), strict=True):
        if isinstance(old, Scan):
            assert isinstance(new, Scan)
            assert (new.start, new.end) == (old.start + delta, old.end + delta)
            assert new.columns == old.columns and new.tenant == old.tenant
        else:
            assert type(new) is type(old)
    assert moved.estimates.root == entry.estimates.root
    assert retimed(moved, -delta).final == entry.final
    # Each node is moved once: the plans share what they shared, and the estimates are keyed
    # by the moved plan's own nodes (found by identity, not by comparing whole subtrees).
    finals = {id(n) for n in walk(moved.final)}
    assert all(id(node) in finals for node in moved.estimates.nodes())

    def shared(a: Node, b: Node) -> int:
        return len({id(n) for n in walk(a)} & {id(n) for n in walk(b)})

    assert shared(moved.built, moved.estimated) == shared(entry.built, entry.estimated) > 0


def test_an_entry_whose_scan_reads_another_window_is_not_retimable(
    reusing: pql.Engine, tenants: list[str], at: datetime
) -> None:
    reusing.prepare(QUERY, tenant=tenants[0])
    (entry,) = reusing.plans._entries.values()
    narrowed = MemoEntry(
        entry.view,
        entry.analyzed,
        entry.built,
        entry.estimated,
        entry.estimates,
        entry.would_refuse,
        entry.final,
        entry.clock,
        entry.start + timedelta(hours=1),
    )
    assert not retimable(narrowed)


ROLLUP = "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d"


def test_a_rollup_plan_moves_within_its_days(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """The rollup reads the same whole days; each edge's outer bound moves with the window."""
    eng = engine_over(demo, rollup_min_rows=0)
    fresh_eng = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    first = eng.prepare(ROLLUP, tenant=tenants[0])
    (entry,) = eng.plans._entries.values()
    rollups = [n for n in walk(entry.final) if isinstance(n, RollupAggregate)]
    assert len(rollups) == 1 and len(rollups[0].edges) == 2
    days_start, days_end = rollups[0].days_window
    assert entry.reach == min(
        at - timedelta(days=30) - (days_start - timedelta(days=1)),
        days_start - (at - timedelta(days=30)),
        at - days_end,
        days_end + timedelta(days=1) - at,
    )
    later = at + timedelta(milliseconds=300)
    with stop(later):
        moved = eng.prepare(ROLLUP, tenant=tenants[0])
        again = _ask(eng, tenants[0], ROLLUP)
        fresh = fresh_eng.prepare(ROLLUP, tenant=tenants[0])
        expected = _ask(fresh_eng, tenants[0], ROLLUP)
    assert moved.reused is True and again.stats["plan_reused"] is True
    assert moved.plan == fresh.plan != first.plan
    assert again.df.sort("region").equals(expected.df.sort("region"))
    assert "rollup:" in str(eng.explain(ROLLUP, tenant=tenants[0], now=later))


def test_a_rollup_plan_is_not_moved_across_a_day_boundary(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """Kept at 200 ms past midnight, its reach is 200 ms: 100 ms later or earlier it moves,
    300 ms earlier (a day less, another end edge) it is planned again, as the fresh plan is."""
    eng = engine_over(demo, rollup_min_rows=0)
    fresh = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    midnight = datetime.combine(at.date(), time(), UTC)
    kept = midnight + timedelta(milliseconds=200)
    eng.query(ROLLUP, tenant=tenants[0], now=kept, cache=False)
    (entry,) = eng.plans._entries.values()
    assert entry.reach == timedelta(milliseconds=200)
    for apart, reused in ((100, True), (-100, True), (-300, False)):
        now = kept + timedelta(milliseconds=apart)
        result = eng.query(ROLLUP, tenant=tenants[0], now=now, cache=False)
        expected = fresh.query(ROLLUP, tenant=tenants[0], now=now, cache=False)
        assert result.stats["plan_reused"] is reused
        assert eng.prepare(ROLLUP, tenant=tenants[0], now=now).plan == (
            fresh.prepare(ROLLUP, tenant=tenants[0], now=now).plan
        )
        assert result.df.sort("region").equals(expected.df.sort("region"))
    with pytest.raises(InternalError) as caught:
        retimed(entry, timedelta(milliseconds=-200))
    assert caught.value.code == "PQL-X034"
    assert caught.value.message == (
        "a plan was asked to move its window 0:00:00.200000, its reach or further"
    )


def test_a_rollup_plan_ending_just_before_midnight_stops_short_of_it(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """Kept 200 ms before midnight, the window's end would reach its day's last instant (the
    end edge then goes, a whole day comes in) 1 µs before midnight: its reach is 200 ms less
    1 µs, the nearest of the four day boundaries; moved by that much it is planned again."""
    eng = engine_over(demo, rollup_min_rows=0)
    fresh = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    midnight = datetime.combine(at.date(), time(), UTC)
    kept = midnight - timedelta(milliseconds=200)
    eng.query(ROLLUP, tenant=tenants[0], now=kept, cache=False)
    (entry,) = eng.plans._entries.values()
    assert entry.reach == timedelta(milliseconds=200) - timedelta(microseconds=1)
    for apart, reused in ((timedelta(milliseconds=150), True), (entry.reach, False)):
        now = kept + apart
        result = eng.query(ROLLUP, tenant=tenants[0], now=now, cache=False)
        assert result.stats["plan_reused"] is reused
        assert eng.prepare(ROLLUP, tenant=tenants[0], now=now).plan == (
            fresh.prepare(ROLLUP, tenant=tenants[0], now=now).plan
        )


def test_a_plan_that_cannot_move_is_kept_for_its_own_now_only(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """A window starting at midnight has no first edge: moving it either way changes the plan."""
    eng = engine_over(demo, rollup_min_rows=0)
    midnight = datetime.combine(at.date(), time(), UTC)
    eng.query(ROLLUP, tenant=tenants[0], now=midnight, cache=False)
    ((key, entry),) = eng.plans._entries.items()
    assert any(isinstance(n, RollupAggregate) for n in walk(entry.final))
    assert entry.reach == timedelta(0) and not retimable(entry)
    assert key.now == midnight
    with pytest.raises(InternalError):
        retimed(entry, timedelta(microseconds=1))
    # Kept for its own ``now`` only; ``put`` says whether it kept an entry, and so whether a
    # prepared query has a family whose compiled query may be reused (pql.execute.reuse).
    memo = PlanMemo(4)
    assert memo.put(key, entry) is True
    assert memo.put(replace(key, now=None), entry) is False
    assert PlanMemo(0).put(key, entry) is False
    assert len(memo) == 1


def test_a_moving_plan_is_kept_for_the_wall_clock(reusing: pql.Engine, tenants: list[str]) -> None:
    reusing.prepare(QUERY, tenant=tenants[0])
    ((key, entry),) = reusing.plans._entries.items()
    assert key.now is None
    memo = PlanMemo(4)
    assert memo.put(key, entry) is True
    assert memo.put(replace(key, now=entry.clock), entry) is True  # kept to move all the same
    assert len(memo) == 1
    moved = memo.get(
        key, entry.view, clock=entry.clock + timedelta(seconds=1), within=timedelta(seconds=1)
    )
    assert moved is not None and moved.family is entry.family


def test_an_advancing_now_reuses_the_plan_moved(
    reusing: pql.Engine, planning: pql.Engine, tenants: list[str], at: datetime
) -> None:
    """A replay or the load harness gives a ``now`` that advances: it is reused the same way."""
    first = reusing.query(QUERY, tenant=tenants[0], now=at, cache=False)
    later = at + timedelta(milliseconds=300)
    again = reusing.query(QUERY, tenant=tenants[0], now=later, cache=False)
    expected = planning.query(QUERY, tenant=tenants[0], now=later, cache=False)
    assert (first.stats["plan_reused"], again.stats["plan_reused"]) == (False, True)
    assert again.stats["window"] == expected.stats["window"] != first.stats["window"]
    assert again.df.sort("region").equals(expected.df.sort("region"))
    moved = reusing.prepare(QUERY, tenant=tenants[0], now=later)
    assert moved.plan == planning.prepare(QUERY, tenant=tenants[0], now=later).plan
    assert (reusing.plans.hits, reusing.plans.misses) == (2, 1)  # counted once per query


SERIES = {
    "hourly": "FIND COUNT(receipts.executionId) AS n SINCE 2d TIMESERIES 1h",
    "daily, from the rollups": "FIND COUNT(receipts.executionId) AS n SINCE 30d TIMESERIES 1d",
}
WIDTHS = {"hourly": timedelta(hours=1), "daily, from the rollups": timedelta(days=1)}


def _room(moment: datetime, width: timedelta) -> timedelta:
    """From ``moment`` to the nearer start of a ``width``-wide bucket (negative: behind it)."""
    since = (moment - datetime(1970, 1, 1, tzinfo=UTC)) % width
    return width - since if width - since <= since else -since


@pytest.mark.parametrize("kind", SERIES)
def test_a_time_series_moves_while_its_buckets_stay(
    demo: DemoData, tenants: list[str], at: datetime, kind: str
) -> None:
    """While the window's ends stay inside the buckets that hold them, the buckets are the same
    and the plan moves; once an end reaches a bucket's start, the query is planned afresh. (The
    window is whole hours or days long, so both ends are as far from their buckets' starts.)"""
    text = SERIES[kind]
    eng = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(days=2))
    planning = engine_over(demo, rollup_min_rows=0, plan_reuse=timedelta(0), plan_memo_size=0)
    _ask(eng, tenants[0], text)
    room = _room(at, WIDTHS[kind])
    inside = (
        room - timedelta(milliseconds=1)
        if room > timedelta(0)
        else room + timedelta(milliseconds=1)
    )
    for apart, reused in ((inside, True), (room, False)):
        with stop(at + apart):
            again = _ask(eng, tenants[0], text)
            expected = _ask(planning, tenants[0], text)
            moved = eng.prepare(text, tenant=tenants[0])
            assert moved.plan == planning.prepare(text, tenant=tenants[0]).plan
        assert again.stats["plan_reused"] is reused
        assert again.stats["window"] == expected.stats["window"]
        assert again.df.equals(expected.df)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [  # hourly buckets; each of the four distances the nearest in turn
        ("00:10", "05:30", timedelta(minutes=10)),  # the start, from its bucket's start
        ("00:55", "05:30", timedelta(minutes=5)),  # the start, to the next bucket
        ("00:30", "05:07", timedelta(minutes=7)),  # the end, from its bucket's start
        ("00:30", "05:52", timedelta(minutes=8)),  # the end, to the next bucket
        ("01:00", "05:30", timedelta(0)),  # starting on a bucket: it is lost at once
    ],
)
def test_a_time_series_reaches_the_nearest_bucket_start(
    start: str, end: str, expected: timedelta
) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    window = (
        datetime.combine(day, time.fromisoformat(start), UTC),
        datetime.combine(day, time.fromisoformat(end), UTC),
    )
    hourly = Buckets(Col("receipts", "ts", DataType.TIMESTAMP), 3600)
    assert buckets_reach(hourly, window) == timedelta.max  # not placed: no time held
    assert buckets_reach(hourly.over(*window), window) == expected
    later = (window[0] + timedelta(hours=1), window[1] + timedelta(hours=1))
    assert buckets_reach(hourly.over(*later), window) == timedelta(0)  # another window's
    assert buckets_reach(hourly.over(window[0], later[1]), window) == timedelta(0)
    assert buckets_reach(hourly.over(later[0], window[1]), window) == timedelta(0)


def test_a_time_series_starting_on_a_bucket_is_not_kept(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    """A window starting on a bucket's first instant loses that bucket as soon as it moves."""
    eng = engine_over(demo, plan_reuse=timedelta(hours=1))
    with stop(at.replace(minute=0, second=0, microsecond=0)):
        assert _ask(eng, tenants[0], SERIES["hourly"]).stats["plan_reused"] is False
    assert len(eng.plans) == 0


def test_a_plan_that_cannot_move_is_reused_only_at_its_own_now(
    reusing: pql.Engine, tenants: list[str], at: datetime
) -> None:
    text = f"FIND receipts WHERE receipts.ts >= {_literal(at - timedelta(days=1))} SINCE 7d LIMIT 5"
    steps = ((at, False), (at + timedelta(milliseconds=300), False), (at, True), (at, True))
    for moment, reused in steps:
        result = reusing.query(text, tenant=tenants[0], now=moment, cache=False)
        assert result.stats["plan_reused"] is reused
    assert (reusing.plans.hits, reusing.plans.misses) == (2, 2)


def test_no_plan_reuse_still_reuses_at_the_same_now(
    demo: DemoData, tenants: list[str], at: datetime
) -> None:
    eng = engine_over(demo, plan_reuse=timedelta(0))
    for moment, reused in ((at, False), (at, True), (at + timedelta(microseconds=1), False)):
        result = eng.query(QUERY, tenant=tenants[0], now=moment, cache=False)
        assert result.stats["plan_reused"] is reused


@pytest.mark.parametrize(
    "text", [QUERY, 'FIND receipts WHERE receipts.ts >= "2020-01-01T00:00:00Z" SINCE 7d LIMIT 5']
)
def test_a_changed_catalog_is_planned_again(
    reusing: pql.Engine, tenants: list[str], at: datetime, text: str
) -> None:
    """A plan kept to move and one kept for its exact ``now`` alike: a tenant's new column
    makes a new catalog view, and nothing analyzed against the old one is used."""
    assert reusing.query(text, tenant=tenants[0], now=at, cache=False).stats["plan_reused"] is False
    assert reusing.query(text, tenant=tenants[0], now=at, cache=False).stats["plan_reused"] is True
    reusing.catalog.add_extras(tenants[0], "receipts", {"team": DataType.STRING})
    assert reusing.query(text, tenant=tenants[0], now=at, cache=False).stats["plan_reused"] is False


@pytest.mark.parametrize(
    "template",
    [
        'FIND receipts WHERE receipts.ts >= "2020-01-01T00:00:00Z" SINCE 7d LIMIT 5',
        'FIND receipts WHERE receipts.status = "ok" AND receipts.ts > "2020-01-01" '
        "SINCE 7d LIMIT 5",
        "FIND COUNT(*) AS n WHERE receipts.ts < {after} GROUP BY receipts.region SINCE 7d",
        "FIND COUNT(*) AS n WHERE receipts.ts IN ({before}, {after}) SINCE 7d",
    ],
)
def test_a_plan_with_ts_constants_outside_its_window_moves(
    reusing: pql.Engine,
    planning: pql.Engine,
    tenants: list[str],
    at: datetime,
    template: str,
) -> None:
    """A constant outside the window keeps every row of it or none, before and after the move:
    the moved plan is the fresh plan of the new window, and answers like it."""
    text = template.format(
        before=_literal(at - timedelta(days=30)), after=_literal(at + timedelta(hours=2))
    )
    assert _ask(reusing, tenants[0], text).stats["plan_reused"] is False
    later = at + timedelta(milliseconds=700)
    with stop(later):
        again = _ask(reusing, tenants[0], text)
        moved = reusing.prepare(text, tenant=tenants[0])
        fresh = planning.prepare(text, tenant=tenants[0])
        expected = _ask(planning, tenants[0], text)
    assert again.stats["plan_reused"] is True and moved.reused is True
    assert moved.plan == fresh.plan
    assert again.df.sort(again.df.columns).equals(expected.df.sort(expected.df.columns))
    (entry,) = reusing.plans._entries.values()
    assert retimable(entry) and entry.reach >= timedelta(hours=2)
    assert (entry.reach == timedelta(hours=2)) is ("{after}" in template)


@pytest.mark.parametrize(
    ("apart", "reused"),
    [
        (timedelta(milliseconds=-300), True),
        (timedelta(milliseconds=300), True),  # away from the constant, but reach is one bound
        (timedelta(milliseconds=-499), True),
        (timedelta(milliseconds=-500), False),  # the window would start at the constant
        (timedelta(milliseconds=-700), False),  # the constant would be inside the window
        (timedelta(milliseconds=700), False),
    ],
)
def test_a_plan_moves_less_than_the_distance_to_its_nearest_constant(
    reusing: pql.Engine,
    planning: pql.Engine,
    tenants: list[str],
    at: datetime,
    apart: timedelta,
    reused: bool,
) -> None:
    """``ts > C`` with ``C`` 500 ms before the window: moved 500 ms or more earlier, ``C`` is no
    longer outside the window (the fresh plan narrows its scans to it), so it is planned again."""
    constant = at - timedelta(days=7, milliseconds=500)
    text = f"FIND COUNT(*) AS n WHERE receipts.ts > {_literal(constant)} SINCE 7d"
    _ask(reusing, tenants[0], text)
    (entry,) = reusing.plans._entries.values()
    assert entry.reach == timedelta(milliseconds=500)
    with stop(at + apart):
        again = _ask(reusing, tenants[0], text)
        moved = reusing.prepare(text, tenant=tenants[0])
        fresh = planning.prepare(text, tenant=tenants[0])
        expected = _ask(planning, tenants[0], text)
    assert again.stats["plan_reused"] is reused
    assert moved.plan == fresh.plan
    assert again.df.equals(expected.df)
    if apart <= timedelta(milliseconds=-500):
        narrowed = [n for n in walk(fresh.plan) if isinstance(n, Scan)]
        assert narrowed and all(n.start != at + apart - timedelta(days=7) for n in narrowed)


def test_the_reach_counts_every_constant_of_every_input(
    reusing: pql.Engine, tenants: list[str], at: datetime
) -> None:
    """The nearest constant may be on a join's second input; one inside the window stops it."""
    near = _literal(at + timedelta(seconds=40))
    far = _literal(at - timedelta(days=9))
    join = (
        "FIND COUNT(decisions.decisionId) AS n JOIN receipts ON decisions.executionId = "
        "receipts.executionId WHERE decisions.ts > {far} AND receipts.ts < {near} SINCE 7d"
    )
    reusing.prepare(join.format(far=far, near=near), tenant=tenants[0])
    (entry,) = reusing.plans._entries.values()
    assert entry.reach == timedelta(seconds=40)
    assert retimed(entry, timedelta(seconds=15)).reach == timedelta(seconds=25)
    assert retimed(entry, -timedelta(seconds=15)).reach == timedelta(seconds=25)
    # Measured again on the moved plans, which share their constants (the same objects) with
    # the first: what one measure learned of them is not kept for another window. (A moved
    # entry's own reach is the first's less the move, either way: 39 s earlier, the measure
    # gives 79 s to the near constant, after the window.)
    assert reach(retimed(entry, timedelta(seconds=15))) == timedelta(seconds=25)
    assert reach(retimed(entry, -timedelta(seconds=39))) == timedelta(seconds=79)
    assert reach(entry) == timedelta(seconds=40)
    inside = join.format(far=far, near=_literal(at - timedelta(hours=1)))
    with stop(at + timedelta(seconds=5)):
        reusing.prepare(inside, tenant=tenants[0])
    assert len(reusing.plans) == 1  # kept neither to move nor, on the wall clock, at all


def test_a_copier_copies_every_field_and_changes_only_those_it_names() -> None:
    """A copier written for a node type's fields gives the node ``dataclasses.replace`` gives
    (the bounds it moves moved by the delta, an input taken from the copies), and is made once
    per type and set of changes."""
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    scan = Scan("receipts", "acme", start, end, ())
    delta = timedelta(seconds=90)
    moves_end = _copier(Scan, {"end": "moved"})
    assert moves_end(scan, delta, [], ()) == replace(scan, end=end + delta)
    both = _copier(Scan, {"start": "moved", "end": "moved"})
    assert both(scan, delta, [], ()) == replace(scan, start=start + delta, end=end + delta)
    assert _copier(Scan, {"end": "moved"}) is moves_end and both is not moves_end
    other = replace(scan, start=start - delta)
    limit = Limit(scan, 5)
    copied = _copier(Limit, {"input": "input"})(limit, delta, [scan, other], (1,))
    assert copied == replace(limit, input=other) and copied.input is other


def test_the_moves_of_an_entry_copy_each_node_once_and_only_what_moves(
    reusing: pql.Engine, tenants: list[str]
) -> None:
    """An entry kept to move carries its moves, worked out when it was kept: each distinct node
    of its plans and estimates once, inputs first; a scan moves only the bounds it shares with
    the window, every other node only its inputs."""
    reusing.prepare(JOIN, tenant=tenants[0])
    (entry,) = (e for e in reusing.plans._entries.values())
    moves = entry.moves
    assert moves is not None
    nodes = {id(n): n for plan in (entry.built, entry.estimated, entry.final) for n in walk(plan)}
    nodes.update((id(n), n) for n in entry.estimates.nodes())
    assert sorted(id(step.node) for step in moves.steps) == sorted(nodes)
    for at, step in enumerate(moves.steps):
        copy = step.copy(
            step.node, timedelta(seconds=1), [s.node for s in moves.steps], step.places
        )
        if isinstance(step.node, Scan):
            assert step.places == () and isinstance(copy, Scan)
            assert (copy.start, copy.end) == (
                step.node.start + timedelta(seconds=1),
                step.node.end + timedelta(seconds=1),
            )
        else:
            assert step.places and all(0 <= how < at for how in step.places)
            assert copy == step.node  # its inputs unmoved: nothing else changed
    assert [moves.steps[at].node for at in moves.plans] == [
        entry.built,
        entry.estimated,
        entry.final,
    ]
