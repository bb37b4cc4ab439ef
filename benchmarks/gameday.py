"""Game day: the demo's deny storm replayed through streaming ingest while queries run.

The demo data (``pql.demo.generate``) always has a deny storm on the largest tenant in its last
three days (a guard pushing back on an error burst's retries). This script stores everything
before the storm's hour, turns streaming detection on, then feeds the rest one minute of event
time per ingest (receipts, then decisions), as fast as the engine takes it, while a thread keeps
querying the tenant. It records:

- onset: the storm's first deny (event time) and the wall clock of the ingest that carried it;
- open: the first event that carries the storm's rule (an ``mc.incident.open``, or an
  ``mc.incident.update`` when the storm joins an incident already open for the same workflows):
  event time, wall clock, and the wall time of the ingest call that returned it (detection runs
  inside the ingest);
- draft: when the incident's draft note was on disk (wall clock, from when the incident was
  first seen open);
- ack: a scripted on-call acknowledges once the storm is in the incident; the ack is recorded at
  the incident's open time plus the wall time that passed since it was seen open, so MTTA here
  is the machine's share only (a person adds their reaction time).

    python benchmarks/gameday.py --receipts 200000 --days 10

Writes ``benchmarks/results/gameday-<stamp>.json`` (times, events, query latencies) and
``gameday-<stamp>-note.md`` (the draft note).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import pql
from pql.adapters.incidents import for_engine
from pql.adapters.incidents.note import latest
from pql.demo import RULES, _World, generate
from pql.errors import PQLError

RESULTS = Path(__file__).parent / "results"
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUERIES = (
    'FIND COUNT(decisions.decisionId) AS denies WHERE effect = "deny" SINCE 1h',
    'FIND COUNT(*) AS n, AVG(latency_ms) AS ms WHERE receipts.status = "error" SINCE 1d',
    "FIND incidents SINCE 1d",
)


def _storm(seed: int, tenants: int, days: int) -> tuple[str, str, datetime, datetime]:
    """The demo's recent deny storm: tenant, rule, start and end (its ground truth)."""
    end_us = int((NOW - EPOCH).total_seconds()) * 1_000_000
    world = _World(np.random.default_rng(seed), tenants, days, end_us)
    s = world.storms[0]

    def at(micros: int) -> datetime:
        return EPOCH + timedelta(microseconds=int(micros))

    return str(world.names[s.tenant]), RULES[s.key], at(s.start), at(s.end)


def _storm_signal(event: dict[str, Any], rule: str, start: datetime) -> bool:
    """Whether ``event`` carries the storm's series, detected once the storm began."""
    return any(
        g["series"] == f"deny|{rule}"
        and datetime.fromisoformat(g["detected_at"].replace("Z", "+00:00")) >= start
        for g in event["signals"]
    )


