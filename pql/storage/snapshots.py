"""Index snapshots: a tenant's index as :class:`~pql.storage.indexed.IndexedLake` keeps it, on disk.

Loading an index reads the tenant's Parquet files and sorts them; a service that restarts on the
same data directory would do that again for every tenant. So once the loader has built an index
it writes, in the background, each bucket's rows as the index keeps them (conformed, sorted) as
an uncompressed Arrow IPC file in the bucket itself::

    mc-{tenant}-{region}-{subject}/_snapshot/{key}.rows.arrow    (and {key}.rollup.arrow)

The next load memory-maps it (zero copy: pyarrow's memory map, as Polars' ``read_ipc`` copies)
instead of reading Parquet and sorting. Beside it are the rows' rollup partials and the lookups
of its id columns (``{key}.lookup.arrow``: each column's hashes, sorted, and their rows; for
a column joins use, the same hashes in row order, which are its join codes; and which columns'
join codes were proved distinct for the tenant's data at ``key``, :mod:`pql.storage.codes`),
so a restarted service maps what it would otherwise compute for seconds. Only a local
:class:`~pql.storage.lake.Lake` keeps snapshots; an :class:`~pql.storage.s3.S3Lake` does not.

A snapshot is in its bucket, so a tenant's rows never leave the folder of their storage region
(the data's residency). Its ``key`` is a digest of everything the tenant's index depends on:
this module's format, the tenant's version in the manifest (kept in the manifest, so it
survives a restart), every manifest entry of the tenant's active files (path, day, rows, bytes,
time range, row and storage region), its extra columns, its storage region, and the schema the
catalog gives each subject for it. Any ingest, quarantine, migration, rollback or purge changes
the key, so a snapshot of other data is never found; swaps, purges, quarantines and a rebuilt
manifest also delete the tenant's snapshots (:func:`~pql.storage.lake.drop_snapshots`), so none
outlives its files nor stays in a region its tenant left. A snapshot is written only if its key
is still the tenant's current one, checked under the lake's ingest lock right before the
rename, and read only after checking its schema, its row count, its time range, its order and
that it is the tenant's: a file that fails (truncated, damaged, foreign) is ignored, the rows
are read from the Parquet files, and the snapshot is written again.

A rows file holds no ``tenant`` column: every row of a snapshot is its tenant's, so the file
names the tenant once, in its metadata, and a load gives the rows a ``tenant`` column of that one
value (Polars keeps it as a single value, not a value per row). The writer checks every row's
tenant before it leaves the column out, in the background; a load checks the name. A restart
then neither maps nor compares 16 bytes a row that all say the same (a third of the checks that
decided how long a restarted service's first queries waited), and an index mapped from
snapshots takes 16 bytes a row less.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from pql.catalog import Catalog, Subject
from pql.errors import InternalError, PQLError
from pql.storage.base import arrow_array, conform, current_subject, sort_columns, ts_micros
from pql.storage.codes import join_columns
from pql.storage.lake import SNAPSHOT_DIR, FileEntry, Lake, Manifest, bucket_name
from pql.storage.memory import Lookup, MemoryStore, string_columns
from pql.storage.rollups import ROWS, RollupSpec, combine, partials, schema_of

__all__ = ["FORMAT", "Loaded", "Pending", "Snapshots", "in_order", "tenant_key"]

FORMAT = 4
"""The snapshot format; part of every key, so a new format never reads an old file. Format 2
keeps strings as Arrow string views, Polars' own layout, so a mapped file becomes a frame
without a copy (format 1's plain strings were converted, most of a load's time). Format 3 adds
the lookups file (its hashes are the memory store's, with its fixed seed: the format fixes it).
Format 4 leaves the ``tenant`` column out of the rows file and names the tenant in its metadata
(:data:`_TENANT`)."""

_TENANT = b"pql.tenant"
"""The rows file's metadata key: the tenant whose rows it holds (UTF-8), each row's ``tenant``."""

_NULLS = b"pql.nulls"
"""The lookups file's metadata key: how many rows each id column holds null for (JSON)."""

_PROVED = b"pql.join_codes"
"""The lookups file's metadata key: the columns whose join codes were proved distinct over the
tenant's values at the snapshot's key (JSON list, :mod:`pql.storage.codes`); a tenant whose
every part says so for a column gets its codes without counting again."""

LoadSource = Literal["snapshot", "parquet", "mixed"]
"""Where a load found a tenant's rows: only snapshots, only Parquet files, or both."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A bucket's snapshot to write: its rows, sorted (``None``: its rows file is good), their
    rollup partials (``None``: none kept, or the file is good), and where they go. With
    ``lookups``, the store the rows were loaded into, whose lookups of the bucket's part
    (``part`` of ``subject``'s, :meth:`MemoryStore.lookups_of`) are written once they are
    built, with the columns whose join codes were proved: unless they are the ones ``mapped``
    from the lookups file and it says as much (lookups that failed their check after the load
    are built again, and the file rewritten)."""

    tenant: str
    key: str
    rows_path: Path
    rows: pl.DataFrame | None
    partials: pl.DataFrame | None
    subject: str = ""
    part: int = 0
    lookups: MemoryStore | None = None
    mapped: Mapping[str, Lookup] = field(default_factory=dict)
    proved: frozenset[str] = frozenset()
    """The columns the mapped lookups file says were proved (:data:`_PROVED`)."""

    @property
    def partials_path(self) -> Path:
        return _beside(self.rows_path, "rollup")

    @property
    def lookups_path(self) -> Path:
        return _beside(self.rows_path, "lookup")

    def files(self) -> list[tuple[Path, pa.Table]]:
        """What to write: each file's path and table (the lookups only once they are built)."""
        files: list[tuple[Path, pa.Table]] = []
        if self.rows is not None:
            files.append((self.rows_path, _rows_table(self.rows, self.tenant)))
        if self.partials is not None:
            files.append(
                (self.partials_path, self.partials.to_arrow(compat_level=pl.CompatLevel.newest()))
            )
        if self.lookups is not None:
            parts = self.lookups.lookups_of(self.tenant, self.subject)
            built = parts[self.part] if self.part < len(parts) else {}
            coded = self.lookups.codes_of(self.tenant, self.subject)
            codes = coded[self.part] if self.part < len(coded) else {}
            proved = frozenset(codes)
            changed = any(lookup is not self.mapped.get(name) for name, lookup in built.items())
            unsaved = any(self.mapped[n].codes is None for n in codes if n in self.mapped)
            if built and (changed or unsaved or proved != self.proved):
                files.append((self.lookups_path, _lookups_table(built, proved, codes)))
        return files

    @property
    def due(self) -> bool:
        """Whether anything may be written: the rows, the partials, or lookups to build."""
        return self.rows is not None or self.partials is not None or self.lookups is not None


def _beside(rows_path: Path, kind: str) -> Path:
    """The file of ``kind`` (``rollup``, ``lookup``) beside the rows snapshot ``rows_path``."""
    return rows_path.with_name(rows_path.name.replace(".rows.", f".{kind}."))


@dataclass(frozen=True, slots=True)
class Loaded:
    """A tenant's index as read, where its rows came from, and the snapshots to write."""

    store: MemoryStore
    source: LoadSource
    pending: tuple[Pending, ...]


def tenant_key(manifest: Manifest, catalog: Catalog, tenant: str) -> str:
    """The key of ``tenant``'s snapshots at ``manifest``: a digest of everything its index
    depends on (see the module docs)."""
    files = sorted(
        (e.to_json() for e in manifest.files if e.tenant == tenant), key=lambda e: str(e["path"])
    )
    extras = {
        subject: {name: type_.value for name, type_ in columns.items()}
        for subject, columns in manifest.extras_of(tenant).items()
    }
    schemas = {
        subject.name: [
            [name, str(type_)]
            for name, type_ in current_subject(catalog, subject, tenant).polars_schema().items()
        ]
        for subject in catalog
        if any(f["subject"] == subject.name for f in files)
    }
    payload = {
        "format": FORMAT,
        "tenant": tenant,
        "version": manifest.versions.get(tenant, 0),
        "files": files,
        "extras": extras,
        "home": manifest.homes.get(tenant),
        "schemas": schemas,
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:40]


class Snapshots:
    """The snapshots of one local lake's indexes: read at load, written after it."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        # tenant -> (manifest, catalog, key): a restart asks for a tenant's key twice (whether
        # it can map, then the load) at one manifest; the digest is computed once.
        self._keys: dict[str, tuple[Manifest, Catalog, str]] = {}

    def key(self, manifest: Manifest, catalog: Catalog, tenant: str) -> str:
        """``tenant_key(manifest, catalog, tenant)``, computed again only when the manifest or
        the catalog is another object (the lake reads a changed manifest into a new one)."""
        known = self._keys.get(tenant)
        if known is not None and known[0] is manifest and known[1] is catalog:
            return known[2]
        key = tenant_key(manifest, catalog, tenant)
        self._keys[tenant] = (manifest, catalog, key)
        return key

    def path(self, tenant: str, storage: str, subject: str, key: str) -> Path:
        """Where the rows snapshot of ``tenant``'s ``subject`` in storage region ``storage``
        is (its rollup partials are beside it, ``{key}.rollup.arrow``)."""
        bucket = bucket_name(tenant, storage, subject)
        return self.lake.root / bucket / SNAPSHOT_DIR / f"{key}.rows.arrow"

    def current(self, tenant: str, catalog: Catalog) -> bool:
        """Whether each of ``tenant``'s buckets has a rows snapshot at the tenant's current key,
        so that a load would map them all (unless one turns out damaged)."""
        manifest = self.lake.manifest()
        key = self.key(manifest, catalog, tenant)
        paths = [
            self.path(tenant, storage, subject.name, key)
            for subject in catalog
            for storage in _buckets(manifest, tenant, subject)
        ]
        return bool(paths) and all(path.is_file() for path in paths)

    def load(
        self, tenant: str, catalog: Catalog, *, rollups: bool, into: MemoryStore | None = None
    ) -> Loaded:
        """``tenant``'s index: each bucket's rows (and rollup partials) from its snapshot when
        there is a good one, else from its Parquet files (then queued to be written), all at
        one manifest. Kept in a new store, or in ``into`` (which must not hold the tenant yet).
        A tenant kept in several regions is kept in parts. The lookups saved beside the rows
        are mapped too; those missing are left to ``add_lookups`` on the store, and written
        with the pending snapshots once built."""
        manifest = self.lake.manifest()
        key = self.key(manifest, catalog, tenant)
        store = MemoryStore(catalog, rollups=rollups) if into is None else into
        pending: list[Pending] = []
        found = 0
        coded = join_columns(catalog)
        proved = {name for names in coded.values() for name in names}
        for subject in catalog:
            buckets = _buckets(manifest, tenant, subject)
            if not buckets:
                continue
            current = current_subject(catalog, subject, tenant)
            ids = string_columns(current.polars_schema(), current.ids)
            spec = None if store.rollups is None else store.rollups.spec(subject.name)
            parts: list[pl.DataFrame] = []
            rolled: list[pl.DataFrame] = []
            saved: list[Mapping[str, Lookup]] = []
            sizes: list[int | None] = []
            for storage, files in buckets.items():
                path = self.path(tenant, storage, subject.name, key)
                frame = _read(path, tenant, current, files)
                fresh = frame is None
                if frame is None:
                    frame = self._from_parquet(tenant, current, files)
                partial = None
                if spec is not None:
                    partial = None if fresh else _read_partials(path, tenant, spec, frame.height)
                    if partial is None:
                        rolled.append(self._partials(spec, files, frame))
                    else:
                        rolled.append(partial)
                read = None if fresh else _read_lookups(_beside(path, "lookup"), ids, frame.height)
                lookups, said = read if read is not None else (None, frozenset[str]())
                found += not fresh
                kept = frame.height > 0  # an empty part is not kept (load_stored)
                item = Pending(
                    tenant,
                    key,
                    path,
                    frame if fresh else None,
                    rolled[-1] if spec is not None and partial is None else None,
                    subject.name,
                    len(parts),
                    store if kept and ids else None,
                    lookups or {},
                    said,
                )
                if item.due:
                    pending.append(item)
                if kept:
                    proved.difference_update(set(coded.get(subject.name, ())) - said)
                    parts.append(frame)
                    saved.append(lookups or {})
                    sizes.append(None if fresh else path.stat().st_size)  # None: estimated
            # Several regions' parts are kept apart, each with its lookups: those not saved
            # are built after the load (MemoryStore.add_lookups), the index answers meanwhile.
            if parts:
                store.load_stored(
                    tenant,
                    subject,
                    parts,
                    ordered=True,
                    partials=rolled,
                    lookups=False,
                    saved=saved,
                    sizes=sizes,
                )
        if proved:
            store.proved(tenant, proved)
        source: LoadSource = (
            "parquet"
            if not found
            else "mixed"
            if any(p.rows is not None for p in pending)
            else "snapshot"
        )
        return Loaded(store, source, tuple(pending))

    def write(self, pending: Sequence[Pending]) -> int:
        """Write ``pending`` snapshots (temp files, fsync, rename), each only if its key is
        still its tenant's; returns how many files were written. Never raises for a failed
        write (a snapshot is a cache: the next load reads the Parquet files again)."""
        written = 0
        for item in pending:
            try:
                written += self._write(item)
            except (OSError, PQLError):  # the lake changed or went away meanwhile
                continue
        return written

    def _write(self, item: Pending) -> int:
        wanted = item.files()
        if not wanted:  # a clean restart: every mapped file was good
            return 0
        folder = item.rows_path.parent
        folder.mkdir(exist_ok=True)  # in a bucket that still exists: a snapshot creates no lake
        files = [
            (path, table, folder / f".{path.name}.{uuid.uuid4().hex}.tmp") for path, table in wanted
        ]
        try:
            for _, table, temp in files:
                _write_ipc(table, temp)
            # Under the lake's ingest locks: a swap, purge or rebuild (which drop snapshots)
            # either happened before, and the key tells, or waits until the renames are done.
            with self.lake.locked():
                current = tenant_key(self.lake.manifest(), self.lake.catalog, item.tenant)
                if current != item.key:
                    return 0
                for path, _, temp in files:
                    os.replace(temp, path)
                for other in folder.glob("*.arrow"):
                    if not other.name.startswith(f"{item.key}."):
                        other.unlink(missing_ok=True)
            return len(files)
        finally:
            for _, _, temp in files:
                temp.unlink(missing_ok=True)

    def _partials(
        self, spec: RollupSpec, files: Sequence[FileEntry], frame: pl.DataFrame
    ) -> pl.DataFrame:
        """The rollup partials of ``frame``, the rows of ``files``: combined from the files'
        rollup files when every one has a good one (of ``spec``), else computed."""
        if self.lake.rollup_specs.get(spec.subject) == spec:
            found, unread = self.lake.file_partials(files)
            if found is not None and not unread:
                return combine(spec, found)
        return partials(spec, frame)

    def _from_parquet(
        self, tenant: str, subject: Subject, files: Sequence[FileEntry]
    ) -> pl.DataFrame:
        """The rows of ``files`` (one bucket of ``tenant``'s ``subject``), conformed and sorted."""
        # The lake validated and deduplicated these rows when they were ingested: they are
        # sorted, not checked again.
        rows = self.lake.read_files(subject, files).filter(pl.col("tenant") == tenant).collect()
        rows = conform(rows, subject)
        if not in_order(subject, files, rows):
            rows = rows.sort(sort_columns(subject))
        return rows.rechunk()


def in_order(subject: Subject, files: Sequence[FileEntry], rows: pl.DataFrame) -> bool:
    """Whether ``rows``, the rows of ``files`` read one file after the other, are in the
    subject's order already (a third of a load's time is the sort it then saves). Each file is
    (ingest sorts a day's rows by the order columns before writing them), so they are when that
    order starts with ``ts``, each file's times come after the one before's, and ``ts`` never
    goes back (checked, so that a file written otherwise costs a sort, never a wrong window)."""
    after = all(a.ts_max < b.ts_min for a, b in itertools.pairwise(files))
    first = sort_columns(subject)[0]
    return first == "ts" and after and rows.get_column("ts").is_sorted()


def _buckets(manifest: Manifest, tenant: str, subject: Subject) -> dict[str, list[FileEntry]]:
    """``tenant``'s active files of ``subject`` by storage region (one bucket, one snapshot
    each), the regions sorted."""
    buckets: dict[str, list[FileEntry]] = {}
    for entry in manifest.files_of(tenant, subject.name):
        buckets.setdefault(entry.storage, []).append(entry)
    return dict(sorted(buckets.items()))


def _write_ipc(table: pa.Table, path: Path) -> None:
    """``table`` as an uncompressed Arrow IPC file of one record batch (read back, every column
    is one contiguous buffer; a frame's strings as string views, Polars' layout: mapped, no
    copy), fsynced."""
    table = table.combine_chunks()
    with open(path, "wb") as handle:
        with ipc.new_file(handle, table.schema) as writer:
            writer.write_table(table)
        handle.flush()
        os.fsync(handle.fileno())


def _rows_table(rows: pl.DataFrame, tenant: str) -> pa.Table:
    """``rows``, every one ``tenant``'s, as a rows file's table: without the ``tenant`` column,
    the tenant named in the metadata (:data:`_TENANT`). Raises :class:`InternalError` (the
    write is skipped) when a row is another tenant's: never written as this tenant's."""
    tenant_rows = rows.get_column("tenant")
    if tenant_rows.null_count() or not bool((tenant_rows == tenant).all()):
        raise InternalError("PQL-X062", f"a snapshot of {tenant!r} was given another's rows")
    table = rows.drop("tenant").to_arrow(compat_level=pl.CompatLevel.newest())
    return table.replace_schema_metadata({_TENANT: tenant.encode()})


def _mapped(path: Path) -> pl.DataFrame | None:
    """The Arrow IPC file at ``path``, memory-mapped: the frame's buffers are the file's pages,
    nothing is copied (the map stays open as long as a buffer refers to it)."""
    return _frame(ipc.open_file(pa.memory_map(str(path))).read_all())


def _frame(table: pa.Table) -> pl.DataFrame | None:
    """``table`` as a frame of the same buffers (no copy, no rechunk); ``None`` if Polars makes
    it anything but a frame."""
    frame = pl.from_arrow(table, rechunk=False)
    return frame if isinstance(frame, pl.DataFrame) else None


def _read_partials(
    rows_path: Path, tenant: str, spec: RollupSpec, rows: int
) -> pl.DataFrame | None:
    """The rollup partials beside the rows snapshot at ``rows_path``, if whole and of its
    ``rows`` rows (the spec's schema, the row count, every row ``tenant``'s); else ``None``."""
    try:
        frame = _mapped(_beside(rows_path, "rollup"))
        if frame is None or frame.schema != schema_of(spec):
            return None
        if frame.get_column(ROWS).sum() != rows:
            return None
        if "tenant" in frame.columns and not bool((frame.get_column("tenant") == tenant).all()):
            return None
        return frame
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException, ValueError):
        return None


def _read(
    path: Path, tenant: str, subject: Subject, files: Sequence[FileEntry]
) -> pl.DataFrame | None:
    """The snapshot at ``path`` memory-mapped, if it is whole and holds exactly the rows the
    manifest lists for ``files``: ``tenant``'s (its metadata says so), the subject's schema but
    ``tenant``, their row count and time range, sorted; with the ``tenant`` column given back as
    one value. ``None`` when it is missing or fails any check."""
    try:
        table = ipc.open_file(pa.memory_map(str(path))).read_all()
        if (table.schema.metadata or {}).get(_TENANT) != tenant.encode():
            return None
        frame = _frame(table)
        if frame is None:
            return None
        schema = subject.polars_schema()
        stored = {name: type_ for name, type_ in schema.items() if name != "tenant"}
        if dict(frame.schema) != stored or list(frame.columns) != list(stored):
            return None
        if frame.height != sum(e.rows for e in files):
            return None
        frame = frame.with_columns(pl.lit(tenant, dtype=schema["tenant"]).alias("tenant"))
        frame = frame.select(list(schema))
        if frame.height == 0:
            return frame
        ts = ts_micros(frame)
        first, last = ts[0], ts[-1]
        if first != min(e.ts_min for e in files) or last != max(e.ts_max for e in files):
            return None
        if not ts.is_sorted() or ts.null_count():
            return None
        return frame
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException, ValueError):
        return None


