"""The optimizer's own guards: a rule that changes the output schema, or a node no rule knows, is
a loud internal error naming the culprit (never a silently different answer)."""

from __future__ import annotations

from typing import Any

import pytest

import pql
from pql.demo import DemoData
from pql.errors import InternalError
from pql.plan.nodes import Node, walk
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
