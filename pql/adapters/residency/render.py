"""The auditor's report as a table, JSON, or one self-contained HTML page (the dashboard panel)."""

from __future__ import annotations

import html
import json
from collections import Counter

from pql.adapters.residency.audit import AuditReport

__all__ = ["as_html", "as_json", "as_table"]


def as_json(report: AuditReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)


def as_table(report: AuditReport) -> str:
    lines = [
        f"{len(report.violations)} violations in {report.objects} objects and "
        f"{report.journal_entries} journal entries ({report.backfill_scans} backfills/replays) "
        f"in {report.seconds:.2f} s"
    ]
    lines += [f"  {kind:<20} {n}" for kind, n in report.counts().items()]
    for v in report.violations:
        lines.append(f"{v.kind:<20} {v.tenant:<12} {v.region:<14} {v.object}  {v.evidence}")
    return "\n".join(lines)


def as_html(report: AuditReport) -> str:
    """One page, no external resources: a heat map of violations by tenant and region per day,
    the counts per kind, and the list."""
    days = sorted({v.at[:10] for v in report.violations})
    rows = sorted({(v.tenant, v.region) for v in report.violations})
    per = Counter((v.tenant, v.region, v.at[:10]) for v in report.violations)
    top = max(per.values(), default=1)
    head = "".join(f"<th>{html.escape(d)}</th>" for d in days)
    grid = []
    for tenant, region in rows:
        cells = []
        for day in days:
            n = per[(tenant, region, day)]
            alpha = 0.15 + 0.85 * n / top if n else 0
            cells.append(f'<td style="background:rgba(200,30,30,{alpha:.2f})">{n or ""}</td>')
        grid.append(
            f"<tr><th>{html.escape(tenant)}</th><th>{html.escape(region)}</th>{''.join(cells)}</tr>"
        )
    counts = "".join(
        f'<div class="k{" bad" if n else ""}"><b>{n}</b><span>{k}</span></div>'
        for k, n in report.counts().items()
    )
    listing = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(x)}</td>"
            for x in (v.at[:19], v.kind, v.tenant, v.region, v.object, v.evidence)
        )
        + "</tr>"
        for v in report.violations
    )
    status = "no violations" if not report.violations else f"{len(report.violations)} violations"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Residency audit: {status}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px}}
.kinds{{display:flex;flex-wrap:wrap;gap:8px}}
.k{{border:1px solid #ccc;border-radius:6px;padding:8px 12px;min-width:120px}}
.k b{{display:block;font-size:22px}} .k span{{color:#555}} .bad{{border-color:#c33;background:#fee}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
.heat td{{text-align:center;min-width:28px}} .list td{{font-size:12px}}
</style></head><body>
<h1>Residency audit: {status}</h1>
<p>{report.objects} objects and {report.journal_entries} journal entries
({report.backfill_scans} backfills and replays) scanned in {report.seconds:.2f} s.</p>
<div class="kinds">{counts}</div>
<h2>Violations by tenant and region, per day written</h2>
<table class="heat"><tr><th>tenant</th><th>region</th>{head}</tr>{"".join(grid)}</table>
<h2>Every violation</h2>
<table class="list"><tr><th>written</th><th>kind</th><th>tenant</th><th>region</th>
<th>object</th><th>evidence</th></tr>{listing}</table>
</body></html>
"""