def _lookups_table(
    lookups: Mapping[str, Lookup],
    proved: Collection[str] = (),
    codes: Mapping[str, pl.Series] | None = None,
) -> pa.Table:
    """``lookups`` as one table: for each id column, ``{name}:hash`` (the hashes, sorted, then
    a zero for each null) and ``{name}:row`` (their rows, then the null rows), as long as the
    rows; for each of its join ``codes``, ``{name}:code`` (the same hashes in row order, a
    zero for a null: mapped, they are the join codes, :attr:`Lookup.codes`); how many nulls
    each has, and the ``proved`` columns, are in the schema's metadata."""
    columns: dict[str, pa.Array] = {}
    nulls: dict[str, int] = {}
    for name, lookup in sorted(lookups.items()):
        pad = np.zeros(len(lookup.nulls), dtype=np.uint64)
        columns[f"{name}:hash"] = arrow_array(np.concatenate([lookup.hashes, pad]))
        columns[f"{name}:row"] = arrow_array(np.concatenate([lookup.rows, lookup.nulls]))
        coded = (codes or {}).get(name)
        if coded is not None:
            columns[f"{name}:code"] = arrow_array(coded.fill_null(0).to_numpy())
        nulls[name] = len(lookup.nulls)
    metadata = {_NULLS: json.dumps(nulls).encode(), _PROVED: json.dumps(sorted(proved)).encode()}
    return pa.table(columns).replace_schema_metadata(metadata)


