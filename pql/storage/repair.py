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
"""

from __future__ import annotations

import json
import os
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
    dump,
    exclusive,
    parse_bucket,
)

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
        keys: dict[tuple[str, str], list[pl.Series]] = {}
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
            keys.setdefault((entry.tenant, subject.name), []).append(
                frame.get_column(subject.key).cast(pl.String)
            )
        versions: dict[str, int] = {}
        for entry in entries:
            versions[entry.tenant] = versions.get(entry.tenant, 0) + 1
        atomic_write(path, dump(Manifest(tuple(entries), versions, extras)))
    return RebuildReport(
        files=len(entries),
        rows=sum(e.rows for e in entries),
        tenants=tuple(sorted(versions)),
        skipped=tuple(skipped),
        duplicates=_duplicates(keys.values()),
        replaced=replaced,
        extras=extras,
    )


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
    _check_rows(frame, subject, tenant, region, day)
    ts = frame.get_column("ts")
    low, high = ts.min(), ts.max()
    return (
        FileEntry(
            path=file.relative_to(root).as_posix(),
            tenant=tenant,
            region=region,
            subject=subject.name,
            day=day,
            rows=frame.height,
            bytes=file.stat().st_size,
            ts_min=micros(low),  # type: ignore[arg-type]
            ts_max=micros(high),  # type: ignore[arg-type]
        ),
        frame,
        subject,
    )


def _check_rows(frame: pl.DataFrame, subject: Subject, tenant: str, region: str, day: date) -> None:
    """Raise :class:`_Skip` unless every row belongs to the file's bucket and day."""
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
        region=(pl.col("region") != region).any()
        if has_region(subject)
        else pl.lit(region != GLOBAL_REGION),
    ).row(0, named=True)
    found = [name for name, bad in wrong.items() if bad]
    if found:
        raise _Skip(f"some rows have another {' and '.join(found)} than its bucket")


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
