"""Timing helpers shared by the micro-benchmarks: a warmed median, and an interleaved A/B."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["ab_ms", "median_ms"]


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """The median of ``repeat`` calls of ``fn`` (milliseconds), after one call to warm it."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def ab_ms(fn: Callable[[], object], repeat: int, owner: object, name: str) -> tuple[float, float]:
    """Medians of ``fn`` with ``owner.name`` as it is (A) and replaced by a function that returns
    ``None`` (B; ``owner`` a class or a module), interleaved call by call so that both see the same noise; the first call of
    each is a warm-up. The attribute is put back even when ``fn`` raises."""
    real = getattr(owner, name)
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(2 * repeat + 2):
            use = i % 2 == 0
            setattr(owner, name, real if use else (lambda *_: None))
            started = time.perf_counter()
            fn()
            if i >= 2:
                times[use].append((time.perf_counter() - started) * 1000)
    finally:
        setattr(owner, name, real)
    return round(statistics.median(times[True]), 3), round(statistics.median(times[False]), 3)
