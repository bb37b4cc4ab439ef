"""Column statistics for the cost estimator: sketches and summaries kept beside the data.

Per (tenant, subject) a :class:`SubjectSummary` holds the row count and, per column, a
:class:`ColumnSummary`: null count, a distinct-count sketch (:class:`HyperLogLog`), the
most-common values with their counts for low-cardinality string and integer columns (with the
first and last ``ts`` each value was seen at, for values that come and go, like policy
versions), min/max for numeric and timestamp columns (timestamps as µs since the epoch) and, for
numeric columns, a histogram on log-spaced buckets (:class:`LogHistogram`) that keeps heavy
tails such as ``latency_ms``. Summaries are computed from frames with vectorized Polars and are
mergeable, so new data is summarized alone and merged in.

:class:`StoreStats` is what the estimator asks (:class:`StatsProvider`): partition statistics
come from the store, column summaries are computed lazily. For a
:class:`~pql.storage.lake.Lake` they are kept in sidecar JSON files
``DATA/_pql/stats/{tenant}/{subject}.json`` that list the data files already summarized; only
files committed since are read and merged. For any other store they are computed from a full
scan and cached by ``store.version(tenant)``.

The sketch hashes with Polars' ``hash``, which is only stable within one Polars version, so a
sidecar records the version and is rebuilt when it differs.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from pql.catalog import Catalog, DataType, Subject
from pql.deadline import NO_DEADLINE, Deadline
from pql.storage.base import PartitionStats, Store

if TYPE_CHECKING:
    from pql.storage.lake import FileEntry

__all__ = [
    "NO_STATS",
    "ColumnSummary",
    "HyperLogLog",
    "LogHistogram",
    "StatsProvider",
    "StoreStats",
    "SubjectSummary",
    "Window",
    "summarize",
]

HLL_PRECISION = 12
"""2**12 registers: a standard error of about 1.6%, 4 KiB per column."""

MCV_MAX = 64
"""Columns with at most this many distinct values keep every value's count (a complete list)."""

MCV_PROBE = 4 * MCV_MAX
"""Above this sketch estimate a column's values are not counted at all (ids, not categories)."""

SUMMARY_BATCH_ROWS = 1_000_000
"""A lake's files are summarised together up to this many rows (a batch's frame in memory)."""

