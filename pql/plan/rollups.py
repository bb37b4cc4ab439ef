"""The optimizer rule ``use_rollups``: answer an aggregate from per-day rollups when it is exact.

A store may keep rollups (:mod:`pql.storage.rollups`): per tenant, UTC day and key columns, the
row count and partial aggregates of its measure columns. An :class:`~pql.plan.nodes.Aggregate`
can be answered from them, exactly, when

* it reads one subject through one scan (no join), and the store rolls that subject up;
* its ``WHERE`` reads only key columns (any comparison, ``IN``, ``IS NULL``, ``AND``/``OR``/
  ``NOT``: every raw row of a rollup row has the same key values, so the predicate keeps or drops
  them together);
* its ``GROUP BY`` keys are key columns;
* each aggregate is ``COUNT(*)``, ``COUNT`` of a key, a measure or a column that is never null,
  ``SUM``/``AVG`` of a numeric measure, or ``MIN``/``MAX`` of a key or a measure (``ts`` is one);
* the window holds at least one whole UTC day;
* a ``TIMESERIES`` bucket is a whole number of days (buckets align to the epoch, a midnight, so
  each is a union of whole UTC days; an hourly bucket would split a rollup day);
* and, when the optimizer has statistics, the window is estimated to hold at least
  ``OptimizeContext.rollup_min_rows`` rows of the tenant's subject (the engine's default is
  :data:`MIN_ROWS`): a rollup read costs a fixed ~1 ms more to plan, compile and combine than
  one scan, which only pays when it spares enough rows. A selective ``WHERE`` does not change
  that: filtering a long window's rows costs more than the rollup read (at 10M receipts, 28 ms
  against 1.8 ms for 180 days of the largest tenant: ``benchmarks/rollup_threshold.py``).

Then it becomes a :class:`~pql.plan.nodes.RollupAggregate`: the whole days come from the rollup,
the partial first and last days (the "edges") from raw rows, and the partials are combined.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from pql.ast import AggFunc
from pql.errors import InternalError
from pql.plan.context import OptimizeContext
from pql.plan.expr import NOTHING, AggSpec, AllOf, Col, Pred, columns_of, conjuncts
from pql.plan.nodes import (
    Aggregate,
    Filter,
    Join,
    Limit,
    Node,
    Project,
    RollupAggregate,
    Scan,
    Sort,
)
from pql.storage.base import as_utc, micros
from pql.storage.rollups import RollupSpec

__all__ = [
    "MIN_ROWS",
    "ONE_DAY",
    "edge_windows",
    "use_rollups",
    "whole_days",
]

MIN_ROWS = 100_000
"""The engine's default ``rollup_min_rows``: the estimated rows of the scan's window below which
an aggregate reads rows instead (measured at 10M receipts, docs/pql/ROLLUPS.md)."""

ONE_DAY = timedelta(days=1)
"""A whole day, the rollups' unit."""

_TICK = timedelta(microseconds=1)


def use_rollups(plan: Node, context: OptimizeContext | None = None) -> Node:
    """Answer each eligible aggregate from the store's rollups (nothing without rollups)."""
    if context is None or not context.rollups:
        return plan
    return _rewrite(plan, context)


def _rewrite(plan: Node, context: OptimizeContext) -> Node:
    match plan:
        case Aggregate():
            return _from_rollup(plan, context) or plan
        case Filter(input=inner) | Sort(input=inner) | Limit(input=inner) | Project(input=inner):
            new = _rewrite(inner, context)
            return plan if new is inner else replace(plan, input=new)
        case Scan() | Join() | RollupAggregate():
            return plan
    raise InternalError("PQL-X002", f"optimizer met an unknown node {type(plan).__name__}")


