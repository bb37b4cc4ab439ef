"""``explain`` as text and as JSON: every node, its own numbers, nothing invented."""

from __future__ import annotations

import pql
from pql.demo import DemoData
from pql.plan.explain import describe, render
from pql.plan.nodes import walk

JOIN = (
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
    "receipts.executionId WHERE decisions.effect = 'deny' GROUP BY decisions.rule SINCE 7d"
)


def test_a_plan_renders_one_line_per_node_and_nothing_else(
    engine: pql.Engine, demo: DemoData
) -> None:
    plan = engine.prepare(JOIN, tenant="acme", now=demo.now).plan
    lines = render(plan).splitlines()
    assert [line.strip() for line in lines] == [describe(node) for node in walk(plan)]
    marked = render(plan, {id(plan): "<root>"}).splitlines()
    assert marked[0] == f"{lines[0]}  <root>" and marked[1:] == lines[1:]


def test_explain_json_gives_each_node_its_own_estimate(engine: pql.Engine, demo: DemoData) -> None:
    explained = engine.explain(JOIN, tenant="acme", now=demo.now)
    doc = explained.to_dict()
    nodes, stack = [], [doc["plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(reversed(node["inputs"]))
    assert len(nodes) == len(list(walk(explained.plan)))
    for node, plan_node in zip(nodes, walk(explained.plan), strict=True):
        estimate = explained.estimates.of(plan_node)
        assert node["est_rows"] == round(estimate.rows, 1)
        assert node["est_cost"] == round(estimate.cost, 1)
    assert doc["notes"] and doc["notes"] == [line.removeprefix("-- ") for line in explained.footer]
    assert not any(note.startswith("--") for note in doc["notes"])


def test_an_aggregate_named_as_written_is_shown_once() -> None:
    """An aggregate whose name is its own text is shown once; any other as ``text AS name``."""
    from pql.ast import AggFunc
    from pql.catalog import DataType
    from pql.plan.explain import _aggregates
    from pql.plan.expr import AggSpec, Col

    latency = Col("receipts", "latency_ms", DataType.FLOAT)
    plain = AggSpec(AggFunc.AVG, latency, "AVG(receipts.latency_ms)", DataType.FLOAT)
    named = AggSpec(AggFunc.COUNT, None, "n", DataType.INT)
    assert _aggregates((), (plain, named), None) == "AVG(receipts.latency_ms), COUNT(*) AS n"
