"""The answer to a query."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from pql.extras import require
from pql.render import result_html

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """Rows, whether the row cap cut any, and how the answer was obtained.

    ``stats`` holds ``rows``, ``rows_scanned``, ``partitions_read``, the window, and
    ``timings_ms`` per stage (parse, analyze, plan, safety, optimize, compile, execute, total).
    """

    df: pl.DataFrame
    truncated: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.df.columns)

    def __len__(self) -> int:
        return self.df.height

    def to_arrow(self) -> pa.Table:
        """The rows as a pyarrow Table."""
        return self.df.to_arrow()

    def rows(self) -> list[tuple[Any, ...]]:
        return self.df.rows()

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape: columns, rows (ISO-8601 UTC timestamps), truncated, stats."""
        rows = [[_json_value(v) for v in row] for row in self.df.rows()]
        return {
            "columns": self.columns,
            "rows": rows,
            "truncated": self.truncated,
            "stats": self.stats,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __repr__(self) -> str:
        flag = ", truncated" if self.truncated else ""
        return f"Result({self.df.height} rows{flag})\n{self.df}"

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs pandas: ``pip install 'pql[notebook]'``)."""
        require("pandas", "to_pandas()")
        return self.df.to_pandas()

    def plot(self, **options: Any) -> Any:
        """Draw the answer (needs matplotlib: ``pip install 'pql[notebook]'``) and return the
        ``matplotlib.figure.Figure``: lines over time for a ``TIMESERIES`` (one per group), bars
        for grouped aggregates. See :func:`pql.plot.plot` for the options."""
        from pql.plot import plot

        return plot(self, **options)

    def _repr_html_(self) -> str:
        """A table with column types, the row count, a banner when truncated, and the stats."""
        return result_html(self)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
