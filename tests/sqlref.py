"""A small, independent translator from PQL to DuckDB SQL: the oracle of the differential tests.

It follows the contract's text (window, tenant, join, default order, NULLS LAST, SQL aggregate
semantics), not pql's planner, so that a planner or compiler bug shows up as a difference.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pql.analyze import Analyzed
from pql.plan.expr import AggSpec, AllOf, AnyOf, Cmp, Col, Const, In, Negate, Null, Pred

ALIAS = {"receipts": "r", "decisions": "d"}


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def col(c: Col) -> str:
    return f"{ALIAS[c.subject]}.{q(c.name)}"


def lit(value: Const | Any) -> str:
    v = value.value if isinstance(value, Const) else value
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, datetime):
        return f"TIMESTAMPTZ '{v.isoformat()}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, float):
        return f"CAST({v!r} AS DOUBLE)"
    return str(v)


def pred(p: Pred) -> str:
    match p:
        case Cmp(col=c, op=op, value=v):
            return f"({col(c)} {op.value if op.value != '!=' else '<>'} {lit(v)})"
        case In(col=c, values=vs, negated=neg):
            items = ", ".join(lit(v) for v in vs)
            return f"({col(c)} {'NOT IN' if neg else 'IN'} ({items}))"
        case Null(col=c, negated=neg):
            return f"({col(c)} IS {'NOT NULL' if neg else 'NULL'})"
        case Negate(operand=inner):
            return f"(NOT {pred(inner)})"
        case AllOf(operands=ops):
            return "(" + " AND ".join(pred(o) for o in ops) + ")"
        case AnyOf(operands=ops):
            return "(" + " OR ".join(pred(o) for o in ops) + ")"
    raise TypeError(p)


def agg(a: AggSpec) -> str:
    if a.col is None:
        return "COUNT(*)"
    return f"{a.func.value}({col(a.col)})"


def translate(an: Analyzed, *, tenant: str, now: datetime, window: timedelta, max_rows: int) -> str:
    """SQL that answers ``an`` per the contract (without the row cap: the test applies it)."""
    start = now - window
    subjects = [s.name for s in an.subjects]
    base = subjects[0]
    sql_from = f"{base} {ALIAS[base]}"
    if an.join is not None:
        other = subjects[1]
        sql_from += (
            f" JOIN {other} {ALIAS[other]} ON "
            f"{ALIAS[base]}.{q('executionId')} = {ALIAS[other]}.{q('executionId')}"
        )
    where = []
    for s in subjects:
        a = ALIAS[s]
        where.append(f"{a}.tenant = {lit(tenant)}")
        where.append(f"{a}.ts BETWEEN {lit(start)} AND {lit(now)}")
    if an.where is not None:
        where.append(pred(an.where))
    order: list[str] = []
    if an.aggregates:
        keys = [col(k) for k in an.group_by]
        select = [
            f"{col(k)} AS {q(out)}" for k, (_, out) in zip(an.group_by, an.outputs, strict=False)
        ]
        select += [f"{agg(a)} AS {q(a.name)}" for a in an.aggregates]
        for key in an.order_by:
            order.append(
                f"{q(_out_name(an, key.name))} {'DESC' if key.descending else 'ASC'} NULLS LAST"
            )
        order += [f"{col(k)} ASC NULLS LAST" for k in an.group_by]
        group = f" GROUP BY {', '.join(keys)}" if keys else ""
    else:
        select = []
        for src, out in an.outputs:
            s, name = src.split(".", 1)
            select.append(f"{ALIAS[s]}.{q(name)} AS {q(out)}")
        for key in an.order_by:
            s, name = key.name.split(".", 1)
            order.append(f"{ALIAS[s]}.{q(name)} {'DESC' if key.descending else 'ASC'} NULLS LAST")
        b = ALIAS[base]
        order += [f"{b}.ts ASC NULLS LAST", f"{b}.{q('executionId')} ASC NULLS LAST"]
        if "decisions" in subjects:
            order.append(f"d.{q('decisionId')} ASC NULLS LAST")
        group = ""
    sql = f"SELECT {', '.join(select)} FROM {sql_from} WHERE {' AND '.join(where)}{group}"
    if order:
        sql += f" ORDER BY {', '.join(order)}"
    limit = an.query.limit
    sql += f" LIMIT {min(limit, max_rows + 1) if limit is not None else max_rows + 1}"
    return sql


def _out_name(an: Analyzed, plan_name: str) -> str:
    for src, out in an.outputs:
        if src == plan_name:
            return out
    return plan_name
