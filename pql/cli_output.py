"""How the command line prints an answer: shared by :mod:`pql.cli` and :mod:`pql.saved_cli`.

It sits below both, so neither command module imports the other's internals.
"""

from __future__ import annotations

from typing import TextIO

import polars as pl

from pql.result import Result

__all__ = ["isoformat", "print_result"]


def print_result(result: Result, fmt: str, out: TextIO) -> None:
    """Write ``result`` to ``out`` as ``table``, ``json`` or ``csv`` (timestamps in ISO-8601)."""
    if fmt == "json":
        out.write(result.to_json() + "\n")
    elif fmt == "csv":
        out.write(isoformat(result.df).write_csv())
    else:
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=60,
            tbl_hide_dataframe_shape=True,
            tbl_width_chars=200,
        ):
            out.write(f"{result.df}\n")
        out.write(f"{result.df.height:,} rows\n")


def isoformat(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every timestamp as ISO-8601 UTC text (CSV and JSON show them so)."""
    exprs = [
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias(name)
        if isinstance(dtype, pl.Datetime)
        else pl.col(name)
        for name, dtype in df.schema.items()
    ]
    return df.select(exprs)
