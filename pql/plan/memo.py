"""Prepared plans reused: the work before execution done once per exact set of inputs.

A long-lived engine is asked the same queries again and again (dashboards, saved queries,
services). Everything :meth:`pql.Engine.prepare` does before the safety rules (analyze, build)
and the expensive safety rule (``cost-budget``: optimize, then estimate) is a pure function of
its inputs, so its outcome is kept in a :class:`PlanMemo` and reused when every input is the
same. The key (:class:`MemoKey`) holds each of them:

* the query text exactly as given, and the parameters bound to it;
* the tenant, and the query's ``now`` (which fixes the window), or ``None`` for the wall clock
  (see below);
* the limits in force for the tenant (its profile, re-read on every query, so a changed or
  tightened profile, or a suspended tenant, is seen at once);
* the data version of the tenant's store (the statistics and the estimates follow the data);
* the engine's safety rules and optimizer settings.

The catalog the tenant sees is checked on a hit too (a new subject or extra column makes a
new view, so the entry is not used). Nothing here skips a safety rule: on a hit every rule
still runs, in order, on the plan; only ``cost-budget`` answers from the memo, and only when
the plan it is given is equal to the one it estimated (otherwise it estimates again).
A refused query is never kept: a refusal is raised, so it is checked again every time.

A query on the wall clock (no ``now``), or a clock that advances (a replay, the load harness), is
never asked at the same instant twice. So a plan whose times all move with its window
(:func:`retimable`: every scan reads exactly the window, or a rollup's edge one end of it; a time
series' buckets placed over it; every ``ts`` constant outside the window) is kept under ``now=None``
with the clock it was prepared at, and reused, moved to the new window (:func:`retimed`), by a query
at most ``within`` (the engine's ``plan_reuse``, 1 s by default, or its ``plan_reuse_share`` of the
window when that is longer: 10 minutes for 7 days; see :func:`reuse_limit`) later or earlier, with
or without a ``now``, and less than its :func:`reach` away: the distance from the window to its
nearest ``ts`` constant (one that stays outside the window keeps every row of it or none) and, with
a rollup, to the day boundaries (the rollup then reads the same whole days, and each edge the rest)
and, with a time series, to the starts of the buckets around its ends (the series then has the same
buckets), so the planner makes the same plan for both windows. Any other plan is kept for its exact
``now`` only, and not at all for the wall clock. The moved plan is exactly the plan of the new
window but for three choices made on the statistics of the old one: the cost estimate (and so the
refusal), the join build side, and whether an aggregate reads the rollups (``rollup_min_rows``). On
the same data version, windows ``within`` apart hold the same rows but those at their ends: a share
of the window as small as the default leaves the estimate all but the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, NamedTuple, get_args

from pql.analyze import Analyzed
from pql.catalog import Catalog
from pql.errors import InternalError
from pql.limits import Limits
from pql.plan.cost import Estimates, NodeEstimate
from pql.plan.expr import Buckets, Const
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
    walk,
)
from pql.plan.rollups import ONE_DAY
from pql.plan.safety import Rule, SafetyContext, cost_budget

__all__ = [
    "DEFAULT_MEMO_SIZE",
    "DEFAULT_PLAN_REUSE",
    "DEFAULT_PLAN_REUSE_SHARE",
    "MemoEntry",
    "MemoKey",
    "PlanMemo",
    "frozen_params",
    "reach",
    "retimable",
    "retimed",
    "reuse_limit",
    "with_recorded_cost",
    "with_remembered_cost",
]

DEFAULT_MEMO_SIZE = 2048
"""How many prepared plans an engine keeps (each is a few kilobytes)."""

DEFAULT_PLAN_REUSE = timedelta(seconds=1)
"""How far apart the clocks of two queries may be for one to reuse the other's plan, moved."""

DEFAULT_PLAN_REUSE_SHARE = 1e-3
"""The share of its window by which a plan may move when that is more than ``plan_reuse``: a
90-minute plan moves up to 5.4 s, a day's 86 s, a 7-day one 10 minutes (the rows at the two
ends, all its estimate can miss, are then about a thousandth of the window's: far less than
the estimates' own error, a q-error of 1.4 at p95)."""


