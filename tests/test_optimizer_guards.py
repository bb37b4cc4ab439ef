"""The optimizer's own guards: a rule that changes the output schema, or a node no rule knows, is
a loud internal error naming the culprit (never a silently different answer); and what the
tenant-folding rule may and may not decide when planning."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

import pql
from pql.ast import CompareOp
from pql.catalog import DataType
from pql.demo import DemoData
from pql.errors import InternalError
from pql.execute.compile import predicate
from pql.plan.expr import NOTHING, AllOf, AnyOf, Cmp, Col, Const, Negate, Null, pred_text
from pql.plan.nodes import Filter, Join, Limit, Node, Scan, walk
from pql.plan.optimize import optimize, push_filters


def test_a_rule_that_changes_the_output_schema_is_refused(
    engine: pql.Engine, demo: DemoData
) -> None:
    plan = engine.prepare(
        "FIND COUNT(receipts.executionId) AS n SINCE 7d", tenant="acme", now=demo.now
    ).plan

    def scan_only(plan: Node, context: Any) -> Node:
        return list(walk(plan))[-1]

    with pytest.raises(InternalError) as caught:
        optimize(plan, rules=(scan_only,))
    assert caught.value.code == "PQL-X003"
    assert "scan_only" in caught.value.message


def test_an_unknown_node_is_an_internal_error() -> None:
    class Strange:
        pass

    with pytest.raises(InternalError) as caught:
        push_filters(Strange())  # type: ignore[arg-type]
    assert caught.value.code == "PQL-X002"
    assert "Strange" in caught.value.message


def _filters(engine: pql.Engine, where: str, demo: DemoData) -> list[str]:
    text = f"FIND COUNT(*) AS n WHERE {where} SINCE 7d"
    plan = engine.prepare(text, tenant="acme", now=demo.now).plan
    return [pred_text(n.predicate) for n in walk(plan) if isinstance(n, Filter)]


@pytest.mark.parametrize(
    ("where", "left"),
    [
        ("receipts.tenant = 'acme' AND status = 'ok'", ["receipts.status = 'ok'"]),
        ("receipts.tenant IN ('acme', 'globex')", []),
        ("receipts.tenant != 'globex'", []),
        ("receipts.tenant NOT IN ('globex') AND receipts.tenant IS NOT NULL", []),
        ("receipts.tenant = 'globex' AND status = 'ok'", ["false"]),
        ("status = 'ok' AND receipts.tenant != 'acme'", ["false"]),
        ("receipts.tenant IN ('globex')", ["false"]),
        ("receipts.tenant NOT IN ('acme')", ["false"]),
        ("receipts.tenant IS NULL", ["false"]),
        # under OR or NOT the rule decides nothing; the filter does
        (
            "(receipts.tenant = 'globex' OR status = 'ok')",
            ["receipts.tenant = 'globex' OR receipts.status = 'ok'"],
        ),
        ("NOT receipts.tenant = 'acme'", ["NOT receipts.tenant = 'acme'"]),
    ],
)
def test_comparisons_of_the_tenant_are_decided_when_planning(
    engine: pql.Engine, demo: DemoData, where: str, left: list[str]
) -> None:
    """Every row of a query of tenant acme holds ``acme`` in ``tenant``: an AND-ed comparison
    that always holds is dropped, one that never holds makes the filter ``false``."""
    assert _filters(engine, where, demo) == left
    if left == ["false"]:
        assert engine.query(
            f"FIND COUNT(*) AS n WHERE {where} SINCE 7d", tenant="acme", now=demo.now
        ).rows() == [(0,)]


def test_a_rule_reaches_both_sides_of_a_join(engine: pql.Engine, demo: DemoData) -> None:
    """A bound on ``ts`` narrows the scan of its own side, on the join's left as on its right, and
    leaves no filter behind: the rules walk into both inputs of a join below an aggregate."""
    text = (
        "FIND COUNT(*) AS n JOIN receipts ON decisions.executionId = receipts.executionId "
        "WHERE decisions.ts >= '{left}' AND receipts.ts < '{right}' SINCE 7d"
    )
    left, right = demo.now - timedelta(days=3), demo.now - timedelta(days=1)
    plan = engine.prepare(
        text.format(left=_iso(left), right=_iso(right)), tenant="acme", now=demo.now
    ).plan
    (join,) = (n for n in walk(plan) if isinstance(n, Join))
    assert isinstance(join.left, Scan) and isinstance(join.right, Scan)
    assert (join.left.subject, join.left.start) == ("decisions", left)
    assert join.left.end == demo.now
    assert (join.right.subject, join.right.end) == ("receipts", right - timedelta(microseconds=1))
    assert join.right.start == demo.now - timedelta(days=7)
    assert not [n for n in walk(plan) if isinstance(n, Filter)]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_nothing_is_shown_as_false_and_keeps_no_row() -> None:
    frame = pl.LazyFrame({"receipts.status": ["ok", None]})
    assert frame.filter(predicate(NOTHING)).collect().height == 0
    assert frame.filter(predicate(Negate(NOTHING))).collect().height == 2
    assert pred_text(NOTHING) == "false"


def test_a_nested_condition_is_shown_in_parentheses() -> None:
    """``explain`` shows a plan's conditions as they are nested: a disjunction or conjunction
    inside another (or under NOT) keeps its parentheses; one at the top needs none."""
    status = Col("receipts", "status", DataType.STRING)
    ok, error = (Cmp(status, CompareOp.EQ, Const(v, DataType.STRING)) for v in ("ok", "error"))
    missing = Null(status)
    assert pred_text(AnyOf((AnyOf((ok, error)), missing))) == (
        "(receipts.status = 'ok' OR receipts.status = 'error') OR receipts.status IS NULL"
    )
    assert pred_text(AllOf((AnyOf((ok, error)), missing))) == (
        "(receipts.status = 'ok' OR receipts.status = 'error') AND receipts.status IS NULL"
    )
    assert pred_text(AnyOf((AllOf((ok, error)), missing))) == (
        "receipts.status = 'ok' AND receipts.status = 'error' OR receipts.status IS NULL"
    )
    assert pred_text(Negate(AnyOf((ok, missing)))) == (
        "NOT (receipts.status = 'ok' OR receipts.status IS NULL)"
    )
    assert pred_text(AnyOf((ok, missing))) == "receipts.status = 'ok' OR receipts.status IS NULL"


@pytest.mark.parametrize(
    "text",
    [
        "FIND COUNT(*) AS n WHERE receipts.tenant = 'globex' AND status = 'ok' SINCE 7d",
        "FIND COUNT(*) AS n, AVG(latency_ms) AS a WHERE tenant = 'globex' "
        "GROUP BY receipts.status SINCE 7d",
        "FIND receipts WHERE receipts.tenant = 'globex' SINCE 7d LIMIT 5",
        "FIND COUNT(decisions.decisionId) AS n JOIN receipts ON decisions.executionId = "
        "receipts.executionId WHERE receipts.tenant = 'globex' SINCE 7d",
    ],
)
def test_a_filter_that_keeps_nothing_runs_no_filter(
    engine: pql.Engine, demo: DemoData, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another tenant's name folds to ``false`` when planning: the compiled query reads none
    of the rows of the subject it filters (the scan is its columns with no row, and no filter
    runs), and the answer is an empty one (a count of 0, no group, no row), of the same columns
    and types as a filter that matches no row gives."""
    import pql.execute.compile as compile_module

    asked: list[object] = []
    real = compile_module.predicate

    def spied(pred: Any) -> pl.Expr:
        asked.append(pred)
        return real(pred)

    monkeypatch.setattr(compile_module, "predicate", spied)
    prepared = engine.prepare(text, tenant="acme", now=demo.now)
    read: list[str] = []  # what running it reads
    for name in ("scan", "scan_coded", "lookup"):
        method = getattr(engine.store, name, None)
        if method is not None:
            monkeypatch.setattr(engine.store, name, _recording(method, read))
    assert any(isinstance(n, Filter) and n.predicate == NOTHING for n in walk(prepared.plan))
    result = engine.execute(prepared)
    assert NOTHING not in asked
    scans = [n for n in walk(prepared.plan) if isinstance(n, Scan)]
    nothing = [
        n.input.subject
        for n in walk(prepared.plan)
        if isinstance(n, Filter) and n.predicate == NOTHING and isinstance(n.input, Scan)
    ]
    assert nothing  # none of the rows of those subjects is read; any other scan is
    assert sorted(read) == sorted(s.subject for s in scans if s.subject not in nothing)
    if "GROUP BY" in text or "LIMIT" in text:
        assert result.df.height == 0
    else:
        assert result.df.rows() == [(0,)]
    no_match = re.sub(r"(receipts\.)?tenant = 'globex'", "receipts.status = 'none'", text)
    matched = engine.query(no_match, tenant="acme", now=demo.now, cache=False)
    assert result.df.schema == matched.df.schema
    assert result.df.rows() == matched.df.rows()


