"""``result.plot()``: a chart that fits the shape of the answer (matplotlib, an optional extra).

* A ``TIMESERIES`` answer (first column ``bucket``): one line per group over the buckets, one
  panel per aggregate.
* A grouped aggregate: bars, one per group, one panel per aggregate.
* A single-row aggregate: one bar per aggregate.

Group keys are the columns that are not numbers (nor the bucket); aggregates are the numeric
ones. Anything else (rows, an aggregate of timestamps) is ``PQL-E153``. The figure is built
without ``pyplot``, so nothing is shown twice in a notebook: the returned
``matplotlib.figure.Figure`` is the chart (``fig.savefig("chart.png")`` or ``.svg``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from pql.errors import InputError
from pql.extras import require
from pql.plan.expr import BUCKET

if TYPE_CHECKING:
    from pql.result import Result

__all__ = ["plot"]

MAX_LINES = 20
"""Most groups drawn as lines; more make a chart no one can read (``PQL-E153``)."""


def plot(result: Result, *, title: str | None = None, width: float = 9.0) -> Any:
    """The chart of ``result`` as a ``matplotlib.figure.Figure``; ``title`` goes on top and
    ``width`` is in inches (each panel is a third as high)."""
    require("matplotlib", "plot()")
    from matplotlib.figure import Figure

    df = result.df
    series = df.width > 0 and df.columns[0] == BUCKET and df.schema[BUCKET].is_temporal()
    rest = df.columns[1:] if series else df.columns
    values = [c for c in rest if df.schema[c].is_numeric()]
    keys = [c for c in rest if c not in values]
    _check_shape(df, series, values, keys)
    figure = Figure(figsize=(width, max(2.6, width / 3) * len(values)), layout="constrained")
    axes = figure.subplots(len(values), 1, sharex=True, squeeze=False)[:, 0]
    labels = _labels(df, keys)
    for ax, value in zip(axes, values, strict=True):
        if series:
            _lines(ax, df, value, labels)
        else:
            _bars(ax, df, value, labels, keys)
        ax.set_ylabel(value)
        ax.grid(True, alpha=0.3)
    if series:
        axes[-1].set_xlabel(f"{BUCKET} (UTC)")
        figure.autofmt_xdate()
    if title:
        figure.suptitle(title)
    return figure


def _check_shape(df: pl.DataFrame, series: bool, values: list[str], keys: list[str]) -> None:
    if df.height == 0:
        raise _cannot("the answer has no rows", "widen SINCE or loosen WHERE")
    if not values:
        raise _cannot(
            "the answer has no numeric column to draw",
            "plot an aggregate such as COUNT(*) or AVG(receipts.latency_ms)",
        )
    temporal = [k for k in keys if df.schema[k].is_temporal()]
    if temporal:
        raise _cannot(
            f"column {temporal[0]} holds timestamps, which plot() cannot place",
            "plot a row query as a TIMESERIES: FIND COUNT(...) ... TIMESERIES 1h",
        )
    groups = df.select(keys).unique().height if keys else 1
    if series and groups > MAX_LINES:
        raise _cannot(
            f"the time series has {groups} groups; at most {MAX_LINES} lines are drawn",
            "GROUP BY fewer keys, or narrow WHERE to the groups you want to compare",
        )
    if not series and keys and df.height != groups:
        raise _cannot(
            "the answer is not one row per group (a row query?)",
            "plot an aggregate query: FIND COUNT(*) ... GROUP BY ...",
        )


def _cannot(what: str, hint: str) -> InputError:
    return InputError("PQL-E153", f"cannot plot this answer: {what}", hints=(hint,))


def _labels(df: pl.DataFrame, keys: list[str]) -> list[str]:
    if not keys:
        return [""] * df.height
    return [
        " / ".join("null" if v is None else str(v) for v in row) for row in df.select(keys).rows()
    ]


def _lines(ax: Any, df: pl.DataFrame, value: str, labels: list[str]) -> None:
    frame = df.select(BUCKET, value).with_columns(pl.Series("__label", labels))
    for (label,), part in frame.group_by("__label", maintain_order=True):
        part = part.sort(BUCKET)
        ax.plot(
            part[BUCKET].to_list(),
            part[value].to_list(),
            marker="o" if part.height <= 60 else None,
            markersize=3,
            label=str(label) or value,
        )
    if any(labels):
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _bars(ax: Any, df: pl.DataFrame, value: str, labels: list[str], keys: list[str]) -> None:
    heights = [0.0 if v is None else float(v) for v in df[value].to_list()]
    names = labels if keys else [value]
    ax.bar(range(len(heights)), heights, color="#4c78a8")
    ax.set_xticks(range(len(heights)), names, rotation=30 if len(names) > 4 else 0, ha="right")
