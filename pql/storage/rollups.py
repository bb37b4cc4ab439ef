"""Rollups: per-tenant, per-day partial aggregates that a store keeps up to date at ingest.

A rollup of a subject holds one row per UTC day and distinct combination of its **key** columns
(for receipts: tenant, region, workflow, status; for decisions: tenant, region, rule, effect,
policy_version) with the partial aggregates of the rows in it: the row count and, per
**measure** column, the sum, the non-null count, the minimum and the maximum (numbers) or only the
minimum and maximum (``ts``). Partials combine exactly: counts and sums add up, minima take the
smaller. So any aggregate over whole days whose ``WHERE`` and ``GROUP BY`` read only key columns
can be answered from the rollup rows of those days instead of the raw rows (the planner rule
:func:`pql.plan.rollups.use_rollups` decides when; :mod:`pql.execute.rollups` compiles it).

Ingest keeps rollups incremental: the new rows' partials are computed per day and merged into the
tenant's rollup frame, re-aggregating only the days the new rows touch.

>>> from datetime import date, datetime
>>> import polars as pl
>>> from pql.catalog import Catalog
>>> rollups = Rollups(Catalog())
>>> rows = pl.DataFrame({
...     "executionId": ["e1", "e2"], "tenant": ["acme"] * 2, "region": ["eu-west-1"] * 2,
...     "ts": [datetime(2026, 3, 1, 10), datetime(2026, 3, 1, 11)], "workflow": ["etl"] * 2,
...     "status": ["ok"] * 2, "latency_ms": [10.0, None], "cost_usd": [0.5, 0.25],
... }).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
>>> rollups.add("acme", Catalog()["receipts"], rows)
>>> got = rollups.read("acme", "receipts", date(2026, 3, 1), date(2026, 3, 1))
>>> got.rows, got.days
(1, 1)
>>> got.frame.select("__rows", "__sum(latency_ms)", "__count(latency_ms)").collect().row(0)
(2, 10.0, 1)
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Protocol, TypeVar, runtime_checkable
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt
import polars as pl

from pql.catalog import Catalog, Column, DataType, Subject
from pql.errors import InternalError
from pql.storage.base import has_region

__all__ = [
    "DAY",
    "DEFAULT_KEYS",
    "ROWS",
    "Rollup",
    "RollupRead",
    "RollupSpec",
    "RollupStore",
    "Rollups",
    "combine",
    "partial_name",
    "rollup_specs",
    "spec_for",
]

DAY = "__day"
"""The rollup column holding the UTC day of its rows."""

ROWS = "__rows"
"""The rollup column holding how many raw rows a rollup row stands for."""

DEFAULT_KEYS: Mapping[str, tuple[str, ...]] = {
    "receipts": ("tenant", "region", "workflow", "status"),
    "decisions": ("tenant", "region", "rule", "effect", "policy_version"),
}
"""The key columns rolled up per subject: the common ``WHERE`` and ``GROUP BY`` columns.

``tenant`` costs nothing (a rollup is per tenant) and lets ``WHERE tenant = ...`` and ``GROUP BY
tenant`` use the rollup too.
"""

_EPOCH_DAY = date(1970, 1, 1)

_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def partial_name(kind: str, column: str) -> str:
    """The name of one partial of one measure column, e.g. ``__sum(latency_ms)``."""
    return f"__{kind}({column})"


def kinds_of(column: Column) -> tuple[str, ...]:
    """The partials kept for a measure: sum, count, min and max of a number; min and max of ts."""
    if column.type.numeric:
        return ("sum", "count", "min", "max")
    return ("min", "max")


@dataclass(frozen=True, slots=True)
class RollupSpec:
    """What the rollup of one subject keeps.

    ``keys`` are the columns it is grouped by (with the day); ``measures`` the columns it keeps
    partials of (:func:`kinds_of`); ``never_null`` the columns ingest guarantees a value in, whose
    ``COUNT`` is the row count.
    """

    subject: str
    keys: tuple[Column, ...]
    measures: tuple[Column, ...]
    never_null: frozenset[str]

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.keys)

    @property
    def measure_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.measures)

    def columns(self) -> list[str]:
        """The rollup frame's columns, in order."""
        parts = [partial_name(k, m.name) for m in self.measures for k in kinds_of(m)]
        return [DAY, *self.key_names, ROWS, *parts]


