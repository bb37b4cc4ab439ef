"""Cardinality and cost estimation: how many rows each plan node yields and what it costs.

One public entry, :func:`estimate`. It reads statistics through a
:class:`~pql.stats.StatsProvider` and never touches data.

**The cost unit.** One unit is one row read or produced by an operator. A node's own cost is:

* ``Scan``: the rows of every partition it reads (whole day partitions that meet the window);
* ``Filter``, ``Sort``, ``Project``, ``Aggregate``: the rows of their input (each handled once);
* ``Join``: build plus probe rows (both inputs) plus the rows it produces;
* ``Limit``: the rows it passes on;
* an aggregate with ``TIMESERIES``: also the rows it produces, every bucket of the window for
  every group (``buckets * max(groups, 1)``, which is also the rows it yields);
* ``RollupAggregate``: the rollup rows it reads plus the rows it aggregates (those rollup rows and
  the raw rows of its edge days). Its whole days hold at most one rollup row per day and
  combination of the rollup's key columns, so a day yields the estimated groups of those keys
  over that day's rows (at most the rows themselves).

A node's cost is its own cost plus its inputs' costs; the root's cost is the query's.

**Rows.** A scan yields the rows of the partitions that meet the window, each scaled by the
fraction of its time range ``[ts_min, ts_max]`` the window covers. A filter multiplies by its
selectivity:

* ``=``, ``IN`` and ranges on low-cardinality strings and integers: the counts of their
  most-common values, *in the window*: a value seen only between its first and last ``ts``
  (a policy version, say) counts the share of its rows that falls in the window, in proportion
  to the partitions' rows; a complete list of values is exact up to that;
* other ``=``: ``1/ndv`` from the distinct-count sketch;
* numeric ranges: the column's histogram on log-spaced buckets, so heavy tails are kept;
  ``ts`` ranges: the rows of the partitions inside the window; other ranges: min/max with
  uniform values;
* the conditions AND-ed on one column combine into one (``a >= 1 AND a < 5`` is one interval,
  ``a IN (x, y) AND a = y`` is ``a = y``, contradictions are empty); the rest multiply as if
  independent; OR is inclusion-exclusion under independence (``1 - prod(1 - s)``); NOT of a
  comparison keeps nulls out (``non_null - s``), NOT of anything else is ``1 - s``.

Without statistics the defaults below apply. A join yields ``|L| * |R| / max(ndv_L, ndv_R)`` on
``executionId`` (null keys never match); an aggregate with one key the distinct values of the
key active in the window; with several keys whose value lists are complete, the expected
number of distinct combinations of ``n`` rows drawn with the keys' frequencies (independent
keys): ``sum(1 - (1 - p) ** n)`` over the combinations, since skewed keys rarely fill their
cross product; otherwise the product of the keys' distinct counts; always at most its input
rows (1 without keys). A limit yields the smaller of its count and its input.

Distinct counts shrink with the rows kept: ``D`` distinct values over ``N`` rows leave about
``D * (1 - (1 - n/N) ** (N/D))`` distinct values in ``n`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from pql.ast import CompareOp
from pql.catalog import DataType
from pql.errors import InternalError
from pql.plan.expr import AllOf, AnyOf, Cmp, Col, Const, In, Negate, Null, Pred
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
from pql.stats import ColumnSummary, PartitionArrays, StatsProvider, SubjectSummary
from pql.storage.base import micros

__all__ = [
    "DEFAULT_EQ",
    "DEFAULT_RANGE",
    "DEFAULT_SELECTIVITY",
    "Estimates",
    "NodeEstimate",
    "build_side",
    "estimate",
    "format_cost",
]

DEFAULT_EQ = 0.1
"""Selectivity of ``col = value`` without statistics for the column."""
DEFAULT_RANGE = 1 / 3
"""Selectivity of ``<``, ``<=``, ``>``, ``>=`` without min/max for the column."""
DEFAULT_SELECTIVITY = 0.5
"""Selectivity of anything else without statistics (booleans, unknown columns)."""


@dataclass(frozen=True, slots=True)
class NodeEstimate:
    """Estimated output rows and cumulative cost of one node."""

    rows: float
    cost: float

    def to_dict(self) -> dict[str, float]:
        return {"est_rows": round(self.rows, 1), "est_cost": round(self.cost, 1)}


class Estimates:
    """Estimates of every node of one plan, looked up by node (nodes are immutable values).

    A node of the estimated plan itself is found by identity, without hashing it (a node's hash
    walks its whole subtree, and nodes do not cache it); any other node equal to one of them is
    found by equality.
    """

    def __init__(self, plan: Node, by_node: Iterable[tuple[Node, NodeEstimate]]) -> None:
        self.plan = plan
        self._pairs = tuple(by_node)
        self._by_id = {id(node): (node, found) for node, found in self._pairs}
        self._by_node: dict[Node, NodeEstimate] | None = None
        self._root: NodeEstimate | None = None

    @property
    def root(self) -> NodeEstimate:
        if self._root is None:
            self._root = self.of(self.plan)
        return self._root

    @property
    def rows(self) -> float:
        return self.root.rows

    @property
    def cost(self) -> float:
        return self.root.cost

    def find(self, node: Node) -> NodeEstimate | None:
        """The estimate of ``node``, or ``None`` if it is not part of the estimated plan."""
        same = self._by_id.get(id(node))
        if same is not None and same[0] is node:
            return same[1]
        if self._by_node is None:
            self._by_node = dict(self._pairs)
        return self._by_node.get(node)

    def of(self, node: Node) -> NodeEstimate:
        """The estimate of ``node`` (equal nodes have equal estimates)."""
        found = self.find(node)
        if found is None:
            raise InternalError("PQL-X030", f"no estimate for a {type(node).__name__} node")
        return found

    def nodes(self) -> tuple[Node, ...]:
        """The nodes estimated, each once (equal nodes are one)."""
        return tuple(node for node, _ in self._pairs)

    def __iter__(self) -> Iterator[tuple[Node, NodeEstimate]]:
        return ((node, self.of(node)) for node in walk(self.plan))

    def pairs(self) -> tuple[tuple[Node, NodeEstimate], ...]:
        """Each node estimated, once (equal nodes are one), with its estimate."""
        return self._pairs


def format_cost(value: float) -> str:
    """How estimates are printed, in refusals and in ``explain`` alike."""
    return f"{value:,.0f}"


def build_side(join: Join, estimates: Estimates | None) -> str:
    """The input of ``join`` to build the hash table on: ``"left"`` or ``"right"``, the one
    estimated to have fewer rows, or ``"auto"`` (let Polars choose) without estimates or on a tie.
    """
    if estimates is None:
        return "auto"
    left, right = estimates.find(join.left), estimates.find(join.right)
    if left is None or right is None or left.rows == right.rows:
        return "auto"
    return "left" if left.rows < right.rows else "right"


def estimate(plan: Node, stats: StatsProvider) -> Estimates:
    """Estimated rows and cost of every node of ``plan`` (see the module docs for the model)."""
    out: dict[Node, NodeEstimate] = {}
    _Estimator(stats).visit(plan, out)
    return Estimates(plan, out.items())


_Window = tuple[float, float]
"""A time range, µs since the epoch."""
_ColumnKey = tuple[str, str, str, _Window | None]
"""Tenant, subject, column and window: what a column's shares in the window depend on."""


