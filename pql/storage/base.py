"""What every store offers: the :class:`Store` protocol, its result types and shared helpers.

A store keeps the rows of each subject per tenant. ``ingest`` validates, deduplicates (by the
subject's key, within a tenant) and appends; ``scan`` hands the executor a lazy frame of one
tenant and one subject, already narrowed to the days that overlap the query window. Both the
on-disk :class:`~pql.storage.lake.Lake` and the :class:`~pql.storage.memory.MemoryStore` share
the deduplication and partitioning helpers below, so they answer alike.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InputError, InternalError, PQLError

__all__ = [
    "DAY",
    "GLOBAL_REGION",
    "JOIN_CODE",
    "MAX_DUPLICATE_KEYS",
    "REGION",
    "IngestReport",
    "JoinCodeStore",
    "LookupStore",
    "Partition",
    "PartitionStats",
    "ResidentStore",
    "Scan",
    "Store",
    "arrow_array",
    "as_utc",
    "conform",
    "count_partitions",
    "current_subject",
    "empty_frame",
    "from_micros",
    "has_region",
    "micros",
    "partitions_of",
    "project",
    "provides",
    "sort_columns",
    "split_duplicates",
    "ts_micros",
    "with_partition_keys",
]

MAX_DUPLICATE_KEYS = 20
"""How many duplicate keys an :class:`IngestReport` lists."""

DAY = "__pql_day"
"""The temporary column holding each row's UTC day while partitioning."""

REGION = "__pql_region"
"""The temporary column holding each row's region while partitioning."""

JOIN_CODE = "__pql_join_code"
"""The column of a :meth:`JoinCodeStore.scan_coded` frame holding each row's join code."""

