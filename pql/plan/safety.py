"""The safety phase: what a query may do, decided before anything runs.

One public entry, :func:`apply_safety`. Its rules run in the fixed order of :data:`RULES`; each
either returns a (possibly narrowed) plan or raises :class:`~pql.errors.SafetyError`. Nothing
catches a refusal, and no setting skips a rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pql.deadline import NO_DEADLINE, Deadline
from pql.errors import InputError, InternalError, SafetyError
from pql.limits import Limits
from pql.plan.cost import Estimates, estimate, format_cost
from pql.plan.expr import Buckets
from pql.plan.nodes import Aggregate, Join, Limit, Node, Scan, walk
from pql.plan.optimize import NO_CONTEXT, OptimizeContext, optimize
from pql.stats import NO_STATS, StatsProvider

__all__ = [
    "JOINABLE",
    "RULES",
    "CostReport",
    "SafetyContext",
    "apply_safety",
    "check_tenant_name",
]

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,30}")
JOINABLE = frozenset({"receipts", "decisions"})
JOIN_KEY = "executionId"


@dataclass(slots=True)
class CostReport:
    """What the cost rule found: the estimates it enforced and, in measure mode, the refusals
    it would have made (as :meth:`~pql.errors.PQLError.to_dict` dictionaries)."""

    estimates: Estimates | None = None
    would_refuse: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SafetyContext:
    tenant: str
    now: datetime
    limits: Limits
    since_seconds: int | None = None
    since_text: str | None = None
    """The SINCE duration as written (``4321h``), for messages."""
    """The SINCE duration as written (exact), or None for the default window."""
    stats: StatsProvider = NO_STATS
    """The statistics the cost estimate reads."""
    report: CostReport = field(default_factory=CostReport)
    """Filled in by :func:`cost_budget` for the caller (explain, result stats)."""
    optimizer: OptimizeContext | Callable[[], OptimizeContext] = NO_CONTEXT
    """What the store offers the optimizer (rollups): the cost is of the plan as it will run.
    Or a function giving it, called when a rule needs it (:meth:`optimize_context`): the
    engine's, so that a query whose cost its plan memo answers does not work it out."""
    deadline: Deadline = NO_DEADLINE
    """The query's deadline, checked before each rule (``PQL-S006``)."""
    _walked: list[tuple[Node, tuple[Node, ...]]] = field(
        default_factory=list, compare=False, repr=False
    )

    def optimize_context(self) -> OptimizeContext:
        """What the store offers the optimizer, worked out now if :attr:`optimizer` is a
        function."""
        offer = self.optimizer
        return offer if isinstance(offer, OptimizeContext) else offer()

    def nodes(self, plan: Node) -> tuple[Node, ...]:
        """Every node of ``plan`` (:func:`~pql.plan.nodes.walk`'s order), walked once for all
        the rules that read it: a rule returns the very plan it was given unless it changes
        it, and most rules read every node (five walks were a fifth of the safety phase)."""
        walked = self._walked
        if walked and walked[0][0] is plan:
            return walked[0][1]
        found = tuple(walk(plan))
        walked[:] = [(plan, found)]
        return found


def check_tenant_name(tenant: object) -> str:
    """The tenant, checked against the contract's pattern."""
    if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
        raise InputError(
            "PQL-E030",
            f"{tenant!r} is not a valid tenant",
            hints=(
                "a tenant is 2-31 characters of a-z, 0-9 and '-', starting with a letter or digit",
            ),
        )
    return tenant


def tenant_scope(plan: Node, ctx: SafetyContext) -> Node:
    """Every scan reads the caller's tenant and nothing else."""
    for node in ctx.nodes(plan):
        if isinstance(node, Scan) and node.tenant != ctx.tenant:
            raise InternalError("PQL-X001", "a scan is not restricted to the caller's tenant")
    return plan


