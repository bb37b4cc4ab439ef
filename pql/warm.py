"""The query log and the cache warmer.

:class:`QueryLog` counts demand per (tenant, query shape). A shape is the canonical text of the
query (:func:`pql.ast.to_text` of its AST: keywords upper-case, whitespace and comments gone,
string literals kept as written), with the parameters it was last bound to. The engine records
every query that passed its checks; :meth:`pql.Engine.warm` (which calls :func:`warm`) re-runs
the most demanded shapes of each tenant so that the result cache holds their current answers.
The embedding application calls it on start and on its own schedule (for instance each time the
clock granularity rolls over, or after an ingest).

The log is bounded: beyond ``max_shapes`` shapes the least demanded half is forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pql import ast
from pql.errors import PQLError
from pql.result import Result

__all__ = ["DEFAULT_MAX_SHAPES", "Querier", "QueryLog", "Shape", "WarmReport", "warm"]

DEFAULT_MAX_SHAPES = 10_000
"""How many (tenant, shape) pairs a :class:`QueryLog` keeps."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One query shape of one tenant and how often it was asked for."""

    tenant: str
    text: str
    count: int
    params: Mapping[str, Any] | None = None


@dataclass(slots=True)
class WarmReport:
    """What one :func:`warm` run did: shapes run, already cached, and failures (shape, code)."""

    ran: int = 0
    already_cached: int = 0
    failed: list[tuple[Shape, str]] = field(default_factory=list)


class QueryLog:
    """Thread-safe demand counts per (tenant, canonical query text).

    >>> from pql.parser import parse
    >>> log = QueryLog()
    >>> log.record("acme", parse("find receipts  since 7d"))
    >>> log.record("acme", parse("FIND receipts SINCE 7d -- again"))
    >>> [(s.text, s.count) for s in log.top("acme")]
    [('FIND receipts SINCE 7d', 2)]
    """

    def __init__(self, max_shapes: int = DEFAULT_MAX_SHAPES) -> None:
        if max_shapes <= 0:
            raise ValueError("max_shapes must be positive")
        self.max_shapes = max_shapes
        self._counts: dict[tuple[str, str], int] = {}
        self._params: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        self._lock = threading.Lock()

    def record(
        self, tenant: str, query: ast.Query, params: Mapping[str, Any] | None = None
    ) -> None:
        """Count one query of ``tenant``."""
        key = (tenant, ast.to_text(query))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._params[key] = dict(params) if params else None
            if len(self._counts) > self.max_shapes:
                self._forget_half()

    def top(self, tenant: str, n: int = 10) -> list[Shape]:
        """The ``n`` most demanded shapes of ``tenant``, most demanded first."""
        with self._lock:
            rows = [(k, c) for k, c in self._counts.items() if k[0] == tenant]
            params = {k: self._params.get(k) for k, _ in rows}
        rows.sort(key=lambda kc: (-kc[1], kc[0][1]))
        return [Shape(k[0], k[1], c, params[k]) for k, c in rows[:n]]

    def tenants(self) -> tuple[str, ...]:
        """The tenants with recorded demand, sorted."""
        with self._lock:
            return tuple(sorted({t for t, _ in self._counts}))

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._params.clear()

    def _forget_half(self) -> None:
        ranked = sorted(self._counts.items(), key=lambda kc: kc[1], reverse=True)
        keep = dict(ranked[: self.max_shapes // 2])
        self._params = {k: v for k, v in self._params.items() if k in keep}
        self._counts = keep


class Querier(Protocol):
    """What :func:`warm` needs of an engine (:class:`pql.Engine` is one): its log and ``query``."""

    @property
    def query_log(self) -> QueryLog: ...

    def query(
        self, text: str, *, tenant: str, params: Mapping[str, Any] | None = ..., record: bool = ...
    ) -> Result: ...


def warm(
    engine: Querier,
    *,
    top_n: int = 10,
    tenants: Iterable[str] | None = None,
) -> WarmReport:
    """Run the ``top_n`` most demanded shapes of each tenant (default: all tenants in the log).

    Queries run through :meth:`pql.Engine.query` with the cache on and the wall clock (floored
    to the engine's granularity), so every check runs as for a caller; they are not counted as
    demand. A shape that now fails (a limit was tightened, a column is gone) is reported in
    :attr:`WarmReport.failed` and skipped.
    """
    report = WarmReport()
    for tenant in tenants if tenants is not None else engine.query_log.tenants():
        for shape in engine.query_log.top(tenant, top_n):
            try:
                result = engine.query(
                    shape.text,
                    tenant=tenant,
                    params=shape.params,
                    record=False,
                )
            except PQLError as exc:
                report.failed.append((shape, exc.code))
                continue
            if result.stats.get("cache", {}).get("hit"):
                report.already_cached += 1
            else:
                report.ran += 1
    return report
