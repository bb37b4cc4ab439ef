"""Rollup files: each data file's rollup partials, written beside it when it is written.

A local lake's ingest writes, next to every data file, the file's rollup partials
(:func:`pql.storage.rollups.partials`: one row per day and key) as a small Arrow file::

    mc-{tenant}-{region}-{subject}/_rollup/part-{uuid}.{bytes}.{spec}.arrow

so that an engine opened on data it has never indexed answers aggregates over whole days from
these rows instead of reading every row of the window (:meth:`IndexedLake.rollup
<pql.storage.indexed.IndexedLake.rollup>`), and an index loaded from Parquet takes its rollups
from them instead of computing them.

A rollup file is derived data that lives and dies with its data file: it is named after the
file (its name and size: data files are written once, under a unique name) and after the
rollup spec and this format (:func:`spec_key`), so a file of another spec or pql version is
never read; it is copied with the file to another storage region, deleted when the file is
purged or quarantined, and listed by :meth:`Lake.gc_orphans <pql.storage.lake.Lake.gc_orphans>`
once its file is gone. A missing or unreadable rollup file only costs speed: the rows are read.
:func:`missing` and :func:`write_missing` (``pql lake rollups``) write those a lake ingested
before rollup files existed lacks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from pql.catalog import Catalog
from pql.storage.rollups import RollupSpec, partials, rollup_specs, schema_of

__all__ = [
    "ROLLUP_DIR",
    "copy",
    "frame",
    "missing",
    "path_of",
    "read",
    "remove",
    "spec_key",
    "write",
    "write_missing",
]

ROLLUP_DIR = "_rollup"
"""The folder of a bucket that holds its data files' rollup files."""

FORMAT = 1
"""The layout of a rollup file; part of :func:`spec_key`, so a new layout never reads an old one."""


@functools.cache
def spec_key(spec: RollupSpec) -> str:
    """A short digest of ``spec``'s columns and types and of :data:`FORMAT`."""
    text = f"{FORMAT}|{spec.subject}|" + "|".join(f"{k}:{v}" for k, v in schema_of(spec).items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_of(root: Path, data_path: str, size: int, spec: RollupSpec) -> Path:
    """Where the rollup file of the data file at ``data_path`` (relative to the lake's ``root``,
    ``size`` bytes) is kept."""
    parts = PurePosixPath(data_path)
    name = f"{parts.stem}.{size}.{spec_key(spec)}.arrow"
    return root / parts.parts[0] / ROLLUP_DIR / name


def owner(path: Path) -> tuple[str, str, int] | None:
    """``(bucket, data file name, size)`` of the data file a rollup file at ``path`` belongs to,
    or ``None`` when the name is not a rollup file's (a temp file, a stranger)."""
    pieces = path.name.split(".")
    if len(pieces) != 4 or pieces[3] != "arrow" or not pieces[1].isdigit():
        return None
    return path.parent.parent.name, f"{pieces[0]}.parquet", int(pieces[1])


def write(
    root: Path, data_path: str, size: int, spec: RollupSpec, rows: pl.DataFrame, *, durable: bool
) -> Path:
    """Write the rollup file of ``rows``, all the rows of the data file at ``data_path``."""
    final = path_of(root, data_path, size, spec)
    sink = io.BytesIO()
    partials(spec, rows).write_ipc(sink, compression="uncompressed")
    _put(final, sink.getvalue(), durable=durable)
    return final


def _put(final: Path, payload: bytes, *, durable: bool) -> None:
    """Write ``payload`` to ``final`` (in its bucket's rollup folder, made if missing) through a
    temp file beside it, renamed into place: a reader sees the whole file or none."""
    final.parent.mkdir(exist_ok=True)
    temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def read(root: Path, data_path: str, size: int, spec: RollupSpec) -> pa.Table | None:
    """The rollup rows of the data file at ``data_path``, or ``None`` when it has no good rollup
    file (missing, unreadable, or not of ``spec``'s schema): then its rows must be read.
    Arrow, to be put together with others by :func:`frame` (a file read by Polars costs ten
    times more, and a query may read hundreds)."""
    try:
        raw = path_of(root, data_path, size, spec).read_bytes()
        table = ipc.open_file(pa.BufferReader(raw)).read_all()
    except (OSError, pa.ArrowException):
        return None
    return table if table.schema.equals(_arrow_schema(spec)) else None


def frame(tables: Sequence[pa.Table]) -> pl.DataFrame:
    """Rollup rows read by :func:`read` (of one spec), as one frame."""
    return cast(pl.DataFrame, pl.from_arrow(pa.concat_tables(tables)))


@functools.cache
def _arrow_schema(spec: RollupSpec) -> pa.Schema:
    """The Arrow schema of a rollup file of ``spec``, as :func:`write` writes it."""
    sink = io.BytesIO()
    pl.DataFrame(schema=schema_of(spec)).write_ipc(sink, compression="uncompressed")
    return ipc.open_file(pa.BufferReader(sink.getvalue())).schema


def copy(root: Path, source: str, target: str, size: int) -> None:
    """Copy the rollup files of the data file at ``source`` to go with its copy at ``target``
    (same name and bytes, another bucket); one that cannot be copied is left out (it costs
    only speed)."""
    for found in _files_of(root, source, size):
        final = root / PurePosixPath(target).parts[0] / ROLLUP_DIR / found.name
        with contextlib.suppress(OSError):
            _put(final, found.read_bytes(), durable=False)


def remove(root: Path, data_path: str, size: int) -> None:
    """Delete the rollup files (of any spec) of the data file at ``data_path``."""
    for found in _files_of(root, data_path, size):
        found.unlink(missing_ok=True)


def _files_of(root: Path, data_path: str, size: int) -> list[Path]:
    parts = PurePosixPath(data_path)
    folder = root / parts.parts[0] / ROLLUP_DIR
    return sorted(folder.glob(f"{parts.stem}.{size}.*.arrow")) if folder.is_dir() else []


def missing(root: Path, catalog: Catalog, files: Iterable[tuple[str, str, int]]) -> list[str]:
    """Those of ``files`` (``(subject, path, size)`` of data files) without a rollup file of the
    current spec, in order."""
    specs = rollup_specs(catalog)
    return [
        path
        for subject, path, size in files
        if subject in specs and not path_of(root, path, size, specs[subject]).is_file()
    ]


def write_missing(
    root: Path,
    catalog: Catalog,
    files: Sequence[tuple[str, str, int]],
    read_rows: Callable[[str, str], pl.DataFrame],
    *,
    durable: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the rollup files ``files`` (``(subject, path, size)``) lack, each from its rows
    (``read_rows(subject, path)``); ``progress(done, total)`` after each. Returns how many were
    written."""
    specs = rollup_specs(catalog)
    wanted = set(missing(root, catalog, files))
    todo = [(s, p, n) for s, p, n in files if p in wanted]
    for done, (subject, path, size) in enumerate(todo, 1):
        write(root, path, size, specs[subject], read_rows(subject, path), durable=durable)
        if progress is not None:
            progress(done, len(todo))
    return len(todo)
