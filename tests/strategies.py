"""Hypothesis strategies for valid PQL queries over receipts and decisions (as ASTs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from pql import ast
from tests.clock import TEST_NOW

NOW = TEST_NOW.replace(tzinfo=None)
"""Timestamp literals are whole hours before the suite's clock, so some fall on window edges."""

SINCES = [(6, "h"), (1, "d"), (7, "d"), (30, "d"), (180, "d"), (2, "w")]
"""The windows of generated queries (the edge rows of ``tests.paths`` cover each)."""

COLUMNS: dict[str, dict[str, str]] = {
    "receipts": {
        "executionId": "s", "tenant": "s", "region": "s", "ts": "t", "workflow": "s",
        "status": "s", "latency_ms": "f", "cost_usd": "f", "attempt": "i",
    },
    "decisions": {
        "decisionId": "s", "executionId": "s", "tenant": "s", "region": "s", "ts": "t",
        "rule": "s", "effect": "s", "policy_version": "s",
    },
}  # fmt: skip

GROUPABLE = {
    "receipts": ["region", "workflow", "status", "attempt", "tenant"],
    "decisions": ["region", "rule", "effect", "policy_version", "tenant"],
}

POOLS: dict[str, list[Any]] = {
    "tenant": ["acme", "globex", "initech", "nobody"],
    "region": ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "mars-1"],
    "workflow": ["etl", "billing", "ingest", "report", "sync", "notify", "unknown"],
    "status": ["ok", "error", "rollback", "timeout", "OK"],
    "rule": ["budget.cap", "residency.eu", "pii.mask", "rate.limit", "approval.required", "x"],
    "effect": ["allow", "deny", "maybe"],
    "policy_version": ["v11", "v12", "v13", "v14"],
    "executionId": ["ex-0", "ex-zzz"],
    "decisionId": ["dc-0"],
    "latency_ms": [0, 10, 50.5, 120, 250, 1000, 5000],
    "cost_usd": [0, 0.001, 0.005, 0.02, 1],
    "attempt": [1, 2, 3, 4],
}


def _literal(column: str, kind: str) -> st.SearchStrategy[ast.Literal]:
    if kind == "t":
        return st.integers(0, 200 * 24).map(
            lambda h: ast.Literal((NOW - timedelta(hours=h)).isoformat() + "Z")
        )
    return st.sampled_from(POOLS[column]).map(ast.Literal)


def field_for(subject: str, column: str, joined: bool, draw: Any) -> ast.Field:
    shared = column in COLUMNS["receipts"] and column in COLUMNS["decisions"]
    bare_ok = not joined or not shared
    if bare_ok and draw(st.booleans()):
        return ast.Field(None, column)
    return ast.Field(subject, column)


@st.composite
def predicates(draw: Any, subjects: list[str], joined: bool, depth: int = 0) -> ast.Expr:
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            return ast.Not(draw(predicates(subjects, joined, depth + 1)))
        ops = tuple(
            draw(predicates(subjects, joined, depth + 1)) for _ in range(draw(st.integers(2, 3)))
        )
        return ast.And(ops) if kind == "and" else ast.Or(ops)
    subject = draw(st.sampled_from(subjects))
    column = draw(st.sampled_from(sorted(COLUMNS[subject])))
    kind = COLUMNS[subject][column]
    f = field_for(subject, column, joined, draw)
    form = draw(st.integers(0, 9))
    if form <= 5:
        compare_ops = (
            list(ast.CompareOp)
            if kind in "fit" or form > 3
            else [ast.CompareOp.EQ, ast.CompareOp.NE]
        )
        return ast.Comparison(f, draw(st.sampled_from(compare_ops)), draw(_literal(column, kind)))
    if form <= 7:
        values = tuple(draw(st.lists(_literal(column, kind), min_size=1, max_size=4)))
        return ast.InList(f, values, negated=draw(st.booleans()))
    return ast.IsNull(f, negated=draw(st.booleans()))


TIMESERIES_WIDTHS = [
    ast.Duration(*w) for w in [(30, "m"), (1, "h"), (6, "h"), (1, "d"), (2, "d"), (1, "w")]
]


@st.composite
def queries(draw: Any) -> ast.Query:
    base = draw(st.sampled_from(["receipts", "decisions"]))
    other = "decisions" if base == "receipts" else "receipts"
    joined = draw(st.integers(0, 2)) == 0
    subjects = [base, other] if joined else [base]
    join = None
    if joined:
        left, right = ast.Field(base, "executionId"), ast.Field(other, "executionId")
        if draw(st.booleans()):
            left, right = right, left
        join = ast.Join(other, left, right)
    where = draw(predicates(subjects, joined)) if draw(st.booleans()) else None
    since = ast.Duration(*draw(st.sampled_from(SINCES)))
    limit = draw(st.one_of(st.none(), st.integers(0, 40), st.just(10_000)))
    if draw(st.booleans()):
        order = tuple(
            ast.OrderItem(ast.Field(s, c), descending=draw(st.booleans()))
            for s, c in draw(
                st.lists(
                    st.sampled_from([(s, c) for s in subjects for c in sorted(COLUMNS[s])]),
                    max_size=2,
                    unique=True,
                )
            )
        )
        return ast.Query(
            subject=base, join=join, where=where, since=since, order_by=order, limit=limit
        )
    # aggregate query: the first aggregate names the base subject
    aggs: list[ast.Aggregate] = []
    n = draw(st.integers(1, 3))
    for i in range(n):
        subject = base if i == 0 else draw(st.sampled_from(subjects))
        choice = draw(st.integers(0, 4))
        numeric = [c for c, k in COLUMNS[subject].items() if k in "fi"]
        if choice == 0 and i > 0:
            agg = ast.Aggregate(ast.AggFunc.COUNT, None)
        elif choice <= 1 or not numeric:
            agg = ast.Aggregate(
                ast.AggFunc.COUNT,
                ast.Field(subject, draw(st.sampled_from(sorted(COLUMNS[subject])))),
            )
        elif choice == 2:
            agg = ast.Aggregate(
                draw(st.sampled_from([ast.AggFunc.SUM, ast.AggFunc.AVG])),
                ast.Field(subject, draw(st.sampled_from(numeric))),
            )
        else:
            agg = ast.Aggregate(
                draw(st.sampled_from([ast.AggFunc.MIN, ast.AggFunc.MAX])),
                ast.Field(subject, draw(st.sampled_from(sorted(COLUMNS[subject])))),
            )
        aggs.append(ast.Aggregate(agg.func, agg.field, f"a{i}"))
    group = tuple(
        ast.Field(s, c)
        for s, c in draw(
            st.lists(
                st.sampled_from([(s, c) for s in subjects for c in GROUPABLE[s]]),
                max_size=2,
                unique=True,
            )
        )
    )
    timeseries = None
    if draw(st.integers(0, 2)) == 0:
        # widths that keep the window within the default 1,000 buckets
        fitting = [w for w in TIMESERIES_WIDTHS if since.seconds // w.seconds < 999]
        timeseries = draw(st.sampled_from(fitting))
    order_pool = [ast.Field(None, a.alias or "") for a in aggs] + list(group)
    if timeseries is not None:
        order_pool.append(ast.Field(None, "bucket"))
    order = tuple(
        ast.OrderItem(f, descending=draw(st.booleans()))
        for f in draw(st.lists(st.sampled_from(order_pool), max_size=2, unique_by=str))
    )
    return ast.Query(
        subject=None,
        aggregates=tuple(aggs),
        join=join,
        where=where,
        group_by=group,
        since=since,
        timeseries=timeseries,
        order_by=order,
        limit=limit,
    )
