"""Files derived from one data file and kept beside it in its bucket.

A local lake's ingest writes, next to every data file, files computed from its rows: its rollup
rows (:mod:`pql.storage.rollup_files`, in ``_rollup/``) and its rows as an index keeps them
(:mod:`pql.storage.row_files`, in ``_rows/``)::

    mc-{tenant}-{region}-{subject}/{folder}/part-{uuid}.{bytes}.{key}.arrow

Each is named after its data file (its name and size: data files are written once, under a
unique name) and a ``key`` for its kind and layout, so a file of another layout or pql version
is never read. Such a file lives and dies with its data file: it is copied with it to another
storage region (:func:`copy`), deleted when the file is purged or quarantined (:func:`remove`),
and listed by :meth:`Lake.gc_orphans <pql.storage.lake.Lake.gc_orphans>` once its file is gone
(:func:`owner`). A missing or unreadable one only costs speed: the data file is read instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path, PurePosixPath

__all__ = [
    "FOLDERS",
    "ROLLUP_DIR",
    "ROWS_DIR",
    "copy",
    "files_of",
    "owner",
    "path_of",
    "put",
    "remove",
]

ROLLUP_DIR = "_rollup"
"""The folder of a bucket that holds its data files' rollup files."""
ROWS_DIR = "_rows"
"""The folder of a bucket that holds its data files' row files."""
FOLDERS = (ROLLUP_DIR, ROWS_DIR)
"""Every folder of derived files."""


def path_of(root: Path, folder: str, data_path: str, size: int, key: str) -> Path:
    """Where the file of kind ``key`` derived from the data file at ``data_path`` (relative to
    the lake's ``root``, ``size`` bytes) is kept, in ``folder`` of its bucket."""
    parts = PurePosixPath(data_path)
    return root / parts.parts[0] / folder / f"{parts.stem}.{size}.{key}.arrow"


def owner(path: Path) -> tuple[str, str, int] | None:
    """``(bucket, data file name, size)`` of the data file a derived file at ``path`` belongs
    to, or ``None`` when the name is not a derived file's (a temp file, a stranger)."""
    pieces = path.name.split(".")
    if len(pieces) != 4 or pieces[3] != "arrow" or not pieces[1].isdigit():
        return None
    return path.parent.parent.name, f"{pieces[0]}.parquet", int(pieces[1])


def put(final: Path, payload: bytes, *, durable: bool) -> None:
    """Write ``payload`` to ``final`` (in its folder, made if missing) through a temp file
    beside it, renamed into place: a reader sees the whole file or none."""
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


def files_of(root: Path, data_path: str, size: int) -> list[Path]:
    """Every derived file (of any kind and layout) of the data file at ``data_path``."""
    parts = PurePosixPath(data_path)
    found: list[Path] = []
    for folder in FOLDERS:
        home = root / parts.parts[0] / folder
        if home.is_dir():
            found.extend(sorted(home.glob(f"{parts.stem}.{size}.*.arrow")))
    return found


def copy(root: Path, source: str, target: str, size: int) -> None:
    """Copy the derived files of the data file at ``source`` to go with its copy at ``target``
    (same name and bytes, another bucket); one that cannot be copied is left out (it costs
    only speed)."""
    for found in files_of(root, source, size):
        final = root / PurePosixPath(target).parts[0] / found.parent.name / found.name
        with contextlib.suppress(OSError):
            put(final, found.read_bytes(), durable=False)


def remove(root: Path, data_path: str, size: int) -> None:
    """Delete the derived files (of any kind) of the data file at ``data_path``."""
    for found in files_of(root, data_path, size):
        found.unlink(missing_ok=True)
