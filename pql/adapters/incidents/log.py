"""The append-only event log: one JSON line per entry, each carrying the digest of the one before.

An entry is ``{"prev": DIGEST, "entry": {...}, "digest": sha256(prev + canonical(entry))}``; the
first entry's ``prev`` is 64 zeros. Editing, removing or reordering a line breaks the chain at that
line, which :func:`verify_log` reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GENESIS", "LogCheck", "append", "canonical", "entries", "verify_log"]

GENESIS = "0" * 64
_lock = threading.Lock()


def canonical(value: Any) -> str:
    """The one JSON text of ``value``: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(prev: str, entry: Any) -> str:
    return hashlib.sha256((prev + canonical(entry)).encode()).hexdigest()


def _last_digest(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        tail = handle.read().splitlines()
    return str(json.loads(tail[-1])["digest"])


def append(path: Path, items: list[dict[str, Any]]) -> None:
    """Append ``items`` to the log at ``path``, chained, and flush them to disk."""
    if not items:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        prev = _last_digest(path)
        lines = []
        for item in items:
            digest = _digest(prev, item)
            lines.append(canonical({"prev": prev, "entry": item, "digest": digest}) + "\n")
            prev = digest
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())


def entries(path: Path) -> list[dict[str, Any]]:
    """Every entry of the log, in order (unchecked: see :func:`verify_log`)."""
    if not path.exists():
        return []
    return [json.loads(line)["entry"] for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class LogCheck:
    """What verification found: entries checked, and the first bad line (1-based) and why."""

    entries: int
    bad_line: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_line is None


def verify_log(path: Path) -> LogCheck:
    """Check every line's digest and link; the first broken line is reported."""
    if not path.exists():
        return LogCheck(0)
    prev = GENESIS
    count = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            entry, stated, link = record["entry"], record["digest"], record["prev"]
        except (ValueError, KeyError, TypeError):
            return LogCheck(count, number, "not a log entry")
        if link != prev:
            return LogCheck(count, number, "does not follow the line before (removed or moved)")
        if _digest(prev, entry) != stated:
            return LogCheck(count, number, "its content does not match its digest (edited)")
        prev = stated
        count += 1
    return LogCheck(count)
