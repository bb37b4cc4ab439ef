"""The ``pql`` command line. Errors are rendered here, once, and never as a traceback.

Exit status: 0 success; 2 invalid query or input; 3 refused by a safety rule; 4 signature or
authorization failure; 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pql import lake_cli, saved_cli
from pql.adapters import Adapters, load_adapters
from pql.cli_output import print_result as _print_result
from pql.errors import InputError, PQLError
from pql.result import dumps
from pql.server import cli as server_cli

__all__ = ["ADAPTERS_ENV", "build_parser", "engine_for", "main"]

ADAPTERS_ENV = "PQL_ADAPTERS"
"""Names of the adapters the command line may load, comma-separated (empty: none); unset: all."""

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as pql input errors (exit 2), without a traceback."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error[PQL-E070]: {message}", file=sys.stderr)
        raise SystemExit(2)


def engine_for(args: argparse.Namespace) -> Any:
    """The engine on ``--data`` with the command line's adapters (for adapters' commands too)."""
    from pql.engine import Engine
    from pql.storage.s3 import is_s3

    if is_s3(args.data):  # endpoint, credentials and state directory from the environment
        return Engine(args.data, index=False, adapters=args.adapters)
    data = Path(args.data)
    if not data.exists():
        raise InputError(
            "PQL-E071",
            f"the data directory {str(data)!r} does not exist",
            hints=("create it with `pql demo --data DIR` or `pql ingest --data DIR ...`",),
        )
    return Engine(data, index=False, adapters=args.adapters)  # one-shot: only the window


_engine = engine_for


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
        print(dumps(explained.to_dict()))
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
    from pql.storage.s3 import is_s3
    from pql.storage.validate import validate_all

    location = args.data if is_s3(args.data) else Path(args.data)
    engine = Engine(location, index=False, adapters=args.adapters)
    subject = engine.catalog.get(args.table)
    if subject is None:  # pragma: no cover - argparse restricts the choices
        raise InputError("PQL-E010", f"unknown subject {args.table!r}")
    tables = []
    for name in args.files:
        try:
            tables.append((name, pq.read_table(name)))
        except (OSError, ValueError) as exc:
            raise InputError(
                "PQL-E057", f"cannot read {name}: {exc}", hints=("pass Parquet files",)
            ) from None
    # One command is one ingest: every file is checked, alone and against the others, and
    # then all are stored in one commit; a bad file means nothing is stored.
    combined = validate_all(subject, tables, engine.catalog)
    report = engine.ingest(
        args.table, combined, mode=args.mode, source=_digest(args.files), who=args.who or _user()
    )
    line = (
        f"{', '.join(args.files)}: {report.written:,} of {report.rows_in:,} rows stored, "
        f"{report.duplicates:,} duplicates skipped, {report.partitions} partitions"
    )
    if report.duplicate_keys:
        line += f" (e.g. {', '.join(report.duplicate_keys[:3])})"
    print(line)
    return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return "unknown"


def _digest(files: list[str]) -> str:
    """``sha256:HEX`` of the input files, in the order given: what an ingest read."""
    import hashlib

    digest = hashlib.sha256()
    for name in files:
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def cmd_demo(args: argparse.Namespace) -> int:
    from pql.demo_run import run_demo

    return run_demo(Path(args.data), receipts=args.receipts, seed=args.seed, out=sys.stdout)


def cmd_adapters(args: argparse.Namespace) -> int:
    adapters: Adapters = args.adapters
    if args.format == "json":
        print(dumps([info.to_dict() for info in adapters.infos]))
        return 0
    if not adapters.infos:
        print("no adapters loaded")
        return 0
    for info in adapters.infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else "given in code"
        print(f"{info.name}  {info.status}  {info.module}  ({origin})")
        if info.status == "broken":
            print(f"    error: {info.error}")
            if info.hint:
                print(f"    hint: {info.hint}")
            continue
        for label, values in (
            ("subjects", info.subjects),
            ("commands", info.commands),
            ("safety rules", info.rules),
            ("preflight checks", info.checks),
            ("metrics", info.metrics),
        ):
            if values:
                print(f"    {label}: {', '.join(values)}")
    return 0


def _common(p: argparse.ArgumentParser, tenant: bool = True) -> None:
    p.add_argument(
        "--data", required=True, metavar="DIR", help="the data directory, or s3://BUCKET/PREFIX"
    )
    if tenant:
        p.add_argument("--tenant", required=True, metavar="T", help="the tenant to query for")
        p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")


def build_parser(adapters: Adapters | None = None) -> argparse.ArgumentParser:
    """The command line: the core's commands, then those of ``adapters`` (default: none)."""
    adapters = adapters if adapters is not None else Adapters.none()
    parser, sub = _core_parser(adapters)
    adapters.add_cli_commands(sub)
    return parser


def _core_parser(
    adapters: Adapters,
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[Any]]:
    parser = _Parser(prog="pql", description="Query workflow audit data with PQL.")
    parser.set_defaults(adapters=adapters)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="generate demo data and run example queries")
    p.add_argument("--data", default="pql-demo-data", metavar="DIR")
    p.add_argument("--receipts", type=int, default=200_000, metavar="N")
    p.add_argument("--seed", type=int, default=7, metavar="S")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("ingest", help="append Parquet files of receipts or decisions")
    _common(p, tenant=False)
    subjects = ["receipts", "decisions", *(s.name for s in adapters.subjects)]
    p.add_argument("--table", required=True, choices=subjects)
    p.add_argument(
        "--mode",
        choices=["live", "backfill", "replay"],
        default="live",
        help="new data (live), old data loaded late (backfill) or data loaded again (replay)",
    )
    p.add_argument("--who", metavar="NAME", help="who runs the ingest (default: the user)")
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

    p = sub.add_parser("adapters", help="list the adapters loaded and the packages they come from")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_adapters)

    saved_cli.register(sub)
    lake_cli.register(sub)
    server_cli.register(sub)
    return parser, sub


def core_commands() -> tuple[str, ...]:
    """The command names of the core's command line (no adapter may take one)."""
    return tuple(_core_parser(Adapters.none())[1].choices)


def cli_adapters() -> Adapters:
    """The adapters the command line loads: every installed one, or those ``PQL_ADAPTERS`` names."""
    allowed = os.environ.get(ADAPTERS_ENV)
    allow = None if allowed is None else [n.strip() for n in allowed.split(",") if n.strip()]
    return load_adapters(allow, reserved_commands=core_commands())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        adapters = cli_adapters()
    except PQLError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    parser = build_parser(adapters)
    args = parser.parse_args(argv)
    if args.command != "adapters":
        for info in adapters.broken:
            print(
                f"warning[PQL-X200]: adapter {info.name!r} is broken and was not loaded: "
                f"{info.error}",
                file=sys.stderr,
            )
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    except PQLError as exc:
        print(exc.render(), file=sys.stderr)
        if os.environ.get("PQL_ERROR_FORMAT") == "json":
            print(dumps(exc.to_dict()), file=sys.stderr)
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
    except Exception as exc:  # the edge: a bug is reported, never shown as a traceback
        if os.environ.get("PQL_DEBUG"):
            raise
        print(
            f"error[PQL-X000]: internal error: {type(exc).__name__}: {exc}\n"
            "  = hint: this is a bug in pql; set PQL_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
        return 1


def _reader_gone() -> int:
    """Standard output was closed (``pql query ... | head -1``): stop quietly, successfully.

    What was not written yet is dropped: stdout is pointed at the null device so that Python's
    final flush has nowhere to fail.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor behind stdout (embedded use)
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
