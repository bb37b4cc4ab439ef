"""Rewrites that only make a plan faster: same rows, same schema.

One public entry, :func:`optimize`; the rules run in the order of :data:`RULES`. Each rule is a
small function from plan (and an :class:`OptimizeContext`: what the store offers) to plan.
:func:`optimize` checks that the output schema is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from pql.ast import CompareOp
from pql.catalog import DataType
from pql.errors import InternalError
from pql.plan.context import NO_CONTEXT, OptimizeContext
from pql.plan.expr import NOTHING, AllOf, Cmp, In, Null, Pred, columns_of, conjuncts
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
from pql.plan.rollups import use_rollups

__all__ = [
    "NO_CONTEXT",
    "RULES",
    "OptimizeContext",
    "fold_tenant",
    "narrow_windows",
    "optimize",
    "prune_columns",
    "push_filters",
    "use_rollups",
]


def fold_tenant(plan: Node, context: OptimizeContext = NO_CONTEXT) -> Node:
    """A filter's AND-ed parts that compare ``tenant`` with constants are known when planning,
    since every row a scan reads holds the scan's tenant there. In a query of tenant ``acme``,
    ``tenant = 'acme'`` holds on every row: the part is dropped. ``tenant = 'globex'`` holds on
    none: the whole filter becomes :data:`~pql.plan.expr.NOTHING`, which the executors answer
    without evaluating anything on a row. Parts under OR or NOT are left to the filter."""
    match plan:
        case Filter(input=inner, predicate=pred):
            inner = fold_tenant(inner)
            tenants = {n.tenant for n in walk(inner) if isinstance(n, Scan)}
            if len(tenants) != 1:
                return replace(plan, input=inner)
            tenant = tenants.pop()
            parts = conjuncts(pred)
            known = [_tenant_holds(part, tenant) for part in parts]
            if False in known:
                return Filter(inner, NOTHING, span=plan.span)
            rest = [part for part, holds in zip(parts, known, strict=True) if holds is None]
            if len(rest) == len(parts):
                return replace(plan, input=inner)
            return _filter(inner, rest)
    return _each_input(plan, fold_tenant)


def _tenant_holds(part: Pred, tenant: str) -> bool | None:
    """Whether ``part`` holds on every row of ``tenant`` (``True``) or on none (``False``): it
    compares the ``tenant`` column (never null) for equality or membership. ``None``: it reads
    another column, or compares by order."""
    match part:
        case Cmp(col=col, op=CompareOp.EQ | CompareOp.NE as op, value=value) if (
            col.name == "tenant" and isinstance(value.value, str)
        ):
            return (value.value == tenant) is (op is CompareOp.EQ)
        case In(col=col, values=values, negated=negated) if col.name == "tenant":
            return (tenant in {v.value for v in values}) is not negated
        case Null(col=col, negated=negated) if col.name == "tenant":
            return negated
    return None


def push_filters(plan: Node, context: OptimizeContext = NO_CONTEXT) -> Node:
    """Move each AND-ed part of a filter above a join down to the side whose columns it reads."""
    match plan:
        case Filter(input=Join() as join, predicate=pred):
            left_names = _names(join.left)
            right_names = _names(join.right)
            left: list[Pred] = []
            right: list[Pred] = []
            rest: list[Pred] = []
            for part in conjuncts(pred):
                cols = {c.qualified for c in columns_of(part)}
                if cols <= left_names:
                    left.append(part)
                elif cols <= right_names:
                    right.append(part)
                else:
                    rest.append(part)
            new_join = replace(
                join,
                left=push_filters(_filter(join.left, left)),
                right=push_filters(_filter(join.right, right)),
            )
            return _filter(new_join, rest)
    return _each_input(plan, push_filters)


def narrow_windows(plan: Node, context: OptimizeContext = NO_CONTEXT) -> Node:
    """A scan's ``ts`` compared with a constant narrows the scan's window instead of filtering
    the rows it reads (``ts >= X``: the window starts at ``X``), so the scan reads less and
    rollups can cover the whole days that remain. A scan is exact about its window, so the
    comparison is dropped. Bounds that leave no window are left to the filter (no rows)."""
    match plan:
        case Filter(input=Scan() as scan, predicate=pred):
            parts = conjuncts(pred)
            start, end, rest = scan.start, scan.end, []
            for part in parts:
                bound = _ts_bound(part, scan)
                if bound is None:
                    rest.append(part)
                elif bound[0] == "start":
                    start = max(start, bound[1])
                else:
                    end = min(end, bound[1])
            if start > end or len(rest) == len(parts):
                return plan
            return _filter(replace(scan, start=start, end=end), rest)
    return _each_input(plan, narrow_windows)


def _each_input(plan: Node, rule: Callable[[Node], Node]) -> Node:
    """``plan`` with ``rule`` applied to each of its inputs (a rollup's edges are left alone)."""
    match plan:
        case Scan() | RollupAggregate():
            return plan
        case Join(left=left_node, right=right_node):
            return replace(plan, left=rule(left_node), right=rule(right_node))
        case (
            Filter(input=inner)
            | Aggregate(input=inner)
            | Sort(input=inner)
            | Limit(input=inner)
            | Project(input=inner)
        ):
            return replace(plan, input=rule(inner))
    raise InternalError("PQL-X002", f"optimizer met an unknown node {type(plan).__name__}")


_MICROSECOND = timedelta(microseconds=1)


def _ts_bound(part: Pred, scan: Scan) -> tuple[str, datetime] | None:
    """``("start", X)`` or ``("end", X)`` when ``part`` bounds ``scan``'s ``ts`` by a constant
    (``ts = X`` bounds both: it stays a filter); otherwise ``None``."""
    if not (
        isinstance(part, Cmp)
        and part.col.subject == scan.subject
        and part.col.name == "ts"
        and part.col.type is DataType.TIMESTAMP
        and isinstance(part.value.value, datetime)
    ):
        return None
    value = part.value.value
    match part.op:
        case CompareOp.GE:
            return "start", value
        case CompareOp.GT:
            return "start", value + _MICROSECOND
        case CompareOp.LE:
            return "end", value
        case CompareOp.LT:
            return "end", value - _MICROSECOND
    return None


def prune_columns(plan: Node, context: OptimizeContext = NO_CONTEXT) -> Node:
    """Scans read only the columns something above them uses (``ts`` always)."""
    used: set[str] = set()
    for node in walk(plan):
        match node:
            case Filter(predicate=pred):
                used |= {c.qualified for c in columns_of(pred)}
            case Join(left_key=lk, right_key=rk):
                used |= {k.qualified for k in (lk, rk) if k is not None}
            case Aggregate(keys=keys, aggregates=aggs, buckets=buckets):
                used |= {k.qualified for k in keys}
                used |= {a.col.qualified for a in aggs if a.col is not None}
                if buckets is not None:
                    used.add(buckets.col.qualified)
            case Sort(keys=keys):
                used |= {k.name for k in keys}
            case Project(columns=cols):
                used |= {src for src, _ in cols}
    return _prune(plan, used)


def _prune(plan: Node, used: set[str]) -> Node:
    if isinstance(plan, Scan):
        keep = tuple(c for c in plan.columns if c.qualified in used or c.name == "ts")
        return replace(plan, columns=keep)
    if isinstance(plan, Join):
        return replace(plan, left=_prune(plan.left, used), right=_prune(plan.right, used))
    if isinstance(plan, RollupAggregate):  # its edges read only what it needs already
        return plan
    return replace(plan, input=_prune(plan.input, used))


def _filter(node: Node, parts: list[Pred]) -> Node:
    if not parts:
        return node
    pred = parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    return Filter(node, pred, span=pred.span)


def _names(node: Node) -> set[str]:
    return {name for name, _ in node.schema()}


Rule = Callable[[Node, OptimizeContext], Node]

# The tenant's comparisons are decided first (a part dropped there is neither moved nor read, and
# a filter that keeps nothing is never answered from a rollup). Filters move next, so that pruning
# sees which columns each side still needs, and each scan's
# own ``ts`` bounds then narrow its window (which may leave whole days to rollups). Rollups come
# last: they replace a whole aggregate over one scan (with its filter) by a node the other rules
# leave alone, and the raw-row scans of its edge days reuse the columns pruning kept.
RULES: tuple[Rule, ...] = (fold_tenant, push_filters, narrow_windows, prune_columns, use_rollups)


def optimize(
    plan: Node, rules: tuple[Rule, ...] = RULES, context: OptimizeContext = NO_CONTEXT
) -> Node:
    """Apply every rule in order; the output schema must not change.

    ``context`` says what the store offers (rollups); without it no rule uses more than scans.
    """
    before = plan.schema()
    for rule in rules:
        plan = rule(plan, context)
        if plan.schema() != before:
            raise InternalError(
                "PQL-X003", f"optimizer rule {rule.__name__} changed the output schema"
            )
    return plan