def join_policy(plan: Node, ctx: SafetyContext) -> Node:
    """Joins only receipts<->decisions on executionId; no Cartesian products."""
    for node in ctx.nodes(plan):
        if not isinstance(node, Join):
            continue
        if node.left_key is None or node.right_key is None:
            right = _subject_of(node.right)
            raise SafetyError(
                "PQL-S004",
                f"fields of {right} are used without a JOIN: that would be a Cartesian product",
                span=node.span,
                hints=(
                    f"add JOIN {right} ON receipts.executionId = decisions.executionId"
                    if right in JOINABLE
                    else f"{right} cannot be combined with this subject",
                ),
                setting="rule: no Cartesian products",
            )
        subjects = {node.left_key.subject, node.right_key.subject}
        keys = {node.left_key.name, node.right_key.name}
        if subjects != JOINABLE or keys != {JOIN_KEY}:
            raise SafetyError(
                "PQL-S003",
                f"JOIN ON {node.left_key} = {node.right_key} is not allowed: "
                "joins are only between receipts and decisions on executionId",
                span=node.span,
                hints=("write JOIN decisions ON receipts.executionId = decisions.executionId",),
                setting="rule: join policy",
            )
    return plan


def window_limit(plan: Node, ctx: SafetyContext) -> Node:
    """``SINCE`` no longer than the maximum window."""
    longest = ctx.limits.max_window.total_seconds()
    for node in ctx.nodes(plan):
        if not isinstance(node, Scan):
            continue
        asked = (node.end - node.start).total_seconds()
        if ctx.since_seconds is not None:
            asked = max(asked, float(ctx.since_seconds))  # exact, even beyond datetime's range
        if asked <= longest:
            continue
        written = ctx.since_text or _days(asked)
        if not written.endswith("d"):
            written += f" ({_days(asked)})"
        raise SafetyError(
            "PQL-S001",
            f"SINCE {written} is longer than the maximum of {_days(longest)}",
            span=node.span,
            hints=(f"use SINCE {int(longest // 86400)}d or less",),
            setting="Limits.max_window",
            details={"asked_seconds": asked, "max_seconds": longest},
        )
    return plan


def row_limit(plan: Node, ctx: SafetyContext) -> Node:
    """``LIMIT`` no larger than the row maximum."""
    for node in ctx.nodes(plan):
        if isinstance(node, Limit) and not node.cap and node.count > ctx.limits.max_rows:
            raise SafetyError(
                "PQL-S002",
                f"LIMIT {node.count:,} is above the maximum of {ctx.limits.max_rows:,} rows",
                span=node.span,
                hints=(f"use LIMIT {ctx.limits.max_rows} or less, or aggregate with GROUP BY",),
                setting="Limits.max_rows",
            )
    return plan


_WIDTHS = (
    ("1m", 60), ("5m", 300), ("15m", 900), ("30m", 1800), ("1h", 3600), ("2h", 7200),
    ("3h", 10800), ("6h", 21600), ("12h", 43200), ("1d", 86400), ("2d", 172800), ("1w", 604800),
    ("2w", 1209600), ("4w", 2419200),
)  # fmt: skip
"""Bucket widths suggested when a time series has too many buckets."""


def bucket_limit(plan: Node, ctx: SafetyContext) -> Node:
    """``TIMESERIES`` cuts its window into at most ``max_buckets`` buckets."""
    most = ctx.limits.max_buckets
    for node in ctx.nodes(plan):
        if not isinstance(node, Aggregate) or node.buckets is None:
            continue
        buckets = node.buckets
        if buckets.count <= most:
            continue
        scans = [n for n in walk(node) if isinstance(n, Scan)]
        start, end = min(s.start for s in scans), max(s.end for s in scans)
        window = ctx.since_text or _window_text((end - start).total_seconds())
        fits = _width_that_fits(buckets, start, end, most)
        hints = [f"use TIMESERIES {fits} for {window}"] if fits else []
        hints.append("or a shorter SINCE")
        raise SafetyError(
            "PQL-S012",
            f"TIMESERIES {buckets.width_text} over {window} makes {buckets.count:,} buckets; "
            f"the most allowed is {most:,}",
            span=buckets.span,
            hints=tuple(hints),
            setting="Limits.max_buckets",
            details={"buckets": buckets.count, "max_buckets": most},
        )
    return plan