@dataclass(frozen=True, slots=True)
class MemoKey:
    """Every input of the work a :class:`MemoEntry` keeps (see the module's text)."""

    text: str
    params: Hashable
    tenant: str
    now: datetime | None
    """The query's ``now``; ``None`` for the wall clock, and for an entry kept to move (whose
    own ``clock`` says when it was prepared)."""
    limits: Limits
    version: int
    rules: tuple[Rule, ...]
    optimizer: Hashable


@dataclass(frozen=True, slots=True)
class MemoEntry:
    """What one preparation found: the analysis, the plan as built, the plan the cost rule
    estimated, its estimates and recorded refusals, and the plan that runs."""

    view: Catalog
    """The tenant's catalog view it was analyzed against (a changed catalog is a new view)."""
    analyzed: Analyzed
    built: Node
    estimated: Node
    estimates: Estimates
    would_refuse: tuple[dict[str, Any], ...]
    final: Node
    clock: datetime
    """The clock it was prepared at: the window ``start <= ts <= clock`` its scans read."""
    start: datetime
    """The window's first instant (``clock`` less the query's window)."""
    family: object = field(default_factory=object, compare=False, repr=False)
    """Shared by this entry and every entry :func:`retimed` makes of it: their plans differ
    only in their windows (see :mod:`pql.execute.reuse`)."""
    reach: timedelta = timedelta(0)
    """How far its window may move (less than this) with its plans still the planner's own for
    the moved window: see :func:`reach`. Set by :meth:`PlanMemo.put`; 0 until then."""
    moves: _Moves | None = field(default=None, compare=False, repr=False)
    """How :func:`retimed` copies its nodes, worked out by :meth:`PlanMemo.put` for the entries
    it keeps to move (and by :func:`retimed` itself for any other)."""


def frozen_params(params: Mapping[str, Any] | None) -> Hashable | None:
    """``params`` as a hashable key, or ``None`` when a value cannot be one (no reuse then)."""
    if not params:
        return ()
    items = tuple(sorted(params.items()))
    try:
        hash(items)
    except TypeError:
        return None
    # 1, 1.0 and True are equal as keys but bind differently: keep their types.
    return tuple((name, type(value).__name__, value) for name, value in items)


class PlanMemo:
    """A thread-safe, bounded map from :class:`MemoKey` to :class:`MemoEntry`, least recently
    used dropped first."""

    def __init__(self, size: int = DEFAULT_MEMO_SIZE) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[MemoKey, MemoEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        key: MemoKey,
        view: Catalog,
        *,
        clock: datetime,
        within: timedelta,
        share: float = 0.0,
    ) -> MemoEntry | None:
        """The entry for ``key`` made against ``view``: the one kept for exactly ``key.now``,
        else one kept to move (under ``now=None``) prepared at most :func:`reuse_limit` (of
        ``within`` and ``share`` of its window) from ``clock``, moved to the window ending at
        ``clock``."""
        with self._lock:
            if key.now is not None:
                found = self._entries.get(key)
                if found is not None and found.view is view:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return found
                key = replace(key, now=None)
            found = self._entries.get(key)
            if found is None or found.view is not view or not _near(found, clock, within, share):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return retimed(found, clock - found.clock)

    def put(self, key: MemoKey, entry: MemoEntry) -> bool:
        """Keep ``entry``: to move (under ``now=None``) if it is :func:`retimable`, else for
        exactly ``key.now`` (and not at all for a wall-clock key). Whether it was kept."""
        if self.size == 0:
            return False
        entry = replace(entry, reach=reach(entry))
        if entry.reach:
            key = replace(key, now=None)
            entry = replace(entry, moves=_moves(entry))
        elif key.now is None:
            return False
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def remembered_cost(entry: MemoEntry) -> Rule:
    """The ``cost-budget`` rule answering from ``entry`` for the plan it estimated (any other
    plan is estimated as usual)."""

    def cost_budget_remembered(plan: Node, ctx: SafetyContext) -> Node:
        if plan != entry.estimated or entry.estimates.cost > ctx.limits.cost_budget:
            return cost_budget(plan, ctx)  # estimated (and refused, if it must be) afresh
        ctx.report.estimates = entry.estimates
        ctx.report.would_refuse.extend(entry.would_refuse)
        return plan

    return cost_budget_remembered