def _read_lookups(
    path: Path, ids: Sequence[str], rows: int
) -> tuple[dict[str, Lookup], frozenset[str]] | None:
    """The lookups of ``ids`` in the file at ``path``, mapped (no copy), if it is whole: each
    column as many values as the part's ``rows``, of its type, no null, and the null count
    saved; else ``None`` (the lookups are built again). Whether each fits the part (sorted,
    every row inside, :meth:`Lookup.fits`) is checked before it is used, after the load. With
    them, the columns the file says were proved (:data:`_PROVED`; none if it says nothing
    readable)."""
    try:
        table = ipc.open_file(pa.memory_map(str(path))).read_all()
        metadata = table.schema.metadata or {}
        nulls = json.loads(metadata[_NULLS])
        found: dict[str, Lookup] = {}
        for name in ids:
            hashes = _array(table, f"{name}:hash", np.dtype(np.uint64), rows)
            at = _array(table, f"{name}:row", np.dtype(np.uint32), rows)
            missing = nulls[name]
            if hashes is None or at is None or not isinstance(missing, int):
                return None
            if not 0 <= missing <= rows:
                return None
            present = rows - missing
            codes = _array(table, f"{name}:code", np.dtype(np.uint64), rows)
            found[name] = Lookup(hashes[:present], at[:present], at[present:], codes)
        said = json.loads(metadata.get(_PROVED, b"[]"))
        if not isinstance(said, list) or not all(isinstance(name, str) for name in said):
            said = []
        return found, frozenset(said)
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None


def _array(table: pa.Table, name: str, type_: np.dtype[Any], rows: int) -> npt.NDArray[Any] | None:
    """Column ``name`` of ``table`` as a NumPy view of its buffer (the mapped file's pages), if
    it is of ``type_``, has ``rows`` values and no null; else ``None``."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if column.type != pa.from_numpy_dtype(type_) or len(column) != rows or column.null_count:
        return None
    if column.num_chunks != 1:
        return None if rows else np.empty(0, dtype=type_)
    chunk = column.chunk(0)
    data = chunk.buffers()[1]
    if data is None:
        return None
    offset = chunk.offset * type_.itemsize
    return np.frombuffer(data, dtype=type_, count=rows, offset=offset)
