"""The engine: one object that ingests data and answers PQL for one tenant at a time.

A query goes through these stages, one module each::

    parse (pql.parser) -> analyze (pql.analyze) -> build (pql.plan.build)
      -> safety (pql.plan.safety) -> optimize (pql.plan.optimize)
      -> compile (pql.execute.compile) -> run (pql.execute.run) -> Result
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast, overload

import polars as pl
import pyarrow as pa

from pql import adapters as adapters_mod
from pql import cache as result_cache
from pql import parser
from pql import warm as warm_mod
from pql.analyze import Analyzed, analyze, parse_timestamp
from pql.catalog import Catalog
from pql.deadline import Deadline
from pql.errors import InputError, InternalError, PQLError
from pql.execute import Compiled, compile_plan, run
from pql.execute.admission import Admission, Hold
from pql.execute.reuse import COMPILED_SIZE, CompiledQueries, Family, reuse_key
from pql.execute.run import STREAMING_ROWS, collect, streams
from pql.execute.spark import SparkCompiled, SparkExecutor
from pql.limits import DEFAULT_LIMITS, Limits, TenantLimits
from pql.metrics import Metrics, default_metrics, outcome_of
from pql.plan import explain as explain_mod
from pql.plan.build import build
from pql.plan.cost import Estimates
from pql.plan.memo import (
    DEFAULT_MEMO_SIZE,
    DEFAULT_PLAN_REUSE,
    DEFAULT_PLAN_REUSE_SHARE,
    MemoEntry,
    MemoKey,
    PlanMemo,
    frozen_params,
    with_recorded_cost,
    with_remembered_cost,
)
from pql.plan.nodes import Node, walk
from pql.plan.optimize import NO_CONTEXT, OptimizeContext, optimize
from pql.plan.optimize import RULES as OPTIMIZER_RULES
from pql.plan.rollups import MIN_ROWS as ROLLUP_MIN_ROWS
from pql.plan.safety import RULES as SAFETY_RULES
from pql.plan.safety import (
    CostReport,
    Rule,
    SafetyContext,
    apply_safety,
    check_tenant_name,
    rule_names,
)
from pql.result import Result
from pql.saved import Safelist, SafelistSpec, SavedStore
from pql.signing import KeyRing
from pql.stats import StatsProvider, StoreStats
from pql.storage import (
    IndexedLake,
    IngestReport,
    Lake,
    MemoryStore,
    PartitionStats,
    S3Lake,
    Store,
    validate,
)
from pql.storage.base import ResidentStore, provides
from pql.storage.budget import MemoryBudget
from pql.storage.lake import bucket_name
from pql.storage.rollups import RollupStore
from pql.storage.s3 import is_s3
from pql.storage.validate import REGION_PATTERN, validate_all

__all__ = ["Engine", "Prepared"]

# The window is clamped here so that absurd durations cannot overflow datetime arithmetic; the
# safety phase compares the duration as written (an exact integer) against the limit.
_LONGEST_WINDOW = timedelta(days=365 * 100)

EXECUTORS = ("polars", "spark")
"""What can run a plan: Polars in this process, or Apache Spark (``docs/scale-out.md``)."""

Preload = Literal["all"] | Iterable[str] | None
"""What ``Engine(preload=...)`` and :meth:`Engine.preload` take: ``"all"`` tenants, their names
(a list, or any iterable of them: a NumPy array or a Polars series is one), or ``None``."""


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
    estimates: Estimates | None = None
    """Rows and cost per node of ``plan``, computed once by the ``cost-budget`` safety rule."""
    would_refuse: tuple[dict[str, Any], ...] = ()
    """Refusals the cost rule recorded instead of raising (measure mode)."""
    safety_rules: tuple[Rule, ...] = SAFETY_RULES
    """The rules the plan passed: the core's, then the adapters'."""
    executor: str = "polars"
    """What runs the plan: ``polars`` (in this process) or ``spark``."""
    reused: bool = False
    """Whether the analysis, plan and cost estimate were reused from the engine's plan memo
    (:mod:`pql.plan.memo`); every safety rule ran on it all the same."""
    family: Family | None = field(default=None, repr=False, compare=False)
    """The plan memo entry ``plan`` belongs to, if one was kept: a plan of the same family
    that read the same rows was compiled to the very same query (:mod:`pql.execute.reuse`)."""

    @property
    def start(self) -> datetime:
        return self.now - self.window

    @property
    def window(self) -> timedelta:
        since = self.analyzed.query.since
        if since is None:
            return self.limits.default_window
        return min(timedelta(seconds=since.seconds), _LONGEST_WINDOW)

    def explanation(self, actual_rows: Mapping[Node, int] | None = None) -> explain_mod.Explanation:
        """The plan with its estimates (and ``actual_rows`` per node, if measured)."""
        if self.estimates is None:
            raise InternalError("PQL-X033", "a prepared query has no cost estimates")
        rules = ", ".join(rule_names(self.safety_rules))
        opt = ", ".join(r.__name__.replace("_", "-") for r in OPTIMIZER_RULES)
        footer = (
            f"-- tenant: {self.tenant}; window: {_iso(self.start)} .. {_iso(self.now)}",
            f"-- safety rules: {rules}",
            f"-- optimizer rules: {opt}",
            f"-- executor: {self.executor}",
        )
        return explain_mod.Explanation(
            self.plan,
            self.estimates,
            self.limits.cost_budget,
            footer,
            self.would_refuse,
            actual_rows,
        )

    def explain_text(self) -> str:
        return str(self.explanation())


class Engine:
    """Answers PQL over receipts and decisions, always for exactly one tenant.

    >>> import pql
    >>> engine = pql.Engine.in_memory()
    >>> engine.query("FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme").df.item()
    0

    ``Engine(path)`` keeps data in a local lake directory; :meth:`in_memory` keeps it in memory.
    ``Engine("s3://BUCKET/PREFIX")`` keeps it in S3-compatible object storage with object lock
    (:class:`~pql.storage.S3Lake`, the ``s3`` extra): endpoint and credentials from the usual
    AWS environment variables, or ``s3={"endpoint_url": ..., "access_key": ...,
    "secret_key": ..., "state_dir": ..., "lock_mode": ..., "retention_days": ...}``.
    A lake engine serves queries from per-tenant in-memory indexes (``index=True``, the default;
    :class:`~pql.storage.IndexedLake`): a tenant's first query starts loading its index in the
    background and is answered from the partitions in its window until it is ready; indexes are
    kept under ``memory_budget`` (bytes or e.g. ``"4GiB"``; default a quarter of the physical
    memory), the least recently used dropped first, and a tenant that does not fit is served from
    its partitions. ``preload`` (``"all"`` or a list of tenants) loads indexes in the background
    from the start; :meth:`ready` and :meth:`wait_ready` say when they are in memory.
    ``result.stats["path"]`` says what answered (``"index"``, ``"partitions"`` or ``"memory"``),
    ``result.stats["lookups"]`` the id columns whose lookups read rows instead of a window scan,
    ``result.stats["join_codes"]`` the join keys joined on the indexes' join codes.
    ``index=False`` reads only the partitions in each window (one-shot commands).
    On a local directory each index is also saved as snapshots in its tenant's buckets, which a
    later engine on the same directory loads in milliseconds (``snapshots=False``: none are read
    or written; :mod:`pql.storage.snapshots`). See ``docs/pql/MEMORY.md``.
    With ``rollups=True`` (the default) the memory store and the indexed lake keep per-day
    partial aggregates at ingest, and aggregate queries they answer exactly read them for the
    whole days of the window (:mod:`pql.storage.rollups`, ``docs/pql/ROLLUPS.md``) when the
    window holds at least ``rollup_min_rows`` rows (fewer are as fast to read; 0: whenever the
    rollup answers exactly); the plain lake keeps none. That threshold is for a tenant whose
    index is in memory: a tenant the indexed lake reads from its files (not loaded yet, or over
    the budget) takes the rollup whenever it answers exactly, since each day's file costs more
    than that day's rollup rows.
    ``limits`` are the engine's safety limits (see :class:`~pql.limits.Limits`). ``safelist``
    says, per tenant, whether free-form queries run (``"off"``, the default), run and are
    recorded in ``engine.safelist.audit_log`` (``"audit"``) or are refused (``"enforce"``):
    one level, a mapping tenant -> level (``"*"`` for the rest) or a :class:`~pql.saved.Safelist`.

    ``cache`` is the result cache (:class:`~pql.cache.ResultCache`; ``True``: a default one,
    ``False``/``None``: none). ``cache_granularity`` (default ``timedelta(0)``: the wall clock
    is exact, as the contract says) lets an application that accepts slightly stale windows
    floor the wall clock, e.g. to 10 s, so repeated dashboard queries share a window and a cache
    entry; a fixed ``now`` is always exact. ``metrics`` defaults to the process-wide
    :func:`~pql.metrics.default_metrics` (no-ops without prometheus_client). Demand is counted
    in ``engine.query_log``; :meth:`warm` re-runs the most demanded queries.

    ``clock`` replaces the engine's trusted clock (default: the wall clock, UTC), on which the
    signatures and keys of saved queries are judged; it can be set only here (e.g. by tests),
    never per query. A query's ``now`` sets only its window.
    ``executor`` says what runs the plans: ``"polars"`` (the default, in this process) or
    ``"spark"``, which compiles the same safe plans to Apache Spark over the lake's files and runs
    them on the ``spark`` session given (a lake engine only; see ``docs/scale-out.md``). The
    query text never chooses it. Spark reads no rollups, so its plans never use them.
    On Polars, a query whose inner join reads at least ``streaming_rows`` rows (default
    :data:`~pql.execute.run.STREAMING_ROWS`) runs on Polars' streaming engine, about twice as
    fast there; that engine cannot be cancelled, so past its deadline such a query's caller gets
    ``PQL-S006`` while the query runs out, keeping its admission slot. ``None``: every query runs
    on the in-memory engine and is cancelled at its deadline. ``result.stats["polars_engine"]``
    says which ran (``docs/pql/SAFETY.md``).
    ``plan_memo_size`` bounds the prepared plans kept for reuse (:mod:`pql.plan.memo`): a query
    asked again with the same text, parameters, tenant, ``now``, limits and data version skips
    analysis and the cost estimate (every safety rule still runs); 0 keeps none. A query on the wall
    clock (no ``now``) or an advancing ``now`` reuses the plan of the same query asked with a clock
    at most ``plan_reuse`` (default 1 s; ``timedelta(0)``: only the same) before or after, or
    ``plan_reuse_share`` of its window when that is longer (default 1/1,000: 5.4 s for 90 minutes,
    10 minutes for 7 days; 0: ``plan_reuse`` alone), moved to its own window, with the cost estimate
    made for that window (plans with a ``ts`` constant inside the window are reused only at the same
    ``now``: it does not move with the window; one with ``ts`` constants outside it, reading rollups
    or with a time series moves less than the distance to the nearest constant, day boundary or
    bucket start). Such a reused plan also runs the Polars query compiled for its plan a moment
    before, when it reads the same stored rows (:mod:`pql.execute.reuse`).
    ``adapters`` says which installed adapters (``docs/pql/ADAPTERS.md``) the engine uses: by
    default every one installed, or a list of the names allowed (``()``: none), or a
    :class:`pql.adapters.Adapters` already loaded. A broken adapter is left out and reported in
    ``engine.adapters.broken``; it never stops the engine.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        limits: Limits | None = None,
        catalog: Catalog | None = None,
        store: Store | None = None,
        safelist: SafelistSpec = "off",
        cache: result_cache.ResultCache | bool | None = True,
        cache_granularity: timedelta = result_cache.DEFAULT_GRANULARITY,
        metrics: Metrics | None = None,
        index: bool = True,
        memory_budget: MemoryBudget = None,
        preload: Preload = None,
        rollups: bool = True,
        rollup_min_rows: int = ROLLUP_MIN_ROWS,
        clock: Callable[[], datetime] | None = None,
        adapters: adapters_mod.AdaptersSpec = None,
        region: str | None = None,
        executor: str = "polars",
        spark: Any = None,
        s3: Mapping[str, Any] | None = None,
        plan_memo_size: int = DEFAULT_MEMO_SIZE,
        plan_reuse: timedelta = DEFAULT_PLAN_REUSE,
        plan_reuse_share: float = DEFAULT_PLAN_REUSE_SHARE,
        snapshots: bool = True,
        streaming_rows: int | None = STREAMING_ROWS,
    ) -> None:
        if executor not in EXECUTORS:
            raise InputError(
                "PQL-E503",
                f"unknown executor {executor!r}",
                hints=(f"use one of: {', '.join(EXECUTORS)}",),
            )
        self.adapters = adapters_mod.resolve(adapters)
        self.region = _region(region)
        """The region this engine runs in (``region=``, else ``PQL_REGION``), or ``None``."""
        self.safelist = Safelist.of(safelist)
        self._trusted_clock = clock if clock is not None else _wall_clock
        if cache is True:
            cache = result_cache.ResultCache()
        self.cache = cache if isinstance(cache, result_cache.ResultCache) else None
        self.cache_granularity = cache_granularity
        self.metrics = metrics if metrics is not None else default_metrics()
        self.query_log = warm_mod.QueryLog()
        self.catalog = catalog or Catalog()
        _register_subjects(self.catalog, self.adapters)
        for spec in self.adapters.metrics:
            self.metrics.register(spec)
        self.safety_rules: tuple[Rule, ...] = (*SAFETY_RULES, *self.adapters.safety_rules)
        """The core's safety rules, then the adapters' (which may only refuse)."""
        self.limits = limits or DEFAULT_LIMITS
        self.plans = PlanMemo(plan_memo_size)
        """Prepared plans reused for the same inputs (:mod:`pql.plan.memo`; size 0: none)."""
        self.plan_reuse = plan_reuse
        """How far apart the clocks of two queries may be for the second to reuse the first's
        plan moved to its own window (``timedelta(0)``: only at the same clock)."""
        self.plan_reuse_share = _share(plan_reuse_share)
        """The share of its window by which a plan may move, when more than ``plan_reuse``."""
        self.compiled = CompiledQueries(COMPILED_SIZE if plan_memo_size else 0)
        """Polars queries compiled for reused plans, run again while their plan reads the
        same rows (:mod:`pql.execute.reuse`; none when no plan is kept)."""
        self._tenant_limits: dict[str, Limits | TenantLimits] = {}
        if store is not None:
            self.store = store
        elif path is not None:
            lake: Lake | S3Lake = (
                S3Lake(str(path), self.catalog, clock=self._trusted_clock, **dict(s3 or {}))
                if is_s3(path)
                else Lake(Path(path), self.catalog)
            )
            self.store = (  # Spark reads the lake's files itself: no index to keep
                IndexedLake(
                    lake,
                    self.catalog,
                    rollups=rollups,
                    memory_budget=memory_budget,
                    snapshots=snapshots,
                )
                if index and executor != "spark"
                else lake
            )
        else:
            raise InputError(
                "PQL-E061",
                "Engine needs a data directory",
                hints=("use pql.Engine('DIR') or pql.Engine.in_memory()",),
            )
        self.executor = executor
        """What runs the plans: ``polars`` or ``spark``."""
        self.streaming_rows = streaming_rows
        """The rows read from which an inner join runs on Polars' streaming engine (``None``:
        none does); may be changed on a live engine."""
        self._spark = (
            SparkExecutor.of(spark, self.store, self.catalog) if executor == "spark" else None
        )
        self.rollups = rollups
        """Whether aggregate queries may read the store's rollups (when it keeps any)."""
        self.rollup_min_rows = rollup_min_rows
        """Estimated rows an aggregate must be spared before it reads the rollup instead."""
        self._rollup_store = self.store if isinstance(self.store, RollupStore) else None
        if isinstance(self.store, IndexedLake):  # its compiled queries hold an index's rows
            self.store.on_release.append(self._index_released)
        self.saved_store = SavedStore.beside(self.store)
        """The signed saved queries of this engine's data (``DATA/_pql/saved.sqlite``)."""
        self.data_dir: Path | None = (
            Path(path) if path is not None and not is_s3(path) else _root_of(self.store)
        )
        """The data directory (``None`` for an engine without one); adapters keep state here."""
        self.statistics = StoreStats(self.store, self.catalog)
        self.deadline_clock: Callable[[], float] = time.monotonic
        """The clock (seconds, monotonic) that query deadlines are measured on."""
        self._admission = Admission(
            running=self.limits.max_concurrent, queued=self.limits.max_queued, where="this engine"
        )
        self._tenant_slots: dict[str, Admission] = {}
        own_lake = _lake_of(self.store)
        if own_lake is not None and self.adapters.implements("pql_check_remove"):
            own_lake.removal_guards.append(removal_guard(self.adapters, own_lake.root))
        parser.build_parser()
        self.preload(preload)

    @classmethod
    def in_memory(
        cls,
        *,
        limits: Limits | None = None,
        catalog: Catalog | None = None,
        safelist: SafelistSpec = "off",
        cache: result_cache.ResultCache | bool | None = True,
        cache_granularity: timedelta = result_cache.DEFAULT_GRANULARITY,
        metrics: Metrics | None = None,
        rollups: bool = True,
        rollup_min_rows: int = ROLLUP_MIN_ROWS,
        clock: Callable[[], datetime] | None = None,
        adapters: adapters_mod.AdaptersSpec = None,
        region: str | None = None,
        plan_memo_size: int = DEFAULT_MEMO_SIZE,
        plan_reuse: timedelta = DEFAULT_PLAN_REUSE,
        plan_reuse_share: float = DEFAULT_PLAN_REUSE_SHARE,
        streaming_rows: int | None = STREAMING_ROWS,
    ) -> Engine:
        """An engine that keeps its data in memory (tests, notebooks); options as for ``Engine``."""
        cat = catalog or Catalog()
        loaded = adapters_mod.resolve(adapters)
        _register_subjects(cat, loaded)
        return cls(
            limits=limits,
            catalog=cat,
            store=MemoryStore(cat, rollups=rollups),
            safelist=safelist,
            cache=cache,
            cache_granularity=cache_granularity,
            metrics=metrics,
            rollups=rollups,
            rollup_min_rows=rollup_min_rows,
            clock=clock,
            adapters=loaded,
            region=region,
            plan_memo_size=plan_memo_size,
            plan_reuse=plan_reuse,
            plan_reuse_share=plan_reuse_share,
            streaming_rows=streaming_rows,
        )

    # indexes ----------------------------------------------------------------------------
    def preload(self, tenants: Preload = "all") -> None:
        """Load the indexes of ``tenants`` (``"all"`` or a list) in the background; queries are
        answered meanwhile (from partitions until a tenant's index is ready). Nothing to do for
        an engine without indexes."""
        if tenants is None:
            return
        everyone = isinstance(tenants, str) and tenants == "all"  # never compares an array
        if not everyone and (isinstance(tenants, str) or not isinstance(tenants, Iterable)):
            raise InputError(
                "PQL-E161",
                f"preload {tenants!r} is neither 'all' nor a list of tenants",
                hints=("use preload='all' or preload=['acme', 'globex']",),
            )
        wanted = "all" if everyone else [check_tenant_name(t) for t in tenants]
        if isinstance(self.store, IndexedLake):
            self.store.preload(wanted)

    def ready(self) -> bool:
        """Whether every preloaded tenant's index is in memory (or known not to fit)."""
        return not isinstance(self.store, IndexedLake) or self.store.ready()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) until :meth:`ready`; the answer is :meth:`ready`."""
        return not isinstance(self.store, IndexedLake) or self.store.wait_ready(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop the engine's background work (index loads and snapshot writes) and wait at
        most ``timeout`` seconds for the one in progress; whether it has stopped. The engine
        still answers, from partitions for every tenant whose index is not in memory. Close
        an engine before its data directory goes away; ``with Engine(DIR) as engine:`` does."""
        return not isinstance(self.store, IndexedLake) or self.store.close(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # limits -----------------------------------------------------------------------------
    def set_tenant_limits(self, tenant: str, limits: TenantLimits | Limits) -> None:
        """A tenant's limit profile; it only tightens the engine's (the lower value wins).

        A :class:`~pql.limits.TenantLimits` lowers the fields it sets; a whole
        :class:`~pql.limits.Limits` lowers every field. A tenant's ``max_concurrent`` bounds
        that tenant's queries running at once, inside the engine's own bound.
        """
        tenant = check_tenant_name(tenant)
        self._tenant_limits[tenant] = limits
        mine = self.limits_for(tenant)
        self._tenant_slots[tenant] = Admission(
            running=mine.max_concurrent,
            queued=mine.max_queued,
            where=f"tenant {tenant!r}'s share of this engine",
        )

    def limits_for(self, tenant: str) -> Limits:
        """The limits in force for ``tenant``: the engine's, tightened by the tenant's profile
        and by every profile an adapter keeps for it (``pql_tenant_limits``)."""
        limits = self.limits.tighten(self._tenant_limits.get(tenant))
        for profile in self.adapters.call("pql_tenant_limits", engine=self, tenant=tenant):
            limits = limits.tighten(profile)
        return limits

    # data -------------------------------------------------------------------------------
    def ingest(
        self,
        subject: str,
        data: pa.Table | pl.DataFrame | list[pa.Table | pl.DataFrame],
        *,
        mode: str = "live",
        source: str | None = None,
        who: str | None = None,
    ) -> IngestReport:
        """Validate and append records of ``subject``; duplicates are skipped and reported.

        A table with missing columns, wrong types or invalid values is rejected whole with an
        :class:`~pql.errors.InputError`; nothing is written. A list of tables is one ingest:
        all of them are stored, in one commit, or none (a bad one, or extra columns of
        different types in two of them, rejects them all; messages name ``input N``).
        ``mode`` (``live``, ``backfill`` or ``replay``), ``source`` (a digest of the input) and
        ``who`` describe the ingest to the adapters (their ``context``).
        """
        context = ingest_context(mode, source, who)
        target = self.catalog.get(subject)
        if target is None:
            raise InputError(
                "PQL-E010",
                f"unknown subject '{subject}'",
                hints=(f"known subjects: {', '.join(self.catalog.names)}",),
            )
        if isinstance(data, list | tuple):
            named = [(f"input {i}", table) for i, table in enumerate(data)]
            data = validate_all(target, named, self.catalog)
        if self.adapters.implements("pql_check_ingest"):
            # Adapters see the validated rows before anything is written and may reject them all.
            data = validate(target, data, self.catalog)
            table = data.to_arrow()
            self.adapters.call(
                "pql_check_ingest",
                engine=self,
                subject=target.name,
                table=table,
                context=context,
            )
        report = self.store.ingest(target, data)  # the store checks what it was given
        self.compiled.clear()  # none is used again (new rows, new keys): let go of the old rows
        if self.adapters.implements("pql_on_ingest"):
            arrow = data if isinstance(data, pa.Table) else data.to_arrow()
            self.adapters.call(
                "pql_on_ingest",
                engine=self,
                subject=target.name,
                table=arrow,
                report=report,
                context=context,
            )
        if isinstance(
            self.store, Lake | IndexedLake | S3Lake
        ):  # keep the lake's summaries up to date
            for tenant in report.tenants:
                try:
                    self.statistics.summary(tenant, target.name)
                except InputError as exc:  # the rows are stored; a damaged file is for later
                    if exc.code != "PQL-E102":
                        raise
        return report

    # queries ----------------------------------------------------------------------------
    def prepare(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
        measure: bool = False,
        deadline: Deadline | None = None,
    ) -> Prepared:
        """Parse, check and plan ``text`` without running it.

        ``measure=True`` records a cost-budget refusal in ``Prepared.would_refuse`` instead of
        raising it (as ``Limits.enforce_cost=False`` does); ``explain`` uses it. The tenant's
        ``Limits.deadline_ms`` counts from the call (or runs on as ``deadline``, from
        :meth:`query`): it is checked between the stages and while statistics are summarised,
        and past it the query fails with ``PQL-S006``.
        """
        return self._prepare(text, tenant, now, params, measure, deadline, None)

    def _prepare(
        self,
        text: str,
        tenant: str,
        now: datetime | str | None,
        params: Mapping[str, Any] | None,
        measure: bool,
        deadline: Deadline | None,
        limits: Limits | None,
    ) -> Prepared:
        """:meth:`prepare`, with the tenant's limits if the caller has just read them."""
        timings: dict[str, float] = {}
        reused = False
        family: object | None = None
        try:
            tenant = check_tenant_name(tenant)
            clock = _clock(now)
            if limits is None:  # read on every query: a changed profile is seen at once
                limits = self.limits_for(tenant)
            if deadline is None:
                deadline = self._deadline(limits)
            if measure:
                limits = replace(limits, enforce_cost=False)
            t = time.perf_counter()
            tree = result_cache.parse(text)
            t = _lap(timings, "parse", t)
            deadline.check("parse")
            # Only the tenant's own extra columns: another tenant's data never changes what a
            # query means, which names it knows or what its errors say.
            view = self.catalog.for_tenant(tenant)
            min_rows = self._rollup_min_rows(tenant)
            optimizer_settings = (self.rollups, min_rows, self._spark is None)
            # A plan whose times move with its window is reused, moved, by the same query
            # within ``plan_reuse`` of its clock, with or without a ``now`` (see pql.plan.memo).
            key = (
                None
                if now is None and self.plan_reuse <= timedelta(0)
                else self._memo_key(
                    text, params, tenant, None if now is None else clock, limits, optimizer_settings
                )
            )
            entry = (
                None
                if key is None
                else self.plans.get(
                    key, view, clock=clock, within=self.plan_reuse, share=self.plan_reuse_share
                )
            )
            since = tree.since
            window = (
                limits.default_window
                if since is None
                else timedelta(seconds=min(since.seconds, int(_LONGEST_WINDOW.total_seconds())))
            )
            if entry is not None:  # the same inputs were analyzed and built before
                analyzed, built = entry.analyzed, entry.built
                reused = True
                t = _lap(timings, "analyze", t)
            else:
                analyzed = analyze(tree, view, params)
                t = _lap(timings, "analyze", t)
                deadline.check("analyze")
                built = build(analyzed, tenant=tenant, start=clock - window, end=clock)
            report = CostReport()
            stats = self.statistics.bounded(deadline)
            ctx = SafetyContext(
                tenant,
                clock,
                limits,
                since.seconds if since else None,
                since_text=str(since) if since else None,
                stats=stats,
                report=report,
                # Worked out only when the cost rule asks (it estimates).
                optimizer=partial(self._optimizer_context, stats, min_rows),
                deadline=deadline,
            )
            t = _lap(timings, "plan", t)
            deadline.check("plan")
            # Every rule runs on every query; with a memo entry the cost rule answers from it
            # for the very plan it estimated.
            seen: list[Node] = []
            rules = (
                with_recorded_cost(self.safety_rules, seen)
                if entry is None
                else with_remembered_cost(self.safety_rules, entry)
            )
            plan = apply_safety(built, ctx, rules)
            t = _lap(timings, "safety", t)
            deadline.check("safety")
            # The cost rule (the last safety rule) estimated the optimized form of exactly this
            # plan; run that one rather than optimizing twice.
            if entry is not None and report.estimates is entry.estimates:
                plan = entry.final
                family = entry.family
            elif report.estimates is not None and report.estimates.plan is not None:
                plan = report.estimates.plan
            else:
                plan = optimize(plan, context=ctx.optimize_context())
            _lap(timings, "optimize", t)
            deadline.check("optimize")
            if (
                key is not None
                and entry is None
                and report.estimates is not None
                and len(seen) == 1
            ):
                kept = MemoEntry(
                    view,
                    analyzed,
                    built,
                    seen[0],
                    report.estimates,
                    tuple(report.would_refuse),
                    plan,
                    clock,
                    clock - window,
                )
                if self.plans.put(key, kept):
                    family = kept.family
        except PQLError as exc:
            if isinstance(text, str):
                exc.with_text(text)
            raise
        except (ValueError, TypeError, KeyError, AssertionError) as exc:
            raise _internal(exc) from exc
        return Prepared(
            text,
            tenant,
            clock,
            analyzed,
            plan,
            limits,
            timings,
            report.estimates,
            tuple(report.would_refuse),
            self.safety_rules,
            self.executor,
            reused,
            None
            if family is None or key is None
            else Family(family, plan, report.estimates, key.version),
        )

    def _memo_key(
        self,
        text: str,
        params: Mapping[str, Any] | None,
        tenant: str,
        clock: datetime | None,
        limits: Limits,
        optimizer: tuple[bool, int, bool],
    ) -> MemoKey | None:
        """The plan memo's key for these inputs, or ``None`` when they cannot be one."""
        frozen = frozen_params(params)
        if frozen is None or not isinstance(text, str):
            return None
        version = self.store.version(tenant)
        return MemoKey(text, frozen, tenant, clock, limits, version, self.safety_rules, optimizer)

    def _index_released(self, tenant: str) -> None:
        """An index was let go of: drop the compiled queries (they may hold its rows, which
        no query reads again) rather than keep its memory until they expire."""
        self.compiled.clear()

    def _compile(self, prepared: Prepared) -> Compiled:
        """``prepared``'s Polars query: the one its plan's family compiled for the same rows
        a moment ago, if there is one (:mod:`pql.execute.reuse`), else compiled now."""
        plan, estimates = prepared.plan, prepared.estimates
        key = (
            None
            if prepared.family is None
            else reuse_key(prepared.family, plan, estimates, self.store, self.catalog)
        )
        found = None if key is None else self.compiled.get(key)
        if found is not None:
            return found
        compiled = compile_plan(
            plan, self.store, self.catalog, estimates, self.compiled.first_matches
        )
        if key is not None:
            self.compiled.put(key, compiled)
        return compiled

    def _deadline(self, limits: Limits) -> Deadline:
        return Deadline(limits.deadline_ms, clock=self.deadline_clock)

    def _optimizer_context(self, stats: StatsProvider, min_rows: int) -> OptimizeContext:
        """What the store offers the optimizer: its rollups, unless ``rollups=False``, read
        for windows of at least ``min_rows`` rows (:meth:`_rollup_min_rows`)."""
        if not self.rollups or self._rollup_store is None or self._spark is not None:
            return NO_CONTEXT  # Spark reads only the lake's files: it has no rollups
        return OptimizeContext(
            rollups=self._rollup_store.rollup_specs(),
            stats=stats,
            rollup_min_rows=min_rows,
        )

    def _rollup_min_rows(self, tenant: str) -> int:
        """``rollup_min_rows`` for a tenant whose rows the store reads from memory; 0 (the
        rollup whenever it answers) for one it reads from files, where each day's file costs
        more than its rollup rows (a first open, or a tenant over the memory budget). Part of
        the plan memo's key, so a plan made before a tenant's index was loaded is not reused
        after."""
        store = self.store
        if provides(store, ResidentStore) and not cast(ResidentStore, store).resident(tenant):
            return 0
        return self.rollup_min_rows

    def query(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
        cache: bool = True,
        record: bool = True,
    ) -> Result:
        """Answer ``text`` for ``tenant``.

        ``now`` fixes the clock (a datetime or ISO-8601 string; default: the wall clock, floored
        to ``cache_granularity`` when the cache is used); ``params`` binds ``$name``
        placeholders. ``cache=False`` bypasses the result cache; ``record=False`` does not count
        the query as demand (see :meth:`warm`). ``result.stats["cache"]`` says whether the
        answer came from the cache and how old it is. Raises a :class:`~pql.errors.PQLError`
        subclass for invalid queries (exit 2), safety refusals (3) and authorization
        failures (4).
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._answer(text, tenant, now, params, cache, record, started)
            outcome = "cache_hit" if result.stats["cache"]["hit"] else "ok"
            return result
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            self.metrics.query(outcome, (time.perf_counter() - started) * 1000)

    def _answer(
        self,
        text: str,
        tenant: str,
        now: datetime | str | None,
        params: Mapping[str, Any] | None,
        use_cache: bool,
        record: bool,
        started: float,
    ) -> Result:
        """Check, then answer from the cache or run (see :mod:`pql.cache` for the key)."""
        self.safelist.admit_free_form(text, tenant=tenant)
        cache = self.cache if use_cache else None
        if cache is not None and now is None:
            if self.cache_granularity <= timedelta(0):
                # An exact wall clock makes every key new: storing the answer would only cost
                # time and memory, so such queries bypass the cache.
                cache = None
            else:
                now = result_cache.floor_clock(datetime.now(UTC), self.cache_granularity)
        # One deadline from here to the last row; prepare checks the tenant name.
        # The tenant's limits are read once per query (an adapter may keep them on disk).
        limits = self.limits_for(tenant) if isinstance(tenant, str) else None
        deadline = self._deadline(limits or self.limits)
        prepared = self._prepare(text, tenant, now, params, False, deadline, limits)
        self._check_read(prepared)  # before the cache: a cached answer is a read too
        if record:
            self.query_log.record(prepared.tenant, prepared.analyzed.query, params)
        if cache is None:
            result = self._execute(prepared, started, deadline)
            result.stats["cache"] = {"hit": False, "age_ms": None}
            return result
        # The version is read before running: the answer is at least as new as the key claims.
        key = result_cache.CacheKey.of(prepared, self.store.version(prepared.tenant))
        found = cache.get(key)
        self.metrics.cache(found is not None)
        if found is not None:
            timings = dict(prepared.timings_ms)
            timings["total"] = round((time.perf_counter() - started) * 1000, 3)
            return result_cache.hit_result(found[0], found[1], timings)
        result = self._execute(prepared, started, deadline)
        result.stats["cache"] = {"hit": False, "age_ms": None}
        cache.put(key, result)  # keeps a copy: the caller may change its answer
        return result

    def _check_read(self, prepared: Prepared) -> None:
        """Let adapters see the regions of each subject the query reads (``pql_check_read``).

        The regions are found when an adapter first looks at them (:class:`WindowRegions`):
        an adapter that decides without them (e.g. residency on an engine with no region)
        costs the query no pass over the partition statistics."""
        if not self.adapters.implements("pql_check_read"):
            return
        first, last = prepared.start.date(), prepared.now.date()
        for subject in sorted({n.subject for n in walk(prepared.plan) if hasattr(n, "subject")}):
            self.adapters.call(
                "pql_check_read",
                engine=self,
                tenant=prepared.tenant,
                subject=subject,
                regions=WindowRegions(
                    partial(self.store.stats, prepared.tenant, subject), first, last
                ),
                bucket=partial(bucket_name, prepared.tenant, subject=subject),
            )

    def warm(self, *, top_n: int = 10, tenants: list[str] | None = None) -> warm_mod.WarmReport:
        """Fill the result cache with the ``top_n`` most demanded queries of each tenant.

        See :func:`pql.warm.warm`; call it on start and on the application's own schedule.
        """
        return warm_mod.warm(self, top_n=top_n, tenants=tenants)

    def trusted_now(self) -> datetime:
        """The engine's own clock, on which signatures and keys are judged (never a caller's)."""
        return _clock(self._trusted_clock())

    def run_saved(
        self,
        name: str,
        *,
        tenant: str,
        keyring: KeyRing,
        params: Mapping[str, Any] | None = None,
        now: datetime | str | None = None,
        store: SavedStore | None = None,
    ) -> Result:
        """Run the signed saved query ``name`` of ``tenant``, verifying it first (on every run).

        The signature, key, tenant, validity windows and text are checked against ``keyring`` on
        the engine's own clock (:meth:`trusted_now`: the wall clock, or the ``clock`` the engine
        was built with); ``now`` sets only the query's window, as for :meth:`query`, so an
        expired query cannot be revived by an earlier ``now`` and a valid one can replay a past
        window. ``params`` are checked against the declared types and bound as literals. Saved
        queries run whatever the safelist level. ``store`` defaults to :attr:`saved_store`.
        See ``docs/pql/SAVED_QUERIES.md``.
        """
        started = time.perf_counter()
        window_end = _clock(now)
        saved = store if store is not None else self.saved_store
        run = saved.authorize(
            name, tenant=tenant, keyring=keyring, now=self.trusted_now(), params=params
        )
        prepared = self.prepare(run.text, tenant=tenant, now=window_end, params=run.params)
        return self.execute(prepared, started=started)

    def execute(
        self,
        prepared: Prepared,
        *,
        started: float | None = None,
        deadline: Deadline | None = None,
    ) -> Result:
        """Run a prepared query, admitted (``Limits.max_concurrent``) and under its deadline.

        ``deadline`` is what is left of the query's (from :meth:`query`); without it the
        query gets its whole ``Limits.deadline_ms`` from now. The adapters see what it is about
        to read first (``pql_check_read``), as for :meth:`query`.
        """
        self._check_read(prepared)
        return self._execute(prepared, started, deadline)

    def _execute(
        self, prepared: Prepared, started: float | None, deadline: Deadline | None
    ) -> Result:
        """:meth:`execute` once the read was let through."""
        timings = dict(prepared.timings_ms)
        t = time.perf_counter()
        if deadline is None:
            deadline = self._deadline(prepared.limits)
        engine: str | None = None
        with self._admitted(prepared.tenant, prepared.limits) as hold:
            try:
                deadline.check("admission")
                compiled: Compiled | SparkCompiled
                if self._spark is not None:
                    compiled = self._spark.compile(prepared.plan)
                    t = _lap(timings, "compile", t)
                    deadline.check("compile")
                    frame, truncated = self._spark.run(compiled, prepared.plan, deadline)
                else:
                    compiled = self._compile(prepared)
                    t = _lap(timings, "compile", t)
                    _split_reads(timings, compiled.read_s)
                    deadline.check("compile")  # a store may have loaded an index here
                    streaming = streams(compiled, self.streaming_rows)
                    engine = "streaming" if streaming else "in-memory"
                    frame, truncated = run(compiled, deadline, streaming=streaming, hold=hold)
                _lap(timings, "execute", t)
            except PQLError:
                raise
            except Exception as exc:  # damaged data, named; otherwise a bug, cause attached
                explained = self.store.diagnose(prepared.tenant, exc)
                raise (explained or _internal(exc)) from exc
        begin = started if started is not None else t
        timings["total"] = round((time.perf_counter() - begin) * 1000, 3)
        self.metrics.rows_scanned(compiled.rows_scanned)
        stats = {
            "rows": frame.height,
            "rows_scanned": compiled.rows_scanned,
            "partitions_read": compiled.partitions_read,
            "path": getattr(compiled, "path", None) or _path_of(self.store),
            "lookups": list(getattr(compiled, "lookups", ())),
            "join_codes": list(getattr(compiled, "join_codes", ())),
            "tenant": prepared.tenant,
            "window": {"start": _iso(prepared.start), "end": _iso(prepared.now)},
            "timings_ms": timings,
            "estimate": _estimate_stats(prepared),
            "would_refuse": list(prepared.would_refuse),
            "executor": self.executor,
            "polars_engine": engine,
            "plan_reused": prepared.reused,
            "compiled_reused": getattr(compiled, "reused", False),
        }
        return Result(frame, truncated, stats)

    def explain(
        self,
        text: str,
        *,
        tenant: str,
        now: datetime | str | None = None,
        params: Mapping[str, Any] | None = None,
        analyze: bool = False,
    ) -> explain_mod.Explanation:
        """The plan ``text`` would run, its estimates, the window, and the rules applied.

        ``str()`` of the answer is the text ``pql explain`` prints; ``estimated_rows``,
        ``estimated_cost``, ``budget`` and ``to_dict()`` give the numbers. A query over the cost
        budget is explained, not refused (the answer says it would be). ``analyze=True`` runs
        the query (so the budget applies) and adds the rows each node actually produced.
        """
        prepared = self.prepare(text, tenant=tenant, now=now, params=params, measure=not analyze)
        if not analyze:
            return prepared.explanation()
        self._check_read(prepared)  # analyze reads the data
        return prepared.explanation(self._actual_rows(prepared))

    def _actual_rows(self, prepared: Prepared) -> dict[Node, int]:
        """Run every sub-plan of ``prepared`` and count its rows (for ``explain --analyze``)."""
        counts: dict[Node, int] = {}
        with self._admitted(prepared.tenant):
            for node in walk(prepared.plan):
                if node in counts:
                    continue
                if self._spark is not None:
                    deadline = Deadline(prepared.limits.deadline_ms, clock=self.deadline_clock)
                    counts[node] = self._spark.count(node, deadline)
                    continue
                try:
                    compiled = compile_plan(node, self.store, self.catalog, prepared.estimates)
                    count = collect(compiled.frame.select(pl.len()), prepared.limits.deadline_ms)
                except PQLError:
                    raise
                except Exception as exc:  # as in execute: damaged data named, else a bug
                    explained = self.store.diagnose(prepared.tenant, exc)
                    raise (explained or _internal(exc)) from exc
                rows = int(count.item())
                counts[node] = rows if compiled.cap is None else min(rows, compiled.cap)
        return counts

    @contextmanager
    def _admitted(self, tenant: str, limits: Limits | None = None) -> Iterator[Hold]:
        """A running slot of the tenant's share (if it has one), then of the engine, released
        when the body ends or, if it left work running (:class:`~pql.execute.admission.Hold`),
        when that work ends.

        ``limits`` are the tenant's as the query read them (default: read now)."""
        mine = limits if limits is not None else self.limits_for(tenant)
        wait = mine.deadline_ms / 1000
        share = self._tenant_slots.get(tenant)
        if (share is None and mine.max_concurrent < self.limits.max_concurrent) or (
            share is not None and share.max_running != mine.max_concurrent
        ):  # an adapter's profile bounds the tenant's concurrency (or changed it)
            share = self._tenant_slots[tenant] = Admission(
                running=mine.max_concurrent,
                queued=mine.max_queued,
                where=f"tenant {tenant!r}'s share of this engine",
            )
        if share is not None:
            share.enter(wait)
        try:
            self._admission.enter(wait)
        except BaseException:
            if share is not None:
                share.leave()
            raise
        hold = Hold()
        try:
            yield hold
        finally:
            hold.release(partial(_leave, self._admission, share))