def _recording(method: Any, read: list[str]) -> Any:
    """``method`` (a store's read), noting the subject of each read in ``read``."""

    def recorded(tenant: str, subject: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(subject.name)
        return method(tenant, subject, *args, **kwargs)

    return recorded


def test_a_predicate_or_aggregate_needs_no_span() -> None:
    """Plan values built by the planner's rules (not parsed) carry no source span: the field
    defaults to ``None`` and is left out of equality."""
    from pql.plan import expr

    made: object = expr._span()
    assert isinstance(made, dataclasses.Field)
    assert made.default is None and made.compare is False and made.kw_only is True
    status = Col("receipts", "status", DataType.STRING)
    assert Null(status).span is None


def test_a_scan_of_another_tenant_is_an_internal_error(engine: pql.Engine, demo: DemoData) -> None:
    """The tenant-scope rule, the last line of tenant isolation, names what it found."""
    from dataclasses import replace

    from pql.plan.safety import SafetyContext, tenant_scope

    plan = engine.prepare("FIND receipts SINCE 7d", tenant="acme", now=demo.now).plan
    scan = next(n for n in walk(plan) if isinstance(n, Scan))
    other = replace(scan, tenant="globex")
    ctx = SafetyContext("acme", demo.now, engine.limits, None)
    assert tenant_scope(scan, ctx) is scan
    with pytest.raises(InternalError) as caught:
        tenant_scope(other, ctx)
    assert caught.value.code == "PQL-X001"
    assert caught.value.message == "a scan is not restricted to the caller's tenant"


def test_the_rules_walk_a_plan_once_until_one_changes_it(
    engine: pql.Engine, demo: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety rules read the nodes of the plan they are given from one walk: walked again
    only when a rule returns another plan (the row cap), and in the order of ``walk``."""
    import pql.plan.safety as safety

    text = (
        "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
        'receipts.executionId WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 7d'
    )
    capped_before = engine.prepare(text, tenant="acme", now=demo.now).plan
    assert isinstance(capped_before, Limit) and capped_before.cap
    plan = capped_before.input
    walked: list[Node] = []
    real = walk

    def counted(node: Node) -> Any:
        walked.append(node)
        return real(node)

    monkeypatch.setattr(safety, "walk", counted)
    ctx = safety.SafetyContext("acme", demo.now, engine.limits, 7 * 86400)
    rules = (*safety.RULES[:5], safety.row_cap, safety.tenant_scope)
    capped = safety.apply_safety(plan, ctx, rules)
    assert walked == [plan, capped] and capped is not plan
    assert ctx.nodes(capped) == tuple(real(capped)) and walked == [plan, capped]
    assert ctx.nodes(plan) == tuple(real(plan)) and walked == [plan, capped, plan]
