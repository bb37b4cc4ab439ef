"""A query's deadline, counted from the moment the engine takes the query.

``Limits.deadline_ms`` bounds the whole query, not only the final collect: parsing, analysis,
planning, the safety rules (the cost estimate may read statistics), optimization, compiling (a
store may load an index there) and running. The engine checks the :class:`Deadline` between
stages, and long loops before execution (summarising statistics files) check it as they go; the
runner then gets only the time that is left. Past the deadline the query fails with
``PQL-S006``, naming the stage it was in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pql.errors import SafetyError

__all__ = ["NO_DEADLINE", "Deadline", "expired"]


class Deadline:
    """``ms`` milliseconds from now on ``clock`` (seconds, monotonic); ``None``: no deadline.

    >>> ticks = iter([0.0, 0.004, 0.006])
    >>> deadline = Deadline(5, clock=lambda: next(ticks))
    >>> deadline.check("parse")
    >>> deadline.check("safety")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pql.errors.SafetyError: [PQL-S006] the query ran past its deadline of 5 ms before it ran...
    """

    __slots__ = ("_clock", "_end", "ms")

    def __init__(self, ms: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ms = ms
        self._clock = clock
        self._end = None if ms is None else clock() + ms / 1000

    def remaining_ms(self) -> float | None:
        """Milliseconds left (at most 0 once past); ``None`` without a deadline."""
        if self._end is None:
            return None
        return (self._end - self._clock()) * 1000

    def check(self, stage: str) -> None:
        """Raise ``PQL-S006`` if the deadline has passed; ``stage`` says where the query was.
        (A query checks a dozen times before it runs: one clock read each, no more.)"""
        end = self._end
        if end is not None and self._clock() >= end and self.ms is not None:
            raise expired(self.ms, stage)


NO_DEADLINE = Deadline(None)
"""No deadline: every check passes."""


def expired(deadline_ms: float, stage: str = "execute", *, cancelled: bool = True) -> SafetyError:
    """The ``PQL-S006`` error of a query past its deadline, in ``stage``; ``cancelled=False``:
    the query could not be cancelled and is left to run out (a streaming join)."""
    details: dict[str, object] = {"deadline_ms": deadline_ms, "stage": stage}
    if stage == "execute" and not cancelled:
        what = "and is left to finish in the background (a streaming join cannot be cancelled)"
        details["cancelled"] = False
    elif stage == "execute":
        what = "and was cancelled"
    else:
        what = f"before it ran (in {stage}) and was stopped"
    return SafetyError(
        "PQL-S006",
        f"the query ran past its deadline of {deadline_ms:,.0f} ms {what}",
        hints=(
            "narrow the query: a shorter SINCE, a more selective WHERE, or an aggregate",
            "raise Limits.deadline_ms if queries this long are expected",
        ),
        setting="Limits.deadline_ms",
        details=details,
    )
