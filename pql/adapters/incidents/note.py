"""The draft note: Markdown from an incident's signals, each figure with the PQL that reproduces it.

Drafts and edits are saved as versions in ``DATA/_pql/evidence/incidents/ID/`` (``v1.md`` is the
draft); ``published.md`` is written only by :func:`publish`, which records who reviewed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pql.errors import InputError

__all__ = ["draft_note", "figure_queries", "latest", "publish", "save_version"]


def _where(signal: dict[str, Any]) -> tuple[str, str]:
    kind, name = signal["kind"], signal["series"].split("|", 1)[1]
    since = signal.get("window_start", signal["bucket"]["start"])
    window = f"ts >= '{since}' AND ts <= '{signal['detected_at']}'"
    if kind == "deny":
        agg = "COUNT(decisions.decisionId)"
        cond = f'rule = "{name}" AND effect = "deny"'
    elif kind in ("errors", "rollbacks"):
        agg = "COUNT(receipts.executionId)"
        status = "error" if kind == "errors" else "rollback"
        cond = f'workflow = "{name}" AND status = "{status}"'
    elif kind == "latency":
        agg = "AVG(receipts.latency_ms)"
        cond = f'workflow = "{name}"'
    else:
        metric = name.split("|", 1)[0]
        agg = "AVG(metric_samples.value)"
        cond = f'name = "{metric}"'
    return agg, f"{cond} AND {window}"


def figure_queries(event: dict[str, Any]) -> list[tuple[float, str]]:
    """Each signal's value with the PQL query that reproduces it (run with ``--now`` = ts)."""
    out = []
    for signal in event["signals"]:
        agg, cond = _where(signal)
        out.append((float(signal["value"]), f"FIND {agg} AS value WHERE {cond} SINCE 30d"))
    return out


def draft_note(event: dict[str, Any]) -> str:
    """The Markdown draft for an open event."""
    sigs = event["signals"]
    lines = [
        f"# Incident {event['id']} ({event['severity']}) — DRAFT, not reviewed",
        "",
        f"**What:** {'; '.join(s['measured'] for s in sigs)} above normal for tenant "
        f"`{event['tenant']}`.",
        f"**Since:** {event['opened_at']}",
        f"**Workflows:** {', '.join(sorted({w for s in sigs for w in s['workflows']})) or '-'}",
        f"**Rules:** {', '.join(sorted({r for s in sigs for r in s['rules']})) or '-'}",
        "**Policy versions:** "
        + (", ".join(sorted({v for s in sigs for v in s["policy_versions"]})) or "-"),
        f"**Executions touched:** {sum(s['executions']['count'] for s in sigs)}",
        "",
        "## Likely trigger",
        "",
    ]
    new_versions = [s for s in sigs if s["kind"] == "deny" and s["policy_versions"]]
    if new_versions:
        s = new_versions[0]
        lines.append(
            f"A deny spike on rule {s['series'].split('|', 1)[1]} under policy version(s) "
            f"{', '.join(s['policy_versions'])}, starting in the bucket {s['bucket']['start']}."
        )
    else:
        lines.append("None evident in the data yet.")
    lines += ["", "## Timeline", ""]
    for s in sorted(sigs, key=lambda s: s["detected_at"]):
        lines.append(
            f"- {s['detected_at']}: {s['measured']} reached {s['value']} "
            f"(baseline median {s['baseline']['median']}, threshold {s['baseline']['threshold']})"
        )
    lines += ["", "## Sample executions", ""]
    lines += [f"- {e}" for s in sigs for e in s["executions"]["sample"]] or ["- none"]
    lines += ["", "## Figures and the queries that reproduce them", ""]
    lines += [
        "| figure | PQL (tenant " + event["tenant"] + ", --now " + event["ts"] + ") |",
        "|---|---|",
    ]
    for value, query in figure_queries(event):
        lines.append(f"| {value} | `{query}` |")
    return "\n".join(lines) + "\n"


def _dir(folder: Path, incident: str) -> Path:
    return folder.parent / "evidence" / "incidents" / incident


def save_version(folder: Path, incident: str, text: str) -> Path:
    """Save ``text`` as the next version of the incident's note."""
    where = _dir(folder, incident)
    where.mkdir(parents=True, exist_ok=True)
    number = len(list(where.glob("v*.md"))) + 1
    path = where / f"v{number}.md"
    path.write_text(text)
    return path


def latest(folder: Path, incident: str) -> Path:
    versions = sorted(_dir(folder, incident).glob("v*.md"), key=lambda p: int(p.stem[1:]))
    if not versions:
        raise InputError("PQL-E453", f"incident {incident!r} has no note")
    return versions[-1]


def publish(folder: Path, incident: str, reviewer: str) -> Path:
    """Publish the latest version, marked reviewed by ``reviewer`` (nothing else publishes)."""
    source = latest(folder, incident)
    text = source.read_text().replace(" — DRAFT, not reviewed", "", 1)
    path = _dir(folder, incident) / "published.md"
    path.write_text(f"<!-- reviewed by {reviewer}; from {source.name} -->\n{text}")
    return path