class _Estimator:
    def __init__(self, stats: StatsProvider) -> None:
        self.stats = stats
        self.summaries: dict[tuple[str, str], SubjectSummary | None] = {}
        self.windows: dict[str, _Window] = {}
        """Per subject, the time range its scans read (µs; the union of the scans' windows)."""
        self.shares: dict[_ColumnKey, dict[str, float] | None] = {}
        self.in_window: dict[tuple[str, str, _Window], float] = {}
        self.nulls: dict[_ColumnKey, float] = {}
        self.pinned: dict[Col, set[Any]] = {}
        """Columns that filters below restrict to a set of values (AND-ed ``=`` and ``IN``)."""

    def summary(self, tenant: str, subject: str) -> SubjectSummary | None:
        key = (tenant, subject)
        if key not in self.summaries:
            # Only the window the scans read: summarising stays bounded by the query's window.
            self.summaries[key] = self.stats.summary(tenant, subject, self.windows.get(subject))
        return self.summaries[key]

    def column(self, col: Col, tenant: str) -> tuple[ColumnSummary | None, int]:
        summary = self.summary(tenant, col.subject)
        if summary is None:
            return None, 0
        return summary.columns.get(col.name), summary.rows

    def visit(self, node: Node, out: dict[Node, NodeEstimate]) -> tuple[NodeEstimate, str]:
        """Estimate ``node`` and its inputs into ``out``; returns its estimate and tenant."""
        match node:
            case Scan():
                result = self.scan(node)
                tenant = node.tenant
            case Filter(input=inner, predicate=pred):
                below, tenant = self.visit(inner, out)
                rows = below.rows * self.selectivity(pred, tenant)
                self.pin(pred)
                result = NodeEstimate(rows, below.cost + below.rows)
            case Join(left=left, right=right, left_key=lk, right_key=rk):
                lhs, tenant = self.visit(left, out)
                rhs, _ = self.visit(right, out)
                rows = self.join_rows(lhs.rows, rhs.rows, lk, rk, tenant)
                result = NodeEstimate(rows, lhs.cost + rhs.cost + lhs.rows + rhs.rows + rows)
            case Aggregate(input=inner, keys=keys, buckets=buckets):
                below, tenant = self.visit(inner, out)
                groups = 1.0 if not keys else self.groups(keys, below.rows, tenant)
                result = NodeEstimate(groups, below.cost + below.rows)
                if buckets is not None:  # every bucket of every group comes out
                    rows = buckets.count * max(groups, 1.0)
                    result = NodeEstimate(rows, below.cost + below.rows + rows)
            case Sort(input=inner) | Project(input=inner):
                below, tenant = self.visit(inner, out)
                result = NodeEstimate(below.rows, below.cost + below.rows)
            case Limit(input=inner, count=count):
                below, tenant = self.visit(inner, out)
                rows = min(float(count), below.rows)
                result = NodeEstimate(rows, below.cost + rows)
            case RollupAggregate():
                result, tenant = self.rollup(node, out), node.tenant
            case _:
                raise InternalError("PQL-X031", f"cannot estimate a {type(node).__name__} node")
        out[node] = result
        return result, tenant

    # -- scans -------------------------------------------------------------------------------

    def scan(self, node: Scan) -> NodeEstimate:
        start, end = float(micros(node.start)), float(micros(node.end))
        seen = self.windows.get(node.subject)
        self.windows[node.subject] = (
            (start, end) if seen is None else (min(seen[0], start), max(seen[1], end))
        )
        arrays = self.stats.partition_arrays(node.tenant, node.subject)
        rows, read = arrays.in_window(start, end)
        return NodeEstimate(rows, read)

    def rollup(self, node: RollupAggregate, out: dict[Node, NodeEstimate]) -> NodeEstimate:
        """Rollup rows of the whole days, then the groups over them and the edge rows."""
        edge_rows = edge_cost = 0.0
        for edge in node.edges:
            below, _ = self.visit(edge, out)
            edge_rows, edge_cost = edge_rows + below.rows, edge_cost + below.cost
        start, end = node.days_window
        # The raw rows the rollup stands in for (this also widens the subject's window).
        raw = self.scan(Scan(node.subject, node.tenant, start, end, ())).rows
        rolled = self.rollup_rows(node, raw)
        if node.predicate is not None:
            raw *= self.selectivity(node.predicate, node.tenant)
        groups = 1.0 if not node.keys else self.groups(node.keys, raw + edge_rows, node.tenant)
        if node.buckets is not None:  # every bucket of every group comes out
            rows = node.buckets.count * max(groups, 1.0)
            return NodeEstimate(rows, edge_cost + 2 * rolled + edge_rows + rows)
        return NodeEstimate(groups, edge_cost + 2 * rolled + edge_rows)

    def rollup_rows(self, node: RollupAggregate, raw: float) -> float:
        """Rollup rows of the whole days: at most one per day and combination of the grain's
        values (their distinct counts multiplied), and at most the raw rows."""
        combinations = 1.0
        for key in node.grain:
            summary, _ = self.column(key, node.tenant)
            if summary is None:
                return raw
            combinations *= max(summary.distinct, 1.0) + (summary.nulls > 0)
        return min(raw, combinations * node.days)

    # -- joins and groups --------------------------------------------------------------------

    def join_rows(
        self, left: float, right: float, lk: Col | None, rk: Col | None, tenant: str
    ) -> float:
        if lk is None or rk is None:
            return left * right  # a Cartesian product (refused by the join policy)
        left_keys = left * self.non_null(lk, tenant)
        right_keys = right * self.non_null(rk, tenant)
        ndv = max(self.distinct(lk, left_keys, tenant), self.distinct(rk, right_keys, tenant), 1.0)
        return left_keys * right_keys / ndv

    def pin(self, pred: Pred) -> None:
        """Remember the values a filter's AND-ed ``=`` and ``IN`` leave their columns."""
        stack = [pred]
        while stack:
            atom = stack.pop()
            if isinstance(atom, AllOf):
                stack.extend(atom.operands)
                continue
            if isinstance(atom, In) and not atom.negated:
                found = {c.value for c in atom.values}
            elif isinstance(atom, Cmp) and atom.op is CompareOp.EQ:
                found = {atom.value.value}
            else:
                continue
            seen = self.pinned.get(atom.col)
            self.pinned[atom.col] = found if seen is None else seen & found

    def groups(self, keys: tuple[Col, ...], rows: float, tenant: str) -> float:
        floor = 1.0 if rows >= 1 else rows
        if len(keys) > 1:
            combinations = self.combinations(keys, rows, tenant)
            if combinations is not None:
                return max(min(combinations, rows), floor)
        product = 1.0
        for key in keys:
            pinned = self.pinned.get(key)
            if pinned is not None:  # a filter below kept only these values (and no nulls)
                product *= min(self.distinct(key, rows, tenant), self.pinned_values(key, tenant))
            else:  # nulls form a group of their own
                product *= self.distinct(key, rows, tenant) + (self.null_fraction(key, tenant) > 0)
        return max(min(product, rows), floor)

    def pinned_values(self, key: Col, tenant: str) -> float:
        """How many of the values a filter kept for ``key`` occur (in the window)."""
        pinned = self.pinned[key]
        summary, _ = self.column(key, tenant)
        shares = self.value_shares(key, tenant)
        if summary is None or not summary.mcv_complete or shares is None:
            return float(len(pinned))
        return float(sum(1 for v in pinned if shares.get(_mcv_key(v) or "", 0.0) > 0))

    def key_shares(self, key: Col, tenant: str) -> list[float] | None:
        """The shares of ``key``'s values (and nulls) among the rows grouped, if all are known."""
        summary, _ = self.column(key, tenant)
        shares = self.value_shares(key, tenant)
        if summary is None or not summary.mcv_complete or shares is None:
            return None
        pinned = self.pinned.get(key)
        if pinned is None:
            return [*shares.values(), self.null_fraction(key, tenant)]
        kept = [shares.get(_mcv_key(v) or "", 0.0) for v in pinned]
        total = sum(kept)
        return [p / total for p in kept] if total > 0 else []

    def combinations(self, keys: tuple[Col, ...], rows: float, tenant: str) -> float | None:
        """Expected distinct combinations of ``keys`` in ``rows`` rows, from the keys' value
        frequencies (independent keys); ``None`` unless every key has a complete list."""
        joint = np.ones(1)
        for key in keys:
            p = self.key_shares(key, tenant)
            if p is None:
                return None
            joint = np.outer(joint, np.array(p, dtype=np.float64)).ravel()
            if joint.size > 100_000:
                return None
        joint = joint[joint > 0]
        present = -np.expm1(rows * np.log1p(-np.minimum(joint, 1 - 1e-12)))
        return float(present.sum())

    def distinct(self, col: Col, rows: float, tenant: str) -> float:
        """Distinct values of ``col`` among ``rows`` of its subject (in the window)."""
        summary, total = self.column(col, tenant)
        if summary is None or total == 0 or rows <= 0:
            return max(rows, 0.0)
        d, population = max(summary.distinct, 1.0), float(total)
        if summary.mcv_complete and summary.spans and col.subject in self.windows:
            shares = self.value_shares(col, tenant) or {}
            in_window = self.window_rows(col.subject, tenant)
            if in_window > 0:  # only the values seen in the window
                d, population = max(sum(1 for p in shares.values() if p > 0), 1.0), in_window
        fraction = min(1.0, rows / population)
        if fraction >= 1.0:
            return min(d, rows)
        kept = d * -math.expm1((population / d) * math.log1p(-fraction))
        return max(min(kept, rows), 1.0)

    def non_null(self, col: Col, tenant: str) -> float:
        return 1.0 - self.null_fraction(col, tenant)

    def null_fraction(self, col: Col, tenant: str) -> float:
        """The share of nulls in ``col``; in the window, when the nulls' time span is known."""
        key = (tenant, col.subject, col.name, self.windows.get(col.subject))
        if key not in self.nulls:
            self.nulls[key] = self._null_fraction(col, tenant)
        return self.nulls[key]

    def _null_fraction(self, col: Col, tenant: str) -> float:
        summary, total = self.column(col, tenant)
        if summary is None or total == 0:
            return 0.0
        share = summary.nulls / total
        window = self.windows.get(col.subject)
        span = summary.null_span
        if summary.nulls and span is not None and window is not None:
            length = max(window[1] - window[0], 1.0)
            missed = (max(span[0] - window[0], 0.0) + max(window[1] - span[1], 0.0)) / length
            in_window = self.window_rows(col.subject, tenant)
            if missed > _SPAN_SLACK and in_window > 0:  # the nulls come and go: count them
                arrays = self.stats.partition_arrays(tenant, col.subject)
                inside, whole = _rows_between(
                    arrays,
                    np.array([max(span[0], window[0]), span[0]]),
                    np.array([min(span[1], window[1]), span[1]]),
                )
                point = 1.0 if window[0] <= span[0] <= window[1] else 0.0
                cover = float(inside / whole) if whole > 0 else point
                share = summary.nulls * cover / in_window
        return min(1.0, share)

    # -- selectivity -------------------------------------------------------------------------

    def selectivity(self, pred: Pred, tenant: str) -> float:
        match pred:
            case Cmp(col=col, op=op, value=value):
                return self.compare(col, op, value, tenant)
            case In(col=col, values=values, negated=negated):
                hit = min(
                    sum(self.equal(col, v, tenant) for v in values), self.non_null(col, tenant)
                )
                return self.non_null(col, tenant) - hit if negated else hit
            case Null(col=col, negated=negated):
                nulls = self.null_fraction(col, tenant)
                return 1.0 - nulls if negated else nulls
            case Negate(operand=Cmp(col=col) | In(col=col) as inner):
                # NOT (a < 5) is false for a null a, as a < 5 is (three-valued logic).
                return max(0.0, self.non_null(col, tenant) - self.selectivity(inner, tenant))
            case Negate(operand=inner):
                return 1.0 - self.selectivity(inner, tenant)
            case AllOf(operands=ops):
                return self.conjunction(ops, tenant)
            case AnyOf(operands=ops):
                return 1.0 - math.prod(1.0 - self.selectivity(o, tenant) for o in ops)
        raise InternalError("PQL-X032", f"cannot estimate a {type(pred).__name__} predicate")

    def conjunction(self, ops: Sequence[Pred], tenant: str) -> float:
        """AND: independent, except that the conditions on one column combine into one."""
        same: dict[Col, list[Cmp | In]] = {}
        rest: list[Pred] = []
        null: set[Col] = set()
        for op in ops:
            if (isinstance(op, Cmp) and op.op is not CompareOp.NE) or (
                isinstance(op, In) and not op.negated
            ):
                same.setdefault(op.col, []).append(op)
            else:
                rest.append(op)
            match op:
                case Null(col=col, negated=False) | Negate(operand=Null(col=col, negated=True)):
                    null.add(col)
        if any(isinstance(op, Cmp | In) and op.col in null for op in ops):
            return 0.0  # IS NULL and a comparison on one column: a comparison is never true of null
        share = math.prod(self.selectivity(o, tenant) for o in rest)
        for col, atoms in same.items():
            if len(atoms) == 1:
                share *= self.selectivity(atoms[0], tenant)
            else:
                share *= self.one_column(col, atoms, tenant)
        return share

    def one_column(self, col: Col, atoms: list[Cmp | In], tenant: str) -> float:
        """``=``, ``IN`` and ranges AND-ed on one column: a set of values or one interval."""
        values: set[Any] | None = None
        bounds = _Bounds()
        try:
            for atom in atoms:
                if isinstance(atom, In):
                    found = {c.value for c in atom.values}
                elif atom.op is CompareOp.EQ:
                    found = {atom.value.value}
                else:
                    bounds.add(atom.op, atom.value.value)
                    continue
                values = found if values is None else values & found
            if values is None:
                return self.interval(col, bounds, tenant)
            kept = [v for v in values if bounds.admit(v)]
        except TypeError:  # values that do not compare: treat the conditions as independent
            return math.prod(self.selectivity(a, tenant) for a in atoms)
        hit = sum(self.equal(col, Const(v, col.type), tenant) for v in kept)
        return min(hit, self.non_null(col, tenant))

    def compare(self, col: Col, op: CompareOp, value: Const, tenant: str) -> float:
        if op is CompareOp.EQ:
            return self.equal(col, value, tenant)
        if op is CompareOp.NE:
            return max(0.0, self.non_null(col, tenant) - self.equal(col, value, tenant))
        return self.range(col, op, value, tenant)

    def equal(self, col: Col, value: Const, tenant: str) -> float:
        """The fraction of rows with ``col = value``."""
        summary, total = self.column(col, tenant)
        if summary is None or total == 0:
            return DEFAULT_EQ if col.type is not DataType.BOOL else DEFAULT_SELECTIVITY
        key = _mcv_key(value.value)
        if summary.mcv and (key is not None or summary.mcv_complete):
            shares = self.value_shares(col, tenant) or {}
            if key in shares:
                return shares[key]
            if summary.mcv_complete:
                return 0.0
            rest = total - summary.nulls - sum(summary.mcv.values())
            others = max(summary.distinct - len(summary.mcv), 1.0)
            return max(rest, 0) / total / others
        if summary.low is not None and summary.high is not None and col.type.numeric:
            number = _number(value.value)
            if number is not None and not summary.low <= number <= summary.high:
                return 0.0
        if summary.sketch is not None:
            return self.non_null(col, tenant) / max(summary.distinct, 1.0)
        return DEFAULT_EQ if col.type is not DataType.BOOL else DEFAULT_SELECTIVITY

    def range(self, col: Col, op: CompareOp, value: Const, tenant: str) -> float:
        """The fraction of rows with ``col op value``."""
        bounds = _Bounds()
        bounds.add(op, value.value)
        return self.interval(col, bounds, tenant)

    def interval(self, col: Col, bounds: _Bounds, tenant: str) -> float:
        """The fraction of rows whose ``col`` lies within ``bounds``.

        From the complete list of values (with their shares in the window) when there is one;
        for ``ts``, from the rows of the partitions in the window; for numbers, from the
        histogram; otherwise with values uniform in ``[min, max]``.
        """
        summary, total = self.column(col, tenant)
        if summary is None or total == 0:
            return DEFAULT_RANGE
        non_null = self.non_null(col, tenant)
        if bounds.empty():
            return 0.0
        if summary.mcv_complete and summary.mcv and col.type in _LISTED:
            shares = self.value_shares(col, tenant) or {}
            typed = [(_typed_key(k, col.type), p) for k, p in shares.items()]
            return min(non_null, sum(p for v, p in typed if bounds.admit(v)))
        low, high = bounds.numbers()
        if low is None and high is None:
            return DEFAULT_RANGE if bounds.bounded() else non_null
        if summary.low is None or summary.high is None:
            return DEFAULT_RANGE if summary.nulls < total else 0.0
        if col.type is DataType.TIMESTAMP and col.subject in self.windows:
            # The scan below already kept the window: count the partitions' rows within it.
            start, end = self.windows[col.subject]
            in_window = self.window_rows(col.subject, tenant)
            if in_window > 0:
                a, b = max(start, low or start), min(end, end if high is None else high)
                inside = self.rows_between(col.subject, tenant, a, b) if b >= a else 0.0
                return non_null * min(1.0, inside / in_window)
        hist = summary.hist
        if hist is not None and hist.total > 0:
            upper = hist.total if high is None else hist.below(high, inclusive=bounds.high_incl)
            lower = 0.0 if low is None else hist.below(low, inclusive=not bounds.low_incl)
            return non_null * min(1.0, max(0.0, (upper - lower) / hist.total))
        return non_null * _uniform(summary.low, summary.high, low, high)

    # -- values in the window ----------------------------------------------------------------

    def rows_between(self, subject: str, tenant: str, start: float, end: float) -> float:
        """Rows of ``subject`` with ``start <= ts <= end`` (from the partition statistics)."""
        return self.stats.partition_arrays(tenant, subject).in_window(start, end)[0]

    def window_rows(self, subject: str, tenant: str) -> float:
        """Rows of ``subject`` in the window its scans read (0 when none was scanned)."""
        window = self.windows.get(subject)
        if window is None:
            return 0.0
        key = (tenant, subject, window)
        if key not in self.in_window:
            self.in_window[key] = self.rows_between(subject, tenant, *window)
        return self.in_window[key]

    def value_shares(self, col: Col, tenant: str) -> dict[str, float] | None:
        """The share of the window's rows holding each most-common value of ``col``.

        A value seen only between its first and last ``ts`` counts the part of its rows that
        falls in the window (in proportion to the partitions' rows there); a complete list is
        scaled to the column's non-null share. ``None`` without a list of values.
        """
        key = (tenant, col.subject, col.name, self.windows.get(col.subject))
        if key not in self.shares:
            self.shares[key] = self._value_shares(col, tenant)
        return self.shares[key]

    def _value_shares(self, col: Col, tenant: str) -> dict[str, float] | None:
        summary, total = self.column(col, tenant)
        if summary is None or total == 0 or not summary.mcv:
            return None
        shares = {value: count / total for value, count in summary.mcv.items()}
        window = self.windows.get(col.subject)
        spanned = [v for v in summary.mcv if v in summary.spans]
        if window is None or not spanned:
            return shares
        lo = np.array([summary.spans[v][0] for v in spanned])
        hi = np.array([summary.spans[v][1] for v in spanned])
        length = max(window[1] - window[0], 1.0)
        missed = (np.maximum(lo - window[0], 0) + np.maximum(window[1] - hi, 0)) / length
        if np.all(missed <= _SPAN_SLACK) or np.all((lo >= window[0]) & (hi <= window[1])):
            return shares  # every value spans (nearly) the whole window, or lies inside it
        in_window = self.window_rows(col.subject, tenant)
        if in_window <= 0:
            return shares
        arrays = self.stats.partition_arrays(tenant, col.subject)
        rows = _rows_between(
            arrays,
            np.concatenate([np.maximum(lo, window[0]), lo]),
            np.concatenate([np.minimum(hi, window[1]), hi]),
        )
        inside, whole = rows[: lo.size], rows[lo.size :]
        point = (lo >= window[0]) & (lo <= window[1])
        cover = np.where(whole > 0, inside / np.where(whole > 0, whole, 1.0), point * 1.0)
        for value, part in zip(spanned, cover, strict=True):
            shares[value] = summary.mcv[value] * float(part) / in_window
        if summary.mcv_complete:
            listed = sum(shares.values())
            if listed > 0:
                scale = self.non_null(col, tenant) / listed
                shares = {value: share * scale for value, share in shares.items()}
        return shares


