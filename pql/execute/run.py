"""Run a compiled query: the only place that collects, under a deadline."""

from __future__ import annotations

import threading
import time
from typing import Any

import polars as pl

from pql.errors import SafetyError
from pql.execute.compile import Compiled

__all__ = ["collect", "run"]

FIRST_PAUSE_S = 0.000_05
"""The first wait between polls of a background query; it doubles up to :data:`LAST_PAUSE_S`."""
LAST_PAUSE_S = 0.002

# Polars (2.1) aborts the whole process if a cancelled background query is garbage collected
# before its worker thread has sent its (now unwanted) answer: the worker panics on the closed
# channel. Cancelled queries are therefore kept here until they report back, and reaped later.
_CANCELLED: list[Any] = []
_CANCELLED_LOCK = threading.Lock()


def run(compiled: Compiled, deadline_ms: float | None = None) -> tuple[pl.DataFrame, bool]:
    """Collect the query; returns the rows and whether the row cap cut any.

    With ``deadline_ms`` the query runs in the background and is cancelled when it has not
    finished in time (:class:`~pql.errors.SafetyError` ``PQL-S006``).
    """
    frame = collect(compiled.frame, deadline_ms)
    if compiled.cap is not None and frame.height > compiled.cap:
        return frame.head(compiled.cap), True
    return frame, False


def collect(frame: pl.LazyFrame, deadline_ms: float | None) -> pl.DataFrame:
    """Collect ``frame``, cancelling it after ``deadline_ms`` milliseconds (``None``: no limit)."""
    if deadline_ms is None:
        return frame.collect()
    expires = time.perf_counter() + deadline_ms / 1000
    _reap()
    query = frame.collect(background=True)
    pause = FIRST_PAUSE_S
    while True:
        done = query.fetch()
        if done is not None:
            return done
        left = expires - time.perf_counter()
        if left <= 0:
            query.cancel()
            with _CANCELLED_LOCK:
                _CANCELLED.append(query)
            raise _expired(deadline_ms)
        time.sleep(min(pause, left))
        pause = min(pause * 2, LAST_PAUSE_S)


def _reap() -> None:
    """Forget the cancelled queries whose workers have finished."""
    if not _CANCELLED:
        return
    with _CANCELLED_LOCK:
        _CANCELLED[:] = [query for query in _CANCELLED if not _finished(query)]


def _finished(query: Any) -> bool:
    try:
        return query.fetch() is not None
    except Exception:  # the worker reported its cancellation (or a failure): it is done
        return True


def _expired(deadline_ms: float) -> SafetyError:
    return SafetyError(
        "PQL-S006",
        f"the query ran past its deadline of {deadline_ms:,.0f} ms and was cancelled",
        hints=(
            "narrow the query: a shorter SINCE, a more selective WHERE, or an aggregate",
            "raise Limits.deadline_ms if queries this long are expected",
        ),
        setting="Limits.deadline_ms",
        details={"deadline_ms": deadline_ms},
    )
