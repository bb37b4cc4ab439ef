"""Run a compiled query: the only place that collects."""

from __future__ import annotations

import polars as pl

from pql.execute.compile import Compiled

__all__ = ["run"]


def run(compiled: Compiled) -> tuple[pl.DataFrame, bool]:
    """Collect the query; returns the rows and whether the row cap cut any."""
    frame = compiled.frame.collect()
    if compiled.cap is not None and frame.height > compiled.cap:
        return frame.head(compiled.cap), True
    return frame, False
