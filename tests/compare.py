"""Compare pql's answer with DuckDB's: same columns, same rows in the same order, floats within
1e-9 relative, timestamps as UTC instants."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import polars as pl


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
    return v


def same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def assert_same_frame(ours: pl.DataFrame, theirs: pl.DataFrame, context: str = "") -> None:
    assert ours.columns == theirs.columns, (
        f"columns differ {context}\n{ours.columns}\n{theirs.columns}"
    )
    assert ours.height == theirs.height, (
        f"row counts differ {context}: pql {ours.height}, duckdb {theirs.height}"
    )
    for i, (ra, rb) in enumerate(zip(ours.rows(), theirs.rows(), strict=True)):
        for name, va, vb in zip(ours.columns, ra, rb, strict=True):
            assert same(va, vb), (
                f"row {i} column {name!r} differs {context}: pql {va!r}, duckdb {vb!r}"
            )
