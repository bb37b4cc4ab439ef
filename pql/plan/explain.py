"""Plans as text and as dictionaries, for ``explain``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pql.errors import InternalError
from pql.plan.expr import pred_text
from pql.plan.nodes import Aggregate, Filter, Join, Limit, Node, Project, Scan, Sort

__all__ = ["describe", "node_name", "render", "to_dict"]


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
        case Aggregate(keys=keys, aggregates=aggs):
            by = ", ".join(str(k) for k in keys)
            what = ", ".join(f"{a} AS {a.name}" if str(a) != a.name else str(a) for a in aggs)
            return f"Aggregate {what}" + (f" BY {by}" if by else "")
        case Sort(keys=keys):
            return "Sort " + ", ".join(str(k) for k in keys) + " NULLS LAST"
        case Limit(count=n, cap=cap):
            return f"Limit {n}" + (" (row cap: more rows are flagged truncated)" if cap else "")
        case Project(columns=cols):
            return "Project " + ", ".join(
                out if src == out else f"{src} AS {out}" for src, out in cols
            )
    raise InternalError("PQL-X007", f"explain met an unknown node {type(node).__name__}")


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
