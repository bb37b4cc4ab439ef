"""Engines and a stopped wall clock shared by the plan-reuse tests (tests/test_plan_reuse*.py).

Its fixtures are registered for the whole suite by ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine

import pql
from pql.demo import DemoData

__all__ = ["at", "engine_over", "planning", "reusing", "stop"]


def engine_over(demo: DemoData, **options: object) -> pql.Engine:
    """An in-memory engine over ``demo``, result cache off, with the given options."""
    eng = pql.Engine.in_memory(cache=False, **options)  # type: ignore[arg-type]
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


@pytest.fixture
def reusing(demo: DemoData) -> pql.Engine:
    """The default engine: plans kept and reused."""
    return engine_over(demo)


@pytest.fixture
def planning(demo: DemoData) -> pql.Engine:
    """The same data, every query planned afresh."""
    return engine_over(demo, plan_reuse=timedelta(0), plan_memo_size=0)


@pytest.fixture
def at(test_now: datetime) -> Iterator[datetime]:
    """The wall clock stopped at a moment just before the suite's (set again by :func:`stop`)."""
    moment = test_now - timedelta(minutes=3, microseconds=250)
    with stop(moment):
        yield moment


def stop(moment: datetime) -> time_machine.travel:
    """The wall clock stopped at ``moment``."""
    return time_machine.travel(moment, tick=False)
