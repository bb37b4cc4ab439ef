"""``pql residency audit|delete``: the auditor and the governed delete on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pql.errors import InputError
from pql.storage.s3 import is_s3

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser("residency", help="data residency: audit and locked objects")
    sub = p.add_subparsers(dest="residency_command", required=True)

    a = sub.add_parser("audit", help="report every residency violation; exit 1 when any")
    a.add_argument("--data", required=True, metavar="DIR", help="a directory or s3://BUCKET/PREFIX")
    a.add_argument("--since", metavar="ISO-8601", help="only what was written since then")
    a.add_argument("--format", choices=["table", "json", "html"], default="table")
    a.set_defaults(handler=cmd_audit)

    d = sub.add_parser("delete", help="delete a stored object its lock allows to delete")
    d.add_argument("--data", required=True, metavar="DIR", help="a directory or s3://BUCKET/PREFIX")
    d.add_argument("object", metavar="PATH", help="the object, relative to DIR (or bucket/key)")
    d.add_argument("--bypass-governance", action="store_true")
    d.add_argument("--who", metavar="NAME", help="who asks for the bypass (required with it)")
    d.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")
    d.set_defaults(handler=cmd_delete)


def cmd_audit(args: argparse.Namespace) -> int:
    from pql.adapters.residency.audit import audit
    from pql.adapters.residency.objects import LocalObjects, objects_of
    from pql.adapters.residency.render import as_html, as_json, as_table
    from pql.cli import engine_for

    _existing(args.data)
    engine = engine_for(args)
    stored = objects_of(engine) or LocalObjects(Path(args.data))
    report = audit(stored, since=_time(args.since, "--since") if args.since else None)
    record_metrics(engine, report)
    render = {"table": as_table, "json": as_json, "html": as_html}[args.format]
    sys.stdout.write(render(report) + "\n")
    return 1 if report.violations else 0


def record_metrics(engine: Any, report: Any) -> None:
    """The audit's metrics: backfill and replay scans, and the violations per kind."""
    engine.metrics.inc("mc_residency_backfill_scans_total", report.backfill_scans)
    for kind, n in report.counts().items():
        engine.metrics.observe("mc_residency_violations", n, kind=kind)


def cmd_delete(args: argparse.Namespace) -> int:
    from pql.adapters.residency.objects import LocalObjects, objects_of
    from pql.cli import engine_for

    _existing(args.data)
    stored = (objects_of(engine_for(args)) if is_s3(args.data) else None) or LocalObjects(
        Path(args.data)
    )
    stored.delete(
        args.object,
        now=_time(args.now, "--now") if args.now else None,
        bypass_governance=args.bypass_governance,
        who=args.who,
    )
    print(f"deleted {args.object}")
    return 0


def _existing(data: str) -> Path | None:
    if is_s3(data):  # endpoint, credentials and state directory from the environment
        return None
    root = Path(data)
    if not root.is_dir():
        raise InputError("PQL-E405", f"no data directory at {data!r}")
    return root


def _time(text: str, flag: str) -> Any:
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError("PQL-E406", f"{flag} {text!r} is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