def _width_that_fits(buckets: Buckets, start: datetime, end: datetime, most: int) -> str | None:
    """The narrowest common width whose buckets over the same window number at most ``most``."""
    for text, seconds in _WIDTHS:
        wider = Buckets(buckets.col, seconds)
        if seconds > buckets.seconds and wider.over(start, end).count <= most:
            return text
    return None


def _window_text(seconds: float) -> str:
    """A window as a duration (``24h``, ``7d``) for messages."""
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{int(seconds // 86400)}d"
    return f"{round(seconds / 3600)}h"


def row_cap(plan: Node, ctx: SafetyContext) -> Node:
    """At most ``max_rows`` rows come back; more are cut and the result flagged ``truncated``."""
    if isinstance(plan, Limit) and plan.cap:
        return plan
    return Limit(plan, ctx.limits.max_rows, cap=True)


def cost_budget(plan: Node, ctx: SafetyContext) -> Node:
    """The estimated cost is within ``Limits.cost_budget`` (see :mod:`pql.plan.cost`).

    The estimate is of the plan as it will run: after the speed-only rewrites of
    :func:`~pql.plan.optimize.optimize`, which are deterministic and keep the rows, so the
    estimate ``explain`` shows is this one. With ``Limits.enforce_cost`` off (measure mode) a
    refusal is recorded in ``ctx.report`` instead of raised.
    """
    estimates = estimate(optimize(plan, context=ctx.optimize_context()), ctx.stats)
    ctx.report.estimates = estimates
    budget = ctx.limits.cost_budget
    if estimates.cost <= budget:
        return plan
    error = SafetyError(
        "PQL-S005",
        f"the estimated cost {format_cost(estimates.cost)} is above the budget of "
        f"{format_cost(budget)} (about {format_cost(estimates.rows)} rows come out)",
        hints=(
            "narrow the query: a shorter SINCE, a more selective WHERE, "
            "or an aggregate (COUNT, GROUP BY) instead of rows",
            "raise Limits.cost_budget for this tenant if the query is meant to be this big",
        ),
        setting="Limits.cost_budget",
        details={
            "estimated_cost": estimates.cost,
            "estimated_rows": estimates.rows,
            "budget": budget,
        },
    )
    if ctx.limits.enforce_cost:
        raise error
    ctx.report.would_refuse.append(error.to_dict())
    return plan


Rule = Callable[[Node, SafetyContext], Node]

# Order: the tenant restriction is checked first because every later rule (and every estimate)
# assumes it. Join policy next: no cost or window reasoning is meaningful for a forbidden join.
# Window and LIMIT are plain bounds; the bucket limit follows the window limit because the number
# of buckets depends on the window (a huge SINCE is refused as too long, not as too many buckets).
# The row cap wraps the plan next, so nothing after it can
# widen the result. The cost budget comes last: it estimates the final plan, row cap included
# (the cap bounds what a row query produces).
RULES: tuple[Rule, ...] = (
    tenant_scope,
    join_policy,
    window_limit,
    row_limit,
    bucket_limit,
    row_cap,
    cost_budget,
)


def apply_safety(plan: Node, ctx: SafetyContext, rules: tuple[Rule, ...] = RULES) -> Node:
    """Run every safety rule, in order; a refusal propagates unchanged.

    The query's deadline is checked before each rule; past it the query fails (``PQL-S006``).
    """
    for rule in rules:
        ctx.deadline.check("safety")
        plan = rule(plan, ctx)
    return plan


def rule_names(rules: tuple[Rule, ...] = RULES) -> tuple[str, ...]:
    return tuple(r.__name__.replace("_", "-") for r in rules)


def _subject_of(node: Node) -> str:
    for n in walk(node):
        if isinstance(n, Scan):
            return n.subject
    return "?"  # pragma: no cover


def _days(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return f"{seconds / 86400:.2f}d"
