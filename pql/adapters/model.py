"""The values adapters hand to the core through hooks: preflight checks and metric specs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["CheckOutcome", "MetricSpec", "PreflightCheck"]


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What one preflight check found: passed or not, what it saw, and how to fix a failure."""

    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class PreflightCheck:
    """One preflight check: a stable ``code`` (e.g. ``TEN-KEYS``), a title and the check itself.

    ``run(engine, tenant, now)`` returns a :class:`CheckOutcome`; it should not raise (an
    exception is reported as a failed check naming the adapter).
    """

    code: str
    title: str
    run: Callable[[Any, str, datetime], CheckOutcome]
    order: int = 100
    """Checks run by ``order``, then code: lower first."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric an adapter records: a ``histogram``, ``counter`` or ``gauge`` with its labels."""

    name: str
    kind: Literal["histogram", "counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
