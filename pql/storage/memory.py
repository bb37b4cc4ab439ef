"""A :class:`~pql.storage.base.Store` kept in memory, for tests and notebooks.

Each (tenant, subject) is one Polars frame sorted by the subject's order columns (``ts`` first
for the built-in subjects), so a scan finds its window by binary search and slices it without
copying: scans are exact. For each of the subject's id columns (:attr:`~pql.catalog.Subject.ids`)
the frame also keeps a lookup (:class:`Lookup`), so :meth:`MemoryStore.lookup` reads the rows
holding a few values (or nulls) without scanning the window.

A tenant whose rows are stored in several regions, as loaded from the snapshots of its buckets
(:mod:`pql.storage.snapshots`), is kept in those parts, each sorted with its own lookups, for
good: sorting them into one table would cost a restart seconds of CPU and could not be saved
(a snapshot never holds rows of two regions). A scan merges the parts' windows in ``ts`` order.

The columns a join may use also get join codes (:mod:`pql.storage.codes`), one domain per
tenant and column name, made again whenever a tenant's rows change:
:meth:`MemoryStore.scan_coded` reads them beside a window's rows.
"""

from __future__ import annotations

import functools
import itertools
import threading
from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import numpy as np

# Imported with pql, not by the first query that needs it: Polars looks for numpy.ma's masked
# arrays whenever it makes a Series of a NumPy array (a restart's first load and query do), and
# that first look imports numpy.ma, 10-40 ms with every other thread waiting for it.
import numpy.ma
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InternalError, PQLError
from pql.storage.base import (
    DAY,
    JOIN_CODE,
    REGION,
    IngestReport,
    PartitionStats,
    Scan,
    arrow_array,
    conform,
    count_partitions,
    current_subject,
    empty_frame,
    micros,
    project,
    sort_columns,
    split_duplicates,
    ts_micros,
    with_partition_keys,
)
from pql.storage.codes import HASH_SEED, JoinCodes, code_values, join_columns, prove
from pql.storage.rollups import RollupRead, Rollups, RollupSpec
from pql.storage.validate import check_extras, extra_columns, validate

__all__ = ["Lookup", "MemoryStore"]

_HASH_SEED = HASH_SEED
"""The seed of the hashes a :class:`Lookup` sorts: the join codes' (equal hashes, equal codes).
Part of the snapshot format: lookups saved with one seed are useless with another
(:data:`pql.storage.snapshots.FORMAT` changes with it)."""

LOOKUP_SHARE = 0.25
"""A lookup whose rows are more than this share of the window's (and more than
:data:`LOOKUP_ROWS`) is declined: gathering that many rows costs more than filtering the
window's slice."""

LOOKUP_ROWS = 1024
"""A lookup of at most this many rows is taken whatever the window's share."""

LOOKUP_MIN_WINDOW = 32_768
"""A window of fewer rows is scanned, not looked up: filtering a small slice costs no more than
finding and gathering the rows (measured: even at about 12,000 rows, ``benchmarks/lookup.py``)."""


def string_columns(schema: Mapping[str, pl.DataType], names: Sequence[str]) -> list[str]:
    """Those of ``names`` that are string columns in ``schema``: the id columns that get a
    :class:`Lookup`."""
    return [name for name in names if schema.get(name) == pl.String]


_CODE_SAMPLE = 257
"""How many rows, spread over the column, saved join codes are checked on before use."""


def _codes_agree(values: pl.Series, codes: npt.NDArray[np.uint64]) -> bool:
    """Whether the saved ``codes`` (row order, 0 for a null) are ``values``' hashes at
    :data:`_CODE_SAMPLE` rows spread over the column, the first and last among them: a file
    that is not this column's codes (truncated, shifted, another column's) fails; the rows
    file it lies beside is trusted as much."""
    if len(codes) != len(values):
        return False
    if not len(values):
        return True
    at = np.unique(np.linspace(0, len(values) - 1, num=_CODE_SAMPLE).astype(np.int64))
    expected = code_values(values.gather(at)).fill_null(0).to_numpy()
    return bool(np.array_equal(expected, codes[at]))