def spec_for(subject: Subject, keys: Sequence[str] | None = None) -> RollupSpec | None:
    """The rollup spec of ``subject``: ``keys`` (default :data:`DEFAULT_KEYS`) that it has as
    required string columns, and its required numeric columns and ``ts`` as measures.

    ``None`` when no key applies (the subject is not rolled up).
    """
    wanted = DEFAULT_KEYS.get(subject.name, ()) if keys is None else tuple(keys)
    return _spec_for(subject, wanted)


@lru_cache(maxsize=256)
def _spec_for(subject: Subject, wanted: tuple[str, ...]) -> RollupSpec | None:
    """:func:`spec_for`, memoized: planning asks for the specs on every query."""
    key_cols = tuple(c for name in wanted if (c := subject.column(name)) is not None and _is_key(c))
    if not key_cols:
        return None
    taken = {c.name for c in key_cols}
    measures = tuple(
        c for c in subject.columns if c.required and c.type.numeric and c.name not in taken
    )
    ts = subject.column("ts")
    if ts is not None and ts.type is DataType.TIMESTAMP:
        measures = (*measures, ts)
    return RollupSpec(subject.name, key_cols, measures, _never_null(subject))


def rollup_specs(catalog: Catalog) -> dict[str, RollupSpec]:
    """The spec of every subject of ``catalog`` that is rolled up, by subject name.

    Planning asks on every query, so the answer is remembered per catalog while it holds the
    very same subjects (hashing each subject to find its memoized spec costs more than this).
    """
    subjects = tuple(catalog)
    known = _specs_of.get(catalog)
    if known is None or not _same(known[0], subjects):
        known = (subjects, {s.name: spec for s in subjects if (spec := spec_for(s)) is not None})
        _specs_of[catalog] = known
    return dict(known[1])


_specs_of: WeakKeyDictionary[Catalog, tuple[tuple[Subject, ...], dict[str, RollupSpec]]] = (
    WeakKeyDictionary()
)


def _same(before: tuple[Subject, ...], now: tuple[Subject, ...]) -> bool:
    return len(before) == len(now) and all(a is b for a, b in zip(before, now, strict=True))


def _is_key(column: Column) -> bool:
    return column.required and column.type is DataType.STRING


def _never_null(subject: Subject) -> frozenset[str]:
    """Columns validation fills in every row (see ``pql.storage.validate``)."""
    always = {"tenant", "ts", subject.key}
    if has_region(subject):
        always.add("region")
    always |= {c.name for c in subject.columns if c.required and not c.nullable}
    return frozenset(always)


@dataclass(frozen=True, slots=True)
class RollupRead:
    """Rollup rows of whole days for the executor: a lazy frame, its rows and distinct days."""

    frame: pl.LazyFrame
    rows: int
    days: int
    source: str = "memory"
    """What answered: ``"memory"`` or ``"index"`` (rollups kept in memory) or ``"partitions"``
    (computed from the lake's files of those days)."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """One tenant's rollup of one subject: a frame sorted by day, and its days as integers."""

    frame: pl.DataFrame
    day_numbers: npt.NDArray[np.int32]
    """The ``DAY`` column as days since 1970-01-01 (for binary search)."""

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Rollup:
        days = frame.get_column(DAY).to_physical().to_numpy()
        return cls(frame, days.astype(np.int32, copy=False))

    def merged(self, spec: RollupSpec, new: pl.DataFrame) -> Rollup:
        """This rollup with the partials ``new`` merged in: only the rows of days both already
        hold are re-aggregated; new days are appended."""
        touched = new.get_column(DAY).to_physical().to_numpy()
        overlap = np.isin(self.day_numbers, touched)
        if not overlap.any():
            return Rollup.of(_sorted(pl.concat([self.frame, new])))
        mask = pl.Series(overlap)
        redone = combine(spec, pl.concat([self.frame.filter(mask), new]))
        return Rollup.of(_sorted(pl.concat([self.frame.filter(~mask), redone])))

    def between(self, first: date, last: date) -> RollupRead:
        """The rollup rows of the days ``first`` to ``last`` (both included), zero-copy."""
        lo = int(np.searchsorted(self.day_numbers, _day_number(first), side="left"))
        hi = int(np.searchsorted(self.day_numbers, _day_number(last), side="right"))
        hi = max(lo, hi)
        days = self.day_numbers[lo:hi]
        distinct = int(np.count_nonzero(np.diff(days))) + 1 if hi > lo else 0
        return RollupRead(self.frame.slice(lo, hi - lo).lazy(), hi - lo, distinct)


