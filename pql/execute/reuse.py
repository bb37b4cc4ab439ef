"""Compiled queries reused: a plan's Polars query built once for the rows it reads.

Building the lazy Polars query of a plan (:func:`~pql.execute.compile.compile_plan`) is most of
what a query whose plan was reused (:mod:`pql.plan.memo`) still spends before it runs. The plans
of one :class:`Family` (those of one plan memo entry: one plan, at its own ``now`` or moved from
window to window) differ only in their scans' windows, and the compiled query depends on a
window only through the rows the store reads for it. So when each scan of a plan reads the same
stored rows (:meth:`~pql.storage.base.RowsKeyStore.rows_key`), and each rollup the same whole
days of the same stored data, as a plan of the same family compiled shortly before, that
compiled query runs again (:func:`reuse_key`, :class:`CompiledQueries`). Every safety rule has
run on the plan all the same; what is skipped is only the building of an identical query.

Nothing is reused when a store cannot tell which rows a window reads (a lake's partitions, S3,
an index not in memory), or for a prepared query whose plan or estimates are not those its
family was made with. A key names the stored rows themselves (an index loaded again, or data
changed by an ingest, gets new keys), so a query compiled for rows a store has let go of is
never used again. It holds views of those rows, though: the engine drops its compiled queries
when an index is let go of (evicted under the memory budget, replaced by a newer load) and
after an ingest, and keeps each for at most :data:`COMPILED_TTL_S` seconds after its last use.
A query asked again within that, by a dashboard or a service, stays compiled however long it
is asked.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import cast

from pql.catalog import Catalog
from pql.execute.compile import Compiled, FirstMatches
from pql.plan.cost import Estimates
from pql.plan.nodes import Node, RollupAggregate, Scan, walk
from pql.storage.base import RowsKeyStore, Store, provides

__all__ = [
    "COMPILED_SIZE",
    "COMPILED_TTL_S",
    "CompiledQueries",
    "Family",
    "reuse_key",
]

COMPILED_SIZE = 256
"""How many compiled queries an engine keeps."""

COMPILED_TTL_S = 30.0
"""How long a compiled query is kept, in seconds from when it was last used."""


@dataclass(frozen=True, slots=True)
class Family:
    """The plan a prepared query runs, as one of a family of plans that differ only in their
    windows: ``token`` is shared by the family (one plan memo entry), ``plan`` and
    ``estimates`` are the prepared query's own."""

    token: object
    plan: Node
    estimates: Estimates | None
    version: int | None = None
    """The store's version of the tenant the family's plans were made at (a plan memo entry's
    key holds it), if known: the store tells the rows of that version without reading it
    again."""


def reuse_key(
    family: Family, plan: Node, estimates: Estimates | None, store: Store, catalog: Catalog
) -> Hashable | None:
    """The key under which ``plan`` (with ``estimates``) compiles to the same query as any plan
    of its family reading the same rows; ``None`` when that cannot be told (see the module)."""
    if family.plan is not plan or family.estimates is not estimates:
        return None  # a prepared query changed after it was made: not the family's plan
    if not provides(store, RowsKeyStore):
        return None
    told = cast(RowsKeyStore, store)  # as ``provides`` found
    # Every window the plan reads, in walk order, asked of the store once per (tenant, subject).
    windows: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    reads: list[tuple[tuple[str, str], int, tuple[date, date] | None]] = []
    for node in walk(plan):
        if isinstance(node, RollupAggregate):  # its whole days' rollup rows, then its edges
            window, days = node.days_window, (node.first_day, node.last_day)
        elif isinstance(node, Scan):
            window, days = (node.start, node.end), None
        else:
            continue
        asked = windows.setdefault((node.tenant, node.subject), [])
        reads.append(((node.tenant, node.subject), len(asked), days))
        asked.append(window)
    keys: dict[tuple[str, str], tuple[Hashable, ...]] = {}
    for (tenant, subject), asked in windows.items():
        found = told.rows_keys(tenant, catalog[subject], asked, family.version)
        if found is None:
            return None
        keys[(tenant, subject)] = found
    rows = tuple(
        keys[which][at] if days is None else (*days, keys[which][at]) for which, at, days in reads
    )
    return (family.token, rows)


class CompiledQueries:
    """A thread-safe, bounded map from :func:`reuse_key` to the :class:`Compiled` query, each
    kept ``ttl`` seconds from its last use (put or found); ``size=0`` keeps none.

    Kept in the order of last use, which with one ``ttl`` for all is also the order they
    expire in: the least recently used go first, past ``size`` or past their time. Asked on
    every query, so a lookup is one dict lookup and a move to the end (a TTL cache that also
    fits any order of expiry took three times as long)."""

    def __init__(
        self,
        size: int = COMPILED_SIZE,
        ttl: float = COMPILED_TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0 or ttl < 0:
            raise ValueError("size and ttl must not be negative")
        self.size = size
        self.ttl = ttl
        self.hits = 0
        self.misses = 0
        self._timer = timer
        self._entries: OrderedDict[Hashable, tuple[Compiled, float]] = OrderedDict()
        """Each query and the time it expires at, least recently used first."""
        self._lock = threading.Lock()
        self.first_matches = FirstMatches() if size else None
        """Where the first rows' probes found their matches (:class:`FirstMatches`): a query
        compiled again for a moved window is cut there without probing, kept and let go of
        with the compiled queries."""

    def get(self, key: Hashable) -> Compiled | None:
        """The query compiled under ``key``, as one that read nothing (``reused``): shared by
        every query that finds it, which only reads it."""
        now = self._timer()
        with self._lock:
            self._expire_locked(now)
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries[key] = (found[0], now + self.ttl)  # used: kept ``ttl`` from now
            self._entries.move_to_end(key)
        return found[0]

    def put(self, key: Hashable, compiled: Compiled) -> None:
        """Keep ``compiled`` (a copy: the caller's own says what compiling it read)."""
        if self.size == 0:
            return
        kept = replace(compiled, read_s=0.0, reused=True)
        now = self._timer()
        with self._lock:
            self._expire_locked(now)
            self._entries[key] = (kept, now + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def _expire_locked(self, now: float) -> None:
        """Let go of the queries whose time is up: the least recently used, first in order."""
        entries = self._entries
        while entries and next(iter(entries.values()))[1] <= now:
            entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        if self.first_matches is not None:
            self.first_matches.clear()

    def __len__(self) -> int:
        with self._lock:
            self._expire_locked(self._timer())
            return len(self._entries)
