"""The engine: one object that ingests data and answers PQL for one tenant at a time.

A query goes through these stages, one module each::

    parse (pql.parser) -> analyze (pql.analyze) -> build (pql.plan.build)
      -> safety (pql.plan.safety) -> optimize (pql.plan.optimize)
      -> compile (pql.execute.compile) -> run (pql.execute.run) -> Result
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pql import parser
from pql.analyze import Analyzed, analyze, parse_timestamp
from pql.catalog import Catalog
from pql.errors import InputError, InternalError, PQLError
from pql.execute import compile_plan, run
from pql.limits import DEFAULT_LIMITS, Limits
from pql.plan import explain as explain_mod
from pql.plan.build import build
from pql.plan.nodes import Node
from pql.plan.optimize import RULES as OPTIMIZER_RULES
from pql.plan.optimize import optimize
from pql.plan.safety import RULES as SAFETY_RULES
from pql.plan.safety import SafetyContext, apply_safety, check_tenant_name, rule_names
from pql.result import Result
from pql.storage import IngestReport, Lake, MemoryStore, Store, validate

__all__ = ["Engine", "Prepared"]

# The window is clamped here so that absurd durations cannot overflow datetime arithmetic; the
# safety phase compares the duration as written (an exact integer) against the limit.
_LONGEST_WINDOW = timedelta(days=365 * 100)


@dataclass(frozen=True)
class Prepared:
    """A query that passed every check: its safe, optimized plan and what it took to get there."""

    text: str
    tenant: str
    now: datetime
    analyzed: Analyzed
    plan: Node
    limits: Limits
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        return self.now - self.window

    @property
    def window(self) -> timedelta:
        since = self.analyzed.query.since
        if since is None:
            return self.limits.default_window
        return min(timedelta(seconds=since.seconds), _LONGEST_WINDOW)

    def explain_text(self) -> str:
        rules = ", ".join(rule_names(SAFETY_RULES))
        opt = ", ".join(r.__name__.replace("_", "-") for r in OPTIMIZER_RULES)
        return (
            f"{explain_mod.render(self.plan)}\n"
            f"-- tenant: {self.tenant}; window: {_iso(self.start)} .. {_iso(self.now)}\n"
            f"-- safety rules: {rules}\n"
            f"-- optimizer rules: {opt}"
        )


class Engine:
    """Answers PQL over receipts and decisions, always for exactly one tenant.

    >>> import pql
    >>> engine = pql.Engine.in_memory()
    >>> engine.query("FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme").df.item()
    0

    ``Engine(path)`` keeps data in a local lake directory; :meth:`in_memory` keeps it in memory.
    ``limits`` are the engine's safety limits (see :class:`~pql.limits.Limits`).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        limits: Limits | None = None,
        catalog: Catalog | None = None,
        store: Store | None = None,
    ) -> None:
        self.catalog = catalog or Catalog()
        self.limits = limits or DEFAULT_LIMITS
        self._tenant_limits: dict[str, Limits] = {}
        if store is not None:
            self.store = store
        elif path is not None:
            self.store = Lake(Path(path), self.catalog)
        else:
            raise InputError(
                "PQL-E061",
                "Engine needs a data directory",
                hints=("use pql.Engine('DIR') or pql.Engine.in_memory()",),
            )

    @classmethod
    def in_memory(cls, *, limits: Limits | None = None, catalog: Catalog | None = None) -> Engine:
        """An engine that keeps its data in memory (tests, notebooks)."""
        cat = catalog or Catalog()
        return cls(limits=limits, catalog=cat, store=MemoryStore(cat))

    # limits -----------------------------------------------------------------------------
    def set_tenant_limits(self, tenant: str, limits: Limits) -> None:
        """Limits for one tenant; they only tighten the engine's (the lower value wins)."""
        self._tenant_limits[check_tenant_name(tenant)] = limits

    def limits_for(self, tenant: str) -> Limits:
        return self.limits.tighten(self._tenant_limits.get(tenant))

    # data -------------------------------------------------------------------------------
    def ingest(self, subject: str, data: pa.Table | pl.DataFrame) -> IngestReport:
        """Validate and append records of ``subject``; duplicates are skipped and reported.

        A table with missing columns, wrong types or invalid values is rejected whole with an
        :class:`~pql.errors.InputError`; nothing is written.
        """
        target = self.catalog.get(subject)
        if target is None:
            raise InputError(
                "PQL-E010",
                f"unknown subject '{subject}'",
                hints=(f"known subjects: {', '.join(self.catalog.names)}",),
            )
        frame = validate(target, data, self.catalog)
        return self.store.ingest(self.catalog[subject], frame)

    # queries ----------------------------------------------------------------------------
    def prepare(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Prepared:
        """Parse, check and plan ``text`` without running it."""
        timings: dict[str, float] = {}
        try:
            tenant = check_tenant_name(tenant)
            clock = _clock(now)
            limits = self.limits_for(tenant)
            t = time.perf_counter()
            tree = parser.parse(text)
            t = _lap(timings, "parse", t)
            analyzed = analyze(tree, self.catalog, params)
            t = _lap(timings, "analyze", t)
            since = tree.since
            window = limits.default_window if since is None else timedelta(
                seconds=min(since.seconds, int(_LONGEST_WINDOW.total_seconds()))
            )
            ctx = SafetyContext(tenant, clock, limits, since.seconds if since else None)
            plan = build(analyzed, tenant=tenant, start=clock - window, end=clock)
            t = _lap(timings, "plan", t)
            plan = apply_safety(plan, ctx)
            t = _lap(timings, "safety", t)
            plan = optimize(plan)
            _lap(timings, "optimize", t)
        except PQLError as exc:
            raise exc.with_text(text) if isinstance(text, str) else exc
        except (ValueError, TypeError, KeyError, AssertionError) as exc:
            raise _internal(exc) from exc
        return Prepared(text, tenant, clock, analyzed, plan, limits, timings)

    def query(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Result:
        """Answer ``text`` for ``tenant``.

        ``now`` fixes the clock (a datetime or ISO-8601 string; default: the wall clock);
        ``params`` binds ``$name`` placeholders. Raises a :class:`~pql.errors.PQLError` subclass
        for invalid queries (exit 2), safety refusals (3) and authorization failures (4).
        """
        started = time.perf_counter()
        prepared = self.prepare(text, tenant=tenant, now=now, params=params)
        return self.execute(prepared, started=started)

    def execute(self, prepared: Prepared, *, started: float | None = None) -> Result:
        """Run a prepared query."""
        timings = dict(prepared.timings_ms)
        t = time.perf_counter()
        try:
            compiled = compile_plan(prepared.plan, self.store, self.catalog)
            t = _lap(timings, "compile", t)
            frame, truncated = run(compiled)
            _lap(timings, "execute", t)
        except PQLError:
            raise
        except Exception as exc:  # a bug, not the caller's fault: keep the cause attached
            raise _internal(exc) from exc
        begin = started if started is not None else t
        timings["total"] = round((time.perf_counter() - begin) * 1000, 3)
        stats = {
            "rows": frame.height,
            "rows_scanned": compiled.rows_scanned,
            "partitions_read": compiled.partitions_read,
            "tenant": prepared.tenant,
            "window": {"start": _iso(prepared.start), "end": _iso(prepared.now)},
            "timings_ms": timings,
        }
        return Result(frame, truncated, stats)

    def explain(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """The plan ``query`` would run, the window, and the rules applied."""
        return self.prepare(text, tenant=tenant, now=now, params=params).explain_text()


def _internal(exc: BaseException) -> InternalError:
    return InternalError(
        "PQL-X100",
        f"the query failed inside the engine ({type(exc).__name__}: {exc})",
        hints=("this is a bug in pql; please report it with the query",),
    )


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    now = time.perf_counter()
    timings[stage] = round((now - since) * 1000, 3)
    return now


def _clock(now: datetime | str | None) -> datetime:
    if now is None:
        value = datetime.now(UTC)
    elif isinstance(now, str):
        try:
            value = parse_timestamp(now)
        except PQLError:
            raise InputError(
                "PQL-E031",
                f"--now {now!r} is not an ISO-8601 timestamp",
                hints=("write e.g. 2026-03-02T10:00:00Z",),
            ) from None
    elif isinstance(now, datetime):
        value = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    else:
        raise InputError("PQL-E031", f"now must be a datetime or ISO-8601 string, not {now!r}")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