class WindowRegions(Sequence[str]):
    """The regions, sorted, of the partitions (``stats()``) with a day from ``first`` to
    ``last``: what ``pql_check_read`` gets as ``regions``, read on first use and then kept."""

    def __init__(
        self, stats: Callable[[], Iterable[PartitionStats]], first: date, last: date
    ) -> None:
        self._stats, self._first, self._last = stats, first, last
        self._regions: list[str] | None = None

    def _found(self) -> list[str]:
        if self._regions is None:
            first, last = self._first, self._last
            self._regions = sorted({p.region for p in self._stats() if first <= p.day <= last})
        return self._regions

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._found()[index]

    def __len__(self) -> int:
        return len(self._found())

    def __iter__(self) -> Iterator[str]:
        return iter(self._found())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._found() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._found())


def _leave(engine: Admission, share: Admission | None) -> None:
    """Give back a query's slots: the engine's, then its tenant's share's (taken the other way
    round). Each is one lock, not a stack of context managers: every query takes them."""
    try:
        engine.leave()
    finally:
        if share is not None:
            share.leave()


def _register_subjects(catalog: Catalog, adapters: adapters_mod.Adapters) -> None:
    """Add the adapters' subjects to ``catalog`` (an identical one already there is kept)."""
    for subject in adapters.subjects:
        if catalog.get(subject.name) != subject:
            catalog.register(subject)