_SPAN_SLACK = 0.05
"""A value whose first and last ``ts`` leave at most this share of the window uncovered counts
as present all over it (which spares the partition arithmetic for most columns)."""

_LISTED = (DataType.STRING, DataType.INT)
"""Types whose most-common values are listed (``ColumnSummary.mcv``, keys as strings)."""


class _Bounds:
    """Lower and upper bounds AND-ed on one column (``None``: unbounded)."""

    __slots__ = ("high", "high_incl", "low", "low_incl")

    def __init__(self) -> None:
        self.low: Any = None
        self.high: Any = None
        self.low_incl = True
        self.high_incl = True

    def add(self, op: CompareOp, value: Any) -> None:
        """Narrow by ``col op value`` (``<``, ``<=``, ``>``, ``>=``); may raise TypeError."""
        if op in (CompareOp.LT, CompareOp.LE):
            incl = op is CompareOp.LE
            if self.high is None or value < self.high or (value == self.high and not incl):
                self.high, self.high_incl = value, incl
        elif op in (CompareOp.GT, CompareOp.GE):
            incl = op is CompareOp.GE
            if self.low is None or value > self.low or (value == self.low and not incl):
                self.low, self.low_incl = value, incl

    def bounded(self) -> bool:
        return self.low is not None or self.high is not None

    def empty(self) -> bool:
        """No value can satisfy both bounds."""
        if self.low is None or self.high is None:
            return False
        try:
            return bool(
                self.low > self.high
                or (self.low == self.high and not (self.low_incl and self.high_incl))
            )
        except TypeError:
            return False

    def admit(self, value: Any) -> bool:
        """Whether ``value`` lies within the bounds (``None``, a null, never does)."""
        if value is None:
            return False
        try:
            if self.low is not None and (
                value < self.low or (value == self.low and not self.low_incl)
            ):
                return False
            return not (
                self.high is not None
                and (value > self.high or (value == self.high and not self.high_incl))
            )
        except TypeError:
            return False

    def numbers(self) -> tuple[float | None, float | None]:
        """The bounds as numbers (µs for timestamps); ``None`` where unbounded or not numeric."""
        return _number(self.low), _number(self.high)