class Rollups:
    """The rollups one store keeps: per (tenant, subject), merged at every ingest.

    ``keys`` overrides :data:`DEFAULT_KEYS` (subject -> key columns).
    """

    def __init__(self, catalog: Catalog, keys: Mapping[str, Sequence[str]] | None = None) -> None:
        self._catalog = catalog
        self._keys = dict(DEFAULT_KEYS if keys is None else keys)
        self._rollups: dict[tuple[str, str], Rollup] = {}
        self._specs: dict[str, tuple[Subject, RollupSpec | None]] = {}
        self._lock = threading.Lock()

    def spec(self, subject: str) -> RollupSpec | None:
        """The spec of ``subject``, or ``None`` if it is not rolled up."""
        found = self._catalog.get(subject)
        if found is None or subject not in self._keys:
            return None
        known = self._specs.get(subject)
        if known is not None and known[0] is found:  # asked on every query: hashing a
            return known[1]  # subject to find its cached spec costs more than this
        spec = spec_for(found, self._keys[subject])
        self._specs[subject] = (found, spec)
        return spec

    def specs(self) -> dict[str, RollupSpec]:
        """The spec of every rolled-up subject, by name."""
        return {name: spec for name in self._keys if (spec := self.spec(name)) is not None}

    def add(self, tenant: str, subject: Subject, rows: pl.DataFrame) -> None:
        """Merge the partials of ``rows`` (new, deduplicated rows of ``tenant``) into its rollup."""
        spec = self.spec(subject.name)
        if spec is None or rows.height == 0:
            return
        self._merge(tenant, subject, spec, partials(spec, rows))

    def add_partials(
        self, tenant: str, subject: Subject, new: pl.DataFrame | Sequence[pl.DataFrame]
    ) -> None:
        """Merge ``new``, partials computed already (:func:`partials`, e.g. kept in an index
        snapshot) of new rows of ``tenant``, into its rollup: one frame, or several (a tenant's
        parts, one per storage region) combined first, in one pass."""
        spec = self.spec(subject.name)
        frames = [new] if isinstance(new, pl.DataFrame) else list(new)
        frames = [frame for frame in frames if frame.height]
        if spec is None or not frames:
            return
        if len(frames) == 1:
            merged = frames[0]
        elif _apart(frames, (*(k for k in spec.key_names if k != "tenant"), DAY)):
            merged = pl.concat(frames)  # no group is in two of them: nothing to combine
        else:
            merged = combine(spec, pl.concat(frames))
        self._merge(tenant, subject, spec, merged)

    def _merge(self, tenant: str, subject: Subject, spec: RollupSpec, new: pl.DataFrame) -> None:
        key = (tenant, subject.name)
        with self._lock:
            old = self._rollups.get(key)
            self._rollups[key] = Rollup.of(_sorted(new)) if old is None else old.merged(spec, new)

    def read(self, tenant: str, subject: str, first: date, last: date) -> RollupRead:
        """The rollup rows of ``tenant``'s ``subject`` for the days ``first`` to ``last``."""
        found = self._rollups.get((tenant, subject))
        if found is not None:
            return found.between(first, last)
        spec = self.spec(subject)
        if spec is None:
            raise InternalError("PQL-X060", f"a rollup of {subject} was read but none is kept")
        return RollupRead(pl.DataFrame(schema=schema_of(spec)).lazy(), 0, 0)

    def nbytes(self) -> int:
        """The estimated memory the rollup frames take."""
        return sum(int(r.frame.estimated_size()) for r in self._rollups.values())

    def rows(self) -> int:
        """How many rollup rows are kept, over all tenants and subjects."""
        return sum(r.frame.height for r in self._rollups.values())


