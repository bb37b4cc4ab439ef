"""Plans as text and as dictionaries, for ``explain``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pql.errors import InternalError
from pql.plan.cost import Estimates, build_side, format_cost
from pql.plan.expr import BUCKET, AggSpec, Buckets, Col, pred_text
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
from pql.render import explanation_html

__all__ = ["Explanation", "describe", "node_name", "render", "to_dict"]


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def node_name(node: Node) -> str:
    return type(node).__name__


def describe(node: Node) -> str:
    """One line saying what ``node`` does."""
    match node:
        case Scan(subject=s, tenant=t, start=a, end=b, columns=cols):
            names = ", ".join(c.name for c in cols)
            return f"Scan {s} tenant={t} ts=[{_ts(a)} .. {_ts(b)}] columns=[{names}]"
        case Filter(predicate=p):
            return f"Filter {pred_text(p)}"
        case Join(left_key=lk, right_key=rk):
            if lk is None or rk is None:
                return "Join (no condition: Cartesian product)"
            return f"Join inner {lk} = {rk}"
        case Aggregate(keys=keys, aggregates=aggs, buckets=b):
            return f"Aggregate {_aggregates(keys, aggs, b)}{_series_note(b)}"
        case RollupAggregate(keys=keys, aggregates=aggs, predicate=p, buckets=b):
            where = "" if p is None else f" WHERE {pred_text(p)}"
            return (
                f"RollupAggregate {_aggregates(keys, aggs, b)}{where}{_series_note(b)} "
                f"({_rollup_note(node)})"
            )
        case Sort(keys=keys):
            return "Sort " + ", ".join(str(k) for k in keys) + " NULLS LAST"
        case Limit(count=n, cap=cap):
            return f"Limit {n}" + (" (row cap: more rows are flagged truncated)" if cap else "")
        case Project(columns=cols):
            return "Project " + ", ".join(
                out if src == out else f"{src} AS {out}" for src, out in cols
            )
    raise InternalError("PQL-X007", f"explain met an unknown node {type(node).__name__}")


def _aggregates(keys: tuple[Col, ...], aggs: tuple[AggSpec, ...], buckets: Buckets | None) -> str:
    by = ", ".join([*([f"{buckets} AS {BUCKET}"] if buckets else []), *(str(k) for k in keys)])
    what = ", ".join(f"{a} AS {a.name}" if str(a) != a.name else str(a) for a in aggs)
    return what + (f" BY {by}" if by else "")


def _series_note(buckets: Buckets | None) -> str:
    """How many buckets a time series has, e.g. `` buckets=168 [first .. last] filled``."""
    if buckets is None or buckets.first is None or buckets.last is None:
        return ""
    return (
        f" buckets={buckets.count:,} [{_ts(buckets.first)} .. {_ts(buckets.last)}]"
        " (empty ones filled)"
    )


def _rollup_note(node: RollupAggregate) -> str:
    """Where a rollup aggregate's rows come from, e.g. ``rollup: 178 full days ...``."""
    days = f"{node.days} full day{'s' if node.days != 1 else ''}"
    edges = len(node.edges)
    return (
        f"rollup: {days} {node.first_day.isoformat()} .. {node.last_day.isoformat()} from rollup, "
        f"{edges} edge day{'s' if edges != 1 else ''} from rows"
    )


def render(plan: Node, annotate: dict[int, str] | None = None) -> str:
    """The plan as an indented tree, root first. ``annotate`` adds text per node (by ``id``)."""
    lines: list[str] = []
    stack: list[tuple[Node, int]] = [(plan, 0)]
    while stack:
        node, depth = stack.pop()
        extra = (annotate or {}).get(id(node))
        line = "  " * depth + describe(node)
        lines.append(f"{line}  {extra}" if extra else line)
        stack.extend((child, depth + 1) for child in reversed(node.inputs()))
    return "\n".join(lines)


def to_dict(plan: Node, annotate: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The plan as nested dictionaries (JSON-ready)."""
    out: dict[str, Any] = {
        "node": node_name(plan),
        "detail": describe(plan),
        "schema": [[name, t.value] for name, t in plan.schema()],
    }
    if annotate and id(plan) in annotate:
        out.update(annotate[id(plan)])
    out["inputs"] = [to_dict(child, annotate) for child in plan.inputs()]
    return out


@dataclass(frozen=True, repr=False)
class Explanation:
    """What ``Engine.explain`` returns: the plan as it will run, with its estimates.

    ``str()`` gives the text (the plan tree with ``est_rows=… est_cost=…`` per node, then the
    tenant, window, cost and rules); :meth:`to_dict` the same as JSON-ready dictionaries. With
    ``actual_rows`` (``explain(..., analyze=True)``) each node also shows the rows it produced.
    """

    plan: Node
    estimates: Estimates
    budget: float
    footer: tuple[str, ...] = ()
    would_refuse: tuple[dict[str, Any], ...] = ()
    actual_rows: Mapping[Node, int] | None = None

    @property
    def estimated_rows(self) -> float:
        """Estimated rows of the root: what the query returns."""
        return self.estimates.rows

    @property
    def estimated_cost(self) -> float:
        """Estimated cost of the whole query (the number the budget is compared with)."""
        return self.estimates.cost

    @property
    def over_budget(self) -> bool:
        return self.estimated_cost > self.budget

    def node_details(self) -> list[dict[str, Any]]:
        """One dictionary per node, root first: what it does and its estimate (and actual)."""
        out: list[dict[str, Any]] = []
        stack: list[tuple[Node, int]] = [(self.plan, 0)]
        while stack:
            node, depth = stack.pop()
            out.append({"node": node_name(node), "detail": describe(node), "depth": depth})
            out[-1].update(self._numbers(node))
            stack.extend((child, depth + 1) for child in reversed(node.inputs()))
        return out

    def _numbers(self, node: Node) -> dict[str, Any]:
        numbers: dict[str, Any] = dict(self.estimates.of(node).to_dict())
        if isinstance(node, Join):
            numbers["build"] = build_side(node, self.estimates)
        if self.actual_rows is not None:
            numbers["actual_rows"] = self.actual_rows[node]
        return numbers

    def _annotation(self, node: Node) -> str:
        est = self.estimates.of(node)
        text = f"est_rows={format_cost(est.rows)} est_cost={format_cost(est.cost)}"
        if isinstance(node, Join):
            text += f" build={build_side(node, self.estimates)}"
        if self.actual_rows is not None:
            text += f" actual_rows={self.actual_rows[node]:,}"
        return text

    def __str__(self) -> str:
        notes = {id(node): self._annotation(node) for node in walk(self.plan)}
        return "\n".join([render(self.plan, notes), self.cost_line(), *self.footer])

    def cost_line(self) -> str:
        line = (
            f"-- cost: est_rows={format_cost(self.estimated_rows)} "
            f"est_cost={format_cost(self.estimated_cost)} budget={format_cost(self.budget)}"
        )
        if self.over_budget:
            line += " (over budget: refused with PQL-S005 unless Limits.enforce_cost is off)"
        return line

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """In a notebook: the plan tree with each node's estimates, then the notes."""
        return explanation_html(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the plan tree with per-node numbers, the root estimates and the budget."""
        notes = {id(node): self._numbers(node) for node in walk(self.plan)}
        return {
            "plan": to_dict(self.plan, notes),
            "estimated_rows": self.estimated_rows,
            "estimated_cost": self.estimated_cost,
            "budget": self.budget,
            "over_budget": self.over_budget,
            "would_refuse": list(self.would_refuse),
            "notes": [line.removeprefix("-- ") for line in self.footer],
        }
