"""The answer to a query."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from pql.extras import require
from pql.render import result_html

__all__ = ["Result", "dumps"]


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
        """The contract's JSON shape: columns, rows (ISO-8601 UTC timestamps), truncated, stats.

        Floats that JSON cannot hold (NaN, infinities) are ``None``, in the rows and the stats.
        """
        return {
            "columns": self.columns,
            "rows": [list(row) for row in self._json_rows()],
            "truncated": self.truncated,
            "stats": _finite(self.stats),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON text (see :func:`dumps`)."""
        doc = {
            "columns": self.columns,
            "rows": self._json_rows(),  # already JSON values: no second pass (tuples are arrays)
            "truncated": self.truncated,
            "stats": _finite(self.stats),
        }
        return json.dumps(doc, ensure_ascii=False, allow_nan=False)

    def _json_rows(self) -> list[tuple[Any, ...]] | list[list[Any]]:
        """The rows with JSON values; only the columns that can hold a timestamp or a float
        (NaN, infinities) are looked at value by value."""
        rows = self.df.rows()
        mapped = [i for i, t in enumerate(self.df.dtypes) if not isinstance(t, _PLAIN)]
        if not mapped:
            return rows
        out = []
        for row in rows:
            values = list(row)
            for i in mapped:
                values[i] = _json_value(values[i])
            out.append(values)
        return out

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


def _copy_tree(value: Any) -> Any:
    """``value`` with every dict and list copied (a cheaper ``copy.deepcopy`` for JSON data)."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """``value`` as strict JSON text: NaN and infinities become ``null``.

    Python's ``json`` would write them as ``NaN`` and ``Infinity``, which no strict JSON reader
    accepts.

    >>> dumps({"avg": float("nan"), "sum": [float("inf"), 1.5]})
    '{"avg": null, "sum": [null, 1.5]}'
    """
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every float JSON cannot hold replaced by ``None`` (dicts, lists, tuples)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_PLAIN = (pl.String, pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16,
          pl.UInt32, pl.UInt64, pl.Null)  # fmt: skip
"""Column types whose values are JSON as they come (no timestamps, no floats)."""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and not math.isfinite(value):  # NaN, infinities: null
        return None
    if isinstance(value, dict | list | tuple):  # nested (list, struct) columns
        return _finite(value)
    return value
