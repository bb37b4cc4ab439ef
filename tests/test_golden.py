"""Golden files for parse trees, plans (explain text) and rendered error messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pql
from pql import ast
from pql.demo import generate
from pql.plan.explain import Explanation
from pql.plan.nodes import Node
from tests.cases import (
    DIFFERENTIAL_CASES,
    ERROR_CASES,
    ESTIMATE_CASES,
    PARSE_CASES,
    PLAN_CASES,
    WINDOW_CASES,
)
from tests.golden import check_golden

NOW = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
ESTIMATES_NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
"""The instant the estimates' data and windows are fixed at (the suite clock's default)."""


def test_parse_trees(update_golden: bool) -> None:
    parts = []
    for text in PARSE_CASES:
        tree = pql.parse(text)
        parts.append(f"-- {text}\n{tree!r}\n== {ast.to_text(tree)}\n")
    check_golden("parse.txt", "\n".join(parts), update_golden)


def test_plans(update_golden: bool) -> None:
    engine = pql.Engine.in_memory()
    parts = [f"-- {text}\n{engine.explain(text, tenant='acme', now=NOW)}\n" for text in PLAN_CASES]
    check_golden("plans.txt", "\n".join(parts), update_golden)


def test_estimates(update_golden: bool) -> None:
    """Every node's estimated rows and cost, to six significant digits, for the queries of the
    other tests over demo data: for the largest and the smallest tenant, a tenant with no
    data, and with rollups forced. ``explain`` shows these numbers and the budget refuses by
    them; the estimation tests allow a factor, this file pins the exact model, so a change to it
    is a visible diff (``--update-golden`` when intended).

    The data and the window are fixed at :data:`ESTIMATES_NOW`, not at the suite's clock: where
    a window starts within a day changes the estimates, and a golden file has one answer."""
    demo = generate(6_000, seed=11, now=ESTIMATES_NOW)
    counts = demo.receipts["tenant"].value_counts(sort=True)
    tenants = [str(t) for t in counts["tenant"].to_list()]
    plain = pql.Engine.in_memory()
    rollup = pql.Engine.in_memory(rollup_min_rows=0)
    for eng in (plain, rollup):
        eng.ingest("receipts", demo.receipts)
        eng.ingest("decisions", demo.decisions)
    runs = [(plain, tenants[0]), (plain, tenants[-1]), (plain, "nobody"), (rollup, tenants[0])]
    cases = dict.fromkeys([*PLAN_CASES, *DIFFERENTIAL_CASES, *WINDOW_CASES, *ESTIMATE_CASES])
    parts = []
    for text in cases:
        for eng, tenant in runs:
            label = f"{tenant}{' rollups' if eng is rollup else ''}"
            lines = [f"-- {text} [{label}]"]
            try:
                explained = eng.explain(text, tenant=tenant, now=demo.now)
            except pql.PQLError as exc:  # a tenant without data has no extra fields
                parts.append(f"{lines[0]}\n{exc.code}\n")
                continue
            lines += [
                f"{'  ' * d['depth']}{d['node']} rows={rows:.6g} cost={cost:.6g}"
                + (f" build={d['build']}" if "build" in d else "")
                for d, (rows, cost) in zip(
                    explained.node_details(), _raw_numbers(explained), strict=True
                )
            ]
            if explained.would_refuse:
                lines.append(
                    f"would refuse: {', '.join(r['code'] for r in explained.would_refuse)}"
                )
            parts.append("\n".join(lines) + "\n")
    check_golden("estimates.txt", "\n".join(parts), update_golden)


def _raw_numbers(explained: Explanation) -> list[tuple[float, float]]:
    """(rows, cost) of every node in ``node_details`` order, unrounded."""
    out = []
    stack: list[Node] = [explained.plan]
    while stack:
        node = stack.pop()
        est = explained.estimates.of(node)
        out.append((est.rows, est.cost))
        stack.extend(reversed(node.inputs()))
    return out


def test_error_messages(update_golden: bool) -> None:
    engine = pql.Engine.in_memory()
    parts = []
    for text in ERROR_CASES:
        try:
            engine.query(text, tenant="acme", now=NOW)
        except pql.PQLError as exc:
            assert exc.span is None or exc.span.line >= 1
            parts.append(f"-- {text[:120]!r}\nexit {exc.exit_code}\n{exc.render()}\n")
        else:
            raise AssertionError(f"no error for {text!r}")
    check_golden("errors.txt", "\n".join(parts), update_golden)


def test_every_error_case_names_a_place_or_says_why_not() -> None:
    """Query errors point at the text (a span), except for whole-query conditions."""
    engine = pql.Engine.in_memory()
    whole_query = {"PQL-E002", "PQL-S008"}
    for text in ERROR_CASES:
        try:
            engine.query(text, tenant="acme", now=NOW)
        except pql.PQLError as exc:
            if exc.code not in whole_query:
                assert exc.span is not None, f"{exc.code} for {text!r} has no span"
                assert exc.hints, f"{exc.code} for {text!r} has no hint"


def test_tenant_refusals(update_golden: bool) -> None:
    """The rendered refusal (code, message, hint) of tenant names the contract does not allow."""
    engine = pql.Engine.in_memory()
    parts = []
    for tenant in ["Acme", "a", "-acme", "acme_eu", "a" * 32, ""]:
        try:
            engine.query("FIND receipts SINCE 1d", tenant=tenant, now=NOW)
        except pql.PQLError as exc:
            parts.append(f"-- {tenant!r}\nexit {exc.exit_code}\n{exc.render()}\n")
        else:
            raise AssertionError(f"no error for tenant {tenant!r}")
    check_golden("tenant_errors.txt", "\n".join(parts), update_golden)
