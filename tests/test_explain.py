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
