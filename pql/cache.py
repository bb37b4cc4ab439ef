"""The result cache and the parse cache: beside the pipeline, never inside it.

:class:`ResultCache` keeps answers of queries that already ran, keyed by everything that decides
the answer (:class:`CacheKey`):

* the **tenant** the query ran for (so an answer is never another tenant's);
* the **safe, optimized plan** itself: plan nodes are frozen and hashable, and spans do not take
  part in equality, so two texts that mean the same query share a key; the plan holds the time
  window, the projected columns (which follow the catalog) and the row cap;
* the **limits** in force for that tenant;
* the **data version** of the tenant (``Store.version``), read *before* the query runs. Every
  ingest that stores rows for the tenant bumps it, so an entry is never older than the version it
  claims: after an ingest the old key is simply never asked for again and ages out.

The engine consults the cache in :meth:`pql.Engine.query` around ``prepare``/``execute``:
parsing, analysis and every safety rule still run on each call, and nothing in the planner knows
about the cache. When the caller does not fix ``now``, the engine floors the wall clock to the
engine's ``cache_granularity`` (:func:`floor_clock`; ``timedelta(0)`` by default, which keeps the
wall clock exact and so bypasses the cache) so that repeated dashboard queries share a window and
a key, e.g. with 10 s; a fixed ``now`` is used exactly.

Entries live at most ``ttl_s`` seconds (5 minutes by default) and the cache holds at most
``max_bytes`` of result frames (``DataFrame.estimated_size()`` plus a small overhead per entry);
the least recently used entries go first.

:func:`parse` is a small LRU cache of query text -> AST (ASTs are immutable), since parsing costs
most of a cheap query's planning time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import cachetools

from pql import ast, parser
from pql.limits import Limits
from pql.plan.nodes import Node
from pql.result import Result

__all__ = [
    "DEFAULT_GRANULARITY",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TTL_S",
    "CacheKey",
    "CacheStats",
    "ResultCache",
    "floor_clock",
    "parse",
]

DEFAULT_TTL_S = 300.0
"""How long an entry lives, in seconds (5 minutes)."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""The most result bytes the cache keeps (256 MiB)."""

DEFAULT_GRANULARITY = timedelta(0)
"""The step the wall clock is floored to when the caller does not fix ``now``."""

ENTRY_OVERHEAD_BYTES = 1024
"""Bytes counted per entry on top of its frame (key, stats, bookkeeping)."""

PARSE_CACHE_SIZE = 1024
"""Distinct query texts whose AST is kept."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Planned(Protocol):
    """What a key is made of: a prepared query (:class:`pql.engine.Prepared`) has these."""

    @property
    def tenant(self) -> str: ...

    @property
    def plan(self) -> Node: ...

    @property
    def limits(self) -> Limits: ...


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Everything that decides an answer: tenant, optimized plan, limits, data version."""

    tenant: str
    plan: Node
    limits: Limits
    version: int

    @classmethod
    def of(cls, prepared: Planned, version: int) -> CacheKey:
        """The key of a prepared query at the tenant's data ``version``."""
        return cls(prepared.tenant, prepared.plan, prepared.limits, version)


@dataclass(frozen=True, slots=True)
class _Entry:
    result: Result
    created: float
    nbytes: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache: lookups that hit or missed, entries and bytes held."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


def _entry_size(entry: _Entry) -> int:
    return entry.nbytes


class ResultCache:
    """A thread-safe TTL + LRU cache of query results, bounded in bytes.

    ``timer`` is the clock entries age by (seconds, monotonic); tests inject a fake one.

    >>> cache = ResultCache(ttl_s=60, max_bytes=1 << 20)
    >>> cache.stats().entries
    0
    """

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_bytes <= 0:
            raise ValueError("ttl_s and max_bytes must be positive")
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._timer = timer
        self._entries: cachetools.TTLCache[CacheKey, _Entry] = cachetools.TTLCache(
            maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=_entry_size
        )
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: CacheKey) -> tuple[Result, float] | None:
        """A copy of the cached result for ``key`` and its age in milliseconds, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._hits += 1
            age_ms = (self._timer() - entry.created) * 1000
        return entry.result.copy(), max(0.0, age_ms)

    def put(self, key: CacheKey, result: Result) -> bool:
        """Keep a copy of ``result`` under ``key``; returns whether it fit (larger than the cache:
        no). The caller keeps ``result`` to change as it likes."""
        nbytes = int(result.df.estimated_size()) + ENTRY_OVERHEAD_BYTES
        if nbytes > self.max_bytes:
            return False
        kept = result.copy()
        with self._lock:
            self._entries[key] = _Entry(kept, self._timer(), nbytes)
        return True

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Hits, misses, entries and bytes held right now."""
        with self._lock:
            self._entries.expire()
            return CacheStats(
                self._hits,
                self._misses,
                len(self._entries),
                int(self._entries.currsize),
                self.max_bytes,
            )

    def __len__(self) -> int:
        return self.stats().entries


def floor_clock(moment: datetime, granularity: timedelta) -> datetime:
    """``moment`` floored to a multiple of ``granularity`` since the epoch (UTC).

    A zero ``granularity`` returns ``moment`` unchanged.

    >>> floor_clock(datetime(2026, 3, 2, 10, 0, 17, 900, tzinfo=UTC), timedelta(seconds=10))
    datetime.datetime(2026, 3, 2, 10, 0, 10, tzinfo=datetime.timezone.utc)
    """
    step = granularity // timedelta(microseconds=1)
    if step <= 0:
        return moment
    since = (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=since - since % step)


def hit_result(cached: Result, age_ms: float, timings_ms: dict[str, float]) -> Result:
    """``cached`` (a copy :meth:`ResultCache.get` handed out) with this call's timings."""
    cached.stats["timings_ms"] = timings_ms
    cached.stats["cache"] = {"hit": True, "age_ms": round(age_ms, 3)}
    return cached


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_text(text: str) -> ast.Query:
    return parser.parse(text)


def parse(text: str) -> ast.Query:
    """:func:`pql.parser.parse`, remembering the ASTs of recent texts (they are immutable).

    Failures are not remembered: a bad text is parsed (and reported) again each time.
    """
    if not isinstance(text, str):
        return parser.parse(text)
    return _parse_text(text)
