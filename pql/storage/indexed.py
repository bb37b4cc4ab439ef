"""A lake with in-memory indexes: each tenant's rows, sorted by ``ts``, loaded in the background.

For long-lived engines (services, notebooks, the load harness), the default of ``Engine(DIR)``.
A tenant's first query queues its index for the loader thread and is answered from the lake's
partitions in its window meanwhile, as is every query of that tenant until the index is ready;
loading never holds up another tenant's queries. The loader loads one tenant at a time (loads side
by side share the cores and all finish late), the tenant most asked for while waiting first.
Once loaded, windows are binary searches and zero-copy slices of memory, and aggregate queries
read the index's per-day rollups. Until then, the rollups that aggregate queries compute from a
tenant's partitions are kept per day, so the next query over those days reads no rows again.

The indexes live under a memory budget (:mod:`pql.storage.budget`): when a load brings the total
over it, the least recently used other tenants are dropped; a tenant whose index alone would not
fit is served from its partitions. Ingest writes through to the lake and drops the touched
tenants' indexes, which the next query reloads, so an index never serves an older data version.

On a local lake, each index loaded from Parquet is also written as snapshots in the tenant's
buckets (:mod:`pql.storage.snapshots`), after the loads waiting, by the loader thread; a later
load (after a restart, an eviction) memory-maps them instead of reading and sorting again.
See ``docs/pql/MEMORY.md``.
"""

from __future__ import annotations

import atexit
import threading
import time as clock
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InternalError, PQLError
from pql.storage.base import IngestReport, PartitionStats, Scan, current_subject
from pql.storage.budget import MemoryBudget, parse_budget
from pql.storage.lake import Lake
from pql.storage.memory import MemoryStore
from pql.storage.rollups import (
    DAY,
    RollupRead,
    RollupSpec,
    combine,
    partials,
    rollup_specs,
    schema_of,
)
from pql.storage.s3 import S3Lake
from pql.storage.snapshots import LoadSource, Pending, Snapshots

__all__ = ["IndexedLake", "LoadInfo", "Preload", "TenantState"]

_ALL_START = datetime(1970, 1, 1, tzinfo=UTC)
_ALL_END = datetime(9999, 12, 31, tzinfo=UTC)

MAPPED_WAIT = 1.0
"""Seconds a query of a tenant whose index is being mapped from snapshots waits for it before
it reads the partitions instead: mapping takes milliseconds (the loader maps such tenants before
any it must read from Parquet), while a partitions read of a large tenant takes far longer and
holds the cores that every other query needs."""

_LEAST_BYTES_PER_ROW = 16
"""What a row takes in an index at the least: its ``ts`` and the ts index (8 bytes each); a
tenant over the budget by this count alone is not read at all."""

Preload = Literal["all"] | Sequence[str] | None
"""What :meth:`IndexedLake.preload` takes: ``"all"`` tenants, a list of them, or ``None`` (the
engine makes a list of any iterable of names it is given, see ``pql.engine.Preload``)."""

EXIT_WAIT = 60.0
"""Seconds the interpreter's exit waits for each loader's step in progress (see below)."""

_LIVE: weakref.WeakSet[IndexedLake] = weakref.WeakSet()  # stores whose loader may be running


@atexit.register
def _close_at_exit() -> None:
    """At interpreter exit, stop every loader (its step in progress ends): a process that
    exits without ``Engine.close()`` while a load runs would otherwise abort, as the loader
    thread is torn down inside a Polars or Arrow call. Bounded, so that a stuck read cannot
    keep the process from exiting."""
    for store in list(_LIVE):
        store.close(EXIT_WAIT)


TenantState = Literal["index", "loading", "partitions"]
"""Where a tenant's queries are answered from now."""


@dataclass(frozen=True, slots=True)
class LoadInfo:
    """How a tenant's last index load went: where its rows came from, how long it took."""

    source: LoadSource
    """``"snapshot"`` (every bucket from its snapshot), ``"parquet"`` or ``"mixed"``."""
    seconds: float
    rows: int


@dataclass(frozen=True, slots=True)
class _Index:
    version: int
    store: MemoryStore
    nbytes: int


@dataclass(frozen=True, slots=True)
class _Days:
    """Rollup rows computed from a tenant's partitions at ``version``, by day."""

    version: int
    rows: dict[date, pl.DataFrame]
    nbytes: int


