"""The answer to a query."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

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

    def copy(self) -> Result:
        """A copy the caller may change without changing this one.

        The frame is cloned (cheap: Polars shares the buffers and copies on write) and ``stats``
        copied all the way down (it holds only dicts, lists and scalars).
        """
        return Result(self.df.clone(), self.truncated, _copy_tree(self.stats))

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

    def _repr_html_(self) -> str:
        html: str = self.df._repr_html_()
        if self.truncated:
            html = "<p><b>truncated</b> at the row cap</p>" + html
        return html


def _copy_tree(value: Any) -> Any:
    """``value`` with every dict and list copied (a cheaper ``copy.deepcopy`` for JSON data)."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
