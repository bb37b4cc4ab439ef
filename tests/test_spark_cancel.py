"""An expired Spark query never leaves a job running, even one submitted after its deadline.

Spark cancels only the jobs a group has when ``cancelJobGroup`` is called. A fake context and
frame (no Java needed) play the race: the query is still being planned on the driver when its
deadline passes, and submits its job afterwards.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa
import pytest

from pql.deadline import Deadline
from pql.errors import SafetyError
from pql.execute.spark import run as spark_run


class FakeContext:
    """Job groups as Spark keeps them: per thread; a cancel stops only the running jobs."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.running: dict[str, threading.Event] = {}  # group -> set when cancelled
        self.finished: list[str] = []  # groups whose job ran to its end
        self.cancelled: list[str] = []  # groups whose job was cancelled

    def setJobGroup(self, group: str, description: str, interruptOnCancel: bool) -> None:
        self.local.group = group

    def setLocalProperty(self, key: str, value: Any) -> None:
        self.local.group = value

    def cancelJobGroup(self, group: str) -> None:
        with self.lock:
            job = self.running.get(group)
        if job is not None:
            job.set()

    def job(self, seconds: float) -> None:
        """Run a job of the calling thread's group for ``seconds`` unless cancelled."""
        group = self.local.group
        stop = threading.Event()
        with self.lock:
            self.running[group] = stop
        try:
            if stop.wait(seconds):
                self.cancelled.append(group)
                raise RuntimeError("job cancelled")
            self.finished.append(group)
        finally:
            with self.lock:
                del self.running[group]


class FakeFrame:
    """A query that plans for ``plan_s`` on the driver, then runs one job of ``job_s``."""

    def __init__(self, context: FakeContext, plan_s: float, job_s: float) -> None:
        self.context, self.plan_s, self.job_s = context, plan_s, job_s

    def toArrow(self) -> pa.Table:
        time.sleep(self.plan_s)
        self.context.job(self.job_s)
        return pa.table({"n": [1]})


class FakeSession:
    def __init__(self, context: FakeContext) -> None:
        self.sparkContext = context


def test_a_job_submitted_after_the_deadline_is_cancelled() -> None:
    context = FakeContext()
    frame = FakeFrame(context, plan_s=0.3, job_s=5.0)  # the deadline passes while planning
    began = time.monotonic()
    with pytest.raises(SafetyError) as late:
        spark_run.collect(frame, FakeSession(context), Deadline(100))  # type: ignore[arg-type]
    assert late.value.code == "PQL-S006"
    assert time.monotonic() - began < 0.3  # the caller does not wait for the planning
    for _ in range(100):
        if context.cancelled or context.finished:
            break
        time.sleep(0.05)
    assert context.cancelled and not context.finished  # stopped soon after it started
    assert time.monotonic() - began < 2.5


def test_a_running_job_is_cancelled_at_the_deadline() -> None:
    context = FakeContext()
    frame = FakeFrame(context, plan_s=0.0, job_s=5.0)
    with pytest.raises(SafetyError):
        spark_run.collect(frame, FakeSession(context), Deadline(100))  # type: ignore[arg-type]
    for _ in range(40):
        if context.cancelled:
            break
        time.sleep(0.05)
    assert context.cancelled and not context.finished


def test_a_query_within_its_deadline_is_answered() -> None:
    context = FakeContext()
    frame = FakeFrame(context, plan_s=0.0, job_s=0.01)
    table = spark_run.collect(frame, FakeSession(context), Deadline(5_000))  # type: ignore[arg-type]
    assert table.num_rows == 1 and context.finished and not context.cancelled
