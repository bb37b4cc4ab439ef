"""Rebuild a lake's manifest from its data files, when the manifest is lost or damaged.

The manifest (``_pql/manifest.json``) is the lake's truth: readers see only the files it lists.
If it is gone, a lake with data files refuses to open (PQL-E100) rather than read as empty.
:func:`rebuild_manifest` (``pql lake rebuild-manifest``) writes a new one from what the buckets
hold: every readable data file whose rows all belong to its bucket's tenant, region, subject
and day. What it cannot trust it leaves out and reports. A damaged manifest is kept in
``_pql/quarantine/``.

A lost manifest cannot say which files were committed, so files left by an ingest that crashed
before its commit (orphans) are published too; the report counts the record keys that then
appear more than once.

Storage regions are recovered from the layout. A file whose rows are all of one region other
than its bucket's is a copy moved to another storage region (:meth:`Lake.copy_to`): its entry
keeps the rows' ``region`` and takes the bucket's as ``storage``. Each moved tenant's storage
region (``homes``) is read from ``_pql/homes.json``, which every swap writes; without that file
it is inferred (the one storage region holding the tenant's moved copies, if there is one).
When the same file is in several buckets of a tenant, the copy in the tenant's storage region
is read (else the original, in its rows' own region) and the others are ``retired``, as a
migration or a rollback left them.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InputError
from pql.storage.base import GLOBAL_REGION, has_region, micros
from pql.storage.lake import (
    MANIFEST_NAME,
    META_DIR,
    QUARANTINE_DIR,
    FileEntry,
    Manifest,
    atomic_write,
    damaged,
    drop_snapshots,
    dump,
    exclusive,
    parse_bucket,
    read_homes,
)
from pql.storage.validate import REGION_PATTERN

__all__ = ["RebuildReport", "rebuild_manifest"]


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What :func:`rebuild_manifest` found.

    ``skipped`` lists the data files left out, each with the reason; ``duplicates`` counts keys
    stored in more than one file of a tenant's subject; ``replaced`` is where a damaged
    manifest was moved (``None`` when there was none).
    """

    files: int
    rows: int
    tenants: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    duplicates: int = 0
    replaced: str | None = None
    extras: dict[str, dict[str, dict[str, DataType]]] = field(default_factory=dict)
    """The extra columns restored, per tenant: tenant -> subject -> column -> type."""
    homes: dict[str, str] = field(default_factory=dict)
    """Each moved tenant's storage region, as restored."""
    retired: int = 0
    """Copies of files read elsewhere, restored as retired (kept, never read)."""
    homes_inferred: bool = False
    """Whether ``homes`` was inferred from the layout (``_pql/homes.json`` was missing)."""


def rebuild_manifest(
    root: Path | str, catalog: Catalog | None = None, *, force: bool = False
) -> RebuildReport:
    """Write a new manifest for the lake at ``root`` from its data files.

    Refused (PQL-E103) when the lake has a readable manifest, unless ``force``: rebuilding
    then would also publish orphans. Runs under the lake's ingest lock. Tenants' versions
    restart at the number of their files, so restart long-lived engines afterwards.
    """
    root = Path(root)
    catalog = catalog or Catalog()
    if not root.is_dir():
        raise InputError("PQL-E103", f"the lake {str(root)!r} is not a directory")
    path = root / META_DIR / MANIFEST_NAME
    with exclusive(root):
        replaced = _set_aside(root, path, force)
        entries: list[FileEntry] = []
        skipped: list[tuple[str, str]] = []
        extras: dict[str, dict[str, dict[str, DataType]]] = {}  # tenant -> subject -> columns
        keys: dict[str, tuple[str, str, pl.Series]] = {}  # path -> tenant, subject, keys
        for file in sorted(root.glob("mc-*/day=*/*.parquet")):
            relative = file.relative_to(root).as_posix()
            try:
                entry, frame, subject = _read(root, file, catalog)
            except _Skip as skip:
                skipped.append((relative, str(skip)))
                continue
            entries.append(entry)
            for name, type_ in _extras(subject, frame).items():
                mine = extras.setdefault(entry.tenant, {}).setdefault(subject.name, {})
                mine.setdefault(name, type_)
            keys[entry.path] = (
                entry.tenant,
                subject.name,
                frame.get_column(subject.key).cast(pl.String),
            )
        recorded = read_homes(root)
        homes = recorded if recorded is not None else _infer_homes(entries)
        active, retired = _choose_copies(entries, homes)
        versions: dict[str, int] = {}
        for entry in active:
            versions[entry.tenant] = versions.get(entry.tenant, 0) + 1
        homes = {
            t: r for t, r in homes.items() if t in versions or any(e.tenant == t for e in retired)
        }
        manifest = Manifest(tuple(active), versions, extras, tuple(retired), homes)
        # Versions restart here: snapshots keyed by the old ones must never match by chance.
        drop_snapshots(root)
        atomic_write(path, dump(manifest))
    groups: dict[tuple[str, str], list[pl.Series]] = {}
    for entry in active:
        tenant, subject_name, series = keys[entry.path]
        groups.setdefault((tenant, subject_name), []).append(series)
    return RebuildReport(
        files=len(active),
        rows=sum(e.rows for e in active),
        tenants=tuple(sorted(versions)),
        skipped=tuple(skipped),
        duplicates=_duplicates(groups.values()),
        replaced=replaced,
        extras=extras,
        homes=dict(homes),
        retired=len(retired),
        homes_inferred=recorded is None and bool(homes),
    )


def _infer_homes(entries: Iterable[FileEntry]) -> dict[str, str]:
    """Without ``_pql/homes.json``: a tenant whose moved copies are all in one storage region
    lives there (after a rollback that guess is wrong; the record file says it right)."""
    moved: dict[str, set[str]] = {}
    for entry in entries:
        if entry.storage != entry.region:
            moved.setdefault(entry.tenant, set()).add(entry.storage)
    return {tenant: next(iter(found)) for tenant, found in moved.items() if len(found) == 1}