INGEST_MODES = ("live", "backfill", "replay")
"""The modes of an ingest: new data, old data loaded late, or data loaded again."""


def ingest_context(mode: str, source: str | None, who: str | None) -> dict[str, str]:
    """The ``context`` adapters see for an ingest; an unknown mode is PQL-E401."""
    if mode not in INGEST_MODES:
        raise InputError(
            "PQL-E401",
            f"ingest mode {mode!r} is not one of {', '.join(INGEST_MODES)}",
            hints=("live: new data; backfill: old data loaded late; replay: data loaded again",),
        )
    context = {"mode": mode}
    if source:
        context["source"] = source
    if who:
        context["who"] = who
    return context


def removal_guard(adapters: adapters_mod.Adapters, root: Path) -> Callable[[str, str], None]:
    """A :attr:`Lake.removal_guards` entry that asks the adapters (``pql_check_remove``)."""

    def guard(action: str, path: str) -> None:
        adapters.call("pql_check_remove", root=root, path=path, action=action)

    return guard


def _region(region: str | None) -> str | None:
    """The engine's region: as given, else ``PQL_REGION``; PQL-E400 when malformed."""
    if region is None:
        region = os.environ.get("PQL_REGION") or None
    if region is None:
        return None
    if not isinstance(region, str) or not re.fullmatch(REGION_PATTERN, region):
        raise InputError(
            "PQL-E400",
            f"{region!r} is not a valid region for the engine",
            hints=("a region looks like us-east-1 (set region= or PQL_REGION)",),
        )
    return region