PART = "__pql_part"
"""The temporary column holding each row's (tenant, region, day) while partitioning."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

GLOBAL_REGION = "global"
"""The region of rows whose subject has no ``region`` column."""


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one ``ingest`` call did.

    ``tenants`` are the tenants that received rows; ``partitions`` the day partitions written
    (files for a lake, day slices for the memory store); ``duplicate_keys`` the first few keys
    that were skipped, in input order. ``files`` are the data files written, relative to the
    store's root (empty for a store without files).
    """

    subject: str
    rows_in: int
    written: int
    duplicates: int
    tenants: tuple[str, ...]
    partitions: int
    duplicate_keys: tuple[str, ...]
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scan:
    """Rows of one tenant and one subject for a time window, ready for the executor.

    ``frame`` holds at least the rows of the days overlapping the window, with the subject's full
    current schema (or the requested projection). ``exact`` says whether it is already narrowed
    to exactly ``start <= ts <= end``; when it is not, the executor applies that filter.
    ``rows`` counts the rows read before that filter, ``partitions`` the day partitions touched.
    ``single_tenant`` says the store guarantees every row is the scanned tenant's (the memory
    store keeps one frame per tenant); otherwise the executor also filters on ``tenant``.
    ``source`` says what answered: ``"partitions"`` (a lake's files), ``"index"`` (an indexed
    lake's memory) or ``"memory"`` (the memory store). ``ordered`` says the rows come in
    ``ts`` order (the memory store's slices), so the first rows of a window are a prefix.
    ``parts``, for rows kept in several parts each in ``ts`` order (a tenant of several storage
    regions), holds each part's frame and rows: ``frame`` is their merge, which a reader of the
    first rows of a window can skip (the first rows of each part hold those of the merge).
    ``codes``, for a :meth:`JoinCodeStore.scan_coded` read, names the domain of the codes in
    the :data:`JOIN_CODE` column (the frame and each part have it).
    ``times``, for ``ordered`` rows, may hold the ``ts`` of each part's rows (of the frame's,
    for one part) as µs since the epoch, so that a reader of the first rows finds where to cut
    without reading the column through the query engine.
    """

    frame: pl.LazyFrame
    partitions: int
    rows: int
    exact: bool
    single_tenant: bool = False
    source: str = "partitions"
    ordered: bool = False
    parts: tuple[tuple[pl.LazyFrame, int], ...] = ()
    codes: int | None = None
    times: tuple[npt.NDArray[np.int64], ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionStats:
    """Size and time range of one day partition of a tenant's subject in one region.

    ``files`` is how many data files (or in-memory slices) make up the partition.
    """

    day: date
    region: str
    rows: int
    bytes: int
    ts_min: datetime
    ts_max: datetime
    files: int = 1


@runtime_checkable
class Store(Protocol):
    """Where ingested rows live. Implemented by :class:`Lake` and :class:`MemoryStore`."""

    def ingest(self, subject: Subject, data: pl.DataFrame) -> IngestReport:
        """Validate, deduplicate and append ``data``; nothing is stored if it is invalid."""
        ...

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        """The rows of ``tenant`` in ``subject`` for the days overlapping ``[start, end]``."""
        ...

    def version(self, tenant: str) -> int:
        """A counter that grows with every ingest that stored rows for ``tenant``."""
        ...

    def tenants(self) -> tuple[str, ...]:
        """The tenants with stored rows, sorted."""
        ...

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        """``tenant``'s extra (non-required) columns as stored: subject -> column -> type."""
        ...

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        """Per (day, region) partition statistics of ``tenant``'s ``subject``, by day."""
        ...

    def storage_region(self, tenant: str, region: str) -> str:
        """The region whose bucket stores ``tenant``'s new rows of ``region`` (a tenant moved to
        another storage region keeps the rows' region as history, in its new home's buckets)."""
        ...

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        """After reading ``tenant``'s rows failed with ``exc``: the user-facing error that
        explains it (e.g. a damaged file, named), or ``None`` when the data is not the cause."""
        ...


@runtime_checkable
class LookupStore(Protocol):
    """A store that can read rows by an id column's values (the memory store and the indexed
    lake): the compiler reads ``col = v``, ``col IN (...)`` and ``col IS NULL`` filters on a
    subject's :attr:`~pql.catalog.Subject.ids` this way instead of scanning the window."""

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
        """At least the rows of ``tenant`` with ``start <= ts <= end`` whose ``column`` holds one
        of ``values`` (or null, with ``nulls``), in :meth:`Store.scan`'s order, exact in time
        and tenant; the caller applies its predicate to them. ``None``: scan instead."""
        ...


@runtime_checkable
class JoinCodeStore(Protocol):
    """A store that can give a join key's values as integer codes (the memory store and the
    indexed lake, for a tenant whose index is in memory): the compiler joins two scans on their
    codes, a join of 64-bit integers instead of strings, when both come from one domain."""

    def scan_coded(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None,
        column: str,
    ) -> Scan | None:
        """:meth:`Store.scan`'s rows, with a :data:`JOIN_CODE` column: ``column``'s code in
        each row (null where it is null), and the codes' domain in :attr:`Scan.codes`. Within
        one domain two codes are equal exactly when the values are (the store proved it over
        every value of the domain). ``None``: no codes; scan instead."""
        ...


@runtime_checkable
class RowsKeyStore(Protocol):
    """A store that can tell when two windows read the same stored rows (the memory store and
    the indexed lake, for a tenant whose index is in memory): the engine then reuses the query
    it compiled for one window for the other (:mod:`pql.execute.reuse`)."""

    def rows_keys(
        self,
        tenant: str,
        subject: Subject,
        windows: Sequence[tuple[datetime, datetime]],
        version: int | None = None,
    ) -> tuple[Hashable, ...] | None:
        """A key for each of ``windows`` (``start``, ``end``) of ``tenant``'s ``subject``: two
        windows share a key exactly when :meth:`Store.scan` (and any lookup) would read the
        same rows from the same stored data for both, and a rollup read of whole days
        (``RollupStore.rollup``) the same rollup rows. ``None`` when the store cannot tell
        (nothing is reused then). All of one plan's windows of a subject are asked at once.
        ``version``: the tenant's :meth:`Store.version` the caller read a moment ago (its
        plan was made at it); keys are then given only for rows of that version, without
        reading it again. ``None``: at the version now."""
        ...

    def stored_key(self, tenant: str, subject: Subject) -> Hashable | None:
        """A key naming the stored rows of ``tenant``'s ``subject`` whatever the window: equal
        exactly while they are the same rows, kept in the same parts (as :meth:`rows_keys`'
        keys name them); ``None`` when the store cannot tell."""
        ...


@runtime_checkable
class ResidentStore(Protocol):
    """A store that keeps some tenants' rows in memory and reads the others' from files (the
    indexed lake): reading rows then costs per file, not only per row, which the optimizer
    weighs (an aggregate over a few days of a tenant read from files takes its rollup rather
    than open a file a day). A store that does not offer it reads every tenant alike."""

    def resident(self, tenant: str) -> bool:
        """Whether ``tenant``'s rows are read from memory now. A hint, read without waiting:
        a wrong answer (an index loaded or let go of a moment before) costs speed, never an
        answer."""
        ...


def provides(store: object, protocol: type) -> bool:
    """Whether ``store`` offers ``protocol`` (one of this module's runtime-checkable protocols,
    or ``RollupStore``), decided once per type of store: an ``isinstance`` against a protocol
    inspects its members every time, which costs more than some queries' planning steps."""
    key = (type(store), protocol)
    found = _PROVIDED.get(key)
    if found is None:
        found = _PROVIDED[key] = issubclass(key[0], protocol)
    return found


_PROVIDED: dict[tuple[type, type], bool] = {}


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def current_subject(catalog: Catalog, subject: Subject, tenant: str | None = None) -> Subject:
    """The catalog's current definition of ``subject``: as registered, or as ``tenant`` sees it
    (with that tenant's extra columns)."""
    found = (catalog if tenant is None else catalog.for_tenant(tenant)).get(subject.name)
    if found is None:
        raise InputError(
            "PQL-E010",
            f"unknown subject {subject.name!r}",
            hints=(f"known subjects: {', '.join(catalog.names)}",),
        )
    return found


def empty_frame(subject: Subject) -> pl.DataFrame:
    """A frame with no rows and the subject's full schema."""
    return pl.DataFrame(schema=subject.polars_schema())


def project(subject: Subject, columns: Sequence[str] | None) -> list[str]:
    """The columns a scan returns: all of the subject's, or the requested ones (checked)."""
    if columns is None:
        return list(subject.names)
    unknown = [c for c in columns if c not in subject]
    if unknown:
        raise InternalError(
            "PQL-X050",
            f"scan of {subject.name} asked for unknown columns: {', '.join(unknown)}",
        )
    return list(dict.fromkeys(columns))


def split_duplicates(
    subject: Subject, data: pl.DataFrame, stored: Mapping[str, pl.Series]
) -> tuple[pl.DataFrame, tuple[str, ...], int]:
    """Drop the rows whose key is already stored for their tenant, or repeated in ``data``.

    ``stored`` maps each tenant of ``data`` to the keys already stored for it. Returns the new
    rows (input order kept), the first few duplicate keys and the number of duplicates.
    """
    key = subject.key
    repeated = ~pl.struct("tenant", key).is_first_distinct()
    known = _stored_rows(key, data, stored)
    duplicate = data.select(repeated | known).to_series()
    count = int(duplicate.sum())
    if count == 0:
        return data, (), 0
    keys = data.filter(duplicate).get_column(key).head(MAX_DUPLICATE_KEYS).to_list()
    return data.filter(~duplicate), tuple(str(k) for k in keys), count


def _stored_rows(key: str, data: pl.DataFrame, stored: Mapping[str, pl.Series]) -> pl.Expr:
    """An expression true for the rows of ``data`` whose (tenant, key) is already stored."""
    frames = [
        keys.cast(pl.String).to_frame(key).with_columns(tenant=pl.lit(tenant, dtype=pl.String))
        for tenant, keys in stored.items()
        if len(keys)
    ]
    if not frames:
        return pl.repeat(False, data.height, dtype=pl.Boolean)
    known = pl.concat(frames, how="vertical")
    rows = data.select("tenant", pl.col(key).cast(pl.String)).with_row_index("__pql_row")
    hits = rows.join(known, on=["tenant", key], how="semi").get_column("__pql_row")
    return pl.int_range(data.height, dtype=pl.UInt32).is_in(hits.implode())


def has_region(subject: Subject) -> bool:
    """Whether ``subject`` has its own required ``region`` column (the built-in ones do)."""
    column = subject.column("region")
    return column is not None and column.required


def with_partition_keys(subject: Subject, data: pl.DataFrame) -> pl.DataFrame:
    """``data`` with temporary columns of each row's UTC day and region (for partitioning).

    A subject without a ``region`` column of its own is kept in region ``global``.
    """
    region = pl.col("region") if has_region(subject) else pl.lit(GLOBAL_REGION, pl.String)
    return data.with_columns(pl.col("ts").dt.date().alias(DAY), region.alias(REGION))


def count_partitions(keyed: pl.DataFrame) -> int:
    """The number of distinct (tenant, region, day) partitions in ``keyed`` rows."""
    if keyed.height == 0:
        return 0
    return int(keyed.select(pl.struct("tenant", REGION, DAY).n_unique()).item())


def sort_columns(subject: Subject) -> list[str]:
    """The order rows are kept in: ``ts`` first (scans rely on it), then the other order columns."""
    return ["ts", *(c for c in subject.order if c != "ts")]


@dataclass(frozen=True, slots=True)
class Partition:
    """The rows of one tenant, region and UTC day, sorted; times in µs since the epoch."""

    tenant: str
    region: str
    day: date
    rows: pl.DataFrame
    ts_min: int
    ts_max: int


def partitions_of(subject: Subject, data: pl.DataFrame) -> list[Partition]:
    """Split ``data`` into (tenant, region, day) partitions sorted by :func:`sort_columns`.

    One sort (by ``ts`` first, which is cheap) and one stable split; parts come out sorted by
    tenant, region and day.
    """
    region = pl.col("region") if has_region(subject) else pl.lit(GLOBAL_REGION, pl.String)
    key = pl.struct(pl.col("tenant"), region.alias("region"), pl.col("ts").dt.date().alias("day"))
    parts = (
        data.sort(sort_columns(subject))
        .with_columns(key.alias(PART))
        .partition_by(PART, include_key=False, maintain_order=True)
    )
    out = [_partition(subject, rows) for rows in parts]
    out.sort(key=lambda part: (part.tenant, part.region, part.day))
    return out


def _partition(subject: Subject, rows: pl.DataFrame) -> Partition:
    """One partition, its key and time range read off its (``ts``-sorted) rows."""
    ts = rows.get_column("ts")
    low, high = ts[0], ts[-1]
    if not (isinstance(low, datetime) and isinstance(high, datetime)):
        raise InternalError("PQL-X051", "a partition's ts values must be datetimes")
    region = str(rows.get_column("region")[0]) if has_region(subject) else GLOBAL_REGION
    return Partition(
        tenant=str(rows.get_column("tenant")[0]),
        region=region,
        day=low.date(),
        rows=rows,
        ts_min=micros(low),
        ts_max=micros(high),
    )


def arrow_array(
    values: npt.NDArray[np.generic], missing: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    """``values``, a NumPy array of integers or floats, as an Arrow array of their type without
    a copy (the array keeps ``values`` alive), null where ``missing`` is true. Made from the
    buffers because ``pa.array`` first imports pandas whenever it is installed: a quarter to half
    a second holding the interpreter, which a restarted service spent in its first second, while
    the tenants' first queries waited."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf":  # Arrow packs booleans into bits
        raise InternalError("PQL-X052", f"not a 1-d array of numbers: {values.dtype}")
    validity = None
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    buffers = [validity, pa.py_buffer(values)]
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), buffers)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware (or UTC naive) datetime, exactly."""
    delta = as_utc(moment) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def ts_micros(frame: pl.DataFrame) -> pl.Series:
    """``frame``'s ``ts`` column as µs since the epoch (``Int64``), as the indexes and the
    snapshots compare it with the manifest's ``ts_min`` and ``ts_max``."""
    return frame.get_column("ts").dt.cast_time_unit("us").to_physical()


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=value)


def conform(frame: pl.DataFrame, subject: Subject) -> pl.DataFrame:
    """``frame`` with exactly the subject's columns, in order; absent ones are all null."""
    if frame.columns == list(subject.names):
        return frame
    return frame.select(
        pl.col(c.name) if c.name in frame.columns else pl.lit(None, c.type.polars).alias(c.name)
        for c in subject.columns
    )