def with_recorded_cost(rules: tuple[Rule, ...], seen: list[Node]) -> tuple[Rule, ...]:
    """``rules`` with ``cost-budget`` also appending the plan it is given to ``seen`` (what a
    :class:`MemoEntry` keeps as ``estimated``); every rule runs as usual."""

    def cost_budget_recorded(plan: Node, ctx: SafetyContext) -> Node:
        seen.append(plan)
        return cost_budget(plan, ctx)

    return tuple(cost_budget_recorded if rule is cost_budget else rule for rule in rules)


def with_remembered_cost(rules: tuple[Rule, ...], entry: MemoEntry) -> tuple[Rule, ...]:
    """``rules`` with ``cost-budget`` answering from ``entry``; every other rule unchanged."""
    remembered = remembered_cost(entry)
    return tuple(remembered if rule is cost_budget else rule for rule in rules)


def reuse_limit(within: timedelta, window: timedelta, share: float) -> timedelta:
    """How far a plan of ``window`` may move: ``within``, or ``share`` of the window when that
    is longer; nothing moves when ``within`` is 0 (or less)."""
    if within <= timedelta(0):
        return within
    return max(within, window * share)


def _near(entry: MemoEntry, clock: datetime, within: timedelta, share: float) -> bool:
    """Whether ``entry``, kept to move, may be moved to the window ending at ``clock``."""
    apart = abs(clock - entry.clock)
    limit = reuse_limit(within, entry.clock - entry.start, share)
    return apart <= limit and apart < entry.reach


def retimable(entry: MemoEntry) -> bool:
    """Whether ``entry``'s plans may move their window at all (:func:`reach` is not 0)."""
    return reach(entry) > timedelta(0)


def reach(entry: MemoEntry) -> timedelta:
    """How far ``entry``'s window may move, less than this, with its plans still the ones the
    planner makes for the moved window: the distance from the window to the nearest ``ts``
    constant of its plans, with a rollup to the day boundaries that would add or drop a whole
    day or an edge, and with a time series to the bucket starts that would add or drop a bucket
    (``timedelta.max`` without any). 0 when any plan holds a time that does not move with the
    window: a scan reading anything but exactly ``entry.start`` to ``entry.clock`` (a rollup's
    edge: one of them, and a day boundary), buckets placed over another window or starting at
    one of its ends, or a constant inside the window (the planner narrows the scans to it)."""
    window = (entry.start, entry.clock)
    nearest = timedelta.max
    seen: dict[int, timedelta] = {}  # the three plans share their columns, predicates, ...
    for plan in (entry.built, entry.estimated, entry.final):
        edges: set[int] = set()
        for node in walk(plan):  # root first: a rollup before its edges
            if isinstance(node, RollupAggregate):
                nearest = min(nearest, _days_reach(node, window))
                edges.update(id(n) for edge in node.edges for n in walk(edge))
            elif isinstance(node, Scan):
                if not _reads(node, window, edge=id(node) in edges):
                    return timedelta(0)
                continue
            for name in _fields_of(type(node)).compared:
                nearest = min(nearest, _reach_of(getattr(node, name), window, seen))
            if not nearest:
                return nearest
    return nearest


def _reads(scan: Scan, window: tuple[datetime, datetime], *, edge: bool) -> bool:
    """Whether ``scan`` reads the window (a rollup's edge: from its start or to its end)."""
    if edge:
        return scan.start == window[0] or scan.end == window[1]
    return (scan.start, scan.end) == window


def _days_reach(rollup: RollupAggregate, window: tuple[datetime, datetime]) -> timedelta:
    """How far ``window`` may move, less than this, with ``rollup`` reading the same whole days
    and both its edges still there: its start stays strictly between the midnights around it,
    its end strictly between the last instants of two days: 0 without both edges (a window
    starting at a midnight, or ending at a day's last instant)."""
    start, end = window
    first, last = rollup.days_window
    return min(start - (first - ONE_DAY), first - start, end - last, last + ONE_DAY - end)