_SEED = 0x5EED
_HASH_ID = f"polars-{pl.__version__}"
_FORMAT = 2
_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class HyperLogLog:
    """A mergeable distinct-count sketch (HyperLogLog, 2**precision one-byte registers)."""

    __slots__ = ("_estimate", "precision", "registers")

    def __init__(self, precision: int = HLL_PRECISION, registers: np.ndarray | None = None) -> None:
        self.precision = precision
        size = 1 << precision
        self.registers: np.ndarray = (
            np.zeros(size, dtype=np.uint8) if registers is None else registers.astype(np.uint8)
        )
        if self.registers.shape != (size,):
            raise ValueError("HyperLogLog registers do not match the precision")
        self._estimate: float | None = None

    def add(self, values: pl.Series) -> HyperLogLog:
        """Add the non-null ``values`` (vectorized); returns ``self``."""
        values = values.drop_nulls()
        if values.len() == 0:
            return self
        p = self.precision
        hashed = values.hash(seed=_SEED).to_numpy()
        # The guard bit bounds the rank at 64 - p + 1.
        rest = (hashed << np.uint64(p)) | np.uint64(1 << (p - 1))
        frame = pl.DataFrame(
            {
                "index": (hashed >> np.uint64(64 - p)).astype(np.int64),
                "rank": pl.Series(rest).bitwise_leading_zeros().cast(pl.UInt8) + 1,
            }
        )
        best = frame.group_by("index").agg(pl.col("rank").max())
        index = best.get_column("index").to_numpy()
        rank = best.get_column("rank").to_numpy().astype(np.uint8)
        self.registers[index] = np.maximum(self.registers[index], rank)
        self._estimate = None
        return self

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The union of two sketches (a new sketch)."""
        if other.precision != self.precision:
            raise ValueError("cannot merge sketches of different precision")
        return HyperLogLog(self.precision, np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        """The estimated number of distinct values added (remembered until values are added)."""
        if self._estimate is None:
            self._estimate = self._compute()
        return self._estimate

    def _compute(self) -> float:
        m = float(1 << self.precision)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.exp2(-self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return m * math.log(m / zeros)  # linear counting for small sets
        return raw

    def to_json(self) -> str:
        """The registers as a hex string."""
        return bytes(self.registers.tobytes()).hex()

    @classmethod
    def from_json(cls, text: str, precision: int = HLL_PRECISION) -> HyperLogLog:
        return cls(precision, np.frombuffer(bytes.fromhex(text), dtype=np.uint8).copy())


HIST_GAMMA = 1.02
"""Bucket ratio ``g`` of :class:`LogHistogram`: bucket ``k`` holds ``(g**(k-1), g**k]``."""

HIST_LIMIT = 4_000
"""Buckets go from ``-HIST_LIMIT`` to ``HIST_LIMIT`` (magnitudes 6e-35 to 2e34), then the edges."""

_LOG_GAMMA = math.log(HIST_GAMMA)


class LogHistogram:
    """A mergeable histogram of numbers on log-spaced buckets, about 2% wide (as in DDSketch).

    Positive and negative values are counted per bucket of their magnitude, zeros apart;
    non-finite values are left out. Any quantile or range is known to within a bucket, however
    heavy the tail: a latency column with a median of 600 ms and a maximum of 10**7 ms is kept
    in about 800 buckets, where min/max alone would call its values uniform.
    """

    __slots__ = ("_index", "negative", "positive", "zeros")

    def __init__(
        self,
        positive: dict[int, int] | None = None,
        negative: dict[int, int] | None = None,
        zeros: int = 0,
    ) -> None:
        self.positive: dict[int, int] = positive or {}
        self.negative: dict[int, int] = negative or {}
        self.zeros = zeros
        self._index: tuple[_Cumulative, _Cumulative] | None = None

    @classmethod
    def of(cls, values: np.ndarray[Any, Any]) -> LogHistogram:
        """The histogram of ``values`` (vectorized)."""
        finite = values[np.isfinite(values)]
        return cls(
            _bucket_counts(finite[finite > 0]),
            _bucket_counts(-finite[finite < 0]),
            int(np.count_nonzero(finite == 0)),
        )

    @property
    def total(self) -> int:
        return sum(self.positive.values()) + sum(self.negative.values()) + self.zeros

    def merge(self, other: LogHistogram) -> LogHistogram:
        """The histogram of both inputs' values together (a new histogram)."""
        return LogHistogram(
            _add_counts(self.positive, other.positive),
            _add_counts(self.negative, other.negative),
            self.zeros + other.zeros,
        )

    def below(self, x: float, *, inclusive: bool = False) -> float:
        """How many values are below ``x`` (or at most ``x``), interpolated within a bucket."""
        if self._index is None:
            self._index = (_Cumulative.of(self.positive), _Cumulative.of(self.negative))
        positive, negative = self._index
        if x == 0:
            return negative.total + (self.zeros if inclusive else 0)
        if x > 0:
            return negative.total + self.zeros + positive.below(x)
        # x < 0: the values below x are those of magnitude above |x|.
        return negative.total - negative.below(-x)

    def to_json(self) -> dict[str, Any]:
        return {
            "pos": {str(k): n for k, n in sorted(self.positive.items())},
            "neg": {str(k): n for k, n in sorted(self.negative.items())},
            "zeros": self.zeros,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LogHistogram:
        return cls(
            {int(k): int(n) for k, n in raw["pos"].items()},
            {int(k): int(n) for k, n in raw["neg"].items()},
            int(raw["zeros"]),
        )


def _bucket_counts(magnitudes: np.ndarray[Any, Any]) -> dict[int, int]:
    if not magnitudes.size:
        return {}
    keys = np.clip(np.ceil(np.log(magnitudes) / _LOG_GAMMA), -HIST_LIMIT, HIST_LIMIT)
    found, counts = np.unique(keys.astype(np.int64), return_counts=True)
    return {int(k): int(n) for k, n in zip(found, counts, strict=True)}


def _add_counts(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class _Cumulative:
    """The buckets of one sign, sorted, with running counts (for :meth:`LogHistogram.below`)."""

    keys: np.ndarray[Any, np.dtype[np.int64]]
    counts: np.ndarray[Any, np.dtype[np.float64]]
    running: np.ndarray[Any, np.dtype[np.float64]]  # counts of the buckets before each one

    @classmethod
    def of(cls, buckets: Mapping[int, int]) -> _Cumulative:
        keys = np.array(sorted(buckets), dtype=np.int64)
        counts = np.array([buckets[int(k)] for k in keys], dtype=np.float64)
        running = np.concatenate([[0.0], np.cumsum(counts)[:-1]]) if counts.size else counts
        return cls(keys, counts, running)

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def below(self, x: float) -> float:
        """Values with a magnitude below ``x > 0``, linear in log within a bucket."""
        if not self.keys.size:
            return 0.0
        position = math.log(x) / _LOG_GAMMA  # bucket k covers positions (k - 1, k]
        i = int(np.searchsorted(self.keys, position, side="left"))  # first bucket k >= position
        if i == self.keys.size:
            return float(self.running[-1] + self.counts[-1])
        part = min(1.0, max(0.0, position - (float(self.keys[i]) - 1.0)))
        return float(self.running[i] + self.counts[i] * part)


@dataclass(slots=True)
class ColumnSummary:
    """What the estimator knows about one column of one tenant's subject."""

    nulls: int = 0
    sketch: HyperLogLog | None = None
    mcv: dict[str, int] = field(default_factory=dict)
    mcv_complete: bool = False
    low: float | None = None
    high: float | None = None
    hist: LogHistogram | None = None
    """Numeric columns: the values on log-spaced buckets."""
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    """For the values of ``mcv``: the first and last ``ts`` (µs) of a row with that value."""
    null_span: tuple[float, float] | None = None
    """The first and last ``ts`` (µs) of a null (``None``: no nulls, or not known)."""

    @property
    def distinct(self) -> float:
        """Estimated distinct non-null values (exact when the value list is complete)."""
        if self.mcv_complete:
            return float(len(self.mcv))
        return self.sketch.estimate() if self.sketch is not None else 0.0

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        """The summary of both inputs' rows together."""
        sketch = self.sketch if other.sketch is None else other.sketch
        if self.sketch is not None and other.sketch is not None:
            sketch = self.sketch.merge(other.sketch)
        counts = dict(self.mcv)
        for value, n in other.mcv.items():
            counts[value] = counts.get(value, 0) + n
        complete = self.mcv_complete and other.mcv_complete and len(counts) <= MCV_MAX
        if len(counts) > MCV_MAX:
            counts = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:MCV_MAX])
        hist = self.hist if other.hist is None else other.hist
        if self.hist is not None and other.hist is not None:
            hist = self.hist.merge(other.hist)
        spans: dict[str, tuple[float, float]] = {}
        for value in counts:
            both = [s for s in (self.spans.get(value), other.spans.get(value)) if s is not None]
            if both:
                spans[value] = (min(s[0] for s in both), max(s[1] for s in both))
        null_span = None  # known only if every side with nulls knows where they are
        if all(s.null_span is not None for s in (self, other) if s.nulls):
            known = [s.null_span for s in (self, other) if s.null_span is not None]
            if known:
                null_span = (min(s[0] for s in known), max(s[1] for s in known))
        return ColumnSummary(
            nulls=self.nulls + other.nulls,
            sketch=sketch,
            mcv=counts,
            mcv_complete=complete,
            low=_pick(min, self.low, other.low),
            high=_pick(max, self.high, other.high),
            hist=hist,
            spans=spans,
            null_span=null_span,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nulls": self.nulls,
            "hll": self.sketch.to_json() if self.sketch is not None else None,
            "mcv": self.mcv,
            "mcv_complete": self.mcv_complete,
            "low": self.low,
            "high": self.high,
            "hist": self.hist.to_json() if self.hist is not None else None,
            "spans": {k: list(v) for k, v in self.spans.items()},
            "null_span": list(self.null_span) if self.null_span is not None else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ColumnSummary:
        hll = raw.get("hll")
        return cls(
            nulls=int(raw["nulls"]),
            sketch=HyperLogLog.from_json(hll) if hll else None,
            mcv={str(k): int(v) for k, v in raw["mcv"].items()},
            mcv_complete=bool(raw["mcv_complete"]),
            low=None if raw.get("low") is None else float(raw["low"]),
            high=None if raw.get("high") is None else float(raw["high"]),
            hist=LogHistogram.from_json(raw["hist"]) if raw.get("hist") else None,
            spans={str(k): (float(v[0]), float(v[1])) for k, v in raw.get("spans", {}).items()},
            null_span=_span_of(raw.get("null_span")),
        )


@dataclass(slots=True)
class SubjectSummary:
    """Row count and per-column summaries of one tenant's subject."""

    rows: int = 0
    columns: dict[str, ColumnSummary] = field(default_factory=dict)

    def merge(self, other: SubjectSummary) -> SubjectSummary:
        names = dict.fromkeys([*self.columns, *other.columns])
        merged: dict[str, ColumnSummary] = {}
        for name in names:
            mine = self.columns.get(name) or _absent(self.rows)
            theirs = other.columns.get(name) or _absent(other.rows)
            merged[name] = mine.merge(theirs)
        return SubjectSummary(self.rows + other.rows, merged)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": {k: v.to_json() for k, v in self.columns.items()}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SubjectSummary:
        columns = {str(k): ColumnSummary.from_json(v) for k, v in raw["columns"].items()}
        return cls(int(raw["rows"]), columns)


def _span_of(raw: Any) -> tuple[float, float] | None:
    return None if raw is None else (float(raw[0]), float(raw[1]))


def _absent(rows: int) -> ColumnSummary:
    """A column missing from some rows: all of them are null."""
    return ColumnSummary(nulls=rows, mcv_complete=True)


def _pick(fn: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(fn(a, b))


def summarize(subject: Subject, frame: pl.DataFrame) -> SubjectSummary:
    """Summaries of every column of ``subject`` present in ``frame`` (vectorized)."""
    columns: dict[str, ColumnSummary] = {}
    nulls = frame.null_count().row(0, named=True) if frame.height else {}
    ts = None
    if "ts" in frame.columns and isinstance(frame.schema["ts"], pl.Datetime):
        ts = frame.get_column("ts").dt.epoch("us")
    for column in subject.columns:
        if column.name not in frame.columns:
            continue
        series = frame.get_column(column.name)
        count = int(nulls.get(column.name, 0))
        columns[column.name] = _column(column.type, series, count, ts)
    return SubjectSummary(frame.height, columns)


def _column(
    type_: DataType, series: pl.Series, nulls: int, ts: pl.Series | None = None
) -> ColumnSummary:
    out = ColumnSummary(nulls=nulls)
    if nulls and ts is not None:
        where = ts.filter(series.is_null())
        if where.len():
            out.null_span = (float(where.min()), float(where.max()))  # type: ignore[arg-type]
    if type_ in (DataType.STRING, DataType.INT):
        out.sketch = HyperLogLog().add(series)
        if out.sketch.estimate() <= MCV_PROBE:
            counts = series.drop_nulls().value_counts(sort=True)
            pairs = zip(counts.to_series(0).to_list(), counts.to_series(1).to_list(), strict=True)
            out.mcv = {str(v): int(n) for v, n in list(pairs)[:MCV_MAX]}
            out.mcv_complete = counts.height <= MCV_MAX
            if ts is not None and out.mcv:
                out.spans = _spans(series, ts, out.mcv)
    if type_.numeric or type_ is DataType.TIMESTAMP:
        values = series.drop_nulls()
        if type_ is DataType.TIMESTAMP:
            values = values.dt.epoch("us")
        if values.len():
            out.low, out.high = float(values.min()), float(values.max())  # type: ignore[arg-type]
        if type_.numeric:
            out.hist = LogHistogram.of(values.cast(pl.Float64).to_numpy())
    return out


def _spans(
    series: pl.Series, ts: pl.Series, values: Mapping[str, int]
) -> dict[str, tuple[float, float]]:
    """The first and last ``ts`` of each of ``values`` in ``series``."""
    frame = pl.DataFrame({"v": series.cast(pl.String), "ts": ts}).drop_nulls()
    found = frame.group_by("v").agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    return {
        str(v): (float(lo), float(hi))
        for v, lo, hi in found.iter_rows()
        if str(v) in values and lo is not None
    }


@dataclass(frozen=True, slots=True)
class PartitionArrays:
    """Partition statistics as arrays (µs since the epoch, rows), for vectorized estimates."""

    ts_min: np.ndarray[Any, np.dtype[np.float64]]
    ts_max: np.ndarray[Any, np.dtype[np.float64]]
    rows: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def of(cls, parts: Sequence[PartitionStats]) -> PartitionArrays:
        return cls(
            np.array([_us(p.ts_min) for p in parts], dtype=np.float64),
            np.array([_us(p.ts_max) for p in parts], dtype=np.float64),
            np.array([p.rows for p in parts], dtype=np.float64),
        )

    def in_window(self, start: float, end: float) -> tuple[float, float]:
        """(rows expected with ``start <= ts <= end``, rows of the partitions read).

        A partition is read when its ts range overlaps the window; its rows count in proportion
        to the part of its range the window covers (all of them when the range is one instant).
        """
        overlaps = (self.ts_max >= start) & (self.ts_min <= end)
        span = self.ts_max - self.ts_min
        covered = np.minimum(end, self.ts_max) - np.maximum(start, self.ts_min)
        fraction = np.where(span > 0, covered / np.where(span > 0, span, 1.0), 1.0)
        share = self.rows * np.clip(fraction, 0.0, 1.0)
        return float(share[overlaps].sum()), float(self.rows[overlaps].sum())


def _us(moment: datetime) -> float:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH).total_seconds() * 1e6


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StatsProvider(Protocol):
    """What the cost estimator reads."""

    def partitions(self, tenant: str, subject: str) -> Sequence[PartitionStats]:
        """Per (day, region) partition statistics."""
        ...

    def partition_arrays(self, tenant: str, subject: str) -> PartitionArrays:
        """The same statistics as arrays (kept per data version: planning reads them often)."""
        ...

    def summary(
        self, tenant: str, subject: str, window: Window | None = None
    ) -> SubjectSummary | None:
        """Column summaries, or ``None`` when there are none.

        ``window`` (µs since the epoch, both ends included) is the time range the query reads:
        the summary is brought up to date for the data in it, so the work stays bounded by the
        query's window rather than the tenant's history. ``None``: all the data.
        """
        ...


Window = tuple[float, float]
"""A time range in µs since the epoch, both ends included."""


class StoreStats:
    """Statistics of one store: its partition stats and lazily kept column summaries.

    A summary covers the data the queries so far have needed: asked for a window, it summarises
    only the data in that window that it has not summarised yet (a lake's files, or another
    store's days), checking ``deadline`` between files. Per (tenant, subject) it remembers,
    at the data version it last saw, from which time on everything is covered, so a repeated
    window costs nothing. :meth:`bounded` gives a view for one query's deadline.
    """

    def __init__(self, store: Store, catalog: Catalog) -> None:
        self._store = store
        self._catalog = catalog
        self._lock = threading.Lock()  # guards ``_locks``
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._cache: dict[tuple[str, str], _Covered] = {}
        self._arrays: dict[tuple[str, str], tuple[int, PartitionArrays]] = {}

    def bounded(self, deadline: Deadline) -> StatsProvider:
        """These statistics, with summarising checking ``deadline`` (for one query)."""
        return _Bounded(self, deadline)

    def partitions(self, tenant: str, subject: str) -> Sequence[PartitionStats]:
        return self._store.stats(tenant, subject)

    def partition_arrays(self, tenant: str, subject: str) -> PartitionArrays:
        version = self._store.version(tenant)
        cached = self._arrays.get((tenant, subject))
        if cached is not None and cached[0] == version:
            return cached[1]
        arrays = PartitionArrays.of(self._store.stats(tenant, subject))
        self._arrays[(tenant, subject)] = (version, arrays)
        return arrays

    def summary(
        self,
        tenant: str,
        subject: str,
        window: Window | None = None,
        *,
        deadline: Deadline = NO_DEADLINE,
    ) -> SubjectSummary | None:
        """The column summary of ``tenant``'s ``subject``, up to date for ``window``."""
        if subject not in self._catalog:
            return None
        version = self._store.version(tenant)
        key = (tenant, subject)
        lo, hi = (-math.inf, math.inf) if window is None else window
        # One lock per (tenant, subject): summarising one tenant's new files (or reading its
        # sidecar after a restart) never holds up another tenant's planning.
        with self._lock_of(key):
            cached = self._cache.get(key)
            if cached is not None and cached.version == version and cached.covers(lo, hi):
                return cached.summary
            target = self._catalog.for_tenant(tenant)[subject]
            lake = _lake_of(self._store)
            fresh = cached is None or cached.version != version
            days: set[date] = set() if fresh or cached is None else cached.days
            if lake is not None:
                summary = _LakeSidecar(lake, tenant, target).update(window, deadline)
            else:
                known = None if fresh or cached is None else cached.summary
                summary = self._from_days(tenant, target, window, known, days, deadline)
            # Beyond the data's first and last ``ts`` there is nothing to summarise.
            arrays = self.partition_arrays(tenant, subject)
            if not arrays.rows.size or lo <= float(arrays.ts_min.min()):
                lo = -math.inf
            if not arrays.rows.size or hi >= float(arrays.ts_max.max()):
                hi = math.inf
            covered = _Covered(version, lo, hi, summary, days)
            if cached is not None and cached.version == version and cached.touches(lo, hi):
                covered.since, covered.until = min(lo, cached.since), max(hi, cached.until)
            self._cache[key] = covered
            return summary

    def _lock_of(self, key: tuple[str, str]) -> threading.Lock:
        found = self._locks.get(key)
        if found is None:
            with self._lock:
                found = self._locks.setdefault(key, threading.Lock())
        return found

    def _from_days(
        self,
        tenant: str,
        subject: Subject,
        window: Window | None,
        summary: SubjectSummary | None,
        done: set[date],
        deadline: Deadline,
    ) -> SubjectSummary:
        """A store without sidecars: add the days of ``window`` not in ``done`` to ``summary``
        (and to ``done``)."""
        parts = self._store.stats(tenant, subject.name)
        lo, hi = (-math.inf, math.inf) if window is None else window
        days = sorted({p.day for p in parts if _us(p.ts_max) >= lo and _us(p.ts_min) <= hi} - done)
        summary = summary or SubjectSummary()
        if not days:
            return summary
        deadline.check("safety")
        start = datetime.combine(days[0], datetime.min.time(), UTC)
        end = datetime.combine(days[-1], datetime.max.time(), UTC)
        frame = self._store.scan(tenant, subject, start, end).frame
        if len(days) != (days[-1] - days[0]).days + 1:  # some days between are done already
            frame = frame.filter(pl.col("ts").dt.date().is_in(days))
        summary = summary.merge(summarize(subject, frame.collect()))
        done.update(days)
        return summary


@dataclass(slots=True)
class _Covered:
    """A summary and what it covers: at ``version``, all the data from ``since`` to ``until``
    (µs, infinite at an end beyond the data)."""

    version: int
    since: float
    until: float
    summary: SubjectSummary
    days: set[date] = field(default_factory=set)
    """For stores without sidecars: the days summarised."""

    def covers(self, lo: float, hi: float) -> bool:
        return self.since <= lo and hi <= self.until

    def touches(self, lo: float, hi: float) -> bool:
        return lo <= self.until and self.since <= hi


def _lake_of(store: Store) -> Any:
    """The lake whose files (and sidecars) back ``store``, if any (an indexed lake has one)."""
    from pql.storage.indexed import IndexedLake
    from pql.storage.lake import Lake

    if isinstance(store, IndexedLake):
        store = store.lake  # its sidecars: summarising never loads the index
    return store if isinstance(store, Lake) else None  # an S3 lake keeps no sidecars


class _Bounded:
    """A :class:`StoreStats` whose summaries check one query's deadline."""

    def __init__(self, stats: StoreStats, deadline: Deadline) -> None:
        self._stats = stats
        self._deadline = deadline

    def partitions(self, tenant: str, subject: str) -> Sequence[PartitionStats]:
        return self._stats.partitions(tenant, subject)

    def partition_arrays(self, tenant: str, subject: str) -> PartitionArrays:
        return self._stats.partition_arrays(tenant, subject)

    def summary(
        self, tenant: str, subject: str, window: Window | None = None
    ) -> SubjectSummary | None:
        return self._stats.summary(tenant, subject, window, deadline=self._deadline)


class _LakeSidecar:
    """The sidecar summary of one tenant's subject in a lake: read, extend with new files, save."""

    def __init__(self, lake: Any, tenant: str, subject: Subject) -> None:
        self.lake = lake
        self.tenant = tenant
        self.subject = subject
        self.path: Path = lake.root / "_pql" / "stats" / tenant / f"{subject.name}.json"

    def update(
        self, window: Window | None = None, deadline: Deadline = NO_DEADLINE
    ) -> SubjectSummary:
        """The summary, extended with the files in ``window`` (all: ``None``) not in it yet.

        Files are read and summarised in batches: one file first, then twice as many each
        time (up to :data:`SUMMARY_BATCH_ROWS` rows), so a first query with a short deadline
        still gets one file done and a large ingest pays a few dozen summaries, not one per
        file. ``deadline`` is checked before each batch; what was done before it passed is
        saved, so the next query goes on from there.
        """
        done, summary = self._load()
        lo, hi = (-math.inf, math.inf) if window is None else window
        entries = self.lake.manifest().files_of(self.tenant, self.subject.name)
        if not done <= {e.path for e in entries}:  # a file was quarantined: start again
            done, summary = set(), SubjectSummary()
        new = [e for e in entries if e.path not in done and e.ts_max >= lo and e.ts_min <= hi]
        if not new:
            return summary
        self.lake.check_files(new)
        added: list[str] = []
        try:
            for batch in _batches(new):
                deadline.check("safety")
                summary = summary.merge(summarize(self.subject, self._read(batch)))
                added.extend(entry.path for entry in batch)
        finally:
            if added:
                self._save(sorted({*done, *added}), summary)
        return summary

    def _read(self, entries: Sequence[FileEntry]) -> pl.DataFrame:
        try:
            return pl.scan_parquet(
                [str(self.lake.root / entry.path) for entry in entries],
                schema=self.subject.polars_schema(),
                missing_columns="insert",
                extra_columns="ignore",
                hive_partitioning=False,
                glob=False,
            ).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise self.lake.read_error(entries, exc) from None

    def _load(self) -> tuple[set[str], SubjectSummary]:
        """The files summarized and their summary; nothing when the sidecar cannot be used.

        A sidecar that is absent, damaged (truncated, not an object, wrong fields) or from
        another Polars version is rebuilt from the data files, never an error.
        """
        try:
            raw = json.loads(self.path.read_bytes())
            if (
                isinstance(raw, dict)
                and raw.get("format") == _FORMAT
                and raw.get("hash") == _HASH_ID
                and isinstance(raw.get("files"), list)
                and all(isinstance(f, str) for f in raw["files"])
            ):
                return set(raw["files"]), SubjectSummary.from_json(raw["summary"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            pass  # absent, unreadable or from another Polars version: rebuild from the files
        return set(), SubjectSummary()

    def _save(self, files: list[str], summary: SubjectSummary) -> None:
        payload = {"format": _FORMAT, "hash": _HASH_ID, "files": files}
        payload["summary"] = summary.to_json()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
            temp.write_text(json.dumps(payload, separators=(",", ":")))
            os.replace(temp, self.path)
        except OSError:
            pass  # a read-only lake: the summary stays in memory only


def _batches(entries: Sequence[FileEntry]) -> Iterator[list[FileEntry]]:
    """``entries`` in order, in batches of 1, 2, 4, ... files, each under
    :data:`SUMMARY_BATCH_ROWS` rows unless it is one file."""
    batch: list[FileEntry] = []
    rows, size = 0, 1
    for entry in entries:
        if batch and (len(batch) == size or rows + entry.rows > SUMMARY_BATCH_ROWS):
            yield batch
            batch, rows, size = [], 0, 2 * size
        batch.append(entry)
        rows += entry.rows
    if batch:
        yield batch


class _NoStats:
    """No statistics: every subject is empty (the estimate of an empty store)."""

    def partitions(self, tenant: str, subject: str) -> Sequence[PartitionStats]:
        return ()

    def partition_arrays(self, tenant: str, subject: str) -> PartitionArrays:
        return PartitionArrays.of(())

    def summary(
        self, tenant: str, subject: str, window: Window | None = None
    ) -> SubjectSummary | None:
        return None


NO_STATS: StatsProvider = _NoStats()
"""A :class:`StatsProvider` that knows of no data."""
