"""The incidents adapter: deterministic replay, streaming = replay, the contract, the log."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

import pql
from pql.adapters.incidents import Incidents, for_engine
from pql.adapters.incidents.log import canonical, verify_log
from pql.adapters.incidents.synth import Synthetic, generate

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "audit" / "INCIDENT_EVENTS.schema.json").read_text()
)


@pytest.fixture(scope="module")
def synth() -> Synthetic:
    return generate(tenants=1, days=8, per_hour=500, incidents_per_tenant=3)


def _engine(s: Synthetic) -> pql.Engine:
    engine = pql.Engine.in_memory(adapters=["incidents"])
    engine.ingest("receipts", s.receipts)
    engine.ingest("decisions", s.decisions)
    engine.ingest("metric_samples", s.metrics)
    return engine


def _stream(s: Synthetic) -> str:
    return "".join(
        canonical(e) + "\n"
        for e in Incidents(_engine(s)).replay("t00", s.end - timedelta(days=1), s.end)
    )


def test_replay_is_byte_identical_and_finds_the_injected_storm(synth: Synthetic) -> None:
    first, second = _stream(synth), _stream(synth)
    assert first == second
    events = [json.loads(line) for line in first.splitlines()]
    opened = [e for e in events if e["type"] == "mc.incident.open"]
    assert opened, "the injected incidents of the last day open incidents"
    storm = next(i for i in synth.injected if i.kind == "deny_storm")
    # the storm's failing retries may open the incident as an error burst; its denies join it
    assert any(s["series"] == f"deny|{storm.target}" for e in events for s in e["signals"])


def test_every_event_validates_and_says_what_it_measured(synth: Synthetic) -> None:
    events = [json.loads(line) for line in _stream(synth).splitlines()]
    assert events
    for event in events:
        jsonschema.validate(event, SCHEMA)
        for signal in event["signals"]:
            assert signal["measured"] and signal["baseline"]["samples"] > 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**events[0], "severity": "sev0"}, SCHEMA)


def test_streaming_gives_the_replay_events_while_the_storm_arrives(synth: Synthetic) -> None:
    cut = synth.end - timedelta(days=1)
    history = _engine_until(synth, cut)
    service = for_engine(history)  # the instance the ingest hook drives
    service.stream()
    opened_before_storm_end: list[bool] = []
    storm = next(i for i in synth.injected if i.kind == "deny_storm")
    step = timedelta(minutes=2)
    at = cut
    while at < synth.end:
        nxt = min(at + step, synth.end)
        for subject, frame in (
            ("receipts", synth.receipts),
            ("decisions", synth.decisions),
            ("metric_samples", synth.metrics),
        ):
            part = frame.filter((frame["ts"] >= at) & (frame["ts"] < nxt))
            if part.height:
                history.ingest(subject, part)
        at = nxt
        if at <= storm.end:
            opened_before_storm_end.append(
                any(
                    g["series"].startswith("deny|")
                    for s in service.summaries()
                    for e in s.events
                    for g in e["signals"]
                )
            )
    streamed = [e for s in service.summaries() for e in s.events]
    full = _engine(synth)
    last = max(synth.receipts["ts"].max(), synth.decisions["ts"].max(), synth.metrics["ts"].max())  # type: ignore[type-var]
    replayed = Incidents(full).replay("t00", cut, last)  # type: ignore[arg-type]
    key = lambda e: (e["ts"], e["id"], e["seq"])  # noqa: E731
    assert sorted(map(canonical, streamed)) == sorted(map(canonical, replayed))
    assert sorted(streamed, key=key) == sorted(replayed, key=key)
    assert any(opened_before_storm_end), "the storm's incident opens before the storm ends"


def _engine_until(s: Synthetic, cut: object) -> pql.Engine:
    engine = pql.Engine.in_memory(adapters=["incidents"])
    for subject, frame in (
        ("receipts", s.receipts),
        ("decisions", s.decisions),
        ("metric_samples", s.metrics),
    ):
        engine.ingest(subject, frame.filter(frame["ts"] < cut))
    return engine


def test_verify_log_detects_an_edited_line(synth: Synthetic, tmp_path: Path) -> None:
    engine = pql.Engine(tmp_path, adapters=["incidents"])
    for subject, frame in (("receipts", synth.receipts), ("decisions", synth.decisions)):
        engine.ingest(subject, frame)
    service = Incidents(engine)
    service.record(service.replay("t00", synth.end - timedelta(days=1), synth.end))
    assert service.log_path is not None and verify_log(service.log_path).ok

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pql.cli", "incidents", "verify-log", "--data", str(tmp_path)],
            capture_output=True,
            text=True,
        )

    good = verify()
    assert good.returncode == 0, good.stderr
    lines = service.log_path.read_text().splitlines()
    lines[0] = lines[0].replace('"sev', '"sex', 1)
    service.log_path.write_text("\n".join(lines) + "\n")
    bad = verify()
    assert bad.returncode == 2
    assert "PQL-E454" in bad.stderr and "line 1" in bad.stderr


def test_find_incidents_and_the_note_figures_reproduce(synth: Synthetic, tmp_path: Path) -> None:
    engine = pql.Engine(tmp_path, adapters=["incidents"])
    for subject, frame in (("receipts", synth.receipts), ("decisions", synth.decisions)):
        engine.ingest(subject, frame)
    service = for_engine(engine)
    events = service.replay("t00", synth.end - timedelta(days=1), synth.end)
    service.record(events)
    opened = [e for e in events if e["type"] == "mc.incident.open"]
    assert opened
    severities = {e["severity"] for e in opened}
    sev = sorted(severities)[0]
    now = synth.end.isoformat()
    found = engine.query(f'FIND incidents WHERE severity = "{sev}" SINCE 7d', tenant="t00", now=now)
    assert found.df.height >= 1 and set(found.df["severity"]) == {sev}
    assert engine.query("FIND incidents SINCE 7d", tenant="t01", now=now).df.height == 0
    from pql.adapters.incidents.note import figure_queries, latest

    assert service.folder is not None
    for event in opened:
        assert "DRAFT" in latest(service.folder, event["id"]).read_text()
        for value, query in figure_queries(event):
            got = engine.query(query, tenant="t00", now=event["ts"]).df["value"][0]
            assert got == pytest.approx(value)
    summary = service.ack("t00", opened[0]["id"], "oncall", synth.end)
    assert summary.acked_by == "oncall" and summary.mtta_s is not None