def _reach_of(
    value: object, window: tuple[datetime, datetime], seen: dict[int, timedelta]
) -> timedelta:
    """The distance from ``window`` to the nearest ``ts`` constant in ``value`` (a plan's
    field, but not a node: nodes are walked); 0 for any other time, which would not move.
    ``seen`` keeps the answer for each tuple and dataclass already met in the plans being
    walked (by identity: they are alive while the plans are), which share most of them."""
    if isinstance(value, _PLAIN) or value is None:
        return timedelta.max
    if isinstance(value, Const):
        moment = value.value
        return _outside(moment, window) if isinstance(moment, datetime) else timedelta.max
    if isinstance(value, Buckets):
        return _buckets_reach(value, window)
    if isinstance(value, datetime):
        return timedelta(0)
    found = seen.get(id(value))
    if found is not None:
        return found
    if isinstance(value, tuple):
        items: tuple[object, ...] = value
    else:
        names = _fields_of(type(value)).compared
        if not names or _is_node(value):
            return timedelta.max
        items = tuple(getattr(value, name) for name in names)
    nearest = min((_reach_of(item, window, seen) for item in items), default=timedelta.max)
    seen[id(value)] = nearest
    return nearest


_PLAIN: tuple[type, ...] = (str, int, float, Enum)
"""Values that hold no time (``bool`` is an ``int``), answered before anything else."""


class _Fields(NamedTuple):
    every: tuple[str, ...]
    compared: tuple[str, ...]  # what its equality, and so a plan's, depends on


_FIELDS: dict[type, _Fields] = {}


def _fields_of(kind: type) -> _Fields:
    """The names of a dataclass ``kind``'s fields, every one and the compared ones; none for any
    other type. Kept per type (the types are few)."""
    found = _FIELDS.get(kind)
    if found is None:
        every = fields(kind) if is_dataclass(kind) else ()
        found = _Fields(tuple(f.name for f in every), tuple(f.name for f in every if f.compare))
        _FIELDS[kind] = found
    return found


def _buckets_reach(buckets: Buckets, window: tuple[datetime, datetime]) -> timedelta:
    """How far ``window`` may move, less than this, with a time series placed over it keeping
    its buckets: its start and its end stay inside the buckets that hold them. 0 for buckets
    placed over another window, or a window starting or ending on a bucket's first instant."""
    if not buckets.placed:
        return timedelta.max  # it holds no time yet
    start, end = window
    first, last = buckets.floor(start), buckets.floor(end)
    if (first, last) != (buckets.first, buckets.last):
        return timedelta(0)
    width = buckets.width
    return min(start - first, first + width - start, end - last, last + width - end)


def _outside(moment: datetime, window: tuple[datetime, datetime]) -> timedelta:
    """How far ``moment`` lies outside ``window`` (0 inside it, ends included)."""
    start, end = window
    return max(start - moment, moment - end, timedelta(0))


_NODE_TYPES: tuple[type, ...] = get_args(Node)


def _is_node(value: object) -> bool:
    return isinstance(value, _NODE_TYPES)


def retimed(entry: MemoEntry, delta: timedelta) -> MemoEntry:
    """``entry`` with its window moved by ``delta`` (less than its :func:`reach`): every scan's
    ``start`` and ``end``, in each plan and in the estimates, which keep their numbers. Its
    ``ts`` constants stay where they are, outside the window."""
    if not delta:
        return entry
    if abs(delta) >= entry.reach:  # PlanMemo.get never asks this (see _near)
        raise InternalError(
            "PQL-X034", f"a plan was asked to move its window {abs(delta)}, its reach or further"
        )
    moves = entry.moves if entry.moves is not None else _moves(entry)
    new = moves.run(delta)
    built, estimated, final = (new[at] for at in moves.plans)
    return MemoEntry(
        entry.view,
        entry.analyzed,
        built,
        estimated,
        Estimates(final, zip((new[at] for at in moves.estimated), moves.numbers, strict=True)),
        entry.would_refuse,
        final,
        entry.clock + delta,
        entry.start + delta,
        entry.family,
        entry.reach - abs(delta),
    )


_Copier = Callable[[Node, timedelta, list[Node], tuple[Any, ...]], Node]
"""A node's copy: ``(node, delta, copies so far, places of its moved inputs)``."""

_Change = Literal["moved", "input", "inputs"]
"""How a field changes when a plan moves: by the delta (a scan's bound), to a moved input (its
place among the copies), or to a tuple of them (a rollup's edges)."""


