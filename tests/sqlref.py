"""A small, independent translator from PQL to DuckDB SQL: the oracle of the differential tests.

It follows the contract's text (window, tenant, join, default order, NULLS LAST, SQL aggregate
semantics), not pql's planner, so that a planner or compiler bug shows up as a difference.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pql.analyze import Analyzed
from pql.engine import Prepared
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


EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"


def translate_prepared(
    prepared: Prepared, tenant: str, *, now: datetime | None = None, max_rows: int | None = None
) -> str:
    """:func:`translate` for a prepared query: its window, its ``now`` and its row cap unless
    given."""
    return translate(
        prepared.analyzed,
        tenant=tenant,
        now=prepared.now if now is None else now,
        window=prepared.window,
        max_rows=prepared.limits.max_rows if max_rows is None else max_rows,
    )


def translate(an: Analyzed, *, tenant: str, now: datetime, window: timedelta, max_rows: int) -> str:
    """SQL that answers ``an`` per the contract (without the row cap: the test applies it)."""
    if an.timeseries is not None:
        return _time_series(an, tenant=tenant, now=now, window=window, max_rows=max_rows)
    subjects = [s.name for s in an.subjects]
    base = subjects[0]
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
    sql = f"SELECT {', '.join(select)} {_from_where(an, tenant, now - window, now)}{group}"
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


def _from_where(an: Analyzed, tenant: str, start: datetime, now: datetime) -> str:
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
    return f"FROM {sql_from} WHERE {' AND '.join(where)}"


def _time_series(
    an: Analyzed, *, tenant: str, now: datetime, window: timedelta, max_rows: int
) -> str:
    """TIMESERIES per the contract: DuckDB's ``time_bucket`` with the origin at the UTC epoch;
    every bucket from the window's first to its last, crossed with the groups that have rows;
    empty ones with COUNT 0 and the other aggregates NULL."""
    assert an.timeseries is not None
    start = now - window
    width = f"INTERVAL {an.timeseries.seconds} SECOND"
    ts = col(an.timeseries.col)
    keys = [(k, out) for k, (_, out) in zip(an.group_by, an.outputs[1:], strict=False)]
    key_names = [f"k{i}" for i in range(len(keys))]
    inner = [f"time_bucket({width}, {ts}, {EPOCH}) AS bucket"]
    inner += [f"{col(k)} AS {n}" for (k, _), n in zip(keys, key_names, strict=True)]
    inner += [f"{agg(a)} AS {q(a.name)}" for a in an.aggregates]
    groups = ", ".join(str(i + 1) for i in range(1 + len(keys)))
    agg_sql = f"SELECT {', '.join(inner)} {_from_where(an, tenant, start, now)} GROUP BY {groups}"
    first = f"time_bucket({width}, {lit(start)}, {EPOCH})"
    last = f"time_bucket({width}, {lit(now)}, {EPOCH})"
    buckets_sql = f"SELECT unnest(generate_series({first}, {last}, {width})) AS bucket"
    if key_names:
        groups_sql = f"SELECT DISTINCT {', '.join(key_names)} FROM agg"
    else:
        groups_sql = "SELECT 1 AS one"
    on = ["a.bucket = b.bucket"] + [f"a.{n} IS NOT DISTINCT FROM g.{n}" for n in key_names]
    select = ["b.bucket AS bucket"]
    select += [f"g.{n} AS {q(out)}" for (_, out), n in zip(keys, key_names, strict=True)]
    for a in an.aggregates:
        value = f"a.{q(a.name)}"
        select.append(
            f"{'COALESCE(' + value + ', 0)' if a.func.value == 'COUNT' else value} AS {q(a.name)}"
        )
    order = [
        f"{q(_out_name(an, k.name))} {'DESC' if k.descending else 'ASC'} NULLS LAST"
        for k in an.order_by
    ]
    order += ["b.bucket ASC NULLS LAST"]
    order += [f"g.{n} ASC NULLS LAST" for n in key_names]
    limit = an.query.limit
    return (
        f"WITH agg AS ({agg_sql}), buckets AS ({buckets_sql}), grp AS ({groups_sql}) "
        f"SELECT {', '.join(select)} FROM buckets b CROSS JOIN grp g "
        f"LEFT JOIN agg a ON {' AND '.join(on)} ORDER BY {', '.join(order)} "
        f"LIMIT {min(limit, max_rows + 1) if limit is not None else max_rows + 1}"
    )
