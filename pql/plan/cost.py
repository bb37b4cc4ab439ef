"""Cardinality and cost estimation: how many rows each plan node yields and what it costs.

One public entry, :func:`estimate`. It reads statistics through a
:class:`~pql.stats.StatsProvider` and never touches data.

**The cost unit.** One unit is one row read or produced by an operator. A node's own cost is:

* ``Scan``: the rows of every partition it reads (whole day partitions that meet the window);
* ``Filter``, ``Sort``, ``Project``, ``Aggregate``: the rows of their input (each handled once);
* ``Join``: build plus probe rows (both inputs) plus the rows it produces;
* ``Limit``: the rows it passes on.

A node's cost is its own cost plus its inputs' costs; the root's cost is the query's.

**Rows.** A scan yields the rows of the partitions that meet the window, each scaled by the
fraction of its time range ``[ts_min, ts_max]`` the window covers. A filter multiplies by its
selectivity: from most-common-value counts for low-cardinality strings, the null fraction, the
distinct count (``1/ndv`` for an equality) and min/max for numeric and timestamp ranges
(uniform values assumed); AND multiplies, OR is inclusion-exclusion under independence
(``1 - prod(1 - s)``), NOT is ``1 - s``. Without statistics the defaults below apply. A join
yields ``|L| * |R| / max(ndv_L, ndv_R)`` on ``executionId`` (null keys never match); an
aggregate the product of its keys' distinct counts, at most its input rows (1 without keys); a
limit the smaller of its count and its input.

Distinct counts shrink with the rows kept: ``D`` distinct values over ``N`` rows leave about
``D * (1 - (1 - n/N) ** (N/D))`` distinct values in ``n`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pql.ast import CompareOp
from pql.catalog import DataType
from pql.errors import InternalError
from pql.plan.expr import AllOf, AnyOf, Cmp, Col, Const, In, Negate, Null, Pred
from pql.plan.nodes import Aggregate, Filter, Join, Limit, Node, Project, Scan, Sort, walk
from pql.stats import ColumnSummary, StatsProvider, SubjectSummary
from pql.storage.base import micros

__all__ = [
    "DEFAULT_EQ",
    "DEFAULT_RANGE",
    "DEFAULT_SELECTIVITY",
    "Estimates",
    "NodeEstimate",
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
    """Estimates of every node of one plan, looked up by node (nodes are immutable values)."""

    def __init__(self, plan: Node, by_node: dict[Node, NodeEstimate]) -> None:
        self.plan = plan
        self._by_node = by_node

    @property
    def root(self) -> NodeEstimate:
        return self._by_node[self.plan]

    @property
    def rows(self) -> float:
        return self.root.rows

    @property
    def cost(self) -> float:
        return self.root.cost

    def of(self, node: Node) -> NodeEstimate:
        """The estimate of ``node`` (equal nodes have equal estimates)."""
        found = self._by_node.get(node)
        if found is None:
            raise InternalError("PQL-X030", f"no estimate for a {type(node).__name__} node")
        return found

    def __iter__(self) -> Iterator[tuple[Node, NodeEstimate]]:
        return ((node, self.of(node)) for node in walk(self.plan))


def format_cost(value: float) -> str:
    """How estimates are printed, in refusals and in ``explain`` alike."""
    return f"{value:,.0f}"


def estimate(plan: Node, stats: StatsProvider) -> Estimates:
    """Estimated rows and cost of every node of ``plan`` (see the module docs for the model)."""
    out: dict[Node, NodeEstimate] = {}
    _Estimator(stats).visit(plan, out)
    return Estimates(plan, out)


class _Estimator:
    def __init__(self, stats: StatsProvider) -> None:
        self.stats = stats
        self.summaries: dict[tuple[str, str], SubjectSummary | None] = {}
        self.windows: dict[str, tuple[float, float]] = {}

    def summary(self, tenant: str, subject: str) -> SubjectSummary | None:
        key = (tenant, subject)
        if key not in self.summaries:
            self.summaries[key] = self.stats.summary(tenant, subject)
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
                result = NodeEstimate(rows, below.cost + below.rows)
            case Join(left=left, right=right, left_key=lk, right_key=rk):
                lhs, tenant = self.visit(left, out)
                rhs, _ = self.visit(right, out)
                rows = self.join_rows(lhs.rows, rhs.rows, lk, rk, tenant)
                result = NodeEstimate(rows, lhs.cost + rhs.cost + lhs.rows + rhs.rows + rows)
            case Aggregate(input=inner, keys=keys):
                below, tenant = self.visit(inner, out)
                groups = 1.0 if not keys else self.groups(keys, below.rows, tenant)
                result = NodeEstimate(groups, below.cost + below.rows)
            case Sort(input=inner) | Project(input=inner):
                below, tenant = self.visit(inner, out)
                result = NodeEstimate(below.rows, below.cost + below.rows)
            case Limit(input=inner, count=count):
                below, tenant = self.visit(inner, out)
                rows = min(float(count), below.rows)
                result = NodeEstimate(rows, below.cost + rows)
            case _:
                raise InternalError("PQL-X031", f"cannot estimate a {type(node).__name__} node")
        out[node] = result
        return result, tenant

    # -- scans -------------------------------------------------------------------------------

    def scan(self, node: Scan) -> NodeEstimate:
        start, end = float(micros(node.start)), float(micros(node.end))
        self.windows[node.subject] = (start, end)
        arrays = self.stats.partition_arrays(node.tenant, node.subject)
        rows, read = arrays.in_window(start, end)
        return NodeEstimate(rows, read)

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

    def groups(self, keys: tuple[Col, ...], rows: float, tenant: str) -> float:
        product = 1.0
        for key in keys:
            # Nulls form a group of their own.
            product *= self.distinct(key, rows, tenant) + (self.null_fraction(key, tenant) > 0)
        return max(min(product, rows), 1.0 if rows >= 1 else rows)

    def distinct(self, col: Col, rows: float, tenant: str) -> float:
        """Distinct values of ``col`` among ``rows`` of its subject."""
        summary, total = self.column(col, tenant)
        if summary is None or total == 0 or rows <= 0:
            return max(rows, 0.0)
        d = max(summary.distinct, 1.0)
        fraction = min(1.0, rows / total)
        if fraction >= 1.0:
            return min(d, rows)
        kept = d * -math.expm1((total / d) * math.log1p(-fraction))
        return max(min(kept, rows), 1.0)

    def non_null(self, col: Col, tenant: str) -> float:
        return 1.0 - self.null_fraction(col, tenant)

    def null_fraction(self, col: Col, tenant: str) -> float:
        summary, total = self.column(col, tenant)
        if summary is None or total == 0:
            return 0.0
        return min(1.0, summary.nulls / total)

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
            case Negate(operand=inner):
                return 1.0 - self.selectivity(inner, tenant)
            case AllOf(operands=ops):
                return math.prod(self.selectivity(o, tenant) for o in ops)
            case AnyOf(operands=ops):
                return 1.0 - math.prod(1.0 - self.selectivity(o, tenant) for o in ops)
        raise InternalError("PQL-X032", f"cannot estimate a {type(pred).__name__} predicate")

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
        if summary.mcv and isinstance(value.value, str):
            if value.value in summary.mcv:
                return summary.mcv[value.value] / total
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
        """The fraction of rows with ``col op value``, values uniform in ``[min, max]``."""
        summary, total = self.column(col, tenant)
        number = _number(value.value)
        if summary is None or total == 0 or number is None:
            return DEFAULT_RANGE
        if summary.low is None or summary.high is None:
            return DEFAULT_RANGE if summary.nulls < total else 0.0
        low, high = summary.low, summary.high
        if col.type is DataType.TIMESTAMP and col.subject in self.windows:
            # The scan below already kept the window: compare within it.
            start, end = self.windows[col.subject]
            low, high = max(low, start), min(high, end)
        if high > low:
            below = min(1.0, max(0.0, (number - low) / (high - low)))
        else:
            below = 0.0 if number < low else 1.0
        share = below if op in (CompareOp.LT, CompareOp.LE) else 1.0 - below
        return share * self.non_null(col, tenant)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return float(micros(value))
    return None
