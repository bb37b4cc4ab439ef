"""Evaluate incident detection on the labelled synthetic set (``pql.adapters.incidents.synth``).

For each traffic size (executions an hour at a tenant's daily peak) and seed, every tenant gets
nine days of normal traffic with daily cycles and injected incidents of every kind (deny storm,
latency regression, rollback burst, error burst, metric anomaly; sev1 and sev2 in turn) over the
last two days; a second set of the same size has no injections at all. Detection is replayed over
everything after the first day (the tenant's minimum history) and reported per kind and overall:

- recall: an injected incident is found when an incident of its tenant has a signal on its target
  series (``deny|RULE``, ``latency|WF``, ``rollbacks|WF``, ``errors|WF``, ``metric|queue_depth|..``)
  detected between its onset (minus one bucket) and its end (plus ``quiet_s``);
- false incidents per tenant-week: opened incidents none of whose signals is such a match, over
  the tenant-weeks of replayed time outside the injected windows;
- time to open, event time: from the first anomalous record to the event (open or update) that
  first carries the matching signal, in seconds and in buckets;
- time to open, wall time (``--streaming``): the injected windows of one size fed through
  streaming ingest one minute at a time; the wall time of the ``engine.ingest`` call that returns
  the event (detection runs inside it), measured from that call's start.

    python benchmarks/incidents_eval.py --seeds 11 23 --sizes 600 2400 --streaming 600

Writes ``benchmarks/results/incidents-eval-<stamp>.json`` and ``.md``. ``--tune-seed`` names the
seed the settings were chosen on; the others are held out and reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

import pql
from pql.adapters.incidents import Incidents, for_engine
from pql.adapters.incidents.settings import DEFAULT, Settings
from pql.adapters.incidents.synth import KINDS, Injected, Synthetic, generate

RESULTS = Path(__file__).parent / "results"
SERIES = {
    "deny_storm": "deny|",
    "latency": "latency|",
    "rollbacks": "rollbacks|",
    "errors": "errors|",
    "metric": "metric|",
}
SUBJECTS = ("receipts", "decisions", "metric_samples")


def _frames(s: Synthetic) -> list[tuple[str, pl.DataFrame]]:
    return [("receipts", s.receipts), ("decisions", s.decisions), ("metric_samples", s.metrics)]


def _engine(s: Synthetic, before: datetime | None = None) -> pql.Engine:
    engine = pql.Engine.in_memory(adapters=["incidents"])
    for subject, frame in _frames(s):
        engine.ingest(subject, frame if before is None else frame.filter(pl.col("ts") < before))
    return engine


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matches(inj: Injected, signal: dict[str, Any], settings: Settings) -> bool:
    series = SERIES[inj.kind] + inj.target
    if not (signal["series"] == series or signal["series"].startswith(series + "|")):
        return False
    at = _ts(signal["detected_at"])
    return (
        inj.onset - timedelta(seconds=settings.bucket_s)
        <= at
        <= inj.end + timedelta(seconds=settings.quiet_s)
    )


def score(
    s: Synthetic, events: list[dict[str, Any]], settings: Settings, origin: datetime
) -> dict[str, Any]:
    """Per injected incident: found, when; the false incidents; the normal time replayed."""
    rows = []
    for inj in s.injected:
        hit = None
        for event in events:
            if event["tenant"] != inj.tenant or event["type"] == "mc.incident.close":
                continue
            if any(_matches(inj, sig, settings) for sig in event["signals"]):
                hit = event
                break
        delay = (_ts(hit["ts"]) - inj.onset).total_seconds() if hit else None
        rows.append(
            {
                "tenant": inj.tenant,
                "kind": inj.kind,
                "target": inj.target,
                "severity": inj.severity,
                "onset": inj.onset.isoformat(),
                "found": hit is not None,
                "detected_severity": hit["severity"] if hit else None,
                "open_delay_s": delay,
                "open_delay_buckets": delay / settings.bucket_s if delay is not None else None,
            }
        )
    opened: dict[str, dict[str, Any]] = {}
    signals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        opened.setdefault(event["id"], event)
        signals[event["id"]] += event["signals"]
    false = [
        {"id": i, "tenant": e["tenant"], "opened": e["ts"], "series": e["signals"][0]["series"]}
        for i, e in opened.items()
        if not any(
            inj.tenant == e["tenant"] and _matches(inj, sig, settings)
            for inj in s.injected
            for sig in signals[i]
        )
    ]
    tenants = sorted(set(s.receipts["tenant"].to_list()))
    replayed = (s.end - origin).total_seconds() * len(tenants)
    injected_time = sum((i.end - i.onset).total_seconds() + settings.quiet_s for i in s.injected)
    return {
        "injected": rows,
        "false": false,
        "normal_tenant_weeks": (replayed - injected_time) / (7 * 86400),
    }


def run_batch(size: int, seed: int, settings: Settings, tenants: int) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size, "seed": seed}
    for label, per_tenant in (("injected", 5), ("normal", 0)):
        s = generate(
            tenants=tenants,
            days=9,
            per_hour=size,
            incidents_per_tenant=per_tenant,
            seed=seed if label == "injected" else seed + 1000,
        )
        engine = _engine(s)
        service = Incidents(engine, settings)
        origin = s.start + timedelta(days=settings.min_history_days)
        events: list[dict[str, Any]] = []
        started = time.perf_counter()
        for t in range(tenants):
            events += service.replay(f"t{t:02d}", origin, s.end)
        out[f"{label}_replay_s"] = round(time.perf_counter() - started, 2)
        scored = score(s, events, settings, origin)
        if label == "injected":
            out["injected"] = scored["injected"]
        out.setdefault("false", []).extend(scored["false"])
        out["normal_tenant_weeks"] = (
            out.get("normal_tenant_weeks", 0.0) + scored["normal_tenant_weeks"]
        )
    return out


def run_streaming(size: int, seed: int, settings: Settings, tenants: int) -> list[dict[str, Any]]:
    """Each injected incident fed through streaming ingest; wall time of the ingest that opens."""
    s = generate(tenants=tenants, days=9, per_hour=size, incidents_per_tenant=5, seed=seed)
    out = []
    for inj in s.injected:
        lead = inj.onset - timedelta(minutes=30)
        engine = _engine(s, before=lead)
        service = for_engine(engine)
        service.settings = replace(settings, streaming=True)
        at, found = lead, None
        stop = inj.end + timedelta(minutes=10)
        while at < stop and found is None:
            nxt = at + timedelta(minutes=1)
            for subject, frame in _frames(s):
                part = frame.filter(
                    (pl.col("tenant") == inj.tenant) & (pl.col("ts") >= at) & (pl.col("ts") < nxt)
                )
                if not part.height:
                    continue
                started = time.perf_counter()
                before = len(service.summaries(inj.tenant))
                engine.ingest(subject, part)
                wall = time.perf_counter() - started
                for summary in service.summaries(inj.tenant)[max(0, before - 1) :]:
                    for event in summary.events:
                        if any(_matches(inj, sig, settings) for sig in event["signals"]):
                            found = (event, wall)
                            break
                    if found:
                        break
                if found:
                    break
            at = nxt
        row = {"tenant": inj.tenant, "kind": inj.kind, "severity": inj.severity, "found": False}
        if found:
            event, wall = found
            row |= {
                "found": True,
                "open_delay_s": (_ts(event["ts"]) - inj.onset).total_seconds(),
                "wall_s": round(wall, 4),
            }
        out.append(row)
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for run in runs for r in run["injected"]]
    weeks = sum(run["normal_tenant_weeks"] for run in runs)
    false = sum(len(run["false"]) for run in runs)
    table: dict[str, Any] = {}
    for kind in (*KINDS, "overall"):
        pick = [r for r in rows if kind in ("overall", r["kind"])]
        found = [r for r in pick if r["found"]]
        sev1 = [r for r in pick if r["severity"] == "sev1"]
        delays = sorted(r["open_delay_buckets"] for r in found)
        table[kind] = {
            "injected": len(pick),
            "found": len(found),
            "recall": len(found) / len(pick) if pick else None,
            "sev1_found": f"{sum(r['found'] for r in sev1)}/{len(sev1)}",
            "median_open_buckets": delays[len(delays) // 2] if delays else None,
            "max_open_buckets": delays[-1] if delays else None,
            "within_one_bucket": sum(d <= 1.0 for d in delays),
        }
    table["overall"]["false_incidents"] = false
    table["overall"]["normal_tenant_weeks"] = round(weeks, 2)
    table["overall"]["false_per_tenant_week"] = false / weeks if weeks else None
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Incident detection on the labelled synthetic set ({result['stamp']})",
        "",
        f"Sizes (executions an hour at the daily peak): {result['sizes']}; "
        f"{result['tenants']} tenants; tuned on seed {result['tune_seed']}, held out: "
        f"{[s for s in result['seeds'] if s != result['tune_seed']]}. Settings: defaults of "
        f"`docs/pql/INCIDENTS.md`. {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_average']} when written (wall times depend on it; the "
        "detection does not).",
        "",
    ]
    for name, table in result["tables"].items():
        lines += [
            f"## {name}",
            "",
            "| kind | injected | found | recall | sev1 found | median open (buckets) "
            "| max open (buckets) | within 1 bucket |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind, row in table.items():
            recall = f"{row['recall']:.1%}" if row["recall"] is not None else "-"
            med = (
                f"{row['median_open_buckets']:.2f}"
                if row["median_open_buckets"] is not None
                else "-"
            )
            mx = f"{row['max_open_buckets']:.2f}" if row["max_open_buckets"] is not None else "-"
            lines.append(
                f"| {kind} | {row['injected']} | {row['found']} | {recall} | {row['sev1_found']} "
                f"| {med} | {mx} | {row['within_one_bucket']}/{row['found']} |"
            )
        o = table["overall"]
        lines += [
            "",
            f"False incidents: {o['false_incidents']} over {o['normal_tenant_weeks']} "
            f"tenant-weeks of normal traffic = {o['false_per_tenant_week']:.2f} per tenant-week.",
            "",
        ]
    if result.get("streaming"):
        rows = result["streaming"]
        walls = sorted(r["wall_s"] for r in rows if r["found"])
        lines += [
            f"## Streaming (size {result['streaming_size']}, seed {result['tune_seed']})",
            "",
            f"{sum(r['found'] for r in rows)}/{len(rows)} opened while fed one minute at a time; "
            f"wall time of the ingest that returned the event: median {walls[len(walls) // 2]:.3f} s, "
            f"max {walls[-1]:.3f} s."
            if walls
            else "nothing opened",
            "",
            "| tenant | kind | severity | found | open delay (s, event time) | wall (s) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['tenant']} | {r['kind']} | {r['severity']} | {r['found']} "
                f"| {r.get('open_delay_s', '-')} | {r.get('wall_s', '-')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[600, 2400])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 23])
    parser.add_argument("--tune-seed", type=int, default=11)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--streaming", type=int, default=600, help="size for the wall-time run")
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = DEFAULT
    if args.set:
        from pql.adapters.incidents.settings import with_values

        settings = with_values(
            DEFAULT, {k: json.loads(v) for k, v in (x.split("=", 1) for x in args.set)}
        )
    tty = sys.stderr.isatty()
    runs = []
    for seed in args.seeds:
        for size in args.sizes:
            if tty:
                print(f"seed {seed} size {size} ...", file=sys.stderr)
            runs.append(run_batch(size, seed, settings, args.tenants))
    tables = {}
    for seed in args.seeds:
        tag = "tuning seed" if seed == args.tune_seed else "held-out seed"
        tables[f"seed {seed} ({tag})"] = summarize([r for r in runs if r["seed"] == seed])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "stamp": stamp,
        "sizes": args.sizes,
        "seeds": args.seeds,
        "tune_seed": args.tune_seed,
        "tenants": args.tenants,
        "settings": asdict(settings),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "tables": tables,
        "runs": runs,
    }
    if not args.no_streaming:
        if tty:
            print("streaming ...", file=sys.stderr)
        result["streaming_size"] = args.streaming
        result["streaming"] = run_streaming(args.streaming, args.tune_seed, settings, args.tenants)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"incidents-eval-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"incidents-eval-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
