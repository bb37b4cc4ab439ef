"""``pql lake``: look after a lake directory (rebuild its manifest, quarantine, orphans, the
files written beside the data: rollup files and index snapshots).

    pql lake rebuild-manifest --data DIR [--force]
    pql lake quarantine       --data DIR FILE ...
    pql lake orphans          --data DIR [--delete]
    pql lake rollups          --data DIR
    pql lake snapshots        --data DIR [--tenant T ...]

Errors are raised as :class:`~pql.errors.PQLError` and rendered by :mod:`pql.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pql.errors import InputError

if TYPE_CHECKING:
    from pql.storage.lake import Lake

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``lake`` and its subcommands to the ``pql`` parser."""
    lake = subparsers.add_parser("lake", help="repair and clean a lake directory")
    sub = lake.add_subparsers(dest="lake_command", required=True, parser_class=type(lake))

    p = sub.add_parser(
        "rebuild-manifest", help="write a lost or damaged manifest again from the data files"
    )
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.add_argument("--force", action="store_true", help="rebuild even if the manifest is readable")
    p.set_defaults(handler=cmd_rebuild_manifest)

    p = sub.add_parser("quarantine", help="take damaged data files out of the lake")
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.add_argument("files", nargs="+", metavar="FILE", help="as the error named it")
    p.set_defaults(handler=cmd_quarantine)

    p = sub.add_parser("orphans", help="list (or delete) data files no commit lists")
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.add_argument("--delete", action="store_true", help="delete them")
    p.set_defaults(handler=cmd_orphans)

    p = sub.add_parser(
        "rollups", help="write the rollup files of data files ingested before pql wrote them"
    )
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.set_defaults(handler=cmd_rollups)

    p = sub.add_parser(
        "snapshots",
        help="write the index snapshots an engine would load from Parquet, so that its first "
        "open maps them (a restart)",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.add_argument(
        "--tenant",
        action="append",
        metavar="T",
        help="only this tenant (repeatable; default: every tenant with stored rows)",
    )
    p.set_defaults(handler=cmd_snapshots)


def _existing(data: str) -> Path:
    path = Path(data)
    if not path.is_dir():
        raise InputError(
            "PQL-E071",
            f"the data directory {data!r} does not exist",
            hints=("give the directory a `pql ingest --data DIR` wrote",),
        )
    return path


def cmd_rebuild_manifest(args: argparse.Namespace) -> int:
    from pql.storage.repair import rebuild_manifest

    report = rebuild_manifest(_existing(args.data), force=args.force)
    if report.replaced:
        print(f"the old manifest was kept as {report.replaced}")
    print(
        f"manifest rebuilt: {report.files:,} files, {report.rows:,} rows, "
        f"{len(report.tenants)} tenants"
    )
    if report.retired:
        print(f"{report.retired:,} copies of moved files restored as retired")
    for tenant, home in sorted(report.homes.items()):
        how = " (inferred: _pql/homes.json was missing)" if report.homes_inferred else ""
        print(f"tenant {tenant} is stored in {home}{how}")
    for path, reason in report.skipped:
        print(f"left out {path}: {reason}", file=sys.stderr)
    if report.duplicates:
        print(
            f"{report.duplicates:,} record keys are stored more than once (files of an ingest "
            "that never committed were published too)",
            file=sys.stderr,
        )
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from pql.catalog import Catalog
    from pql.storage.lake import Lake

    lake = _guarded(Lake(_existing(args.data), Catalog()), args)
    for name in args.files:
        entry = lake.quarantine(name)
        print(
            f"quarantined {entry.path}: {entry.rows:,} rows of {entry.tenant}'s "
            f"{entry.subject} on {entry.day.isoformat()} are no longer read"
        )
    return 0


def cmd_orphans(args: argparse.Namespace) -> int:
    from pql.catalog import Catalog
    from pql.storage.lake import Lake

    lake = _guarded(Lake(_existing(args.data), Catalog()), args)
    root = lake.root
    for path in lake.gc_orphans(delete=args.delete):
        print(f"{'deleted' if args.delete else 'orphan'} {path.relative_to(root).as_posix()}")
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    from pql.catalog import Catalog
    from pql.storage.lake import Lake

    lake = Lake(_existing(args.data), Catalog())
    show = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:  # on a terminal only: quiet when piped
        end = "\n" if done == total else ""
        print(f"\rrollup files: {done:,} of {total:,}", end=end, file=sys.stderr, flush=True)

    written = lake.write_missing_rollups(progress if show else None)
    files = "rollup file" if written == 1 else "rollup files"
    print(f"wrote {written:,} {files}" if written else "every data file has its rollup file")
    return 0


def cmd_snapshots(args: argparse.Namespace) -> int:
    from pql.catalog import Catalog
    from pql.storage.lake import Lake
    from pql.storage.prepare import prepare

    catalog = Catalog()
    lake = Lake(_existing(args.data), catalog)
    show = sys.stderr.isatty()

    def progress(tenant: str, done: int, total: int) -> None:  # on a terminal only
        end = "\n" if done == total else ""
        line = f"\rsnapshots: {done:,} of {total:,} tenants ({tenant})"
        print(f"{line:<72}", end=end, file=sys.stderr, flush=True)

    started = time.perf_counter()
    done = prepare(lake, catalog, args.tenant, progress=progress if show else None)
    seconds = time.perf_counter() - started
    if done.written:
        tenants = "1 tenant" if len(done.written) == 1 else f"{len(done.written)} tenants"
        print(
            f"wrote the snapshots of {tenants} ({done.files} files) in {seconds:.1f}s: "
            f"{', '.join(done.written)}"
        )
    if done.current:
        print(f"current already: {', '.join(done.current)}")
    return 0


def _guarded(lake: Lake, args: argparse.Namespace) -> Lake:
    """``lake`` with the adapters' removal guards (``pql_check_remove``)."""
    from pql.engine import removal_guard

    adapters = getattr(args, "adapters", None)
    if adapters is not None and adapters.implements("pql_check_remove"):
        lake.removal_guards.append(removal_guard(adapters, lake.root))
    return lake
