"""The embedded default store: append-only Parquet files in a local directory.

Layout::

    root/
      _pql/manifest.json                 every committed file with its statistics,
                                         per-tenant versions and each tenant's extra columns
      _pql/homes.json                    each moved tenant's storage region (after a swap)
      _pql/lock                          held (flock) by the process that is ingesting
      _pql/tmp/                          data files being written
      _pql/quarantine/                   files taken out of the lake (Lake.quarantine)
      mc-{tenant}-{region}-{subject}/    one bucket per tenant, storage region and subject
        day=YYYY-MM-DD/part-{uuid}.parquet   rows of one UTC day, sorted by the order columns
        _snapshot/{key}.*.arrow          the bucket's rows as an index keeps them (a cache:
                                         :mod:`pql.storage.snapshots`), never a data file
        _rollup/part-{uuid}.*.arrow      each data file's rollup partials, written with it
                                         (:mod:`pql.storage.rollup_files`)

A bucket's region is the *storage* region (where the bytes are kept), recorded per file as
:attr:`FileEntry.storage`; :attr:`FileEntry.region` is the ``region`` column of the rows (where
they were executed: history, never rewritten). They are the same until a tenant's files are moved
(:meth:`Lake.copy_to`, then :meth:`Lake.swap` in one manifest commit); from then on the tenant's
storage region (``Manifest.homes``) decides the bucket of its new files too. Files a swap replaced
are ``retired``: listed in the manifest, kept on disk, never read, deleted only by
:meth:`Lake.purge_retired`.

Files are written once and never changed or deleted. An ingest writes its data files to
``_pql/tmp``, fsyncs and renames them into their buckets, and only then replaces the manifest
atomically; readers see only the files the manifest lists, so a crash at any point leaves no
visible trace (at most orphan files, which :meth:`Lake.gc_orphans` lists). The first ingest
writes an (empty) manifest before any data file, so data files without a manifest mean the
manifest was lost: such a lake is refused (PQL-E100) until the manifest is restored or rebuilt
(:func:`pql.storage.repair.rebuild_manifest`), never read as empty.

Before a file is read its size and Parquet magic bytes are checked against the manifest (once
per version of the file); a missing or damaged file is PQL-E102, naming the file, and
:meth:`Lake.quarantine` takes it out of the lake.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InputError, InternalError, PQLError
from pql.storage import rollup_files
from pql.storage.base import (
    GLOBAL_REGION,
    IngestReport,
    Partition,
    PartitionStats,
    Scan,
    current_subject,
    empty_frame,
    from_micros,
    micros,
    partitions_of,
    project,
    split_duplicates,
)
from pql.storage.rollup_files import ROLLUP_DIR
from pql.storage.rollups import RollupSpec, rollup_specs
from pql.storage.validate import (
    REGION_PATTERN,
    TENANT_PATTERN,
    check_extras,
    extra_columns,
    validate,
)

__all__ = [
    "FileEntry",
    "Lake",
    "Manifest",
    "bucket_name",
    "damaged",
    "drop_snapshots",
    "parse_bucket",
]

MANIFEST_FORMAT = 2
"""2: extra-column types per tenant. Format 1 (one set of extra columns for the whole lake) is
still read: each tenant then gets the extra columns its own files hold."""
META_DIR = "_pql"
MANIFEST_NAME = "manifest.json"
HOMES_NAME = "homes.json"
"""``_pql/homes.json``: a copy of ``Manifest.homes``, written after every swap, so that a lost
manifest's tenants' storage regions can be rebuilt (:func:`pql.storage.repair.rebuild_manifest`)."""
LOCK_NAME = "lock"
TMP_DIR = "tmp"
QUARANTINE_DIR = "quarantine"
SNAPSHOT_DIR = "_snapshot"
"""In each bucket: snapshots of the bucket's rows as an index keeps them (a cache that
:mod:`pql.storage.snapshots` writes and checks; no manifest lists it, no data file is in it)."""
PARQUET_MAGIC = b"PAR1"
WRITERS = 8
"""How many data files an ingest writes at once (writing and fsync release the GIL)."""

TenantExtras = Mapping[str, Mapping[str, Mapping[str, DataType]]]
"""Extra columns per tenant: tenant -> subject -> column -> type (columns in first-ingest order)."""

_Signature = tuple[int, int, int]
"""What identifies one version of the manifest file: inode, mtime (ns) and size."""


def bucket_name(tenant: str, region: str, subject: str) -> str:
    """The directory of one tenant's subject in one region, e.g. ``mc-acme-us-east-1-receipts``.

    The name is unambiguous (:func:`parse_bucket` reads it back): a subject name has no ``-``
    and a region is exactly three ``-``-separated parts ending in a number
    (:data:`~pql.storage.validate.REGION_PATTERN`) or ``global``, so reading from the right
    leaves the tenant. Tenant ``acme-us`` in region ``east-1`` cannot exist, as ``east-1`` is
    not a region. Any other shape is refused (PQL-X110) rather than written.
    """
    if "-" in subject or not subject:
        raise InternalError("PQL-X110", f"subject name {subject!r} cannot name a bucket")
    if region != GLOBAL_REGION and not re.fullmatch(REGION_PATTERN, region):
        raise InternalError("PQL-X110", f"region {region!r} cannot name a bucket")
    return f"mc-{tenant}-{region}-{subject}"


def parse_bucket(name: str) -> tuple[str, str, str] | None:
    """The (tenant, region, subject) a bucket directory belongs to, or ``None`` if none does."""
    parts = name.split("-")
    if len(parts) < 4 or parts[0] != "mc":
        return None
    width = 1 if parts[-2] == GLOBAL_REGION else 3
    tenant, region = "-".join(parts[1 : -1 - width]), "-".join(parts[-1 - width : -1])
    if not re.fullmatch(TENANT_PATTERN, tenant):
        return None
    if region != GLOBAL_REGION and not re.fullmatch(REGION_PATTERN, region):
        return None
    return tenant, region, parts[-1]


def damaged(path: Path, expected_bytes: int | None = None) -> str | None:
    """Why the data file at ``path`` cannot be read (missing, wrong size, not Parquet), or None."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if expected_bytes is not None and size != expected_bytes:
                return f"it has {size:,} bytes, the manifest says {expected_bytes:,}"
            head = handle.read(len(PARQUET_MAGIC))
            handle.seek(max(0, size - len(PARQUET_MAGIC)))
            tail = handle.read(len(PARQUET_MAGIC))
    except FileNotFoundError:
        return "it is missing"
    except OSError as exc:
        return f"it cannot be opened ({exc.strerror or exc})"
    if size < 2 * len(PARQUET_MAGIC) or head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        return "it is not a Parquet file"
    return None


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One committed data file and its statistics (times in microseconds since the epoch)."""

    path: str
    tenant: str
    region: str
    subject: str
    day: date
    rows: int
    bytes: int
    ts_min: int
    ts_max: int
    storage: str = ""
    """The storage region: the region of the bucket the file is in. ``region`` is the region of
    the rows (history, never rewritten); the two differ once a tenant's files moved to another
    region (:meth:`Lake.copy_to`, :meth:`Lake.swap`). Empty means the same as ``region``."""

    def __post_init__(self) -> None:
        if not self.storage:
            object.__setattr__(self, "storage", self.region)

    def to_json(self) -> dict[str, Any]:
        """The entry as the manifest stores it."""
        return {
            "path": self.path,
            "tenant": self.tenant,
            "region": self.region,
            "subject": self.subject,
            "day": self.day.isoformat(),
            "rows": self.rows,
            "bytes": self.bytes,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "storage": self.storage,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FileEntry:
        """An entry read back from the manifest."""
        return cls(
            path=str(raw["path"]),
            tenant=str(raw["tenant"]),
            region=str(raw["region"]),
            subject=str(raw["subject"]),
            day=date.fromisoformat(str(raw["day"])),
            rows=int(raw["rows"]),
            bytes=int(raw["bytes"]),
            ts_min=int(raw["ts_min"]),
            ts_max=int(raw["ts_max"]),
            storage=str(raw.get("storage") or raw["region"]),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """The committed state of a lake: files, per-tenant versions and each tenant's extra columns.

    ``retired`` files are kept on disk but never read (a tenant's old copy after its files moved
    to another storage region); ``homes`` is each moved tenant's storage region, where its new
    files are written whatever the region of their rows.
    """

    files: tuple[FileEntry, ...] = ()
    versions: Mapping[str, int] = field(default_factory=dict)
    extras: TenantExtras = field(default_factory=dict)
    retired: tuple[FileEntry, ...] = ()
    homes: Mapping[str, str] = field(default_factory=dict)
    _index: dict[tuple[str, str], tuple[FileEntry, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], list[FileEntry]] = {}
        for entry in self.files:
            index.setdefault((entry.tenant, entry.subject), []).append(entry)
        frozen = {k: tuple(sorted(v, key=lambda e: (e.day, e.path))) for k, v in index.items()}
        object.__setattr__(self, "_index", frozen)

    def files_of(self, tenant: str, subject: str) -> tuple[FileEntry, ...]:
        """The files of ``tenant``'s ``subject``, by day."""
        return self._index.get((tenant, subject), ())

    def tenants(self) -> tuple[str, ...]:
        """The tenants with committed files, sorted."""
        return tuple(sorted({tenant for tenant, _ in self._index}))

    def extras_of(self, tenant: str) -> dict[str, dict[str, DataType]]:
        """``tenant``'s extra columns: subject -> column -> type."""
        return {s: dict(cols) for s, cols in self.extras.get(tenant, {}).items() if cols}

    def commit(self, entries: Sequence[FileEntry], extras: TenantExtras) -> Manifest:
        """A new manifest with ``entries`` added, their tenants' versions bumped and ``extras``."""
        versions = dict(self.versions)
        for tenant in sorted({e.tenant for e in entries}):
            versions[tenant] = versions.get(tenant, 0) + 1
        merged = {t: {s: dict(c) for s, c in subs.items()} for t, subs in self.extras.items()}
        for tenant, subjects in extras.items():
            for subject, columns in subjects.items():
                if not columns:
                    continue
                mine = merged.setdefault(tenant, {}).setdefault(subject, {})
                for name, type_ in columns.items():
                    mine.setdefault(name, type_)
        return replace(self, files=(*self.files, *entries), versions=versions, extras=merged)

    def without(self, entry: FileEntry) -> Manifest:
        """A new manifest without ``entry``; its tenant's version is bumped."""
        versions = dict(self.versions)
        versions[entry.tenant] = versions.get(entry.tenant, 0) + 1
        files = tuple(e for e in self.files if e.path != entry.path)
        return replace(self, files=files, versions=versions)

    def swap(
        self, tenant: str, retire: Sequence[str], activate: Sequence[FileEntry], home: str | None
    ) -> Manifest:
        """``tenant``'s files at ``retire`` retired, ``activate`` read instead, one version up.

        Paths already retired and entries already active are left as they are, so the same
        swap twice is the same manifest (with one more version). ``home`` (when given) becomes
        the tenant's storage region.
        """
        gone = set(retire)
        incoming = {e.path for e in activate}
        moved_out = [e for e in self.files if e.path in gone and e.path not in incoming]
        active = [e for e in self.files if e.path not in gone or e.path in incoming]
        present = {e.path for e in active}
        active += [e for e in activate if e.path not in present]
        retired = [e for e in self.retired if e.path not in incoming] + moved_out
        versions = dict(self.versions)
        versions[tenant] = versions.get(tenant, 0) + 1
        homes = dict(self.homes)
        if home is not None:
            homes[tenant] = home
        return replace(
            self, files=tuple(active), versions=versions, retired=tuple(retired), homes=homes
        )

    def purge(self, tenant: str) -> tuple[Manifest, tuple[FileEntry, ...]]:
        """A new manifest without ``tenant``'s retired files, and those files."""
        purged = tuple(e for e in self.retired if e.tenant == tenant)
        kept = tuple(e for e in self.retired if e.tenant != tenant)
        return replace(self, retired=kept), purged

    def to_json(self) -> dict[str, Any]:
        """The manifest as stored in ``manifest.json``."""
        return {
            "format": MANIFEST_FORMAT,
            "versions": dict(sorted(self.versions.items())),
            "extras": {
                tenant: {
                    subject: {name: type_.value for name, type_ in columns.items()}
                    for subject, columns in sorted(subjects.items())
                }
                for tenant, subjects in sorted(self.extras.items())
            },
            "files": [entry.to_json() for entry in self.files],
            "retired": [entry.to_json() for entry in self.retired],
            "homes": dict(sorted(self.homes.items())),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], root: Path | None = None) -> Manifest:
        """A manifest read back from ``manifest.json`` (format 1 needs the lake's ``root``)."""
        files = tuple(FileEntry.from_json(e) for e in raw["files"])
        versions = {str(t): int(v) for t, v in raw["versions"].items()}
        if raw.get("format") == 1 and root is not None:
            return cls(files, versions, _legacy_extras(raw["extras"], files, root))
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {raw.get('format')!r}")
        extras = {
            str(tenant): {
                str(subject): {str(n): DataType(t) for n, t in columns.items()}
                for subject, columns in subjects.items()
            }
            for tenant, subjects in raw["extras"].items()
        }
        retired = tuple(FileEntry.from_json(e) for e in raw.get("retired", ()))
        homes = {str(t): str(r) for t, r in raw.get("homes", {}).items()}
        return cls(files, versions, extras, retired, homes)


