"""Admission: how many queries run at once, and how many may wait for a slot.

A bounded queue: up to ``running`` queries run; up to ``queued`` more wait (each at most its
``timeout``); anything beyond is refused at once (``PQL-S007``) instead of piling up.

A query whose caller stopped waiting while its work goes on (a streaming join past its deadline
cannot be cancelled) keeps its slots until that work ends (:class:`Hold`), so the bound holds
for the work in flight, not only for the callers waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from pql.errors import SafetyError

__all__ = ["Admission", "Hold"]


class Admission:
    """A counter of running and waiting queries with a condition variable.

    >>> gate = Admission(running=1, queued=0, where="this engine")
    >>> with gate.slot(timeout=0.01):
    ...     gate.running
    1
    """

    def __init__(self, *, running: int, queued: int, where: str) -> None:
        self.max_running = running
        self.max_queued = queued
        self.where = where
        self.running = 0
        self.waiting = 0
        self._cv = threading.Condition()

    @contextmanager
    def slot(self, timeout: float) -> Iterator[None]:
        """Hold a slot for the body; wait in the queue up to ``timeout`` seconds for one."""
        self.enter(timeout)
        try:
            yield
        finally:
            self.leave()

    def enter(self, timeout: float) -> None:
        """Take a slot, waiting in the queue up to ``timeout`` seconds for one; every
        :meth:`enter` that returns is followed by one :meth:`leave` (:meth:`slot` pairs them)."""
        with self._cv:
            if self.running < self.max_running:
                self.running += 1
                return
            if self.waiting >= self.max_queued:
                raise self._refusal(
                    f"{self.running} queries are running and {self.waiting} waiting in "
                    f"{self.where}; the queue is full"
                )
            self.waiting += 1
            try:
                free = self._cv.wait_for(lambda: self.running < self.max_running, timeout)
                if not free:
                    raise self._refusal(
                        f"no query slot in {self.where} came free within {timeout * 1000:.0f} ms"
                    )
                self.running += 1
            finally:
                self.waiting -= 1

    def leave(self) -> None:
        """Give back a slot :meth:`enter` took, and wake one query waiting for it."""
        with self._cv:
            self.running -= 1
            self._cv.notify()

    def _refusal(self, message: str) -> SafetyError:
        return SafetyError(
            "PQL-S007",
            message,
            hints=("retry after a moment, or raise Limits.max_concurrent / Limits.max_queued",),
            setting="Limits.max_concurrent",
            details={"max_concurrent": self.max_running, "max_queued": self.max_queued},
        )


class Hold:
    """The slots of one admitted query, released when its caller is done or, if the caller left
    work running (:meth:`keep_until`), when that work ends.

    >>> freed = []
    >>> work: Future[int] = Future()
    >>> hold = Hold()
    >>> hold.keep_until(work)
    >>> hold.release(lambda: freed.append(True))
    >>> freed
    []
    >>> work.set_result(1)
    >>> freed
    [True]
    """

    def __init__(self) -> None:
        self._work: Future[Any] | None = None

    def keep_until(self, work: Future[Any]) -> None:
        """Keep the slots taken until ``work`` ends (its answer or its error)."""
        self._work = work

    def release(self, free: Callable[[], object]) -> None:
        """Call ``free`` now, or when the work kept ends if it is still running."""
        if self._work is None:
            free()
        else:
            self._work.add_done_callback(lambda _: free())