@dataclass(frozen=True, slots=True)
class Lookup:
    """One string column's rows by value: the 64-bit hashes of its non-null values, sorted, with
    each one's row, and the rows holding null, ascending. 12 bytes a row (4 for a null).

    Equal hashes of different values only add rows: whoever reads rows by lookup applies the
    exact predicate to them afterwards.
    """

    hashes: npt.NDArray[np.uint64]
    rows: npt.NDArray[np.uint32]
    nulls: npt.NDArray[np.uint32]
    codes: npt.NDArray[np.uint64] | None = None
    """The same hashes in row order (0 for a null), when a snapshot saved them: the column's
    join codes without putting ``hashes`` back in row order (:meth:`_Table.code_values`).
    Shared with those codes, so not counted in :attr:`nbytes`."""

    @classmethod
    def build(cls, values: pl.Series) -> Lookup:
        missing = values.is_null().to_numpy()
        present = np.flatnonzero(~missing).astype(np.uint32)
        hashes = values.hash(seed=_HASH_SEED).to_numpy()[present]
        # NumPy's sort, not Polars': it runs in this thread, and Polars' would take its thread
        # pool for the whole sort of a large tenant's column (a second), where every query's
        # work waits its turn. Rows of equal hashes may come in any order (find sorts them).
        order = np.argsort(hashes)
        nulls = np.flatnonzero(missing).astype(np.uint32)
        return cls(hashes[order], present[order], nulls)

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.rows.nbytes + self.nulls.nbytes)

    def fits(self, rows: int) -> bool:
        """Whether this can be the lookup of a column of ``rows`` rows (one read back from a
        file is checked before use): one entry a row, the hashes sorted, every row inside,
        the null rows ascending."""
        present, nulls = len(self.hashes), len(self.nulls)
        if len(self.rows) != present or present + nulls != rows:
            return False
        if self.codes is not None and len(self.codes) != rows:
            return False
        if (present and int(self.rows.max()) >= rows) or (nulls and int(self.nulls[-1]) >= rows):
            return False
        unsorted = bool(np.any(self.hashes[1:] < self.hashes[:-1]))
        return not unsorted and not bool(np.any(self.nulls[1:] <= self.nulls[:-1]))

    def find(self, values: Collection[str], nulls: bool, lo: int, hi: int) -> npt.NDArray[np.int64]:
        """The rows in ``[lo, hi)`` that may hold one of ``values`` (or null, with ``nulls``),
        ascending: every row that does, and rarely one whose value only shares a hash."""
        parts: list[npt.NDArray[np.uint32]] = []
        if values:
            keys = _hashes(frozenset(values))
            left = np.searchsorted(self.hashes, keys, side="left").tolist()
            right = np.searchsorted(self.hashes, keys, side="right").tolist()
            parts += [self.rows[a:b] for a, b in zip(left, right, strict=True) if b > a]
        if nulls:
            first, last = np.searchsorted(self.nulls, [lo, hi], side="left").tolist()
            parts.append(self.nulls[first:last])
        if not parts:
            return np.empty(0, dtype=np.int64)
        found = np.concatenate(parts).astype(np.int64)
        found = found[(found >= lo) & (found < hi)]
        found.sort()
        return found


@functools.lru_cache(maxsize=1024)
def _hashes(values: frozenset[str]) -> npt.NDArray[np.uint64]:
    """The distinct hashes of ``values``, sorted (a dashboard asks for the same ids again)."""
    found = np.unique(pl.Series(sorted(values), dtype=pl.String).hash(seed=_HASH_SEED))
    found.flags.writeable = False
    return found


_ROWS_SERIAL = itertools.count()
"""Numbers the rows each :class:`_Table` is built on (``next`` on it is atomic)."""

_WINDOWS_KEPT = 64
"""How many window lengths a table keeps its last rows of (:meth:`_Table.window`)."""
_BEFORE_ALL, _AFTER_ALL = -(2**63), 2**63
"""Bounds below and above every µs value, for a window that starts or ends beyond the rows."""


