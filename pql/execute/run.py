"""Run a compiled query: the only place that collects, under a deadline."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import polars as pl

from pql.deadline import Deadline, expired
from pql.execute.compile import Compiled

__all__ = ["collect", "run"]

# Polars (2.1) aborts the whole process if a cancelled background query is garbage collected
# before its worker thread has sent its (now unwanted) answer. Each background query is therefore
# waited for by a pool thread (``fetch_blocking``), which holds it until the worker reports back,
# cancelled or not; the caller waits on that future with its deadline and wakes the moment the
# answer is there (no polling, so no added latency). Cancellation in Polars is cooperative: a
# cancelled query may keep a worker busy until its current operator ends. Admission bounds how
# many can run at once, so the pool needs no more threads than that in practice.
_WAITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pql-collect")


def run(compiled: Compiled, deadline: Deadline | float | None = None) -> tuple[pl.DataFrame, bool]:
    """Collect the query; returns the rows and whether the row cap cut any.

    With a ``deadline`` (a :class:`~pql.deadline.Deadline`, or milliseconds from now) the query
    runs in the background and is cancelled when it has not finished in time
    (:class:`~pql.errors.SafetyError` ``PQL-S006``).
    """
    frame = collect(compiled.frame, deadline)
    if compiled.cap is not None and frame.height > compiled.cap:
        return frame.head(compiled.cap), True
    return frame, False


def collect(frame: pl.LazyFrame, deadline: Deadline | float | None) -> pl.DataFrame:
    """Collect ``frame``, cancelling it at ``deadline`` (milliseconds from now, or a
    :class:`~pql.deadline.Deadline` that may be partly used up; ``None``: no limit)."""
    if deadline is None:
        return frame.collect()
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    left = deadline.remaining_ms()
    if left is None or deadline.ms is None:
        return frame.collect()
    if left <= 0:
        raise expired(deadline.ms)
    query = frame.collect(background=True)
    answer: Future[pl.DataFrame] = _WAITERS.submit(query.fetch_blocking)
    try:
        return answer.result(timeout=left / 1000)
    except FutureTimeout:
        query.cancel()
        raise expired(deadline.ms) from None