class _Step(NamedTuple):
    """One node's copy in :class:`_Moves`: the node, the copier of its type and of the fields
    that change (:func:`_copier`), and the places among the copies of its moved inputs, in the
    order of its fields (an int each, a tuple of them for a rollup's edges)."""

    node: Node
    copy: _Copier
    places: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Moves:
    """What :func:`retimed` does to an entry, worked out once: each distinct node of its plans
    and of its estimates, inputs before the nodes that read them (``steps``), where its three
    plans and its estimated nodes end up, and the estimates' numbers."""

    steps: tuple[_Step, ...]
    plans: tuple[int, int, int]
    estimated: tuple[int, ...]
    numbers: tuple[NodeEstimate, ...]

    def run(self, delta: timedelta) -> list[Node]:
        """Every node copied with its window moved by ``delta``, in the order of ``steps``."""
        new: list[Node] = []
        for node, copy, places in self.steps:
            new.append(copy(node, delta, new, places))
        return new


_COPIERS: dict[tuple[type, frozenset[tuple[str, _Change]]], _Copier] = {}


def _copier(kind: type, changes: Mapping[str, _Change]) -> _Copier:
    """The copier of ``kind`` nodes whose fields ``changes`` names change as it says, every
    other field copied as it is; made once per type and set of changes (a plan has a few).

    The copy skips the node's checks: moving a whole plan's window by one delta keeps every
    check true (``start <= end``, schemas), and they cost more than the move. It is a function
    written for its fields, as :mod:`dataclasses` writes ``__init__`` (a loop over the names
    took two thirds longer, on the path of every query that reuses a plan): only the type's own
    field names, which are identifiers, go into its source, never a value."""
    key = (kind, frozenset(changes.items()))
    found = _COPIERS.get(key)
    if found is not None:
        return found
    lines = ["def copy(node, delta, new, places):", "    c = make(kind)"]
    place = 0
    for name in _fields_of(kind).every:
        if not name.isidentifier():  # pragma: no cover - a dataclass field's name always is
            raise InternalError("PQL-X035", f"a plan node has a field named {name!r}")
        match changes.get(name):
            case None:
                value = f"node.{name}"
            case "moved":
                value = f"node.{name} + delta"
            case "input":
                value, place = f"new[places[{place}]]", place + 1
            case "inputs":
                value, place = f"tuple([new[at] for at in places[{place}]])", place + 1
        lines.append(f"    put(c, {name!r}, {value})")
    lines.append("    return c")
    scope: dict[str, Any] = {"make": object.__new__, "put": object.__setattr__, "kind": kind}
    exec("\n".join(lines), scope)
    return _COPIERS.setdefault(key, scope["copy"])


def _moves(entry: MemoEntry) -> _Moves:
    """The :class:`_Moves` of ``entry``: each node once, however many plans share it (a rollup's
    edge moves only the bound it shares with the window)."""
    steps: list[_Step] = []
    placed: dict[int, int] = {}

    def place(node: Node) -> int:
        found = placed.get(id(node))
        if found is not None:
            return found
        changes: dict[str, _Change] = {}
        inputs: dict[str, int | tuple[int, ...]] = {}
        match node:
            case Scan():
                if node.start == entry.start:
                    changes["start"] = "moved"
                if node.end == entry.clock:
                    changes["end"] = "moved"
            case Join():
                inputs = {"left": place(node.left), "right": place(node.right)}
            case Filter() | Aggregate() | Sort() | Limit() | Project():
                inputs = {"input": place(node.input)}
            case RollupAggregate():
                inputs = {"edges": tuple(place(edge) for edge in node.edges)}
        for name, at in inputs.items():
            changes[name] = "inputs" if isinstance(at, tuple) else "input"
        kind = type(node)
        places = tuple(inputs[name] for name in _fields_of(kind).every if name in inputs)
        steps.append(_Step(node, _copier(kind, changes), places))
        placed[id(node)] = len(steps) - 1
        return placed[id(node)]

    pairs = tuple(entry.estimates.pairs())
    plans = (place(entry.built), place(entry.estimated), place(entry.final))
    estimated = tuple(place(node) for node, _ in pairs)
    return _Moves(tuple(steps), plans, estimated, tuple(found for _, found in pairs))