def _from_rollup(agg: Aggregate, context: OptimizeContext) -> RollupAggregate | None:
    """``agg`` as a :class:`RollupAggregate`, or ``None`` if the rollup cannot answer it or
    would not be faster."""
    found = _single_scan(agg.input)
    if found is None:
        return None
    scan, pred = found
    spec = context.rollups.get(scan.subject)
    days = whole_days(scan.start, scan.end)
    if spec is None or days is None:
        return None
    if agg.buckets is not None and agg.buckets.seconds % 86_400:
        return None  # a bucket shorter than (or not a multiple of) a day splits rollup days
    grain = tuple(Col(scan.subject, c.name, c.type) for c in spec.keys)
    if not _eligible(agg, pred, spec, frozenset(grain)) or not _pays(scan, context):
        return None
    first, last = days
    edges = tuple(
        _edge(scan, pred, start, end)
        for start, end in edge_windows(scan.start, scan.end, first, last)
    )
    return RollupAggregate(
        scan.subject,
        scan.tenant,
        first,
        last,
        grain,
        pred,
        agg.keys,
        agg.aggregates,
        edges,
        agg.buckets,
        span=agg.span,
    )


def _pays(scan: Scan, context: OptimizeContext) -> bool:
    """Whether the raw plan reads enough rows for the rollup to be faster: the window's rows,
    filtered or not (filtering a long window costs more than the rollup read that spares it)."""
    stats, least = context.stats, context.rollup_min_rows
    if stats is None or least <= 0:
        return True
    window = stats.partition_arrays(scan.tenant, scan.subject)
    rows, _ = window.in_window(float(micros(scan.start)), float(micros(scan.end)))
    return rows >= least


def _single_scan(node: Node) -> tuple[Scan, Pred | None] | None:
    """The scan under a chain of filters, with their predicates AND-ed; ``None`` otherwise."""
    parts: list[Pred] = []
    while isinstance(node, Filter):
        parts.append(node.predicate)
        node = node.input
    if not isinstance(node, Scan):
        return None
    if not parts:
        return node, None
    return node, parts[0] if len(parts) == 1 else AllOf(tuple(reversed(parts)))


def _eligible(agg: Aggregate, pred: Pred | None, spec: RollupSpec, grain: frozenset[Col]) -> bool:
    """Whether the rollup answers ``agg`` (over rows narrowed by ``pred``) exactly, and is
    needed: a filter that keeps no row (``NOTHING``) is answered without reading a rollup."""
    if pred is not None and NOTHING in conjuncts(pred):
        return False
    if pred is not None and not columns_of(pred) <= grain:
        return False
    if not set(agg.keys) <= grain:
        return False
    return all(_answerable(a, spec, grain) for a in agg.aggregates)


def _answerable(agg: AggSpec, spec: RollupSpec, grain: frozenset[Col]) -> bool:
    """Whether one aggregate combines from rollup partials (see :mod:`pql.execute.rollups`)."""
    col = agg.col
    if col is None:
        return True
    measure = col.name in spec.measure_names
    if agg.func is AggFunc.COUNT:
        if col in grain:
            return True
        return measure if col.type.numeric else col.name in spec.never_null
    if agg.func in (AggFunc.SUM, AggFunc.AVG):
        return measure and col.type.numeric
    return col in grain or measure  # MIN, MAX


def whole_days(start: datetime, end: datetime) -> tuple[date, date] | None:
    """The first and last UTC day lying wholly inside ``start <= ts <= end``, if any."""
    start, end = as_utc(start), as_utc(end)
    first = start.date()
    if start != _midnight(first):
        if first == date.max:
            return None
        first += ONE_DAY
    last = end.date()
    if end != _last_instant(last):
        if last == date.min:
            return None
        last -= ONE_DAY
    return (first, last) if first <= last else None


def edge_windows(
    start: datetime, end: datetime, first: date, last: date
) -> Iterator[tuple[datetime, datetime]]:
    """The parts of ``[start, end]`` outside the whole days ``first`` to ``last``."""
    start, end = as_utc(start), as_utc(end)
    if start < _midnight(first):
        yield start, _midnight(first) - _TICK
    if end > _last_instant(last):  # then ``last`` is not the last representable day
        yield _last_instant(last) + _TICK, end


def _edge(scan: Scan, pred: Pred | None, start: datetime, end: datetime) -> Node:
    edge: Node = replace(scan, start=start, end=end)
    return edge if pred is None else Filter(edge, pred, span=pred.span)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _last_instant(day: date) -> datetime:
    return datetime.combine(day, time.max, UTC)