def _share(share: float) -> float:
    """``plan_reuse_share`` as given; PQL-E162 unless a number from 0 up to (not including) 1."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
        raise InputError(
            "PQL-E162",
            f"plan_reuse_share {share!r} is not a share of a window from 0 up to 1",
            hints=("use a small share such as 0.0001 (a minute of 7 days), or 0 for none",),
        )
    return float(share)


def _lake_of(store: Store) -> Lake | None:
    lake = store.lake if isinstance(store, IndexedLake) else store
    return lake if isinstance(lake, Lake) else None


def _path_of(store: Store) -> str:
    """What answers a plan that reads nothing (the store's usual source)."""
    if isinstance(store, MemoryStore):
        return "memory"
    return "partitions" if isinstance(store, Lake | S3Lake) else "index"


def _root_of(store: Store) -> Path | None:
    if isinstance(store, IndexedLake):
        return store.lake.root
    return store.root if isinstance(store, Lake | S3Lake) else None


def _estimate_stats(prepared: Prepared) -> dict[str, float] | None:
    if prepared.estimates is None:
        return None
    return {"rows": prepared.estimates.rows, "cost": prepared.estimates.cost}


def _internal(exc: BaseException) -> InternalError:
    return InternalError(
        "PQL-X100",
        f"the query failed inside the engine ({type(exc).__name__}: {exc})",
        hints=("this is a bug in pql; please report it with the query",),
    )


def _split_reads(timings: dict[str, float], read_s: float) -> None:
    """Report the data compiling read (the store's reads, the first rows' probes) as its own
    stage, ``read``, and only the rest as ``compile``."""
    if read_s > 0:
        read = round(read_s * 1000, 3)
        timings["read"] = read
        timings["compile"] = round(max(0.0, timings["compile"] - read), 3)


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    now = time.perf_counter()
    timings[stage] = round((now - since) * 1000, 3)
    return now


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _clock(now: datetime | str | None) -> datetime:
    if now is None:
        value = datetime.now(UTC)
    elif isinstance(now, str):
        try:
            value = parse_timestamp(now)
        except PQLError:
            raise InputError(
                "PQL-E031",
                f"now {now!r} is not an ISO-8601 timestamp",
                hints=("write e.g. 2026-03-02T10:00:00Z",),
            ) from None
    elif isinstance(now, datetime):
        value = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    else:
        raise InputError("PQL-E031", f"now must be a datetime or ISO-8601 string, not {now!r}")
    try:
        value = value.astimezone(UTC)
        # Every window must fit before the clock, and the whole days around it after it.
        value - _LONGEST_WINDOW
        value + timedelta(days=2)
    except OverflowError:
        raise InputError(
            "PQL-E031",
            f"now {now!r} is out of range",
            hints=("use a clock between the years 101 and 9998 (UTC)",),
        ) from None
    return value


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
