"""Run a compiled Spark query: the only place that collects, under a job group and a deadline.

Each query runs in its own Spark job group (``interruptOnCancel``); when the deadline passes the
group is cancelled, so the cluster stops working on it, and the caller gets ``PQL-S006`` at once.
Cancelling a group stops only the jobs it has *now*: a query still being planned on the driver
when its deadline passes submits its job later. So the group is cancelled again until the
query's thread has given up, and no job of an expired query runs to its end.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from pql.deadline import Deadline, expired
from pql.errors import InternalError
from pql.execute.spark.compile import SparkCompiled
from pql.plan.nodes import Schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["collect", "run"]

_WAITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pql-spark")
CANCEL_EVERY_S = 0.05
"""How often an expired query's job group is cancelled again until its thread gives up."""


def run(
    compiled: SparkCompiled, spark: SparkSession, schema: Schema, deadline: Deadline | None
) -> tuple[pl.DataFrame, bool]:
    """Collect the query as the plan's ``schema`` says; the rows and whether the cap cut any."""
    frame = _typed(collect(compiled.frame, spark, deadline), schema)
    if compiled.cap is not None and frame.height > compiled.cap:
        return frame.head(compiled.cap), True
    return frame, False


def collect(frame: DataFrame, spark: SparkSession, deadline: Deadline | None) -> pa.Table:
    """Collect ``frame`` to Arrow in its own job group, cancelled at ``deadline``."""
    group = f"pql-{uuid.uuid4().hex}"
    context = spark.sparkContext

    def work() -> pa.Table:
        # Job groups are per thread: set it on the thread that runs the jobs.
        context.setJobGroup(group, "pql query", interruptOnCancel=True)
        try:
            return frame.toArrow()
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    limit = None if deadline is None else deadline.ms
    left = None if deadline is None else deadline.remaining_ms()
    if limit is None or left is None:
        return _WAITERS.submit(work).result()
    if left <= 0:
        raise expired(limit)
    answer: Future[pa.Table] = _WAITERS.submit(work)
    try:
        return answer.result(timeout=left / 1000)
    except FutureTimeout:
        context.cancelJobGroup(group)
        _WAITERS.submit(_cancel_until_done, context, group, answer)
        raise expired(limit) from None


def _cancel_until_done(context: Any, group: str, answer: Future[pa.Table]) -> None:
    """Cancel ``group`` every ``CANCEL_EVERY_S`` until the query's thread is done: a job it
    submits after the first cancel (its planning outlasted the deadline) is cancelled too."""
    while not wait([answer], timeout=CANCEL_EVERY_S).done:
        context.cancelJobGroup(group)


def _typed(table: pa.Table, schema: Schema) -> pl.DataFrame:
    """The answer with the column names and types the plan promises (as the Polars executor)."""
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
        raise InternalError("PQL-X504", "Spark answered with something other than a table")
    names = [name for name, _ in schema]
    if frame.columns != names:
        raise InternalError(
            "PQL-X504", f"Spark answered with columns {frame.columns}, the plan says {names}"
        )
    return frame.cast({name: dtype.polars for name, dtype in schema})
