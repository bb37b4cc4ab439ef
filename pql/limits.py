"""Limits: the numbers the safety phase enforces, with their defaults.

An embedding application sets them per engine and per tenant; where two limits apply, the lower
wins (:meth:`Limits.tighten`). Query text can never raise a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from pql.errors import InputError

__all__ = ["DEFAULT_LIMITS", "Limits", "TenantLimits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one query may do.

    ``max_window``: the longest ``SINCE``; ``default_window``: the window without ``SINCE``;
    ``max_rows``: rows returned at most (and the largest ``LIMIT``); ``max_buckets``: the most
    buckets a ``TIMESERIES`` may cut its window into; ``cost_budget``: the
    estimated cost above which a query is refused (cost units are documented in
    ``docs/pql/SAFETY.md``); ``deadline_ms``: how long a query may run; ``max_concurrent``: queries
    running at once in one engine; ``max_queued``: queries that may wait for a slot (at most
    their deadline) before new ones are refused; ``enforce_cost``: refuse queries
    over the cost budget (``True``) or only record them in ``result.stats["would_refuse"]``
    (``False``, measure mode). Tightening keeps enforcement if either side enforces.
    """

    max_window: timedelta = timedelta(days=180)
    default_window: timedelta = timedelta(hours=24)
    max_rows: int = 10_000
    max_buckets: int = 1_000
    cost_budget: float = 50_000_000.0
    deadline_ms: int = 2_000
    max_concurrent: int = 16
    max_queued: int = 32
    enforce_cost: bool = True

    def __post_init__(self) -> None:
        if self.max_window <= timedelta(0) or self.default_window <= timedelta(0):
            raise InputError("PQL-E060", "time windows must be longer than zero")
        if self.default_window > self.max_window:
            raise InputError("PQL-E060", "default_window is longer than max_window")
        for name in ("max_rows", "max_buckets", "deadline_ms", "max_concurrent"):
            if getattr(self, name) <= 0:
                raise InputError("PQL-E060", f"{name} must be positive")
        if self.max_queued < 0:
            raise InputError("PQL-E060", "max_queued cannot be negative")
        if self.cost_budget <= 0:
            raise InputError("PQL-E060", "cost_budget must be positive")

    def tighten(self, other: Limits | TenantLimits | None) -> Limits:
        """The lower of each limit of ``self`` and ``other``.

        A :class:`TenantLimits` lowers only the fields it sets; a whole :class:`Limits` lowers
        every field. Cost enforcement stays on if either side enforces.
        """
        if other is None:
            return self
        values: dict[str, Any] = {}
        for f in fields(self):
            theirs = getattr(other, f.name)
            if theirs is None:
                continue
            if f.name == "enforce_cost":
                values[f.name] = self.enforce_cost or theirs
            else:
                values[f.name] = min(getattr(self, f.name), theirs)
        window = values.get("max_window", self.max_window)
        values["default_window"] = min(values.get("default_window", self.default_window), window)
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.total_seconds() if isinstance(value, timedelta) else value
        return out


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """One tenant's profile: the limits it sets lower the engine's; the ones left ``None`` keep
    the engine's value. Only the embedding application sets these, never the query text.

    >>> engine_limits = Limits(max_rows=50_000)
    >>> engine_limits.tighten(TenantLimits(max_window=timedelta(days=30))).max_rows
    50000
    """

    max_window: timedelta | None = None
    default_window: timedelta | None = None
    max_rows: int | None = None
    max_buckets: int | None = None
    cost_budget: float | None = None
    deadline_ms: int | None = None
    max_concurrent: int | None = None
    max_queued: int | None = None
    enforce_cost: bool | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, bool) or f.name == "max_queued":
                continue
            if (value <= timedelta(0)) if isinstance(value, timedelta) else value <= 0:
                raise InputError("PQL-E060", f"{f.name} must be positive")
