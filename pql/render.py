"""HTML for notebooks: a result as a table, an explanation as its plan tree, an error with its
caret. Rendering happens here, at the edge; everything shown is escaped.

These are what ``Result._repr_html_``, ``Explanation._repr_html_`` and ``PQLError._repr_html_``
return, so Jupyter shows them without any extra package.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

if TYPE_CHECKING:
    from pql.errors import PQLError


class Answered(Protocol):
    """What :func:`result_html` reads of a :class:`~pql.result.Result` (this module sits below
    it: errors render here, and an error never imports the result or the planner)."""

    @property
    def df(self) -> pl.DataFrame: ...

    @property
    def truncated(self) -> bool: ...

    @property
    def stats(self) -> dict[str, Any]: ...


class Explained(Protocol):
    """What :func:`explanation_html` reads of an explanation (``pql.plan.explain`` has the
    class; the errors below the planner render here too, so this module never imports it)."""

    @property
    def footer(self) -> tuple[str, ...]: ...

    def node_details(self) -> list[dict[str, Any]]: ...

    def cost_line(self) -> str: ...


__all__ = ["MAX_HTML_ROWS", "error_html", "explanation_html", "result_html"]

MAX_HTML_ROWS = 60
"""Rows shown in a notebook table; the first and last halves of a longer answer are shown."""

_STYLE = (
    "<style>"
    ".pql table{border-collapse:collapse;font-size:12px}"
    ".pql th,.pql td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
    ".pql th small{color:#777;font-weight:normal}"
    ".pql .pql-num{text-align:right;font-variant-numeric:tabular-nums}"
    ".pql .pql-null{color:#999;font-style:italic}"
    ".pql .pql-banner{background:#fff3cd;border:1px solid #e0b000;padding:4px 8px;margin:4px 0}"
    ".pql .pql-footer{color:#666;font-size:11px;margin-top:4px}"
    ".pql .pql-error{border-left:4px solid #c0392b;padding:4px 8px}"
    ".pql .pql-error pre{margin:4px 0}"
    ".pql mark{background:#f8d7da}"
    "</style>"
)


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="pql-null">null</td>'
    if isinstance(value, datetime):
        return f"<td>{escape(value.isoformat().replace('+00:00', 'Z'))}</td>"
    if isinstance(value, bool):
        return f"<td>{'true' if value else 'false'}</td>"
    if isinstance(value, float):
        return f'<td class="pql-num">{escape(f"{value:.6g}")}</td>'
    if isinstance(value, int):
        return f'<td class="pql-num">{value}</td>'
    return f"<td>{escape(str(value))}</td>"


def result_html(result: Answered) -> str:
    """A result as an HTML table: column names with their types, the rows (at most
    :data:`MAX_HTML_ROWS`), a banner when the row cap cut the answer, and the stats below."""
    df = result.df
    head = "".join(
        f"<th>{escape(name)}<br><small>{escape(str(dtype))}</small></th>"
        for name, dtype in df.schema.items()
    )
    rows = df.rows()
    shown: list[str] = []
    if len(rows) > MAX_HTML_ROWS:
        half = MAX_HTML_ROWS // 2
        gap = len(rows) - 2 * half
        skipped = (
            f'<tr><td colspan="{max(df.width, 1)}" class="pql-null">… {gap:,} more rows …</td></tr>'
        )
        parts = [rows[:half], None, rows[-half:]]
    else:
        skipped, parts = "", [rows]
    for part in parts:
        if part is None:
            shown.append(skipped)
            continue
        shown += ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in part]
    banner = ""
    if result.truncated:
        banner = (
            '<div class="pql-banner"><b>Truncated:</b> more rows matched; these are the first '
            f"{df.height:,} in order (the row cap). Narrow the query or aggregate it.</div>"
        )
    count = f"{df.height:,} row{'s' if df.height != 1 else ''}"
    footer = escape(" · ".join([count, *_stats_parts(result.stats)]))
    return (
        f'{_STYLE}<div class="pql">{banner}<table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(shown)}</tbody></table>"
        f'<div class="pql-footer">{footer}</div></div>'
    )


def _stats_parts(stats: Mapping[str, Any]) -> list[str]:
    parts: list[str] = []
    if stats.get("tenant"):
        parts.append(f"tenant {stats['tenant']}")
    window = stats.get("window")
    if isinstance(window, Mapping):
        parts.append(f"window {window.get('start')} .. {window.get('end')}")
    if "rows_scanned" in stats:
        parts.append(f"{stats['rows_scanned']:,} rows scanned")
    if "partitions_read" in stats:
        parts.append(f"{stats['partitions_read']:,} partitions")
    timings = stats.get("timings_ms")
    if isinstance(timings, Mapping) and "total" in timings:
        parts.append(f"{timings['total']:.1f} ms")
    cache = stats.get("cache")
    if isinstance(cache, Mapping) and cache.get("hit"):
        parts.append("from the result cache")
    return parts


def explanation_html(explanation: Explained) -> str:
    """The plan tree, root first, indented, with each node's estimates (and actual rows)."""
    details = explanation.node_details()
    actual = any("actual_rows" in d for d in details)
    head = "<th>node</th><th>est_rows</th><th>est_cost</th>" + (
        "<th>actual_rows</th>" if actual else ""
    )
    rows = []
    for d in details:
        indent = d["depth"] * 16
        cells = (
            f'<td style="padding-left:{indent + 8}px"><code>{escape(str(d["detail"]))}</code></td>'
            f'<td class="pql-num">{escape(_number(d.get("est_rows")))}</td>'
            f'<td class="pql-num">{escape(_number(d.get("est_cost")))}</td>'
        )
        if actual:
            cells += f'<td class="pql-num">{escape(_number(d.get("actual_rows")))}</td>'
        rows.append(f"<tr>{cells}</tr>")
    notes = [explanation.cost_line(), *explanation.footer]
    footer = "<br>".join(escape(line.removeprefix("-- ")) for line in notes)
    return (
        f'{_STYLE}<div class="pql"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<div class="pql-footer">{footer}</div></div>'
    )


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def error_html(error: PQLError) -> str:
    """The error as :meth:`~pql.errors.PQLError.render` shows it, with the offending text marked
    and the caret under it."""
    text = error.render().split("\n")
    headline, rest = text[0], text[1:]
    body = [line for line in rest if not line.startswith("  = ")]
    notes = [line.removeprefix("  = ") for line in rest if line.startswith("  = ")]
    snippet = "\n".join(escape(line) for line in body)
    marked = _marked_source(error)
    if marked is not None and len(body) >= 3:
        source_line, caret = body[1], body[2]
        gutter = source_line[: source_line.index("|") + 2]
        snippet = "\n".join([escape(body[0]), escape(gutter) + marked, escape(caret)])
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return (
        f'{_STYLE}<div class="pql"><div class="pql-error"><b>{escape(headline)}</b>'
        + (f"<pre>{snippet}</pre>" if snippet else "")
        + (f"<ul>{items}</ul>" if items else "")
        + "</div></div>"
    )


def _marked_source(error: PQLError) -> str | None:
    """The offending line with the span in ``<mark>``, when it is short enough to show whole."""
    span, text = error.span, error.text
    if span is None or text is None:
        return None
    lines = text.split("\n")
    if not 1 <= span.line <= len(lines):
        return None
    src = lines[span.line - 1]
    if len(src) > 100 or not src.isprintable():
        return None
    start = span.column - 1
    width = max(1, span.end - span.start)
    if span.end_line and span.end_line != span.line:
        width = len(src) - start
    end = min(len(src), start + width)
    return escape(src[:start]) + "<mark>" + escape(src[start:end]) + "</mark>" + escape(src[end:])
