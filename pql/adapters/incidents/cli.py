"""``pql incidents``: replay, stream, ingest-metrics, list, show, ack, close, note, verify-log."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pql.errors import InputError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("incidents", help="incidents: detect, list, acknowledge, notes")
    sub = group.add_subparsers(dest="incidents_command", required=True, parser_class=type(group))

    p = sub.add_parser("replay", help="detect over a time range and print the events (JSON lines)")
    _data(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--from", dest="start", required=True, metavar="ISO-8601")
    p.add_argument("--until", required=True, metavar="ISO-8601")
    p.add_argument("--record", action="store_true", help="also append the events to the log")
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("stream", help="let ingest drive detection (or stop it with --off)")
    _data(p)
    p.add_argument("--off", action="store_true")
    p.set_defaults(handler=cmd_stream)

    p = sub.add_parser("ingest-metrics", help="ingest metric samples (JSON lines or CSV)")
    _data(p)
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=cmd_ingest_metrics)

    p = sub.add_parser("list", help="a tenant's incidents")
    _data(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="one incident with its events")
    _data(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_show)

    for name, handler in (("ack", cmd_ack), ("close", cmd_close)):
        p = sub.add_parser(name, help=f"{name} an incident (records who and when)")
        _data(p)
        p.add_argument("--tenant", required=True)
        p.add_argument("--by", required=True, metavar="WHO")
        p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")
        p.add_argument("id", metavar="ID")
        p.set_defaults(handler=handler)

    p = sub.add_parser("note", help="the draft note: print, save an edit, or mark it reviewed")
    _data(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--edit", metavar="FILE", help="save FILE as the note's next version")
    p.add_argument("--reviewed", metavar="WHO", help="publish the latest version, reviewed by WHO")
    p.set_defaults(handler=cmd_note)

    p = sub.add_parser("verify-log", help="check the event log's chain of digests")
    _data(p)
    p.set_defaults(handler=cmd_verify)


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")


def _service(args: argparse.Namespace) -> Any:
    from pql.adapters.incidents.service import for_engine
    from pql.cli import engine_for

    return for_engine(engine_for(args))


def _now(text: str | None) -> datetime:
    from pql.signing import to_utc

    return to_utc(text) if text else datetime.now(UTC)


def cmd_replay(args: argparse.Namespace) -> int:
    from pql.adapters.incidents.log import canonical

    service = _service(args)
    events = service.replay(args.tenant, _now(args.start), _now(args.until))
    for event in events:
        sys.stdout.write(canonical(event) + "\n")
    if args.record:
        service.record(events)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    _service(args).stream(not args.off)
    print("streaming detection " + ("off" if args.off else "on"))
    return 0


def cmd_ingest_metrics(args: argparse.Namespace) -> int:
    from pql.adapters.incidents.metrics_in import read_samples

    service = _service(args)
    report = service.engine.ingest("metric_samples", read_samples(Path(args.file)))
    print(f"{report.written} samples stored, {report.duplicates} duplicates skipped")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    found = _service(args).summaries(args.tenant)
    if args.format == "json":
        print(json.dumps([s.to_dict() for s in found], indent=2))
        return 0
    for s in found:
        print(
            f"{s.id}  {s.severity}  {s.state:<12}  opened {s.opened_at}  acked {s.acked_at or '-'}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(_service(args).get(args.tenant, args.id).to_dict(events=True), indent=2))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    s = _service(args).ack(args.tenant, args.id, args.by, _now(args.now))
    print(f"{s.id} acknowledged by {s.acked_by} at {s.acked_at} (MTTA {s.mtta_s:.0f} s)")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    s = _service(args).close(args.tenant, args.id, args.by, _now(args.now))
    print(f"{s.id} {s.state} at {s.closed_at}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from pql.adapters.incidents import note

    service = _service(args)
    service.get(args.tenant, args.id)
    if service.folder is None:
        raise InputError("PQL-E453", "notes need a data directory")
    if args.edit:
        path = note.save_version(service.folder, args.id, Path(args.edit).read_text())
        print(f"saved {path.name}")
    if args.reviewed:
        path = note.publish(service.folder, args.id, args.reviewed)
        print(f"published {path.name}")
    if not args.edit and not args.reviewed:
        sys.stdout.write(note.latest(service.folder, args.id).read_text())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pql.adapters.incidents.log import verify_log

    service = _service(args)
    assert service.log_path is not None
    check = verify_log(service.log_path)
    if not check.ok:
        raise InputError(
            "PQL-E454",
            f"the incident log {service.log_path.name} is broken at line {check.bad_line}: "
            f"{check.problem}",
            hints=("the log was changed after it was written; restore it from a copy",),
        )
    print(f"ok: {check.entries} entries, chain intact")
    return 0