def _querying(
    engine: pql.Engine,
    tenant: str,
    stop: threading.Event,
    out: list[float],
    refused: list[float],
) -> None:
    """About ten queries a second, as a dashboard and an analyst would; refusals are counted."""
    i = 0
    while not stop.wait(0.1):
        started = time.perf_counter()
        try:
            engine.query(QUERIES[i % len(QUERIES)], tenant=tenant, now=NOW.isoformat())
            out.append(time.perf_counter() - started)
        except PQLError:
            refused.append(time.perf_counter() - started)
        i += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--step-s", type=int, default=60, help="event time per ingest")
    parser.add_argument("--data", type=Path, help="keep the data directory here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tty = sys.stderr.isatty()
    demo = generate(args.receipts, seed=args.seed, now=NOW, days=args.days, tenants=args.tenants)
    tenant, rule, s_start, s_end = _storm(args.seed, args.tenants, args.days)
    storm_denies = demo.decisions.filter(
        (pl.col("tenant") == tenant)
        & (pl.col("rule") == rule)
        & (pl.col("effect") == "deny")
        & (pl.col("ts") >= s_start)
    )
    onset = storm_denies["ts"].min()
    assert isinstance(onset, datetime)
    cut = s_start - timedelta(minutes=20)
    stop_at = s_end + timedelta(minutes=10)
    folder = args.data or Path(tempfile.mkdtemp(prefix="gameday-"))
    engine = pql.Engine(folder, adapters=["incidents"])
    for subject, frame in (("receipts", demo.receipts), ("decisions", demo.decisions)):
        engine.ingest(subject, frame.filter(pl.col("ts") < cut).drop("attempt", strict=False))
    service = for_engine(engine)
    service.stream()
    latencies: list[float] = []
    refused: list[float] = []
    stop = threading.Event()
    worker = threading.Thread(target=_querying, args=(engine, tenant, stop, latencies, refused))
    worker.start()
    times: dict[str, Any] = {"onset_event": onset.isoformat()}
    opened: dict[str, Any] | None = None
    ingests: list[float] = []
    seen: dict[str, tuple[float, float]] = {}
    """Incident id -> wall clock at the start and end of the ingest after which it was open."""
    at = cut
    try:
        while at < stop_at:
            nxt = at + timedelta(seconds=args.step_s)
            for subject, frame in (("receipts", demo.receipts), ("decisions", demo.decisions)):
                part = frame.filter((pl.col("ts") >= at) & (pl.col("ts") < nxt))
                if not part.height:
                    continue
                carries = subject == "decisions" and at <= onset < nxt
                wall = time.time()
                started = time.perf_counter()
                engine.ingest(subject, part.drop("attempt", strict=False))
                took = time.perf_counter() - started
                ingests.append(took)
                if carries:
                    times["onset_ingest_wall"] = wall
                for s in service.summaries(tenant):
                    seen.setdefault(s.id, (wall, wall + took))
                if opened is None:
                    for s in service.summaries(tenant):
                        first = next((e for e in s.events if _storm_signal(e, rule, s_start)), None)
                        if first is not None:
                            opened = first
                            times["storm_event"] = first["type"]
                            times["incident_opened_at"] = s.opened_at
                            times["incident_ingest_start"], times["incident_seen_wall"] = seen[s.id]
                            times["open_event"] = first["ts"]
                            times["open_wall"] = wall + took
                            times["open_ingest_s"] = round(took, 4)
                            draft = latest(service.folder, first["id"])  # type: ignore[arg-type]
                            times["draft_wall"] = draft.stat().st_mtime
                            # the scripted on-call: paged at the open, acks once the draft is there
                            ack_delay = time.time() - times["incident_seen_wall"]
                            acked_at = datetime.fromisoformat(
                                s.opened_at.replace("Z", "+00:00")
                            ) + timedelta(seconds=ack_delay)
                            summary = service.ack(tenant, s.id, "gameday-oncall", acked_at)
                            times["ack_wall"] = time.time()
                            times["mtta_s"] = summary.mtta_s
                            break
                    if opened is not None and tty:
                        print(f"opened {opened['id']} at {opened['ts']}", file=sys.stderr)
            at = nxt
    finally:
        stop.set()
        worker.join()
    result: dict[str, Any] = {
        "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "demo": {
            "receipts": args.receipts,
            "days": args.days,
            "tenants": args.tenants,
            "seed": args.seed,
            "now": NOW.isoformat(),
        },
        "storm": {
            "tenant": tenant,
            "rule": rule,
            "start": s_start.isoformat(),
            "end": s_end.isoformat(),
        },
        "step_s": args.step_s,
        "ingests": len(ingests),
        "ingest_s": {"median": float(np.median(ingests)), "max": max(ingests)},
        "queries": {
            "count": len(latencies),
            "refused": len(refused),
            "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
            "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        },
        "machine": "shared 2-core machine, loaded by other work",
    }
    if opened is None:
        result["found"] = False
    else:
        onset_wall = times.get("onset_ingest_wall", times["open_wall"])
        result |= {
            "found": True,
            "times": {
                "storm signal arrived in": times["storm_event"],
                "incident opened at (event time)": times["incident_opened_at"],
                "onset (event time)": times["onset_event"],
                "open (event time)": times["open_event"],
                "onset -> open, event time (s)": (
                    datetime.fromisoformat(times["open_event"].replace("Z", "+00:00")) - onset
                ).total_seconds(),
                "onset ingest start -> open, wall (s)": round(times["open_wall"] - onset_wall, 4),
                "ingest that opened it (s)": times["open_ingest_s"],
                "opening ingest start -> draft on disk, wall (s)": round(
                    times["draft_wall"] - times["incident_ingest_start"], 4
                ),
                "opening ingest start -> ack, wall (s)": round(
                    times["ack_wall"] - times["incident_ingest_start"], 4
                ),
                "mtta_s (scripted on-call)": times["mtta_s"],
            },
            "events": [e for s in service.summaries(tenant) for e in s.events],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"gameday-{result['stamp']}"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if opened is not None:
        note = latest(service.folder, opened["id"])  # type: ignore[arg-type]
        shutil.copyfile(note, args.out / f"{name}-note.md")
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=2))
    if args.data is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if opened is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