class IndexedLake:
    """A :class:`~pql.storage.lake.Lake` whose scans are served from per-tenant memory indexes.

    ``memory_budget`` bounds the bytes the indexes keep (:func:`~pql.storage.budget.parse_budget`).
    With ``rollups`` (the default) each index also keeps per-day rollups
    (:mod:`pql.storage.rollups`), built when the index is loaded. ``background=False`` loads an
    index inside the query that needs it (tests, scripts that want the index at once).
    ``on_load`` is called with the tenant at the start of every load, in the loading thread.
    Each of ``on_release`` is called with a tenant whose index is let go of (evicted under the
    budget, replaced by a newer load, dropped by an ingest), with the store's lock held: it must
    be quick and must not call the store (the engine drops the queries it compiled over it).
    With ``snapshots`` (the default) and a local :class:`~pql.storage.lake.Lake`, indexes are
    loaded from and saved as snapshots (:mod:`pql.storage.snapshots`); an ``S3Lake`` keeps none.
    """

    def __init__(
        self,
        lake: Lake | S3Lake,
        catalog: Catalog,
        *,
        rollups: bool = True,
        memory_budget: MemoryBudget = None,
        background: bool = True,
        on_load: Callable[[str], None] | None = None,
        snapshots: bool = True,
    ) -> None:
        self.lake = lake
        self.snapshots = Snapshots(lake) if snapshots and isinstance(lake, Lake) else None
        """The snapshots indexes are loaded from and saved as, or ``None`` (off, or not a
        local lake)."""
        self.memory_budget = parse_budget(memory_budget)
        """The most bytes the indexes keep together."""
        self.background = background
        self.on_load = on_load
        self.on_release: list[Callable[[str], None]] = []
        self._catalog = catalog
        self._rollups = rollups
        # Bookkeeping only: this lock is never held while an index loads, so a tenant that
        # loads never stops another's queries.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._indexes: OrderedDict[str, _Index] = OrderedDict()  # least recently used first
        self._loading: set[str] = set()
        self._refused: dict[str, tuple[int, str]] = {}  # tenant -> (version, why)
        self._wanted: set[str] = set()  # the tenants preloaded, for ready()
        # Loads wait here for the one loader thread: one load at a time finishes each tenant
        # soonest (loads side by side share the cores and all finish late), and the tenant
        # asked for most while waiting goes first.
        self._queue: dict[str, int] = {}  # tenant -> version to load, in arrival order
        self._demand: dict[str, int] = {}  # queries that found the tenant not loaded
        self._loader: threading.Thread | None = None
        self._mapped: dict[str, int] = {}  # tenant -> version whose snapshots were all there
        self._unfinished: list[tuple[str, MemoryStore]] = []  # kept, to finish after the loads
        self._unwritten: list[tuple[Pending, ...]] = []  # snapshots to write, after the loads
        self._writing = False
        self._loads: dict[str, LoadInfo] = {}
        self._closed = False
        # Rollups computed from partitions while a tenant has no index, by (tenant, subject);
        # within the budget, and dropped once the tenant's index is kept.
        self._days: dict[tuple[str, str], _Days] = {}

    # the Store protocol ---------------------------------------------------------------------
    def ingest(self, subject: Subject, data: pl.DataFrame | pa.Table) -> IngestReport:
        report = self.lake.ingest(subject, data)
        with self._lock:
            for tenant in report.tenants:
                if self._indexes.pop(tenant, None) is not None:
                    self._released_locked(tenant)
                self._drop_days_locked(tenant)
        return report

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        index = self._ready(tenant)
        if index is None:
            return self.lake.scan(tenant, subject, start, end, columns)
        return replace(index.scan(tenant, subject, start, end, columns), source="index")

    def scan_coded(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None,
        column: str,
    ) -> Scan | None:
        """The index's :meth:`MemoryStore.scan_coded` while ``tenant``'s index is in memory;
        ``None`` otherwise (:meth:`scan` answers, and starts its load)."""
        index = self._loaded(tenant)
        if index is None:
            return None
        got = index.scan_coded(tenant, subject, start, end, columns, column)
        return None if got is None else replace(got, source="index")

    def lookup(
        self,
        tenant: str,
        subject: Subject,
        column: str,
        values: Collection[str],
        nulls: bool,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan | None:
        """Rows by ``column``'s lookup in ``tenant``'s index (:meth:`MemoryStore.lookup`), or
        ``None`` while the index is not in memory: then :meth:`scan` answers (and loads it)."""
        index = self._loaded(tenant)
        if index is None:
            return None
        got = index.lookup(tenant, subject, column, values, nulls, start, end, columns)
        return None if got is None else replace(got, source="index")

    def rows_keys(
        self,
        tenant: str,
        subject: Subject,
        windows: Sequence[tuple[datetime, datetime]],
        version: int | None = None,
    ) -> tuple[Hashable, ...] | None:
        """The index's :meth:`MemoryStore.rows_keys` while ``tenant``'s index is in memory at
        the lake's ``version`` (default: the version now) and marked used, as a scan marks it;
        ``None`` otherwise, and no load is started here."""
        index = self._loaded(tenant, version)
        return None if index is None else index.rows_keys(tenant, subject, windows)

    def stored_key(self, tenant: str, subject: Subject) -> Hashable | None:
        """The index's :meth:`MemoryStore.stored_key` while ``tenant``'s index is in memory;
        ``None`` otherwise (as for :meth:`rows_keys`)."""
        index = self._loaded(tenant)
        return None if index is None else index.stored_key(tenant, subject)

    def version(self, tenant: str) -> int:
        return self.lake.version(tenant)

    def tenants(self) -> tuple[str, ...]:
        return self.lake.tenants()

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        return self.lake.extras(tenant)

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        return self.lake.stats(tenant, subject)

    def storage_region(self, tenant: str, region: str) -> str:
        return self.lake.storage_region(tenant, region)

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        return self.lake.diagnose(tenant, exc)

    # rollups --------------------------------------------------------------------------------
    def rollup_specs(self) -> dict[str, RollupSpec]:
        """What the indexes roll up, by subject (nothing with ``rollups=False``)."""
        return rollup_specs(self._catalog) if self._rollups else {}

    def rollup(self, tenant: str, subject: str, first: date, last: date) -> RollupRead:
        """``tenant``'s rollup rows of ``subject`` for the whole days ``first`` to ``last``: from
        the index, or while it is not in memory, computed from the partitions of the days not
        computed before (at the tenant's version) and kept for the next query."""
        index = self._ready(tenant)
        if index is not None:
            return replace(index.rollup(tenant, subject, first, last), source="index")
        spec = self.rollup_specs().get(subject)
        if spec is None:
            raise InternalError("PQL-X130", f"a rollup of {subject} was read but none is kept")
        version = self.lake.version(tenant)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        if not days:
            return RollupRead(pl.LazyFrame(schema=schema_of(spec)), 0, 0, source="partitions")
        with self._lock:
            found = self._days.get((tenant, subject))
            kept = dict(found.rows) if found is not None and found.version == version else {}
        missing = [day for day in days if day not in kept]
        rows = partitions = 0
        if missing:
            fresh, rows, partitions = self._day_rollups(tenant, spec, missing[0], missing[-1])
            if self.lake.version(tenant) != version:  # an ingest landed: none of it is kept
                fresh, rows, partitions = self._day_rollups(tenant, spec, first, last)
                return RollupRead(_days_frame(fresh, days), rows, partitions, "partitions")
            kept.update(fresh)
            with self._lock:
                self._keep_days_locked(tenant, subject, version, fresh)
        return RollupRead(_days_frame(kept, days), rows, partitions, source="partitions")

    def _day_rollups(
        self, tenant: str, spec: RollupSpec, first: date, last: date
    ) -> tuple[dict[date, pl.DataFrame], int, int]:
        """Rollup rows of each day ``first`` to ``last`` (empty for a day without rows), from
        the rollup files of ``tenant``'s data files of those days (a local lake), computed from
        the rows of those without one; the rows and partitions read."""
        subject = self._catalog[spec.subject]
        if isinstance(self.lake, Lake):
            stored = self.lake.manifest().files_of(tenant, spec.subject)
            files = [e for e in stored if first <= e.day <= last]
            found, unread = self.lake.file_partials(files)
            frames = [] if found is None else [found]
            if unread:
                current = current_subject(self._catalog, subject, tenant)
                rows = self.lake.read_files(current, unread).filter(pl.col("tenant") == tenant)
                frames.append(partials(spec, rows).collect())
            read = sum(e.rows for e in unread)
            computed = combine(spec, pl.concat(frames)) if frames else None
            return _by_day(spec, computed, first, last), read, len(files)
        start = datetime.combine(first, time(), UTC)
        end = datetime.combine(last + timedelta(days=1), time(), UTC) - timedelta(microseconds=1)
        wanted = list(dict.fromkeys(["tenant", "ts", *spec.key_names, *sorted(spec.measure_names)]))
        got = self.lake.scan(tenant, subject, start, end, wanted)
        rows = got.frame.filter(
            (pl.col("tenant") == tenant)
            & pl.col("ts").is_between(pl.lit(start), pl.lit(end), closed="both")
        )
        return _by_day(spec, partials(spec, rows).collect(), first, last), got.rows, got.partitions

    def _keep_days_locked(
        self, tenant: str, subject: str, version: int, fresh: dict[date, pl.DataFrame]
    ) -> None:
        """Keep ``fresh`` rollup rows of ``tenant``'s ``subject`` at ``version`` if they fit in
        the budget beside the indexes (and the tenant has none: then its own rollups answer)."""
        found = self._days.get((tenant, subject))
        if tenant in self._indexes or (found is not None and found.version > version):
            return
        rows = dict(found.rows) if found is not None and found.version == version else {}
        rows.update(fresh)
        nbytes = sum(int(frame.estimated_size()) for frame in rows.values())
        if self._bytes_locked() - (found.nbytes if found else 0) + nbytes <= self.memory_budget:
            self._days[(tenant, subject)] = _Days(version, rows, nbytes)

    def _drop_days_locked(self, tenant: str | None = None) -> None:
        """Drop the rollup rows kept for ``tenant`` (``None``: for every tenant)."""
        for key in [key for key in self._days if tenant is None or key[0] == tenant]:
            del self._days[key]

    # loading --------------------------------------------------------------------------------
    def load(self, tenant: str) -> None:
        """Build ``tenant``'s index now, in this thread (if it is not in memory already)."""
        version = self.lake.version(tenant)
        if self._claim(tenant, version, retry=True):
            self._load(tenant, version)

    def preload(self, tenants: Preload = "all") -> None:
        """Load the indexes of ``tenants`` (``"all"``: every tenant of the lake, the largest
        first) one after another in the background; :meth:`ready` says when they are
        settled. A tenant that queries ask for while it waits goes ahead of the others."""
        if tenants is None:
            return
        names = self.lake.tenants() if tenants == "all" else tuple(tenants)
        if tenants == "all":  # the largest first: it is the one most queries wait for
            names = tuple(sorted(names, key=lambda t: -self._rows(t)))
        mapped = {t: self.lake.version(t) for t in names if self._can_map(t)}
        with self._lock:
            self._mapped.update(mapped)
            self._wanted.update(names)
            # Claimed now, so that ready() is false from this call on.
            claimed = [(t, v) for t in names if self._claim_locked(t, v := self.lake.version(t))]
            self._enqueue_locked(claimed)

    def ready(self) -> bool:
        """Whether every preloaded tenant is settled: in memory, or served from its partitions
        because its index does not fit (or failed to load)."""
        with self._lock:
            return not (self._wanted & self._loading)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`ready` (at most ``timeout`` seconds); the answer is :meth:`ready`."""
        with self._changed:
            return self._changed.wait_for(lambda: not (self._wanted & self._loading), timeout)

    def wait_snapshots(self, timeout: float | None = None) -> bool:
        """Wait until the preloads are settled and every snapshot due is written (at most
        ``timeout`` seconds); whether they are."""

        def idle() -> bool:
            busy = self._unfinished or self._unwritten or self._writing
            return not (self._wanted & self._loading or busy)

        with self._changed:
            return self._changed.wait_for(idle, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop background work: queued loads and snapshot writes are dropped, the one in
        progress finishes, and no load starts again (queries read partitions for every tenant
        not in memory). Waits at most ``timeout`` seconds; whether the loader has stopped."""
        with self._changed:
            self._closed = True
            self._loading.difference_update(self._queue)
            self._loading.difference_update(t for t, _ in self._unfinished)  # served in parts
            self._queue.clear()
            self._unfinished.clear()
            self._unwritten.clear()
            loader = self._loader
            self._changed.notify_all()
        if loader is not None:
            loader.join(timeout)
            return not loader.is_alive()
        return True

    def loads(self) -> dict[str, LoadInfo]:
        """How each tenant's last index load went (source, seconds, rows), by tenant."""
        with self._lock:
            return dict(self._loads)

    def state(self, tenant: str) -> TenantState:
        """Where ``tenant``'s next query is answered from (without starting a load)."""
        version = self.lake.version(tenant)
        with self._lock:
            found = self._indexes.get(tenant)
            if found is not None and found.version == version:
                return "index"
            return "loading" if tenant in self._loading else "partitions"

    def refused(self) -> dict[str, str]:
        """The tenants served from their partitions because their index was not kept, and why."""
        with self._lock:
            return {tenant: why for tenant, (_, why) in self._refused.items()}

    def resident(self, tenant: str) -> bool:
        """Whether ``tenant``'s index is in memory (at any version: an ingest elsewhere is seen
        by its next query), without the lock: a hint (:class:`~pql.storage.base.ResidentStore`)."""
        return tenant in self._indexes

    def loaded(self) -> tuple[str, ...]:
        """The tenants whose index is in memory, least recently used first."""
        with self._lock:
            return tuple(self._indexes)

    def memory_bytes(self) -> int:
        """Bytes the indexes in memory take (rows, ts index and rollups; Polars' estimate),
        with the rollup rows kept for tenants without one."""
        with self._lock:
            return self._bytes_locked()

    def _bytes_locked(self) -> int:
        indexes = sum(i.nbytes for i in self._indexes.values())
        return indexes + sum(d.nbytes for d in self._days.values())

    def _loaded(self, tenant: str, version: int | None = None) -> MemoryStore | None:
        """``tenant``'s index if it is in memory at the lake's ``version`` (default: read now,
        a ``stat`` of the manifest); no load is started."""
        if version is None:
            version = self.lake.version(tenant)
        with self._lock:
            return self._current_locked(tenant, version)

    def _ready(self, tenant: str) -> MemoryStore | None:
        """``tenant``'s index if it is in memory at the lake's version; otherwise a load is
        started and ``None`` is returned: in the background (unless ``background=False``), or
        here when the index can be mapped from snapshots; a query that finds it being mapped
        waits for it (at most :data:`MAPPED_WAIT`)."""
        version = self.lake.version(tenant)
        with self._lock:
            current = self._current_locked(tenant, version)
            if current is not None:
                return current
            self._demand[tenant] = self._demand.get(tenant, 0) + 1
            claimed = self._claim_locked(tenant, version)
        if claimed and not self.background:
            return self._load(tenant, version)
        if claimed:
            with self._lock:  # the tenant's other queries wait while this one looks
                self._mapped[tenant] = version
            if self._can_map(tenant):
                # Mapped here, in the query that found it missing: milliseconds, and after a
                # restart the tenants' first queries map theirs side by side instead of
                # queueing for the loader behind each other.
                return self._load(tenant, version, finish_later=True)
            with self._changed:  # read from Parquet by the loader: nobody waits for that
                self._mapped.pop(tenant, None)
                self._enqueue_locked([(tenant, version)])
                self._changed.notify_all()
        with self._changed:
            if self._mapped.get(tenant) != version:
                return None

            def settled() -> bool:
                found = self._indexes.get(tenant)
                return (
                    self._mapped.get(tenant) != version
                    or tenant not in self._loading
                    or (found is not None and found.version == version)
                )

            self._changed.wait_for(settled, MAPPED_WAIT)
            return self._current_locked(tenant, version)

    def _can_map(self, tenant: str) -> bool:
        """Whether ``tenant``'s index can be mapped from snapshots (every one it needs is there)."""
        try:
            return self.snapshots is not None and self.snapshots.current(tenant, self._catalog)
        except (OSError, PQLError):
            return False

    def _current_locked(self, tenant: str, version: int) -> MemoryStore | None:
        """``tenant``'s index if it is in memory at ``version``, marked most recently used."""
        found = self._indexes.get(tenant)
        if found is None or found.version != version:
            return None
        self._indexes.move_to_end(tenant)
        return found.store

    def _enqueue_locked(self, loads: Iterable[tuple[str, int]]) -> None:
        """Queue claimed loads for the loader thread, starting it if it is not running (none
        once the store is closed: the claims are dropped)."""
        for tenant, version in loads:
            if self._closed:
                self._loading.discard(tenant)
                continue
            self._queue[tenant] = version
        if (self._queue or self._unfinished or self._unwritten) and self._loader is None:
            self._loader = threading.Thread(target=self._run_loader, name="pql-index", daemon=True)
            _LIVE.add(self)
            self._loader.start()

    def _run_loader(self) -> None:
        """Load the queued tenants one at a time: those mapped from snapshots first (each takes
        milliseconds), then the most demanded (then in order). Finish the kept indexes (build
        the lookups not mapped from snapshots) only when no load waits and no query is mapping
        an index (waiting at most :data:`MAPPED_WAIT` for that), and write the snapshots due
        (with those lookups) only when nothing else does (queries wait for loads, not for
        these)."""
        waited = False
        while True:
            finish: tuple[str, MemoryStore] | None = None
            unwritten: tuple[Pending, ...] = ()
            with self._changed:
                if self._queue:
                    queue = self._queue
                    tenant = max(
                        queue,
                        key=lambda t: (self._mapped.get(t) == queue[t], self._demand.get(t, 0)),
                    )
                    version = self._queue.pop(tenant)
                elif self._unfinished and self._mapped and not self._closed and not waited:
                    # Queries are mapping their tenants' indexes (a restart's first second):
                    # they go first, the kept indexes answer by scans meanwhile. At most
                    # MAPPED_WAIT before each finish, so a stuck mapping never stops them.
                    self._changed.wait_for(
                        lambda: not self._mapped or self._closed or bool(self._queue),
                        MAPPED_WAIT,
                    )
                    waited = True
                    continue
                elif self._unfinished:
                    finish = self._unfinished.pop(0)
                elif self._unwritten:
                    unwritten = self._unwritten.pop(0)
                    self._writing = True
                else:
                    self._loader = None
                    self._changed.notify_all()
                    return
            waited = False
            if finish is not None:
                self._add_lookups(*finish)
                continue
            if not unwritten:
                self._load(tenant, version, finish_later=True)
                continue
            try:
                self._write(unwritten)
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()

    def _write(self, pending: tuple[Pending, ...]) -> None:
        if self.snapshots is not None:
            self.snapshots.write(pending)

    def _claim(self, tenant: str, version: int, *, retry: bool = False) -> bool:
        with self._lock:
            if retry:
                self._refused.pop(tenant, None)
            return self._claim_locked(tenant, version)

    def _claim_locked(self, tenant: str, version: int) -> bool:
        """Mark ``tenant`` as loading unless it is loaded, loading, or refused at ``version``
        (or the store is closed)."""
        if self._closed:
            return False
        found = self._indexes.get(tenant)
        if found is not None and found.version == version:
            return False
        refused = self._refused.get(tenant)
        if tenant in self._loading or (refused is not None and refused[0] == version):
            return False
        self._loading.add(tenant)
        return True

    def _rows(self, tenant: str) -> int:
        """``tenant``'s stored rows, from the lake's partition statistics."""
        return sum(p.rows for s in self._catalog for p in self.lake.stats(tenant, s.name))

    def _load(self, tenant: str, version: int, *, finish_later: bool = False) -> MemoryStore | None:
        """Read ``tenant``'s rows into an index and keep it if it fits (the tenant was claimed);
        then finish it (the lookups not mapped from snapshots), while queries are already
        answered from the index: here, or with ``finish_later`` by the loader thread once no
        load waits."""
        store: MemoryStore | None = None
        why = ""
        pending: tuple[Pending, ...] = ()
        started = clock.perf_counter()
        source: LoadSource = "parquet"
        try:
            if self.on_load is not None:
                self.on_load(tenant)
            rows = self._rows(tenant)
            if rows * _LEAST_BYTES_PER_ROW > self.memory_budget:
                why = f"its {rows} rows need more than {rows * _LEAST_BYTES_PER_ROW} bytes"
            elif self.snapshots is not None:
                loaded = self.snapshots.load(tenant, self._catalog, rollups=self._rollups)
                store, source, pending = loaded.store, loaded.source, loaded.pending
            else:
                store = self._read(tenant)
        except Exception as exc:  # served from partitions, whose reads report the problem
            why = f"loading failed ({type(exc).__name__}: {exc})"
        with self._changed:
            if store is not None:
                nbytes = store.memory_bytes()
                if nbytes <= self.memory_budget:
                    self._keep(tenant, _Index(version, store, nbytes))
                    seconds = clock.perf_counter() - started
                    self._loads[tenant] = LoadInfo(source, seconds, store.rows())
                else:
                    why, store = f"its index needs {nbytes} bytes, over the budget", None
            if store is None:
                self._loading.discard(tenant)
                self._refused[tenant] = (version, why)
                pending = ()
            else:
                self._refused.pop(tenant, None)
            self._mapped.pop(tenant, None)
            self._demand.pop(tenant, None)  # loaded or refused: its waiting queries are done
            later = store is not None and finish_later and not self._closed
            if later and store is not None:
                self._unfinished.append((tenant, store))
            if pending and self.background and not self._closed:
                self._unwritten.append(pending)
            if later or pending:
                self._enqueue_locked(())
            self._changed.notify_all()
        if store is not None and not later:
            self._add_lookups(tenant, store)
        if pending and not self.background:
            self._write(pending)
        return store

    def _add_lookups(self, tenant: str, store: MemoryStore) -> None:
        """Finish a kept index: build the lookups it lacks (a tenant's load ends, for
        :meth:`ready`, here). Skipped for an index dropped meanwhile."""
        try:
            with self._lock:
                found = self._indexes.get(tenant)
                if found is None or found.store is not store:
                    return
            store.add_lookups(self.memory_budget)  # declined over the budget: scans answer
        except Exception:  # a failed build costs speed, not answers: scans answer the same
            pass
        finally:
            with self._changed:
                found = self._indexes.get(tenant)
                if found is not None and found.store is store:
                    self._keep(tenant, replace(found, nbytes=store.memory_bytes()))
                self._loading.discard(tenant)
                self._changed.notify_all()

    def _read(self, tenant: str) -> MemoryStore:
        # The lake validated and deduplicated these rows when they were ingested: they are
        # sorted and rolled up, not checked again (that was most of a load's time).
        store = MemoryStore(self._catalog, rollups=self._rollups)
        for subject in self._catalog:
            got = self.lake.scan(tenant, subject, _ALL_START, _ALL_END)
            frame = got.frame.filter(pl.col("tenant") == tenant).collect()
            if frame.height:
                store.load_stored(tenant, subject, frame, lookups=False)
        return store

    def _keep(self, tenant: str, index: _Index) -> None:
        """Keep ``index`` and drop the least recently used others until all fit (lock held)."""
        previous = self._indexes.get(tenant)
        self._indexes[tenant] = index
        self._indexes.move_to_end(tenant)
        if previous is not None and previous.store is not index.store:
            self._released_locked(tenant)
        self._drop_days_locked(tenant)  # the index's own rollups answer now
        if self._bytes_locked() > self.memory_budget:
            self._drop_days_locked()  # computed again if asked for: before any index goes
        total = self._bytes_locked()
        for other in list(self._indexes):
            if total <= self.memory_budget:
                break
            if other != tenant:
                total -= self._indexes.pop(other).nbytes
                self._released_locked(other)

    def _released_locked(self, tenant: str) -> None:
        """Tell ``on_release`` that ``tenant``'s index was let go of (lock held)."""
        for listener in self.on_release:
            listener(tenant)


def _by_day(
    spec: RollupSpec, computed: pl.DataFrame | None, first: date, last: date
) -> dict[date, pl.DataFrame]:
    """``computed`` rollup rows split by day, for every day ``first`` to ``last`` (empty for a
    day without rows)."""
    empty = pl.DataFrame(schema=schema_of(spec))
    by_day = {} if computed is None else computed.partition_by(DAY, as_dict=True)
    count = (last - first).days + 1
    days = (first + timedelta(days=n) for n in range(count))
    return {day: by_day.get((day,), empty) for day in days}


def _days_frame(by_day: dict[date, pl.DataFrame], days: Sequence[date]) -> pl.LazyFrame:
    """The rollup rows of ``days``, in order, as one frame."""
    return pl.concat([by_day[day] for day in days], how="vertical", rechunk=False).lazy()