@runtime_checkable
class RollupStore(Protocol):
    """A store that keeps rollups (the memory store and the indexed lake)."""

    def rollup_specs(self) -> dict[str, RollupSpec]:
        """What the store rolls up, by subject (empty when rollups are off)."""
        ...

    def rollup(self, tenant: str, subject: str, first: date, last: date) -> RollupRead:
        """The rollup rows of ``tenant``'s ``subject`` for the whole days ``first`` to ``last``."""
        ...


def schema_of(spec: RollupSpec) -> pl.Schema:
    """The rollup frame's schema."""
    out: dict[str, pl.DataType] = {DAY: pl.Date()}
    out.update({c.name: c.type.polars for c in spec.keys})
    out[ROWS] = pl.Int64()
    for m in spec.measures:
        for kind in kinds_of(m):
            out[partial_name(kind, m.name)] = pl.Int64() if kind == "count" else m.type.polars
    return pl.Schema(out)


def partials(spec: RollupSpec, rows: _Frame) -> _Frame:
    """Per day and key, the partial aggregates of ``rows`` (one tenant's rows of the subject),
    eager or lazy as ``rows`` is."""
    exprs = [pl.len().cast(pl.Int64).alias(ROWS)]
    for m in spec.measures:
        exprs += [_first_partial(kind, m).alias(partial_name(kind, m.name)) for kind in kinds_of(m)]
    day = pl.col("ts").dt.date().alias(DAY)
    return (
        rows.group_by(day, *spec.key_names).agg(exprs).select(spec.columns()).cast(schema_of(spec))
    )


def _first_partial(kind: str, measure: Column) -> pl.Expr:
    """One partial of one measure over raw rows."""
    col = pl.col(measure.name)
    if kind == "sum":
        return col.sum().cast(measure.type.polars)
    if kind == "count":
        return col.count().cast(pl.Int64)
    return col.min() if kind == "min" else col.max()


def _merged_partial(kind: str, name: str) -> pl.Expr:
    """One partial over partials: counts and sums add up, extremes take the extreme."""
    col = pl.col(name)
    if kind in ("sum", "count"):
        return col.sum()
    return col.min() if kind == "min" else col.max()


def combine(spec: RollupSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Partials of the same day and key merged into one row."""
    exprs = [pl.col(ROWS).sum()]
    for m in spec.measures:
        exprs += [
            _merged_partial(kind, partial_name(kind, m.name)).alias(partial_name(kind, m.name))
            for kind in kinds_of(m)
        ]
    return (
        frame.group_by(DAY, *spec.key_names).agg(exprs).select(spec.columns()).cast(schema_of(spec))
    )


def _apart(frames: Sequence[pl.DataFrame], columns: Sequence[str]) -> bool:
    """Whether no two of ``frames`` can hold a row of the same group: for some column of the
    group (of ``columns``) the frames' ranges of values do not overlap, and at most one has
    nulls. The parts of a tenant kept in two regions usually differ in ``region``, so their
    partials are put together as they are instead of grouped again (grouping 8,000 rows took
    3-14 ms; a column's least and greatest value are one pass, without hashing). The caller
    passes the columns likeliest to differ first: the parts of one tenant share ``tenant`` and
    mostly their days."""
    for name in columns:
        columns_of = [frame.get_column(name) for frame in frames]
        if sum(column.null_count() > 0 for column in columns_of) > 1:
            continue
        ranges: list[tuple[Any, Any]] = sorted(
            (column.min(), column.max())
            for column in columns_of
            if column.null_count() < len(column)
        )
        if all(before[1] < after[0] for before, after in itertools.pairwise(ranges)):
            return True
    return False


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by day (stable: reads only need the days in order), in one chunk."""
    return frame.sort(DAY, maintain_order=True).rechunk()


def _day_number(day: date) -> int:
    return (day - _EPOCH_DAY).days
