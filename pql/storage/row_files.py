"""Row files: each data file's rows as an index keeps them, written beside it when it is written.

An index loaded from Parquet decodes every row of its tenant: at 10M receipts the eight tenants'
loads take seconds of both cores, and the queries of an engine's first open wait behind them.
So a local lake's ingest also writes, next to every data file, the file's rows (sorted by the
order columns, as in the data file) as an uncompressed Arrow IPC file whose strings are string
views, Polars' own layout::

    mc-{tenant}-{region}-{subject}/_rows/part-{uuid}.{bytes}.rows{FORMAT}.arrow

An index that finds no snapshot of its tenant (:mod:`pql.storage.snapshots`) maps these files
and puts them in one piece, a copy but no decoding, instead of reading Parquet. They cost disk:
about what the index takes in memory (MEMORY.md), several times the Parquet files.
``Engine(..., snapshots=False)`` (``Lake(..., row_files=False)``) neither writes nor reads them.

A row file is derived data that lives and dies with its data file (:mod:`pql.storage.beside`),
and it is read only after it is checked against the manifest's entry for its data file: its
columns have the types the catalog gives them, its row count and time range are the entry's,
and every row is the entry's tenant's (rows out of order are sorted by the load, as rows read
from Parquet are). One that
fails (truncated, damaged, foreign, of an older layout) is ignored and the data file is read.
:func:`write_missing` (``pql lake rows``) writes those a lake ingested before them lacks.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from pql.catalog import Subject
from pql.storage import beside
from pql.storage.base import conform
from pql.storage.beside import ROWS_DIR

__all__ = ["FORMAT", "ROWS_DIR", "frame", "missing", "path_of", "read", "write", "write_missing"]

FORMAT = 1
"""The layout of a row file; part of its name, so a new layout never reads an old one."""

_KEY = f"rows{FORMAT}"

_TS = pa.timestamp("us", tz="UTC")
"""The type of ``ts`` in a row file (as ingest writes it)."""


def path_of(root: Path, data_path: str, size: int) -> Path:
    """Where the row file of the data file at ``data_path`` (relative to the lake's ``root``,
    ``size`` bytes) is kept."""
    return beside.path_of(root, ROWS_DIR, data_path, size, _KEY)


def write(root: Path, data_path: str, size: int, rows: pl.DataFrame, *, durable: bool) -> Path:
    """Write the row file of ``rows``, all the rows of the data file at ``data_path`` (in the
    data file's order)."""
    final = path_of(root, data_path, size)
    sink = io.BytesIO()
    rows.write_ipc(sink, compression="uncompressed", compat_level=pl.CompatLevel.newest())
    beside.put(final, sink.getvalue(), durable=durable)
    return final


def read(
    root: Path, data_path: str, size: int, *, rows: int, ts_range: tuple[int, int]
) -> pa.Table | None:
    """The row file of the data file at ``data_path``, memory-mapped, if it has the ``rows``
    rows the manifest lists for the data file, from ``ts_range[0]`` to ``ts_range[1]``
    (microseconds); ``None`` when it is missing or fails a check. :func:`frame` puts the
    files of one bucket together and checks the rest."""
    path = path_of(root, data_path, size)
    try:
        table = ipc.open_file(pa.memory_map(str(path))).read_all()
        if table.num_rows != rows or "tenant" not in table.column_names:
            return None
        ts = table.column("ts")
        if ts.type != _TS:
            return None
        if rows and (ts[0].value, ts[-1].value) != ts_range:
            return None
        return table
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None


def frame(tables: Sequence[pa.Table], subject: Subject, tenant: str) -> pl.DataFrame | None:
    """The rows of ``tables`` (row files read by :func:`read`, one bucket's, in order) as one
    frame with exactly ``subject``'s columns (the tenant's current form: columns a file lacks
    are null, those the subject lacks are left out, as a read of the data files does), not yet
    in one piece; ``None`` unless every file's columns have the catalog's types and every row
    is ``tenant``'s."""
    wanted = subject.polars_schema()
    try:
        if all(t.schema.equals(tables[0].schema) for t in tables):  # one conversion for all
            parts = [pl.from_arrow(pa.concat_tables(tables), rechunk=False)]
        else:  # a file written before the tenant's extra columns
            parts = [pl.from_arrow(t, rechunk=False) for t in tables]
        frames: list[pl.DataFrame] = []
        for part in parts:
            if not isinstance(part, pl.DataFrame):
                return None
            if any(n in wanted and wanted[n] != t for n, t in part.schema.items()):
                return None
            frames.append(conform(part, subject))
        rows = pl.concat(frames, how="vertical", rechunk=False)
        if not bool((rows.get_column("tenant") == tenant).all()):
            return None
        return rows
    except (pl.exceptions.PolarsError, pa.ArrowException, ValueError):
        return None


def missing(root: Path, files: Iterable[tuple[str, int]]) -> list[str]:
    """The data files of ``files`` (``(path, size)``) without a row file, in order."""
    return [path for path, size in files if not path_of(root, path, size).is_file()]


def write_missing(
    root: Path,
    files: Sequence[tuple[str, int]],
    read_rows: Callable[[str], pl.DataFrame],
    *,
    durable: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the row files ``files`` (``(path, size)`` of data files) lack, each from its rows
    (``read_rows(path)``, in the data file's order); ``progress(done, total)`` after each.
    Returns how many were written."""
    wanted = set(missing(root, files))
    todo = [(path, size) for path, size in files if path in wanted]
    for done, (path, size) in enumerate(todo, 1):
        write(root, path, size, read_rows(path), durable=durable)
        if progress is not None:
            progress(done, len(todo))
    return len(todo)
