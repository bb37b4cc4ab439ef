"""Run a compiled query: the only place that collects, under a deadline."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import polars as pl

from pql.deadline import Deadline, expired
from pql.execute.admission import Hold
from pql.execute.compile import Compiled

__all__ = ["STREAMING_ROWS", "collect", "run", "streams"]

STREAMING_ROWS = 1_500_000
"""The rows read from which an inner join runs on Polars' streaming engine (:func:`streams`).

Measured by ``benchmarks/engines.py`` on the harness's data: inner joins reading about two
million rows or more took 0.5 to 0.75 of the in-memory engine's time on the streaming engine,
joins of up to a million rows took 1.0 to 1.7 of it, and nearly every query that is not a join
was slower there."""

# Polars (2.1) aborts the whole process if a cancelled background query is garbage collected
# before its worker thread has sent its (now unwanted) answer. Each background query is therefore
# waited for by a pool thread (``fetch_blocking``), which holds it until the worker reports back,
# cancelled or not; the caller waits on that future with its deadline and wakes the moment the
# answer is there (no polling, so no added latency). Cancellation in Polars is cooperative: a
# cancelled query may keep a worker busy until its current operator ends. Admission bounds how
# many can run at once, so the pool needs no more threads than that in practice.
_WAITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pql-collect")
# The streaming engine has no cancel handle: a query on it runs in one of these threads, and at
# its deadline the caller stops waiting while the query runs out (``Hold`` keeps its slot).
_STREAMERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pql-stream")


def streams(compiled: Compiled, min_rows: int | None) -> bool:
    """Whether ``compiled`` runs on Polars' streaming engine: it builds the pairs of an inner
    join (:attr:`~pql.execute.compile.Compiled.pairs`) and reads at least ``min_rows`` rows
    (``None``: never)."""
    return min_rows is not None and compiled.pairs and compiled.rows_scanned >= min_rows


def run(
    compiled: Compiled,
    deadline: Deadline | float | None = None,
    *,
    streaming: bool = False,
    hold: Hold | None = None,
) -> tuple[pl.DataFrame, bool]:
    """Collect the query; returns the rows and whether the row cap cut any.

    With a ``deadline`` (a :class:`~pql.deadline.Deadline`, or milliseconds from now) the query
    runs in the background and is cancelled when it has not finished in time
    (:class:`~pql.errors.SafetyError` ``PQL-S006``). With ``streaming`` it runs on Polars'
    streaming engine instead, which cannot be cancelled: at the deadline the caller gets
    ``PQL-S006`` and the query runs out, kept by ``hold`` (its admission slots stay taken until
    it ends).
    """
    frame = collect(compiled.frame, deadline, streaming=streaming, hold=hold)
    if compiled.cap is not None and frame.height > compiled.cap:
        return frame.head(compiled.cap), True
    return frame, False


def collect(
    frame: pl.LazyFrame,
    deadline: Deadline | float | None,
    *,
    streaming: bool = False,
    hold: Hold | None = None,
) -> pl.DataFrame:
    """Collect ``frame``, cancelling it at ``deadline`` (milliseconds from now, or a
    :class:`~pql.deadline.Deadline` that may be partly used up; ``None``: no limit). With
    ``streaming``, on the streaming engine, left to run out past the deadline (see :func:`run`)."""
    if deadline is None:
        return _foreground(frame, streaming)
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    left = deadline.remaining_ms()
    if left is None or deadline.ms is None:
        return _foreground(frame, streaming)
    if left <= 0:
        raise expired(deadline.ms)
    if streaming:
        streamed: Future[pl.DataFrame] = _STREAMERS.submit(frame.collect, engine="streaming")
        try:
            return streamed.result(timeout=left / 1000)
        except FutureTimeout:
            if hold is not None:
                hold.keep_until(streamed)
            raise expired(deadline.ms, cancelled=False) from None
    query = frame.collect(background=True)
    answer: Future[pl.DataFrame] = _WAITERS.submit(query.fetch_blocking)
    try:
        return answer.result(timeout=left / 1000)
    except FutureTimeout:
        query.cancel()
        raise expired(deadline.ms) from None


def _foreground(frame: pl.LazyFrame, streaming: bool) -> pl.DataFrame:
    """``frame`` collected in this thread, without a deadline."""
    return frame.collect(engine="streaming") if streaming else frame.collect()