@dataclass(frozen=True, slots=True)
class _Table:
    """The rows of one tenant's subject (or of one of its parts, :class:`_Split`), sorted, with
    the first row of each UTC day and a lookup for each id column."""

    frame: pl.DataFrame
    day_starts: tuple[int, ...]
    ts_us: npt.NDArray[np.int64]
    """The ``ts`` column as µs since the epoch (a view of the frame's buffer when possible)."""
    lookups: Mapping[str, Lookup]
    frame_bytes: int
    """The frame's bytes: the mapped file's size, or Polars' estimate (taken once: it walks
    every string view)."""
    unchecked: Mapping[str, Lookup]
    """Lookups read back with the frame, not used until :meth:`with_lookups` has checked that
    they fit it (a pass over each: done after a load, while scans answer)."""
    codes: Mapping[str, JoinCodes] = field(default_factory=dict)
    """The join codes of the columns a join may use (:func:`_with_join_codes`)."""
    rows: int = field(default_factory=lambda: next(_ROWS_SERIAL))
    """Which rows these are: a number no other table's rows get (kept when lookups are added,
    which changes no row), for :meth:`MemoryStore.rows_keys`."""
    _windows: dict[int, tuple[int, int, int, int, int, int]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """The last rows found for a window of each length (µs): ``(lo, hi)`` and the starts and
    ends that find the same rows (see :meth:`window`)."""

    @classmethod
    def build(
        cls,
        frame: pl.DataFrame,
        ids: Sequence[str] = (),
        saved: Mapping[str, Lookup] | None = None,
        frame_bytes: int | None = None,
    ) -> _Table:
        """``frame`` (sorted) as a table with a lookup of each of ``ids`` (string columns only):
        the one in ``saved`` (read back with ``frame``, :mod:`pql.storage.snapshots`) if it
        fits, else built; the others of ``saved`` wait for :meth:`with_lookups`.
        ``frame_bytes``: what the frame takes, when known (a mapped file's size)."""
        micros_ = ts_micros(frame).to_numpy().astype(np.int64, copy=False)
        size = int(frame.estimated_size()) if frame_bytes is None else frame_bytes
        table = cls(frame, _day_starts(micros_), micros_, {}, size, dict(saved or {}))
        return table.with_lookups(ids)

    def with_lookups(self, ids: Sequence[str]) -> _Table:
        """This table with a lookup of each of ``ids`` it lacks (string columns only): the one
        read back with it if it fits the rows (:meth:`Lookup.fits`), else built; its saved
        join codes only if they agree with the column (:func:`_codes_agree`)."""
        added: dict[str, Lookup] = {}
        for name in string_columns(self.frame.schema, ids):
            if name in self.lookups:
                continue
            saved = self.unchecked.get(name)
            if saved is None or not saved.fits(self.frame.height):
                saved = Lookup.build(self.frame.get_column(name))
            elif saved.codes is not None and not _codes_agree(
                self.frame.get_column(name), saved.codes
            ):  # not this column's codes: made from the lookup instead (and saved again)
                saved = replace(saved, codes=None)
            added[name] = saved
        if not added:
            return self
        unchecked = {k: v for k, v in self.unchecked.items() if k not in added}
        return replace(self, lookups={**self.lookups, **added}, unchecked=unchecked)

    @property
    def parts(self) -> tuple[_Table, ...]:
        return (self,)

    def code_values(self, name: str) -> pl.Series:
        """The codes of column ``name``: the ones kept, else its lookup's hashes put back in
        row order (the codes share their seed; no string is hashed again, and the query
        engine's threads are left to the queries), else made."""
        kept = self.codes.get(name)
        if kept is not None:
            return kept.values
        lookup = self.lookups.get(name)
        if lookup is None:
            return code_values(self.frame.get_column(name))
        if lookup.codes is not None:  # saved in row order (checked): mapped, nothing to scatter
            codes = lookup.codes
        else:  # a scatter over the whole column (most of a mapped index's finishing)
            codes = np.zeros(self.frame.height, dtype=np.uint64)
            codes[lookup.rows] = lookup.hashes
        missing = np.zeros(self.frame.height, dtype=np.bool_)
        missing[lookup.nulls] = True
        return pl.Series(name, arrow_array(codes, missing))

    @property
    def nbytes(self) -> int:
        """The rows (:attr:`frame_bytes`), the ts index, the lookups (checked or not) and the
        join codes."""
        kept = [*self.lookups.values(), *self.unchecked.values()]
        lookups = sum(lookup.nbytes for lookup in kept)
        codes = sum(found.nbytes for found in self.codes.values())
        return self.frame_bytes + self.ts_us.nbytes + lookups + codes

    def window(self, start: datetime, end: datetime) -> tuple[int, int]:
        """The rows ``lo`` (inclusive) to ``hi`` (exclusive) with ``start <= ts <= end``.

        A window that moves with the clock (a dashboard's, a service's) mostly finds the rows
        it found a moment ago: the last answer for each window length is kept with the starts
        and ends that give it (between the rows around its ends), and reused without a search.
        """
        first, last = micros(start), micros(end)
        known = self._windows.get(last - first)
        if known is not None:
            lo, hi, start_above, start_upto, end_from, end_below = known
            if start_above < first <= start_upto and end_from <= last < end_below:
                return lo, hi
        # Binary search on the µs values (NumPy, no query engine round trip; both ends in one
        # call, a third of the time of two); the first row at or after ``end`` + 1µs ends it.
        lo, after = self.ts_us.searchsorted((first, last + 1)).tolist()
        hi = max(lo, after)
        ts, n = self.ts_us, len(self.ts_us)
        if len(self._windows) >= _WINDOWS_KEPT:  # many lengths asked: start again
            self._windows.clear()
        self._windows[last - first] = (
            lo,
            hi,
            int(ts[lo - 1]) if lo else _BEFORE_ALL,  # the same lo for starts above this
            int(ts[lo]) if lo < n else _AFTER_ALL,  # ... and up to this
            int(ts[after - 1]) if after else _BEFORE_ALL,  # the same end for ends from this
            int(ts[after]) if after < n else _AFTER_ALL,  # ... and below this
        )
        return lo, hi

    def days_in(self, lo: int, hi: int) -> int:
        """How many distinct days rows ``lo`` (inclusive) to ``hi`` (exclusive) span."""
        if hi <= lo:
            return 0
        return bisect_right(self.day_starts, hi - 1) - bisect_right(self.day_starts, lo) + 1

    def days_of(self, rows: npt.NDArray[np.int64]) -> int:
        """How many distinct days the (ascending) ``rows`` are on."""
        if not len(rows):
            return 0
        days = np.searchsorted(np.asarray(self.day_starts), rows, side="right")
        return int(np.count_nonzero(np.diff(days))) + 1

    def gather(
        self, rows: npt.NDArray[np.int64], names: Sequence[str], subject: Subject
    ) -> pl.LazyFrame:
        """The ``names`` columns of ``rows``; a column the stored rows lack (an extra ingested
        later) is null, as :func:`~pql.storage.base.conform` makes it."""
        have = self.frame.columns
        frame = self.frame[rows, [n for n in names if n in have]].lazy()
        if all(n in have for n in names):
            return frame
        schema = subject.polars_schema()
        return frame.with_columns(
            pl.lit(None, schema[n]).alias(n) for n in names if n not in have
        ).select(names)


@dataclass(frozen=True, slots=True)
class _Split:
    """A tenant's subject kept in several parts (one per storage region, as mapped from
    snapshots), each a sorted :class:`_Table` with its own lookups."""

    parts: tuple[_Table, ...]

    @property
    def frame(self) -> pl.DataFrame:
        """The parts' rows, one after another (no copy)."""
        return pl.concat([p.frame for p in self.parts], how="vertical", rechunk=False)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def with_lookups(self, ids: Sequence[str]) -> _Split:
        """These parts, each with a lookup of each of ``ids`` it lacks."""
        parts = tuple(part.with_lookups(ids) for part in self.parts)
        same = all(new is old for new, old in zip(parts, self.parts, strict=True))
        return self if same else _Split(parts)


def _with_join_codes(
    tables: Mapping[str, _Table | _Split],
    columns: Mapping[str, Sequence[str]],
    proved: Collection[str] = (),
) -> dict[str, _Table | _Split]:
    """One tenant's ``tables`` (by subject) with the join codes of ``columns`` (by subject,
    :func:`~pql.storage.codes.join_columns`): for each column name, over every subject that has
    it, in a new domain if :func:`~pql.storage.codes.prove` finds one (otherwise the tables are
    left without that column's codes, and joins on it compare the values). A column whose
    tables all hold codes of one domain already is left as it is; one of ``proved`` is not
    counted again (:meth:`MemoryStore.proved`)."""
    found = dict(tables)
    by_name: dict[str, list[str]] = {}
    for subject, names in columns.items():
        table = tables.get(subject)
        if table is not None:
            for name in string_columns(table.parts[0].frame.schema, names):
                by_name.setdefault(name, []).append(subject)
    for name, subjects in by_name.items():
        parts = [part for subject in subjects for part in found[subject].parts]
        domains = {part.codes[name].domain if name in part.codes else None for part in parts}
        if len(domains) == 1 and None not in domains:
            continue
        made = {id(part): part.code_values(name) for part in parts}
        values = [part.frame.get_column(name) for part in parts]
        domain = prove(values, list(made.values()), proved=name in proved)
        for subject in subjects:
            coded = tuple(
                replace(part, codes=_codes_with(part, name, domain, made[id(part)]))
                for part in found[subject].parts
            )
            found[subject] = coded[0] if isinstance(found[subject], _Table) else _Split(coded)
    return found


def _codes_with(
    part: _Table, name: str, domain: int | None, values: pl.Series
) -> dict[str, JoinCodes]:
    """``part``'s codes with ``name``'s set to ``values`` in ``domain`` (dropped for ``None``)."""
    codes = {k: v for k, v in part.codes.items() if k != name}
    if domain is not None:
        codes[name] = JoinCodes(domain, values)
    return codes


_DAY_US = 86_400_000_000


def _day_starts(ts: npt.NDArray[np.int64]) -> tuple[int, ...]:
    """The first row of each UTC day of ``ts`` (µs since the epoch, ascending): the first row at
    or after each midnight, found by binary search (a restart maps millions of rows, over a
    few hundred days), or by one pass when the rows span more days than they are."""
    if not len(ts):
        return ()
    first, last = int(ts[0]) // _DAY_US, int(ts[-1]) // _DAY_US
    if last - first > len(ts):
        starts = np.flatnonzero(np.diff(ts // _DAY_US)) + 1
    else:
        midnights = np.arange(first + 1, last + 1, dtype=np.int64) * _DAY_US
        starts = np.unique(np.searchsorted(ts, midnights, side="left"))
    return (0, *starts.tolist())


def _window(
    table: _Table | _Split,
    subject: Subject,
    names: Sequence[str],
    start: datetime,
    end: datetime,
    coded: str | None = None,
) -> Scan:
    """The ``names`` columns of ``table``'s rows with ``start <= ts <= end`` (with ``coded``'s
    join codes as :data:`~pql.storage.base.JOIN_CODE`), a zero-copy slice of each part."""
    windows = [(part, *part.window(start, end)) for part in table.parts]
    frames: list[pl.LazyFrame] = []
    for part, lo, hi in windows:
        rows = conform(part.frame.slice(lo, hi - lo), subject)
        if coded is not None:
            rows = rows.hstack([part.codes[coded].values.slice(lo, hi - lo).alias(JOIN_CODE)])
        # The projection stays lazy so it runs inside the query's collect, and several parts'
        # windows are merged there.
        frames.append(rows.lazy().select([*names, *([JOIN_CODE] if coded else [])]))
    merged, ordered = _in_order(frames, names)
    days = sum(part.days_in(lo, hi) for part, lo, hi in windows)
    sizes = [hi - lo for _, lo, hi in windows]
    parts = tuple(zip(frames, sizes, strict=True)) if ordered and len(frames) > 1 else ()
    domain = None if coded is None else table.parts[0].codes[coded].domain
    times = tuple(part.ts_us[lo:hi] for part, lo, hi in windows) if ordered else ()
    return Scan(
        merged,
        days,
        sum(sizes),
        True,
        single_tenant=True,
        source="memory",
        ordered=ordered,
        parts=parts,
        codes=domain,
        times=times,
    )


def _in_order(frames: Sequence[pl.LazyFrame], names: Sequence[str]) -> tuple[pl.LazyFrame, bool]:
    """The rows of ``frames`` (each sorted by ``ts``) as one frame, and whether it is in ``ts``
    order: merged (a linear merge, no sort) when ``ts`` is among ``names``."""
    if len(frames) == 1:
        return frames[0], True
    if "ts" not in names:
        return pl.concat(frames, how="vertical", rechunk=False), False
    return functools.reduce(lambda left, right: left.merge_sorted(right, "ts"), frames), True


class MemoryStore:
    """Rows in memory, per tenant and subject, deduplicated and sorted like a :class:`Lake`.

    >>> from pql.catalog import Catalog, RECEIPTS
    >>> store = MemoryStore(Catalog())
    >>> store.tenants()
    ()
    """

    def __init__(self, catalog: Catalog, *, rollups: bool = True) -> None:
        self._catalog = catalog
        self.rollups = Rollups(catalog) if rollups else None
        """Per-day partial aggregates kept at ingest (:mod:`pql.storage.rollups`), or None."""
        self._tables: dict[tuple[str, str], _Table | _Split] = {}
        self._versions: dict[str, int] = {}
        self._extras: dict[str, dict[str, dict[str, DataType]]] = {}
        self._stats: dict[tuple[str, str], list[PartitionStats]] = {}
        self._proved: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        """The catalog this store validates against and widens with extra columns."""
        return self._catalog

    def ingest(self, subject: Subject, data: pl.DataFrame | pa.Table) -> IngestReport:
        """Validate ``data``, drop duplicates and merge the new rows; see :class:`Store`."""
        frame = validate(subject, data, self._catalog)
        with self._lock:
            declared = current_subject(self._catalog, subject)
            # Another ingest may have given a tenant of ``frame`` an extra column since it was
            # validated: the check of the extra columns and the write are one step, here.
            frame = check_extras(declared, frame, self._catalog)
            stored = {
                tenant: table.frame.get_column(declared.key)
                for tenant in frame.get_column("tenant").unique().to_list()
                if (table := self._tables.get((tenant, declared.name))) is not None
            }
            new, duplicate_keys, duplicates = split_duplicates(declared, frame, stored)
            tenants: tuple[str, ...] = ()
            partitions = 0
            if new.height:
                partitions = count_partitions(with_partition_keys(declared, new))
                tenants = self._merge(declared, new)
        return IngestReport(
            subject=declared.name,
            rows_in=frame.height,
            written=new.height,
            duplicates=duplicates,
            tenants=tenants,
            partitions=partitions,
            duplicate_keys=duplicate_keys,
        )

    def load_stored(
        self,
        tenant: str,
        subject: Subject,
        rows: pl.DataFrame | Sequence[pl.DataFrame],
        *,
        lookups: bool = True,
        ordered: bool = False,
        partials: Sequence[pl.DataFrame] = (),
        saved: Sequence[Mapping[str, Lookup]] = (),
        sizes: Sequence[int | None] = (),
    ) -> None:
        """Keep ``rows``, all of ``tenant``'s stored rows of ``subject``, as read back from a
        store that validated and deduplicated them when they were ingested (an index of a
        :class:`~pql.storage.lake.Lake`): they are only conformed, sorted and rolled up, not
        checked again. For a store that holds none of ``tenant``'s ``subject`` yet.
        ``lookups=False`` leaves the id columns' lookups to :meth:`add_lookups`.
        ``ordered`` says ``rows`` are already conformed and sorted (a snapshot,
        :mod:`pql.storage.snapshots`): they are kept as they are, without a copy. ``rows`` may
        be several parts (one per storage region): ordered, each part is sorted and they are
        kept apart, each with its lookups; otherwise they are put together first.
        ``partials``, when given, are the rollup partials of ``rows`` (in parts), kept instead
        of computing them again; ``saved``, when given with ``ordered``, the lookups of each
        part as read back with it (the empty parts included), kept instead of building them,
        and ``sizes`` the bytes each part takes (the files mapped; Polars' estimate walks every
        string view of a part, a tenth of a large tenant's map)."""
        if isinstance(rows, pl.DataFrame):
            rows = [rows]
        if not rows:
            raise InternalError("PQL-X061", "an index was loaded from no parts")
        given: list[Mapping[str, Lookup]] = [*saved, *[{}] * (len(rows) - len(saved))]
        known: list[int | None] = [*sizes, *[None] * (len(rows) - len(sizes))]
        kept = list(zip(rows, given, known, strict=True))
        # The empty parts add nothing (one is kept when all are empty: the subject's schema).
        kept = [part for part in kept if part[0].height] or kept[:1]
        if not ordered and len(kept) > 1:  # to be sorted as one
            kept = [(pl.concat([frame for frame, _, _ in kept], how="vertical"), {}, None)]
        frames = [frame for frame, _, _ in kept]
        whole = frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)
        with self._lock:
            declared = current_subject(self._catalog, subject)
            extras = extra_columns(declared, whole)
            if extras:
                self._catalog.add_extras(tenant, declared.name, extras)
                mine = self._extras.setdefault(tenant, {}).setdefault(declared.name, {})
                for name, type_ in extras.items():
                    mine.setdefault(name, type_)
            current = current_subject(self._catalog, declared, tenant)
            key = (tenant, declared.name)
            ids = current.ids if lookups else ()
            if not ordered:  # sorted here: no lookup saved with other row numbers applies
                whole = conform(whole, current).sort(sort_columns(current)).rechunk()
                kept = [(whole, {}, None)]
            tables = tuple(_Table.build(frame, ids, found, size) for frame, found, size in kept)
            self._tables[key] = tables[0] if len(tables) == 1 else _Split(tables)
            if lookups:
                self._code_locked(tenant)
            if self.rollups is not None and partials:
                self.rollups.add_partials(tenant, declared, partials)
            elif self.rollups is not None:
                self.rollups.add(tenant, declared, whole)
            self._stats.pop(key, None)
            self._versions[tenant] = self._versions.get(tenant, 0) + 1

    def proved(self, tenant: str, columns: Collection[str]) -> None:
        """Say that ``tenant``'s values of ``columns``, as loaded, were found to share no join
        code before (the snapshots they were mapped from say so): :meth:`add_lookups` then
        makes their codes without counting the values again. Forgotten at an ingest."""
        with self._lock:
            self._proved[tenant] = frozenset(columns)

    def codes_of(self, tenant: str, subject: str) -> tuple[Mapping[str, pl.Series], ...]:
        """The join codes' values of each part of ``tenant``'s ``subject`` by column (in the
        order of the parts, :meth:`lookups_of`); ``()`` when none is kept."""
        found = self._tables.get((tenant, subject))
        if found is None:
            return ()
        return tuple({k: v.values for k, v in part.codes.items()} for part in found.parts)

    def lookups_of(self, tenant: str, subject: str) -> tuple[Mapping[str, Lookup], ...]:
        """The lookups of each part of ``tenant``'s ``subject`` (one part unless it is kept in
        several, :meth:`load_stored`), in the order of the parts; ``()`` when none is kept."""
        found = self._tables.get((tenant, subject))
        return () if found is None else tuple(part.lookups for part in found.parts)

    def rows_keys(
        self,
        tenant: str,
        subject: Subject,
        windows: Sequence[tuple[datetime, datetime]],
        version: int | None = None,
    ) -> tuple[tuple[tuple[int, int, int], ...], ...] | None:
        """The rows :meth:`scan` reads for each window: each part's rows' number and the
        window's first and last row in it (``None``: the tenant has no such rows, or not at
        ``version``). The rollups change only with the rows (:meth:`ingest`,
        :meth:`load_stored`), so whole days with the same key read the same rollup rows."""
        if version is not None and version != self.version(tenant):
            return None
        _, table = self._stored(tenant, subject)
        if table is None:
            return None
        parts = table.parts
        return tuple(
            tuple((part.rows, *part.window(start, end)) for part in parts) for start, end in windows
        )

    def stored_key(self, tenant: str, subject: Subject) -> tuple[int, ...] | None:
        """Each part's number of rows (see :meth:`rows_keys`); ``None``: the tenant has none."""
        _, table = self._stored(tenant, subject)
        return None if table is None else tuple(part.rows for part in table.parts)

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        """Exactly the rows of ``tenant`` with ``start <= ts <= end``, as a zero-copy slice."""
        current, table = self._stored(tenant, subject)
        names = project(current, columns)
        if table is None:
            return Scan(
                empty_frame(current).select(names).lazy(), 0, 0, True, source="memory", ordered=True
            )
        return _window(table, current, names, start, end)

    def scan_coded(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None,
        column: str,
    ) -> Scan | None:
        """:meth:`scan`'s rows with ``column``'s join codes beside them (a zero-copy slice of
        them too), or ``None`` when ``column`` has none (or the tenant no such rows)."""
        current, table = self._stored(tenant, subject)
        if table is None:
            return None
        codes = [part.codes.get(column) for part in table.parts]
        domains = {None if found is None else found.domain for found in codes}
        if len(domains) != 1 or None in domains:
            return None
        return _window(table, current, project(current, columns), start, end, column)

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
        """The rows of ``tenant`` with ``start <= ts <= end`` whose id column ``column`` holds
        one of ``values`` (or null, with ``nulls``), in the order :meth:`scan` gives them, found
        by the column's lookup; a few more may come (the caller filters them exactly). ``None``
        when ``column`` has no lookup, or when :meth:`scan` and a filter are cheaper: the window
        is small (:data:`LOOKUP_MIN_WINDOW`) or the rows found are many of its rows
        (:data:`LOOKUP_SHARE`, :data:`LOOKUP_ROWS`)."""
        current, table = self._stored(tenant, subject)
        names = project(current, columns)
        if table is None:
            return self.scan(tenant, subject, start, end, columns)
        lookups = [got for part in table.parts if (got := part.lookups.get(column)) is not None]
        if len(lookups) < len(table.parts):  # a part's is not built (or checked) yet
            return None
        windows = [(part, *part.window(start, end)) for part in table.parts]
        size = sum(hi - lo for _, lo, hi in windows)
        if size < LOOKUP_MIN_WINDOW:
            return None
        found = [
            (part, lookup.find(values, nulls, lo, hi))
            for (part, lo, hi), lookup in zip(windows, lookups, strict=True)
        ]
        count = sum(len(rows) for _, rows in found)
        if count > max(LOOKUP_ROWS, LOOKUP_SHARE * size):
            return None
        frames = [part.gather(rows, names, current) for part, rows in found]
        rows, _ = _in_order(frames, names)
        days = sum(part.days_of(got) for part, got in found)
        return Scan(rows, days, count, True, single_tenant=True, source="memory")

    def add_lookups(self, budget: int | None = None) -> bool:
        """Build the id columns' lookups the tables ``load_stored(lookups=False)`` kept lack
        (each part's, for a tenant kept in parts), and their join codes, kept unless the
        store's bytes with them would exceed ``budget``; whether they were kept. Built outside
        the lock: scans go on meanwhile."""
        with self._lock:
            tables = dict(self._tables)
        catalog = self._catalog
        built = {
            (tenant, name): table.with_lookups(current_subject(catalog, catalog[name], tenant).ids)
            for (tenant, name), table in tables.items()
        }
        columns = join_columns(catalog)
        for tenant in {tenant for tenant, _ in built}:
            mine = {name: table for (t, name), table in built.items() if t == tenant}
            proved = self._proved.get(tenant, frozenset())
            for name, table in _with_join_codes(mine, columns, proved).items():
                built[(tenant, name)] = table
        built = {key: table for key, table in built.items() if table is not tables[key]}
        if not built:
            return True
        with self._lock:
            extra = sum(built[k].nbytes - tables[k].nbytes for k in built)
            if budget is not None and self.memory_bytes() + extra > budget:
                return False
            for key, table in built.items():
                if self._tables.get(key) is tables[key]:  # not replaced meanwhile
                    self._tables[key] = table
        return True

    def version(self, tenant: str) -> int:
        """How many ingests have stored rows for ``tenant``."""
        return self._versions.get(tenant, 0)

    def table(self, tenant: str, subject: str) -> pl.DataFrame | None:
        """``tenant``'s stored rows of ``subject``, sorted, or ``None`` (no copy)."""
        found = self._tables.get((tenant, subject))
        return None if found is None else found.frame

    def rows(self) -> int:
        """How many rows are stored, over all tenants and subjects."""
        return sum(t.frame.height for t in self._tables.values())

    def memory_bytes(self) -> int:
        """Bytes the stored rows, their ts index, their lookups and the rollups take (Polars'
        estimate for rows and rollups)."""
        tables = sum(t.nbytes for t in self._tables.values())
        return tables + (0 if self.rollups is None else self.rollups.nbytes())

    def tenants(self) -> tuple[str, ...]:
        """The tenants with stored rows, sorted."""
        return tuple(sorted({tenant for tenant, _ in self._tables}))

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        """``tenant``'s extra columns in this store: subject -> column -> type."""
        mine = self._extras.get(tenant, {})
        return {subject: dict(columns) for subject, columns in mine.items()}

    def storage_region(self, tenant: str, region: str) -> str:
        """Rows in memory have no buckets: the rows' region."""
        return region

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        """Rows in memory cannot be damaged: a failed read is never the data's fault."""
        return None

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        """Per (day, region) statistics of ``tenant``'s ``subject``, computed and cached."""
        key = (tenant, subject)
        cached = self._stats.get(key)
        if cached is None:
            table = self._tables.get(key)
            cached = [] if table is None else _stats_of(self._catalog, subject, table.frame)
            self._stats[key] = cached
        return list(cached)

    def rollup_specs(self) -> dict[str, RollupSpec]:
        """What this store rolls up, by subject (nothing with ``rollups=False``)."""
        return {} if self.rollups is None else self.rollups.specs()

    def rollup(self, tenant: str, subject: str, first: date, last: date) -> RollupRead:
        """``tenant``'s rollup rows of ``subject`` for the whole days ``first`` to ``last``."""
        if self.rollups is None:
            raise InternalError("PQL-X060", "a rollup was read from a store that keeps none")
        return self.rollups.read(tenant, subject, first, last)

    # -- internals -----------------------------------------------------------------------------

    def _stored(self, tenant: str, subject: Subject) -> tuple[Subject, _Table | _Split | None]:
        """``subject`` as ``tenant`` has it (its extra columns) and the tenant's rows of it."""
        current = current_subject(self._catalog, subject, tenant)
        return current, self._tables.get((tenant, current.name))

    def _merge(self, subject: Subject, new: pl.DataFrame) -> tuple[str, ...]:
        """Merge ``new`` rows into each tenant's sorted table; return the tenants touched.

        Each tenant that gets rows gets the extra columns of ``new`` (registered for all of
        them first, so that a refusal leaves no rows behind).
        """
        by_tenant = sorted(new.partition_by("tenant", as_dict=True).items())
        extras = extra_columns(subject, new)
        for (tenant,), _ in by_tenant:
            self._catalog.add_extras(str(tenant), subject.name, extras)
            mine = self._extras.setdefault(str(tenant), {}).setdefault(subject.name, {})
            for name, type_ in extras.items():
                mine.setdefault(name, type_)
        touched: list[str] = []
        for (tenant,), rows in by_tenant:
            if not isinstance(tenant, str):
                continue
            key = (tenant, subject.name)
            current = current_subject(self._catalog, subject, tenant)
            parts = [conform(rows, current)]
            if (old := self._tables.get(key)) is not None:
                parts.insert(0, conform(old.frame, current))
            merged = pl.concat(parts, how="vertical").sort(sort_columns(current))
            self._tables[key] = _Table.build(merged.rechunk(), current.ids)
            if self.rollups is not None:
                self.rollups.add(tenant, subject, rows)
            self._stats.pop(key, None)
            self._versions[tenant] = self._versions.get(tenant, 0) + 1
            touched.append(tenant)
        for tenant in touched:
            self._proved.pop(tenant, None)
            self._code_locked(tenant)
        return tuple(touched)

    def _code_locked(self, tenant: str) -> None:
        """Make ``tenant``'s join codes again (its rows changed); under the lock."""
        mine = {name: table for (t, name), table in self._tables.items() if t == tenant}
        for name, table in _with_join_codes(mine, join_columns(self._catalog)).items():
            self._tables[(tenant, name)] = table


def _stats_of(catalog: Catalog, subject: str, frame: pl.DataFrame) -> list[PartitionStats]:
    """Per (day, region) rows, estimated bytes and time range of one tenant's frame."""
    if frame.height == 0:
        return []
    row_bytes = frame.estimated_size() / frame.height
    keyed = with_partition_keys(catalog[subject], frame)
    groups = (
        keyed.group_by(DAY, REGION)
        .agg(
            rows=pl.len(),
            ts_min=pl.col("ts").min(),
            ts_max=pl.col("ts").max(),
        )
        .sort(DAY, REGION)
    )
    return [
        PartitionStats(
            day=row[DAY],
            region=row[REGION],
            rows=row["rows"],
            bytes=round(row["rows"] * row_bytes),
            ts_min=row["ts_min"],
            ts_max=row["ts_max"],
        )
        for row in groups.iter_rows(named=True)
    ]
