"""The ``pql`` command line. Errors are rendered here, once, and never as a traceback.

Exit status: 0 success; 2 invalid query or input; 3 refused by a safety rule; 4 signature or
authorization failure; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import polars as pl

from pql import saved_cli
from pql.errors import InputError, PQLError
from pql.result import Result
from pql.server import cli as server_cli

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as pql input errors (exit 2), without a traceback."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error[PQL-E070]: {message}", file=sys.stderr)
        raise SystemExit(2)


def _engine(args: argparse.Namespace) -> Any:
    from pql.engine import Engine

    data = Path(args.data)
    if not data.exists():
        raise InputError(
            "PQL-E071",
            f"the data directory {str(data)!r} does not exist",
            hints=("create it with `pql demo --data DIR` or `pql ingest --data DIR ...`",),
        )
    return Engine(data)


def cmd_query(args: argparse.Namespace) -> int:
    engine = _engine(args)
    if args.deadline_ms is not None:
        _lower_deadline(engine, args.deadline_ms)
    result = engine.query(args.query, tenant=args.tenant, now=args.now, cache=not args.no_cache)
    _print_result(result, args.format, sys.stdout)
    if result.truncated and args.format == "table":
        print(f"(truncated at {result.df.height:,} rows)", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    engine = _engine(args)
    explained = engine.explain(args.query, tenant=args.tenant, now=args.now, analyze=args.analyze)
    if args.format == "json":
        print(json.dumps(explained.to_dict(), ensure_ascii=False))
    else:
        print(explained)
    return 0


def _lower_deadline(engine: Any, deadline_ms: int) -> None:
    """``--deadline-ms``: only ever lowers the engine's deadline."""
    from dataclasses import replace

    if deadline_ms <= 0:
        raise InputError("PQL-E072", f"--deadline-ms must be positive, not {deadline_ms}")
    engine.limits = engine.limits.tighten(replace(engine.limits, deadline_ms=deadline_ms))


def cmd_ingest(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from pql.engine import Engine
    from pql.storage import validate

    engine = Engine(Path(args.data))
    subject = engine.catalog.get(args.table)
    if subject is None:  # pragma: no cover - argparse restricts the choices
        raise InputError("PQL-E010", f"unknown subject {args.table!r}")
    tables = []
    for name in args.files:
        try:
            table = pq.read_table(name)
        except (OSError, ValueError) as exc:
            raise InputError(
                "PQL-E057", f"cannot read {name}: {exc}", hints=("pass Parquet files",)
            ) from None
        try:
            validate(subject, table, engine.catalog)
        except PQLError as exc:
            exc.message = f"{name}: {exc.message}"
            raise
        tables.append((name, table))
    # Every file was checked before anything is written: a bad file means nothing is stored.
    for name, table in tables:
        report = engine.ingest(args.table, table)
        line = (
            f"{name}: {report.written:,} of {report.rows_in:,} rows stored, "
            f"{report.duplicates:,} duplicates skipped, {report.partitions} partitions"
        )
        if report.duplicate_keys:
            line += f" (e.g. {', '.join(report.duplicate_keys[:3])})"
        print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pql.demo_run import run_demo

    return run_demo(Path(args.data), receipts=args.receipts, seed=args.seed, out=sys.stdout)


def _print_result(result: Result, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(result.to_json() + "\n")
    elif fmt == "csv":
        out.write(_isoformat(result.df).write_csv())
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


def _isoformat(df: pl.DataFrame) -> pl.DataFrame:
    exprs = [
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias(name)
        if isinstance(dtype, pl.Datetime)
        else pl.col(name)
        for name, dtype in df.schema.items()
    ]
    return df.select(exprs)


def _common(p: argparse.ArgumentParser, tenant: bool = True) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    if tenant:
        p.add_argument("--tenant", required=True, metavar="T", help="the tenant to query for")
        p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pql", description="Query workflow audit data with PQL.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="generate demo data and run example queries")
    p.add_argument("--data", default="pql-demo-data", metavar="DIR")
    p.add_argument("--receipts", type=int, default=200_000, metavar="N")
    p.add_argument("--seed", type=int, default=7, metavar="S")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("ingest", help="append Parquet files of receipts or decisions")
    _common(p, tenant=False)
    p.add_argument("--table", required=True, choices=["receipts", "decisions"])
    p.add_argument("files", nargs="+", metavar="FILE.parquet")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("query", help="answer a PQL query")
    _common(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument(
        "--deadline-ms",
        type=int,
        metavar="N",
        help="cancel the query after N ms (can only lower the engine's Limits.deadline_ms)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="bypass the result cache (and keep the wall clock exact, not floored)",
    )
    p.add_argument("query", metavar="QUERY")
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("explain", help="show the plan of a PQL query")
    _common(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument(
        "--analyze", action="store_true", help="run the query and show actual rows per node"
    )
    p.add_argument("query", metavar="QUERY")
    p.set_defaults(handler=cmd_explain)

    saved_cli.register(sub)
    server_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except PQLError as exc:
        print(exc.render(), file=sys.stderr)
        if os.environ.get("PQL_ERROR_FORMAT") == "json":
            print(json.dumps(exc.to_dict()), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(
            f"error[PQL-X040]: {exc.strerror or exc} ({exc.filename or 'no file'})\n"
            "  = hint: check the path, permissions and free space",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the edge: a bug is reported, never shown as a traceback
        if os.environ.get("PQL_DEBUG"):
            raise
        print(
            f"error[PQL-X000]: internal error: {type(exc).__name__}: {exc}\n"
            "  = hint: this is a bug in pql; set PQL_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
