"""Golden files for parse trees, plans (explain text) and rendered error messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pql
from pql import ast
from tests.cases import ERROR_CASES, PARSE_CASES, PLAN_CASES
from tests.golden import check_golden

NOW = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)


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