def _legacy_extras(
    raw: Mapping[str, Mapping[str, str]], files: Sequence[FileEntry], root: Path
) -> dict[str, dict[str, dict[str, DataType]]]:
    """Per-tenant extras of a format-1 manifest: the lake-wide ones each tenant's files hold."""
    lake_wide = {str(s): {str(n): DataType(t) for n, t in cols.items()} for s, cols in raw.items()}
    held: dict[tuple[str, str], set[str]] = {}
    for entry in files:
        if entry.subject in lake_wide:
            schema = pl.read_parquet_schema(root / entry.path)
            held.setdefault((entry.tenant, entry.subject), set()).update(schema)
    out: dict[str, dict[str, dict[str, DataType]]] = {}
    for (tenant, subject), present in sorted(held.items()):
        columns = {n: t for n, t in lake_wide[subject].items() if n in present}
        if columns:
            out.setdefault(tenant, {})[subject] = columns
    return out


# -- the lake ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Keys:
    """The keys stored for one tenant's subject, and the files they were read from."""

    files: set[str] = field(default_factory=set)
    keys: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.String))


class Lake:
    """A :class:`~pql.storage.base.Store` on a local directory (see the module docs for the layout).

    Opening a lake restores each tenant's extra columns from its manifest into the catalog. The
    root is created on the first ingest; a root that is a file is refused. ``durable=False``
    skips the fsync of data files and directories: faster for throw-away data, but after a power
    loss (not a mere process crash) committed files may be missing or incomplete.
    """

    def __init__(self, root: Path | str, catalog: Catalog, *, durable: bool = True) -> None:
        self._root = Path(root)
        self._manifest_path = self._root / META_DIR / MANIFEST_NAME  # asked on every query
        self._durable = durable
        self._catalog = catalog
        self._lock = threading.RLock()
        self._manifest = Manifest()
        self._signature: _Signature | None = None
        self._keys: dict[tuple[str, str], _Keys] = {}
        self._stats: dict[tuple[str, str], list[PartitionStats]] = {}
        self._stats_of = self._manifest
        self._verified: dict[str, _Signature] = {}
        self.removal_guards: list[Callable[[str, str], None]] = []
        """Called as ``guard(action, path)`` before the lake removes (``"delete"``) or moves
        (``"quarantine"``) a data file (``path`` relative to the root); raising refuses it."""
        self._check_root()
        self._refresh()

    @property
    def root(self) -> Path:
        """The lake's directory."""
        return self._root

    @property
    def catalog(self) -> Catalog:
        """The catalog this lake validates against and widens with extra columns."""
        return self._catalog

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self._manifest_path

    def manifest(self) -> Manifest:
        """The committed state, reloaded if another process changed it."""
        return self._refresh()

    @functools.cached_property
    def rollup_specs(self) -> dict[str, RollupSpec]:
        """The rollups whose partials ingest writes beside each data file, by subject."""
        return rollup_specs(self._catalog)

    def file_partials(
        self, entries: Sequence[FileEntry]
    ) -> tuple[pl.DataFrame | None, list[FileEntry]]:
        """The rollup rows saved beside ``entries`` (files of one subject, checked first like
        any read: PQL-E102), as one frame (``None`` when no file has a good rollup file), and
        the entries without a good one, in order: their rows must be read."""
        self.check_files(entries)
        spec = self.rollup_specs.get(entries[0].subject) if entries else None
        if spec is None:
            return None, list(entries)
        saved = [rollup_files.read(self._root, e.path, e.bytes, spec) for e in entries]
        found = [table for table in saved if table is not None]
        unread = [e for e, table in zip(entries, saved, strict=True) if table is None]
        return (rollup_files.frame(found) if found else None), unread

    def write_missing_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Write the rollup files the committed files lack (a lake ingested before rollup
        files were written); ``progress(done, total)`` after each. Returns how many."""
        with self._lock, self._exclusive():
            manifest = self._refresh()
            files = [(e.subject, e.path, e.bytes) for e in (*manifest.files, *manifest.retired)]
            by_path = {e.path: e for e in (*manifest.files, *manifest.retired)}

            def rows(subject: str, path: str) -> pl.DataFrame:
                entry = by_path[path]
                current = current_subject(self._catalog, self._catalog[subject], entry.tenant)
                return self.read_files(current, [entry]).collect()

            return rollup_files.write_missing(
                self._root, self._catalog, files, rows, durable=self._durable, progress=progress
            )

    # -- Store ---------------------------------------------------------------------------------

    def ingest(self, subject: Subject, data: pl.DataFrame | pa.Table) -> IngestReport:
        """Validate ``data``, drop duplicates and append the new rows atomically.

        Nothing is written when the input is invalid or every row is a duplicate.
        """
        declared = current_subject(self._catalog, subject)
        frame = validate(declared, data, self._catalog)
        if frame.height == 0:
            return IngestReport(declared.name, 0, 0, 0, (), 0, ())
        self._check_root()
        with self._lock, self._exclusive():
            manifest = self._refresh()
            # Another ingest (thread or process) may have given a tenant of ``frame`` an extra
            # column since it was validated: the check of the extra columns and the write are
            # one step, here, under both locks.
            frame = check_extras(declared, frame, self._catalog)
            stored = {
                tenant: self._stored_keys(manifest, tenant, declared)
                for tenant in frame.get_column("tenant").unique().to_list()
            }
            new, duplicate_keys, duplicates = split_duplicates(declared, frame, stored)
            entries = self._commit(manifest, declared, new) if new.height else []
        return ingest_report(declared, frame, new, duplicates, duplicate_keys, entries)

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        """The rows of the files of ``tenant``'s ``subject`` whose time range meets the window.

        Not exact: the files hold whole days, so the executor still filters on ``ts``.
        """
        manifest = self._refresh()
        current = current_subject(self._catalog, subject, tenant)
        names = project(current, columns)
        low, high = micros(start), micros(end)
        files = [
            e
            for e in manifest.files_of(tenant, current.name)
            if e.ts_min <= high and e.ts_max >= low
        ]
        if not files:
            return Scan(empty_frame(current).lazy().select(names), 0, 0, False)
        frame = self.read_files(current, files).select(names)
        return Scan(frame, len(files), sum(e.rows for e in files), False)

    def read_files(self, subject: Subject, files: Sequence[FileEntry]) -> pl.LazyFrame:
        """The rows of ``files`` (entries of one tenant's ``subject``, which must be its current
        form for that tenant), checked first (PQL-E102), all columns of the subject."""
        self.check_files(files)
        return pl.scan_parquet(
            [str(self._root / e.path) for e in files],
            schema=subject.polars_schema(),
            missing_columns="insert",
            extra_columns="ignore",
            hive_partitioning=False,
            glob=False,
        )

    def version(self, tenant: str) -> int:
        """How many ingests have stored rows for ``tenant`` (from any process)."""
        return self._refresh().versions.get(tenant, 0)

    def tenants(self) -> tuple[str, ...]:
        """The tenants with stored rows, sorted."""
        return self._refresh().tenants()

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        """``tenant``'s extra columns in stored data: subject -> column -> type."""
        return self._refresh().extras_of(tenant)

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        """Per (day, region) statistics of ``tenant``'s ``subject``, from the manifest."""
        manifest = self._refresh()
        if manifest is not self._stats_of:  # cached per manifest version
            self._stats, self._stats_of = {}, manifest
        key = (tenant, subject)
        if key not in self._stats:
            self._stats[key] = _stats(manifest.files_of(tenant, subject))
        return list(self._stats[key])

    # -- maintenance ---------------------------------------------------------------------------

    def gc_orphans(self, delete: bool = False) -> list[Path]:
        """Data files no committed manifest lists (left by a crash), and rollup files of no
        listed data file, sorted.

        With ``delete=True`` they are removed, under the ingest lock so that no ingest in
        progress loses its files. Files the manifest lists are never touched. Without a
        readable manifest nothing can be told apart, so this refuses (PQL-E100, PQL-E059)
        unless the lake holds no files at all.
        """
        if not self._root.is_dir():
            return []
        with self._lock, self._exclusive():
            manifest = self._refresh()
            candidates = (
                *self._root.glob("mc-*/day=*/*"),
                *self._root.glob(f"mc-*/{ROLLUP_DIR}/*"),
                *self._meta(TMP_DIR).glob("*"),
                *self._meta().glob(f".{MANIFEST_NAME}.*.tmp"),
            )
            if candidates and not self.manifest_path.is_file():
                raise self._no_manifest()
            kept = (*manifest.files, *manifest.retired)
            listed = {self._root / e.path for e in kept}
            owners = {(e.path.split("/")[0], Path(e.path).name, e.bytes) for e in kept}
            orphans = sorted(
                p
                for p in candidates
                if p.is_file()
                and p not in listed
                and (p.parent.name != ROLLUP_DIR or rollup_files.owner(p) not in owners)
            )
            if delete:
                for path in orphans:
                    self._guard("delete", path)
                for path in orphans:
                    path.unlink()
        return orphans

    def quarantine(self, path: Path | str) -> FileEntry:
        """Take one data file out of the lake: its rows are no longer read.

        ``path`` is the file (absolute, or relative to the root) as an error named it. The
        manifest is committed without it (its tenant's version grows, so caches and statistics
        follow), then the file, if it still exists, is moved to ``_pql/quarantine/`` for
        inspection; nothing is deleted. The way out of PQL-E102 when no backup of the file
        exists.
        """
        relative = self._relative(Path(path))
        with self._lock, self._exclusive():
            manifest = self._refresh()
            entry = next((e for e in manifest.files if e.path == relative), None)
            if entry is None:
                raise InputError(
                    "PQL-E103",
                    f"{str(path)!r} is not a data file of the lake {str(self._root)!r}",
                    hints=("give the file as the error named it, e.g. mc-.../day=.../part-...",),
                )
            self._guard("quarantine", self._root / entry.path)
            committed = manifest.without(entry)
            _atomic_write(self.manifest_path, _dump(committed))
            self._manifest = committed
            self._signature = _signature(os.stat(self.manifest_path))
            self._keys.pop((entry.tenant, entry.subject), None)
            self.drop_snapshots(entry.tenant)
            source = self._root / entry.path
            if source.exists():
                target = self._meta(QUARANTINE_DIR, entry.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            rollup_files.remove(self._root, entry.path, entry.bytes)
        return entry

    def drop_snapshots(self, tenant: str | None = None) -> int:
        """Delete the index snapshots of ``tenant``'s buckets (``None``: of every bucket); see
        :func:`drop_snapshots`."""
        return drop_snapshots(self._root, tenant)

    def digest(self, entry: FileEntry) -> str:
        """The SHA-256 of ``entry``'s bytes (hex)."""
        with open(self._root / entry.path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def relocated(self, entry: FileEntry, storage: str) -> FileEntry:
        """The entry ``entry``'s copy in storage region ``storage`` has (:meth:`copy_to`)."""
        bucket = bucket_name(entry.tenant, storage, entry.subject)
        relative = f"{bucket}/day={entry.day.isoformat()}/{Path(entry.path).name}"
        return replace(entry, path=relative, storage=storage)

    def copy_to(self, entry: FileEntry, storage: str) -> FileEntry:
        """Copy one committed file into the bucket of storage region ``storage``; not committed.

        The copy keeps the file's name, day and statistics (its rows, and so their ``region``,
        are the same bytes); only :attr:`FileEntry.storage` and the path differ. A copy already
        there with the same bytes is kept, anything else at that path is replaced. Until
        :meth:`swap` commits it, the copy is an orphan that no query reads.
        """
        copied = self.relocated(entry, storage)
        relative = copied.path
        if relative == entry.path:
            return copied
        final = self._root / relative
        same_size = final.is_file() and final.stat().st_size == entry.bytes
        if same_size and self.digest(copied) == self.digest(entry):
            rollup_files.copy(self._root, entry.path, relative, entry.bytes)
            return copied
        temp = self._meta(TMP_DIR, f"{final.name}.{uuid.uuid4().hex}.tmp")
        temp.parent.mkdir(parents=True, exist_ok=True)
        with open(self._root / entry.path, "rb") as source, open(temp, "wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
            target.flush()
            if self._durable:
                os.fsync(target.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        if self._durable:
            for directory in _with_parents({final.parent}, self._root):
                _fsync_dir(directory)
        rollup_files.copy(self._root, entry.path, relative, entry.bytes)
        return copied

    def swap(
        self,
        tenant: str,
        retire: Sequence[str],
        activate: Sequence[FileEntry],
        home: str | None = None,
    ) -> Manifest:
        """Replace a set of ``tenant``'s files by another in one manifest commit.

        The files at ``retire`` are retired (kept on disk, listed, never read), the files of
        ``activate`` (copies made by :meth:`copy_to`, or retired files brought back) are read
        instead, and ``home`` becomes the tenant's storage region. Readers see either the old
        set or the new one, never a mix. Every file to activate must be whole (PQL-E102) and
        every path to retire a file of the tenant (PQL-E216). Repeating a swap changes nothing
        but the version.
        """
        with self._lock, self._exclusive():
            manifest = self._refresh()
            known = {e.path for e in (*manifest.files, *manifest.retired) if e.tenant == tenant}
            strangers = [p for p in retire if p not in known]
            strangers += [e.path for e in activate if e.tenant != tenant]
            if strangers:
                raise InputError(
                    "PQL-E216",
                    f"{strangers[0]!r} is not a data file of tenant {tenant!r} in the lake "
                    f"{str(self._root)!r}",
                    hints=("swap only a tenant's own files, as the manifest lists them",),
                )
            self.check_files(activate)
            committed = manifest.swap(tenant, retire, activate, home)
            _atomic_write(self.manifest_path, _dump(committed))
            self._manifest = committed
            self._signature = _signature(os.stat(self.manifest_path))
            write_homes(self._root, committed.homes)
            for key in [k for k in self._keys if k[0] == tenant]:
                del self._keys[key]
            # The tenant's rows now live elsewhere (or back where they were): no snapshot of
            # them stays behind in a region they left.
            self.drop_snapshots(tenant)
        return committed

    def purge_retired(self, tenant: str) -> tuple[FileEntry, ...]:
        """Delete ``tenant``'s retired files: first from the manifest, then from disk."""
        with self._lock, self._exclusive():
            manifest = self._refresh()
            committed, purged = manifest.purge(tenant)
            if not purged:
                return ()
            for entry in purged:  # a copy a guard (an object lock) keeps refuses the whole purge
                self._guard("delete", self._root / entry.path)
            _atomic_write(self.manifest_path, _dump(committed))
            self._manifest = committed
            self._signature = _signature(os.stat(self.manifest_path))
            for entry in purged:
                (self._root / entry.path).unlink(missing_ok=True)
                rollup_files.remove(self._root, entry.path, entry.bytes)
            self.drop_snapshots(tenant)
        return purged

    def check_files(self, entries: Sequence[FileEntry]) -> None:
        """Raise PQL-E102 for the first of ``entries`` that is missing or damaged.

        Each file is checked once per version (inode, mtime, size): its size against the
        manifest and its Parquet magic bytes.
        """
        for entry in entries:
            path = self._root / entry.path
            try:
                signature = _signature(os.stat(path))
            except OSError:
                signature = None
            if signature is not None and self._verified.get(entry.path) == signature:
                continue
            problem = damaged(path, entry.bytes)
            if problem is not None:
                raise self.damage_error(entry, problem)
            if signature is not None:
                self._verified[entry.path] = signature

    def damage_error(self, entry: FileEntry, problem: str) -> InputError:
        """PQL-E102 for one data file: what is wrong and the ways out."""
        return InputError(
            "PQL-E102",
            f"the data file {entry.path!r} of tenant {entry.tenant!r} in the lake "
            f"{str(self._root)!r} cannot be read: {problem}",
            hints=(
                "restore the file from a backup, or take it out of the lake with "
                f"`pql lake quarantine --data {self._root} {entry.path}` "
                f"({entry.rows:,} rows of {entry.subject}, {entry.day.isoformat()}, "
                "are then no longer read)",
            ),
            details={"path": entry.path, "tenant": entry.tenant, "problem": problem},
        )

    def storage_region(self, tenant: str, region: str) -> str:
        """The region of the bucket ``tenant``'s new rows of ``region`` go to: its storage
        region when it was moved (``Manifest.homes``), else the rows' own."""
        return self._refresh().homes.get(tenant, region)

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        """After a read of ``tenant``'s rows failed with ``exc`` (Polars, Arrow or the OS):
        PQL-E102 naming the first of the tenant's files that cannot be read whole, or ``None``
        when every file reads, so the failure was not the data's.

        A file can keep its size and its Parquet markers and still be damaged inside; only
        reading it finds that, so this reads the tenant's files one by one, on the failure path
        only.
        """
        if not isinstance(exc, pl.exceptions.PolarsError | pa.ArrowException | OSError):
            return None
        entries = [e for e in self._refresh().files if e.tenant == tenant]
        try:
            self.check_files(entries)
        except InputError as found:
            return found
        for entry in sorted(entries, key=lambda e: e.path):
            try:
                pl.read_parquet(self._root / entry.path)
            except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as failure:
                return self.read_error([entry], failure)
        return None

    def read_error(self, entries: Sequence[FileEntry], exc: BaseException) -> InputError:
        """PQL-E102 for a read of ``entries`` that failed although every file looked whole."""
        for entry in entries:  # name the culprit when it can be found
            self._verified.pop(entry.path, None)
            problem = damaged(self._root / entry.path, entry.bytes)
            if problem is not None:
                return self.damage_error(entry, problem)
        if len(entries) == 1:
            return self.damage_error(entries[0], f"Parquet says: {exc}")
        for entry in entries:  # damaged inside: only reading each file finds it
            try:
                pl.read_parquet(self._root / entry.path)
            except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as failure:
                return self.damage_error(entry, f"Parquet says: {failure}")
        shown = ", ".join(e.path for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        return InputError(
            "PQL-E102",
            f"one of {len(entries)} data files in the lake {str(self._root)!r} cannot be read "
            f"({shown}): {exc}",
            hints=(
                "find it by reading the files one by one (e.g. with pyarrow.parquet), then "
                f"restore it or `pql lake quarantine --data {self._root} FILE`",
            ),
        )

    # -- internals -----------------------------------------------------------------------------

    def _guard(self, action: str, path: Path) -> None:
        for guard in self.removal_guards:
            guard(action, path.relative_to(self._root).as_posix())

    def _relative(self, path: Path) -> str:
        """``path`` relative to the root (as the manifest names files)."""
        if path.is_absolute():
            try:
                return path.relative_to(self._root.absolute()).as_posix()
            except ValueError:
                return path.as_posix()
        return path.as_posix()

    def _no_manifest(self) -> InputError:
        """PQL-E100: data files but no manifest."""
        return InputError(
            "PQL-E100",
            f"the lake {str(self._root)!r} has data files but no manifest "
            f"({META_DIR}/{MANIFEST_NAME}); without it no file can be trusted, so nothing is read",
            hints=(
                f"restore {META_DIR}/{MANIFEST_NAME} from a backup",
                "or rebuild it from the data files: "
                f"`pql lake rebuild-manifest --data {self._root}`",
            ),
            details={"path": str(self.manifest_path)},
        )

    def _has_data_files(self) -> bool:
        return next(iter(self._root.glob("mc-*/day=*/*.parquet")), None) is not None

    def _meta(self, *parts: str) -> Path:
        return self._root.joinpath(META_DIR, *parts)

    def _check_root(self) -> None:
        if self._root.exists() and not self._root.is_dir():
            raise InputError(
                "PQL-E059",
                f"the data directory {str(self._root)!r} is a file",
                hints=("give a directory (it is created if it does not exist)",),
            )

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the lake's lock file exclusively (creating the lake's directories if needed)."""
        with exclusive(self._root):
            yield

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this lake's thread lock, then its lock file, in the order every writer of the
        lake takes them (the other order deadlocks against an ingest in another thread); a
        lake that is gone raises ``FileNotFoundError`` instead of being made again."""
        with self._lock, exclusive(self._root, create=False):
            yield

    def _refresh(self) -> Manifest:
        """The manifest, re-read only when the file changed; syncs extras into the catalog."""
        # Every query asks several times: when nothing changed (one stat), answer without the
        # lock. Held across the stat, the lock made concurrent queries queue behind each other
        # for the interpreter lock. Writers set ``_manifest`` before ``_signature``, so a
        # signature that still matches the file comes with its manifest or a newer one.
        known = self._signature
        if known is not None:
            try:
                if _signature(os.stat(self._manifest_path)) == known:
                    return self._manifest
            except OSError:
                pass  # decided under the lock, below
        with self._lock:
            try:
                # The manifest is replaced atomically, so an unchanged signature means the
                # manifest in memory is current (another thread may have read it meanwhile).
                with open(self.manifest_path, "rb") as handle:
                    signature = _signature(os.fstat(handle.fileno()))
                    if signature == self._signature:
                        return self._manifest
                    manifest = _parse_manifest(self.manifest_path, handle.read())
            except FileNotFoundError:
                if self._signature is not None or self._has_data_files():
                    raise self._no_manifest() from None
                return self._manifest
            self._restore_extras(manifest)
            self._manifest, self._signature = manifest, signature
            return manifest

    def _restore_extras(self, manifest: Manifest) -> None:
        """Give each tenant in the catalog the extra columns the manifest lists for it."""
        for tenant, subjects in manifest.extras.items():
            for subject, columns in subjects.items():
                if subject in self._catalog:
                    self._catalog.add_extras(tenant, subject, columns)

    def _stored_keys(self, manifest: Manifest, tenant: str, subject: Subject) -> pl.Series:
        """The keys stored for ``tenant``'s ``subject``, read lazily from committed files."""
        cached = self._keys.setdefault((tenant, subject.name), _Keys())
        unread = [e for e in manifest.files_of(tenant, subject.name) if e.path not in cached.files]
        if unread:
            self.check_files(unread)
            try:
                keys = (
                    pl.scan_parquet(
                        [str(self._root / e.path) for e in unread],
                        hive_partitioning=False,
                        glob=False,
                    )
                    .select(pl.col(subject.key).cast(pl.String))
                    .collect()
                    .to_series()
                )
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise self.read_error(unread, exc) from None
            cached.keys = pl.concat([cached.keys, keys]).rechunk()
            cached.files.update(e.path for e in unread)
        return cached.keys

    def _commit(self, manifest: Manifest, subject: Subject, new: pl.DataFrame) -> list[FileEntry]:
        """Write ``new`` rows as day files, then the manifest; update the caches and catalog."""
        parts = partitions_of(subject, new)
        if not self.manifest_path.exists():  # a manifest exists before any bucket does
            _atomic_write(self.manifest_path, _dump(manifest))
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(parts))) as pool:
            entries = list(pool.map(partial(self._write_file, subject, manifest.homes), parts))
            written = {(self._root / e.path).parent for e in entries}
            if self.rollup_specs:
                written |= {self._root / e.path.split("/")[0] / ROLLUP_DIR for e in entries}
            dirs = _with_parents({d for d in written if d.is_dir()}, self._root)
            if self._durable:
                list(pool.map(_fsync_dir, dirs))
        extras = extra_columns(subject, new)
        tenants = sorted({e.tenant for e in entries})
        committed = manifest.commit(entries, {t: {subject.name: extras} for t in tenants})
        _atomic_write(self.manifest_path, _dump(committed))
        self._manifest = committed
        self._signature = _signature(os.stat(self.manifest_path))
        for tenant in tenants:
            self._catalog.add_extras(tenant, subject.name, extras)
        self._remember_keys(subject, new, entries)
        return entries

    def _write_file(self, subject: Subject, homes: Mapping[str, str], part: Partition) -> FileEntry:
        """Write one day partition: to a temp file, fsync, rename into its bucket.

        The bucket is in the tenant's storage region when it has one (``homes``), else in the
        region of the rows.
        """
        name = f"part-{uuid.uuid4().hex}.parquet"
        storage = homes.get(part.tenant, part.region)
        bucket = bucket_name(part.tenant, storage, subject.name)
        relative = f"{bucket}/day={part.day.isoformat()}/{name}"
        temp = self._meta(TMP_DIR, f"{name}.tmp")
        with open(temp, "wb") as handle:
            part.rows.write_parquet(handle, statistics=True)
            handle.flush()
            if self._durable:
                os.fsync(handle.fileno())
            size = os.fstat(handle.fileno()).st_size
        final = self._root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        spec = self.rollup_specs.get(subject.name)
        if spec is not None:
            with suppress(OSError):  # a missing rollup file costs speed, never answers
                rollup_files.write(
                    self._root, relative, size, spec, part.rows, durable=self._durable
                )
        return FileEntry(
            path=relative,
            tenant=part.tenant,
            region=part.region,
            subject=subject.name,
            day=part.day,
            rows=part.rows.height,
            bytes=size,
            ts_min=part.ts_min,
            ts_max=part.ts_max,
            storage=storage,
        )

    def _remember_keys(self, subject: Subject, new: pl.DataFrame, entries: list[FileEntry]) -> None:
        """Add the committed rows' keys to the in-memory key sets."""
        for (tenant,), rows in new.partition_by("tenant", as_dict=True).items():
            cached = self._keys.get((str(tenant), subject.name))
            if cached is None:
                continue  # not loaded yet: it will be read from the files when needed
            fresh = rows.get_column(subject.key).cast(pl.String)
            cached.keys = pl.concat([cached.keys, fresh]).rechunk()
            cached.files.update(e.path for e in entries if e.tenant == tenant)


# -- files -------------------------------------------------------------------------------------


def ingest_report(
    subject: Subject,
    frame: pl.DataFrame,
    new: pl.DataFrame,
    duplicates: int,
    duplicate_keys: tuple[str, ...],
    entries: Sequence[FileEntry],
) -> IngestReport:
    """What an ingest of ``frame`` did: ``new`` rows written as ``entries``, the rest duplicates."""
    return IngestReport(
        subject=subject.name,
        rows_in=frame.height,
        written=new.height,
        duplicates=duplicates,
        tenants=tuple(sorted({e.tenant for e in entries})),
        partitions=len(entries),
        duplicate_keys=duplicate_keys,
        files=tuple(e.path for e in entries),
    )


@contextmanager
def exclusive(root: Path, *, create: bool = True) -> Iterator[None]:
    """Hold the lock file of the lake at ``root`` exclusively (creating its directories, unless
    ``create`` is false: then a lake that is gone raises ``FileNotFoundError``)."""
    if create:
        (root / META_DIR / TMP_DIR).mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    fd = os.open(root / META_DIR / LOCK_NAME, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _stats(files: Sequence[FileEntry]) -> list[PartitionStats]:
    """Per (day, region) totals of ``files``, by day then region."""
    groups: dict[tuple[date, str], list[FileEntry]] = {}
    for entry in files:
        groups.setdefault((entry.day, entry.region), []).append(entry)
    return [
        PartitionStats(
            day=day,
            region=region,
            rows=sum(e.rows for e in entries),
            bytes=sum(e.bytes for e in entries),
            ts_min=from_micros(min(e.ts_min for e in entries)),
            ts_max=from_micros(max(e.ts_max for e in entries)),
            files=len(entries),
        )
        for (day, region), entries in sorted(groups.items())
    ]


def drop_snapshots(root: Path, tenant: str | None = None) -> int:
    """Delete the index snapshots (:data:`SNAPSHOT_DIR`) of ``tenant``'s buckets in the lake at
    ``root`` (``None``: of every bucket); returns how many files went. They are a cache, never
    data: no removal guard is asked. Called when a tenant's files move, are purged or
    quarantined, and when the manifest is rebuilt, so that no copy of rows outlives the files
    it was made from, nor stays in a region its tenant left."""
    removed = 0
    for folder in root.glob(f"mc-*/{SNAPSHOT_DIR}"):
        parsed = parse_bucket(folder.parent.name)
        if parsed is None or (tenant is not None and parsed[0] != tenant):
            continue
        for file in folder.iterdir():
            file.unlink(missing_ok=True)
            removed += 1
        with suppress(OSError):  # one written meanwhile: it is keyed, so never served stale
            folder.rmdir()
    return removed


def _signature(stat: os.stat_result) -> _Signature:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _parse_manifest(path: Path, payload: bytes) -> Manifest:
    try:
        return Manifest.from_json(json.loads(payload), root=path.parent.parent)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise InputError(
            "PQL-E059",
            f"the lake manifest {str(path)!r} cannot be read: {exc}",
            hints=(
                "is this a pql data directory? the manifest is only written by pql",
                f"restore it from a backup, or rebuild it from the data files: "
                f"`pql lake rebuild-manifest --data {path.parent.parent}`",
            ),
        ) from exc


def write_homes(root: Path, homes: Mapping[str, str]) -> None:
    """Record each moved tenant's storage region in ``_pql/homes.json`` (see :data:`HOMES_NAME`)."""
    payload = {"format": 1, "homes": dict(sorted(homes.items()))}
    _atomic_write(root / META_DIR / HOMES_NAME, json.dumps(payload).encode())


def read_homes(root: Path) -> dict[str, str] | None:
    """The storage regions ``_pql/homes.json`` records, or ``None`` when it is missing or
    unreadable."""
    try:
        raw = json.loads((root / META_DIR / HOMES_NAME).read_bytes())
        homes = raw["homes"] if raw.get("format") == 1 else None
        if not isinstance(homes, dict):
            return None
        return {str(t): str(r) for t, r in homes.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def dump(manifest: Manifest) -> bytes:
    """The bytes of ``manifest.json`` for ``manifest``."""
    return _dump(manifest)


def _dump(manifest: Manifest) -> bytes:
    return json.dumps(manifest.to_json(), separators=(",", ":")).encode()


def atomic_write(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, payload)


def _atomic_write(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` atomically: temp file, fsync, rename, fsync the dir."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _with_parents(dirs: set[Path], root: Path) -> list[Path]:
    """``dirs`` and their parents up to ``root``: every directory an ingest may have created."""
    out = set(dirs)
    for directory in dirs:
        out.update(p for p in directory.parents if p == root or root in p.parents)
    return sorted(out)