def _choose_copies(
    entries: Iterable[FileEntry], homes: dict[str, str]
) -> tuple[list[FileEntry], list[FileEntry]]:
    """The entries to read and the copies to retire: of the copies of one file (a tenant's
    subject, day and file name in several buckets) the one in the tenant's storage region is
    read, else the original (in its rows' own region), else the first by path."""
    copies: dict[tuple[str, str, str, str], list[FileEntry]] = {}
    for entry in entries:
        name = entry.path.rsplit("/", 1)[-1]
        copies.setdefault((entry.tenant, entry.subject, entry.day.isoformat(), name), []).append(
            entry
        )
    active: list[FileEntry] = []
    retired: list[FileEntry] = []
    for group in copies.values():
        home = homes.get(group[0].tenant)

        def rank(e: FileEntry, home: str | None = home) -> tuple[int, str]:
            return (0 if e.storage == home else 1 if e.storage == e.region else 2, e.path)

        ordered = sorted(group, key=rank)
        active.append(ordered[0])
        retired.extend(ordered[1:])
    return active, retired


class _Skip(Exception):
    """A data file the rebuild leaves out; the message says why."""


def _set_aside(root: Path, path: Path, force: bool) -> str | None:
    """Check the current manifest; move a damaged (or, with ``force``, any) one aside."""
    if not path.exists():
        return None
    try:
        Manifest.from_json(json.loads(path.read_bytes()))
        readable = True
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        readable = False
    if readable and not force:
        raise InputError(
            "PQL-E103",
            f"the lake {str(root)!r} has a readable manifest; rebuilding it would also publish "
            "files no ingest committed",
            hints=("to rebuild anyway, pass --force (force=True); the old manifest is kept",),
        )
    target = root / META_DIR / QUARANTINE_DIR / f"manifest-{uuid.uuid4().hex}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target.relative_to(root).as_posix()


def _read(root: Path, file: Path, catalog: Catalog) -> tuple[FileEntry, pl.DataFrame, Subject]:
    """The manifest entry of one data file, its rows and its subject; or :class:`_Skip`."""
    bucket = parse_bucket(file.parent.parent.name)
    if bucket is None:
        raise _Skip("its directory is not a bucket name")
    tenant, region, subject_name = bucket
    subject = catalog.get(subject_name)
    if subject is None:
        raise _Skip(f"unknown subject {subject_name!r}")
    try:
        day = date.fromisoformat(file.parent.name.removeprefix("day="))
    except ValueError:
        raise _Skip("its directory is not day=YYYY-MM-DD") from None
    problem = damaged(file)
    if problem is not None:
        raise _Skip(problem)
    try:
        frame = pl.read_parquet(file, hive_partitioning=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _Skip(f"it cannot be read: {exc}") from None
    rows_region = _check_rows(frame, subject, tenant, region, day)
    ts = frame.get_column("ts")
    low, high = ts.min(), ts.max()
    return (
        FileEntry(
            path=file.relative_to(root).as_posix(),
            tenant=tenant,
            region=rows_region,
            subject=subject.name,
            day=day,
            rows=frame.height,
            bytes=file.stat().st_size,
            ts_min=micros(low),  # type: ignore[arg-type]
            ts_max=micros(high),  # type: ignore[arg-type]
            storage=region,
        ),
        frame,
        subject,
    )


def _check_rows(frame: pl.DataFrame, subject: Subject, tenant: str, region: str, day: date) -> str:
    """The region of the file's rows; raise :class:`_Skip` unless every row belongs to the
    file's bucket (its tenant) and day, and all rows are of one region: the bucket's, or
    another one when the file is a copy moved to the bucket's storage region."""
    needed = ["tenant", "ts", subject.key, *(["region"] if has_region(subject) else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise _Skip(f"it lacks the columns {', '.join(missing)}")
    if frame.height == 0:
        raise _Skip("it has no rows")
    if not isinstance(frame.schema["ts"], pl.Datetime):
        raise _Skip("its ts column is not a timestamp")
    ts = pl.col("ts").dt.replace_time_zone(None) if frame.schema["ts"].time_zone else pl.col("ts")
    wrong = frame.select(
        tenant=(pl.col("tenant") != tenant).any(),
        day=(ts.dt.date() != day).any() | pl.col("ts").is_null().any(),
        region=(pl.col("region").n_unique() > 1) | pl.col("region").is_null().any()
        if has_region(subject)
        else pl.lit(False),
    ).row(0, named=True)
    found = [name for name, bad in wrong.items() if bad]
    if found:
        raise _Skip(f"some rows have another {' and '.join(found)} than its bucket")
    if not has_region(subject):
        return GLOBAL_REGION
    rows_region = str(frame.get_column("region")[0])
    if rows_region != region and not re.fullmatch(REGION_PATTERN, rows_region):
        raise _Skip(f"its rows' region {rows_region!r} is not a region")
    return rows_region


def _extras(subject: Subject, frame: pl.DataFrame) -> dict[str, DataType]:
    """The columns of a data file that are not the subject's own, with their types."""
    out: dict[str, DataType] = {}
    for name, dtype in frame.schema.items():
        column = subject.column(name)
        if (column is None or not column.required) and (
            found := DataType.from_polars(dtype)
        ) is not None:
            out[name] = found
    return out


def _duplicates(groups: Iterable[list[pl.Series]]) -> int:
    """How many keys appear more than once within one tenant's subject."""
    total = 0
    for series in groups:
        keys = pl.concat(series)
        total += keys.len() - keys.n_unique()
    return total