def _mcv_key(value: Any) -> str | None:
    """How ``ColumnSummary.mcv`` spells ``value`` (strings and integers), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _typed_key(key: str, type_: DataType) -> Any:
    """An ``mcv`` key as a value of the column's type."""
    if type_ is DataType.INT:
        try:
            return int(key)
        except ValueError:
            return None
    return key


def _uniform(low: float, high: float, a: float | None, b: float | None) -> float:
    """The share of ``[low, high]`` within ``[a, b]``, values uniform (``None``: unbounded)."""
    a = low if a is None else max(a, low)
    b = high if b is None else min(b, high)
    if high > low:
        return min(1.0, max(0.0, (b - a) / (high - low)))
    return 1.0 if a <= low <= b else 0.0


def _rows_between(
    arrays: PartitionArrays, starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """:meth:`PartitionArrays.in_window` for many windows at once (rows expected in each)."""
    if not arrays.rows.size or not starts.size:
        return np.zeros(starts.shape)
    s, e = starts[:, None], ends[:, None]
    overlaps = (arrays.ts_max >= s) & (arrays.ts_min <= e) & (e >= s)
    span = arrays.ts_max - arrays.ts_min
    covered = np.minimum(e, arrays.ts_max) - np.maximum(s, arrays.ts_min)
    fraction = np.where(span > 0, covered / np.where(span > 0, span, 1.0), 1.0)
    share = arrays.rows * np.clip(fraction, 0.0, 1.0)
    return np.asarray(np.where(overlaps, share, 0.0).sum(axis=1))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return float(micros(value))
    return None
