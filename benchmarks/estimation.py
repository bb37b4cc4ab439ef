"""How good are pql's cardinality estimates, and what does planning cost?

Builds ``pql.demo.generate(N)`` into an in-memory engine, generates a deterministic workload of
varied valid queries (a seeded template generator, no Hypothesis), and for each query compares
the estimator's row estimate with the rows the plan actually produces, from
``engine.explain(text, tenant=..., now=data.now, analyze=True)``: every node of the plan the
engine would run carries ``est_rows`` and ``actual_rows`` (each sub-plan run and counted).

**Which rows.** The headline compares the *top operator of the plan*: going down from the root
past ``Limit`` (the row cap and a written ``LIMIT``), ``Project`` and ``Sort`` nodes, the first
other node (``Filter``, ``Join``, ``Aggregate``, ``Scan``, ...). Those rows are what the query
produces before ordering and limits, so neither side is cut at 10,000 rows and a good score
cannot come from the cap. The JSON also gives the
root itself (after LIMIT and cap) and every node's numbers by node type (Scan, Filter, Join,
Aggregate, ...), which is where to look when the headline moves.

**q-error** of an estimate ``e`` of actual ``a`` rows is ``max((e+1)/(a+1), (a+1)/(e+1))``
(``+1`` on both sides, so empty answers do not divide by zero); 1 is perfect. Reported: median,
p90, p95 and max, overall and per query kind: ``rows`` (row queries), ``aggregate`` (aggregates
without GROUP BY: one row, the estimate is trivially right at the top; the node table shows
their inputs), ``group`` (GROUP BY on one subject) and ``join`` (anything with a JOIN).

**Planning overhead** is the time of ``engine.prepare`` (parse, analyze, plan, safety rules
with the cost estimate, optimize; nothing runs) for the contract's seven example queries, for
the largest tenant, after a warm-up: with the parse cache warm (the same text again) and cold
(``pql.cache`` parse cache cleared before every call). Statistics are warm in both.

The engine runs in measure mode (``Limits(enforce_cost=False)``) with a long deadline, so that
no query of the workload is refused or cancelled. Run from the repository root::

    python -m benchmarks.estimation                       # 1,000,000 receipts, 240 queries
    python -m benchmarks.estimation --receipts 100000 --queries 60 --seed 3

Results go to ``benchmarks/results/estimation-<N>.json``; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

import pql
from pql import cache as pql_cache
from pql.demo import REGIONS, RULES, STATUSES, WORKFLOWS, DemoData, generate
from pql.examples import CONTRACT_EXAMPLES

RESULTS = Path(__file__).parent / "results"

T = TypeVar("T")


KINDS = ("rows", "aggregate", "group", "join")
KIND_WEIGHTS = (0.3, 0.15, 0.3, 0.25)

WINDOWS: list[tuple[str, int]] = [
    ("1h", 1), ("6h", 6), ("1d", 24), ("3d", 72), ("7d", 168), ("2w", 336), ("30d", 720),
    ("90d", 2160), ("180d", 4320),
]  # fmt: skip
"""Windows and their length in hours."""

RECEIPT_GROUP_KEYS = ["region", "workflow", "status", "attempt"]
DECISION_GROUP_KEYS = ["region", "rule", "effect", "policy_version"]


@dataclass(frozen=True)
class BenchQuery:
    """One query of the workload."""

    text: str
    tenant: str
    kind: str


# -- the workload ----------------------------------------------------------------------------------


class Workload:
    """A seeded generator of valid PQL queries over the demo data.

    Literal values come from the data the way an analyst would pick them: thresholds at
    quantiles of the numeric columns, identifiers that exist, statuses and rules by name (with
    a few values that do not occur).
    """

    def __init__(self, data: DemoData, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = data.now
        receipts, decisions = data.receipts, data.decisions
        sizes = receipts.group_by("tenant").len().sort("len", descending=True)
        self.tenants: list[str] = sizes.get_column("tenant").to_list()
        self.quantiles = {
            name: [
                float(v)
                for v in np.nanquantile(
                    receipts.get_column(name).drop_nulls().to_numpy(),
                    [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999],
                )
            ]
            for name in ("latency_ms", "cost_usd")
        }
        sample = receipts.select("tenant", "executionId").sample(
            min(2_000, receipts.height), seed=seed
        )
        self.ids: dict[str, list[str]] = defaultdict(list)
        for tenant, ex in sample.iter_rows():
            self.ids[tenant].append(ex)
        dsample = decisions.select("tenant", "decisionId").sample(
            min(2_000, decisions.height), seed=seed
        )
        self.decision_ids: dict[str, list[str]] = defaultdict(list)
        for tenant, dec in dsample.iter_rows():
            self.decision_ids[tenant].append(dec)
        self.versions: list[str] = sorted(
            decisions.get_column("policy_version").unique().to_list(), key=lambda v: int(v[1:])
        )

    # helpers ------------------------------------------------------------------------------------
    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def some(self, items: Sequence[T], low: int, high: int) -> list[T]:
        return self.rng.sample(list(items), self.rng.randint(low, min(high, len(items))))

    def tenant(self) -> str:
        """The largest tenant a third of the time, the two smallest a quarter, else the rest."""
        roll = self.rng.random()
        if roll < 0.35:
            return self.tenants[0]
        if roll < 0.6:
            return self.pick(self.tenants[-2:])
        return self.pick(self.tenants[1:-2])

    def window(self) -> tuple[str, int]:
        return self.pick(WINDOWS)

    @staticmethod
    def quote(values: Sequence[str]) -> str:
        return ", ".join(f"'{v}'" for v in values)

    def number(self, column: str) -> str:
        value = self.pick(self.quantiles[column])
        return f"{value:.4g}" if column == "cost_usd" else f"{value:.0f}"

    def stamp(self, hours: int) -> str:
        back = self.rng.uniform(0, hours)
        moment = self.now - timedelta(hours=back)
        return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")

    # predicates ---------------------------------------------------------------------------------
    def receipts_atom(self, f: Callable[[str], str], hours: int, tenant: str) -> str:
        """One predicate on receipts; ``f`` names a column (bare or qualified)."""
        kind = self.rng.randrange(13)
        if kind == 0:
            return f"{f('status')} = '{self.pick([*STATUSES, 'error', 'error', 'unknown'])}'"
        if kind == 1:
            op = self.pick(["!=", "NOT IN", "IN"])
            if op == "!=":
                return f"{f('status')} != '{self.pick(['ok', 'error'])}'"
            return f"{f('status')} {op} ({self.quote(self.some(STATUSES, 1, 3))})"
        if kind == 2:
            return f"{f('region')} = '{self.pick(REGIONS)}'"
        if kind == 3:
            return f"{f('workflow')} IN ({self.quote(self.some([*WORKFLOWS, 'legacy'], 1, 4))})"
        if kind == 4:
            return f"{f('workflow')} {self.pick(['=', '!='])} '{self.pick(WORKFLOWS)}'"
        if kind in (5, 6):
            op = self.pick(["<", "<=", ">", ">="])
            return f"{f('latency_ms')} {op} {self.number('latency_ms')}"
        if kind == 7:
            low, high = sorted(self.rng.sample(self.quantiles["latency_ms"], 2))
            return f"{f('latency_ms')} >= {low:.0f} AND {f('latency_ms')} < {high:.0f}"
        if kind == 8:
            if self.rng.random() < 0.3:
                return (
                    f"{f(self.pick(['cost_usd', 'latency_ms']))} IS {self.pick(['', 'NOT '])}NULL"
                )
            return f"{f('cost_usd')} {self.pick(['<', '>', '>='])} {self.number('cost_usd')}"
        if kind == 9:
            choice = self.rng.randrange(4)
            if choice == 0:
                return f"{f('attempt')} = {self.rng.randint(1, 4)}"
            if choice == 1:
                return f"{f('attempt')} {self.pick(['>', '>=', '<='])} {self.rng.randint(1, 3)}"
            if choice == 2:
                return f"{f('attempt')} IN ({', '.join(map(str, self.some([1, 2, 3, 4], 1, 3)))})"
            return f"{f('attempt')} != 1"
        if kind == 10:
            return f"{f('ts')} {self.pick(['>=', '<', '>'])} '{self.stamp(hours)}'"
        if kind == 11:
            ids = self.ids.get(tenant) or ["ex-0000000000000000"]
            if self.rng.random() < 0.5:
                return f"{f('executionId')} = '{self.pick(ids)}'"
            return f"{f('executionId')} IN ({self.quote(self.some(ids, 1, 3))})"
        return f"{f('tenant')} = '{tenant}'"

    def decisions_atom(self, f: Callable[[str], str], hours: int, tenant: str) -> str:
        """One predicate on decisions."""
        kind = self.rng.randrange(9)
        if kind in (0, 1):
            return f"{f('effect')} = '{self.pick(['deny', 'allow', 'deny'])}'"
        if kind == 2:
            return f"{f('rule')} = '{self.pick([*RULES, 'no.such.rule'])}'"
        if kind == 3:
            return (
                f"{f('rule')} {self.pick(['IN', 'NOT IN'])} ({self.quote(self.some(RULES, 1, 4))})"
            )
        if kind == 4:
            version = self.pick(self.versions)
            return f"{f('policy_version')} {self.pick(['=', '!=', '='])} '{version}'"
        if kind == 5:
            return f"{f('region')} {self.pick(['=', '!='])} '{self.pick(REGIONS)}'"
        if kind == 6:
            return f"{f('ts')} {self.pick(['>=', '<'])} '{self.stamp(hours)}'"
        if kind == 7:
            if self.rng.random() < 0.5:
                return f"{f('executionId')} IS {self.pick(['', 'NOT '])}NULL"
            ids = self.decision_ids.get(tenant) or ["dec-0000000000000000"]
            return f"{f('decisionId')} = '{self.pick(ids)}'"
        return f"{f('policy_version')} IN ({self.quote(self.some(self.versions, 1, 3))})"

    def where(self, subjects: Sequence[str], qualify: bool, hours: int, tenant: str) -> str:
        """Zero to three predicates joined by AND or OR, sometimes under NOT."""
        count = self.pick([0, 1, 1, 1, 2, 2, 3])
        if count == 0:
            return ""
        atoms = []
        for _ in range(count):
            subject = self.pick(subjects)

            def f(column: str, subject: str = subject) -> str:
                return f"{subject}.{column}" if qualify or self.rng.random() < 0.3 else column

            build = self.receipts_atom if subject == "receipts" else self.decisions_atom
            atom = build(f, hours, tenant)
            if self.rng.random() < 0.12:
                atom = f"NOT ({atom})"
            atoms.append(atom)
        text = atoms[0]
        for atom in atoms[1:]:
            joiner = "OR" if self.rng.random() < 0.25 else "AND"
            text = f"({text}) {joiner} ({atom})" if joiner == "OR" else f"{text} AND {atom}"
        return f" WHERE {text}"

    # queries ------------------------------------------------------------------------------------
    def rows(self) -> BenchQuery:
        tenant, (window, hours) = self.tenant(), self.window()
        subject = self.pick(["receipts", "receipts", "decisions"])
        text = f"FIND {subject}{self.where([subject], False, hours, tenant)} SINCE {window}"
        if self.rng.random() < 0.2:
            key = self.pick(["latency_ms", "ts"] if subject == "receipts" else ["rule", "ts"])
            text += f" ORDER BY {key} DESC"
        if self.rng.random() < 0.3:
            text += f" LIMIT {self.pick([10, 100, 1000])}"
        return BenchQuery(text, tenant, "rows")

    def aggregates(self, subject: str) -> str:
        if subject == "receipts":
            pool = [
                "COUNT(*)", "COUNT(receipts.executionId)", "AVG(receipts.latency_ms)",
                "SUM(receipts.cost_usd)", "MAX(receipts.latency_ms)", "MIN(receipts.ts)",
                "COUNT(receipts.latency_ms)",
            ]  # fmt: skip
        else:
            pool = ["COUNT(*)", "COUNT(decisions.decisionId)", "MAX(decisions.ts)"]
        chosen = self.some(pool, 1, 3)
        if chosen[0] == "COUNT(*)" and len(chosen) == 1:
            chosen.append(pool[1])  # COUNT(*) alone names no subject
        if chosen[0] == "COUNT(*)":
            chosen = chosen[1:] + chosen[:1]
        return ", ".join(chosen)

    def aggregate(self) -> BenchQuery:
        tenant, (window, hours) = self.tenant(), self.window()
        subject = self.pick(["receipts", "receipts", "decisions"])
        where = self.where([subject], True, hours, tenant)
        return BenchQuery(
            f"FIND {self.aggregates(subject)}{where} SINCE {window}", tenant, "aggregate"
        )

    def group(self) -> BenchQuery:
        tenant, (window, hours) = self.tenant(), self.window()
        subject = self.pick(["receipts", "receipts", "decisions"])
        pool = RECEIPT_GROUP_KEYS if subject == "receipts" else DECISION_GROUP_KEYS
        keys = self.some(pool, 1, 2)
        if self.rng.random() < 0.05:
            keys = ["executionId"]
        by = ", ".join(f"{subject}.{k}" for k in keys)
        where = self.where([subject], True, hours, tenant)
        text = f"FIND {self.aggregates(subject)}{where} GROUP BY {by} SINCE {window}"
        return BenchQuery(text, tenant, "group")

    def join(self) -> BenchQuery:
        tenant, (window, hours) = self.tenant(), self.window()
        base = self.pick(["receipts", "decisions"])
        other = "decisions" if base == "receipts" else "receipts"
        on = f"{base}.executionId = {other}.executionId"
        where = self.where(["receipts", "decisions"], True, hours, tenant)
        if self.rng.random() < 0.5:
            text = f"FIND {base} JOIN {other} ON {on}{where} SINCE {window}"
            if self.rng.random() < 0.3:
                text += f" LIMIT {self.pick([10, 100, 1000])}"
        else:
            keys = self.some(
                [f"decisions.{k}" for k in DECISION_GROUP_KEYS[1:]]
                + [f"receipts.{k}" for k in RECEIPT_GROUP_KEYS],
                0,
                2,
            )
            by = f" GROUP BY {', '.join(keys)}" if keys else ""
            aggs = self.pick(
                [
                    "COUNT(decisions.decisionId)",
                    "COUNT(decisions.decisionId), AVG(receipts.latency_ms)",
                    "SUM(receipts.cost_usd), COUNT(*)",
                ]
            )
            text = f"FIND {aggs} JOIN {other} ON {on}{where}{by} SINCE {window}"
        return BenchQuery(text, tenant, "join")

    def queries(self, n: int) -> list[BenchQuery]:
        """``n`` distinct queries, kinds in the proportions of ``KIND_WEIGHTS``."""
        makers = {"rows": self.rows, "aggregate": self.aggregate, "group": self.group}
        makers["join"] = self.join
        seen: set[tuple[str, str]] = set()
        out: list[BenchQuery] = []
        while len(out) < n:
            kind = self.rng.choices(KINDS, KIND_WEIGHTS)[0]
            query = makers[kind]()
            if (query.text, query.tenant) not in seen:
                seen.add((query.text, query.tenant))
                out.append(query)
        return out


# -- measuring -------------------------------------------------------------------------------------


def q_error(estimate: float, actual: float) -> float:
    """``max((e+1)/(a+1), (a+1)/(e+1))``: 1 is perfect."""
    e, a = max(estimate, 0.0) + 1.0, max(actual, 0.0) + 1.0
    return max(e / a, a / e)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Count, median, p90, p95 and max (nearest-rank percentiles of the sorted values)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(np.ceil(p * len(ordered))) - 1))]

    return {
        "n": len(ordered),
        "median": round(float(statistics.median(ordered)), 3),
        "p90": round(rank(0.90), 3),
        "p95": round(rank(0.95), 3),
        "max": round(ordered[-1], 3),
    }


_PASS_THROUGH = ("Limit", "Project", "Sort")
"""Nodes on top of a plan that keep (or only cut) their input's rows: skipped to the top operator."""


def measure(engine: pql.Engine, query: BenchQuery, now: datetime) -> dict[str, Any]:
    """Estimates and actual rows of every node of the query's plan."""
    started = time.perf_counter()
    explained = engine.explain(query.text, tenant=query.tenant, now=now, analyze=True)
    details = explained.node_details()
    top = next(d for d in details if d["node"] not in _PASS_THROUGH)
    nodes = [
        {k: d[k] for k in ("node", "detail", "depth", "est_rows", "actual_rows")} for d in details
    ]
    return {
        **asdict(query),
        "est_rows": top["est_rows"],
        "actual_rows": top["actual_rows"],
        "q_error": round(q_error(top["est_rows"], top["actual_rows"]), 4),
        "top_node": top["node"],
        "root_est_rows": round(explained.estimated_rows, 1),
        "root_actual_rows": details[0]["actual_rows"],
        "root_q_error": round(q_error(explained.estimated_rows, details[0]["actual_rows"]), 4),
        "seconds": round(time.perf_counter() - started, 3),
        "nodes": nodes,
    }


def estimation(engine: pql.Engine, workload: list[BenchQuery], now: datetime) -> dict[str, Any]:
    """Run the workload under ``explain(analyze=True)``; q-errors overall, per kind, per node."""
    measured: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for i, query in enumerate(workload, 1):
        try:
            measured.append(measure(engine, query, now))
        except pql.PQLError as exc:
            failed.append({**asdict(query), "error": str(exc)})
        if i % 40 == 0:
            print(f"  {i}/{len(workload)} queries measured", file=sys.stderr)
    by_kind = {
        kind: summarize([m["q_error"] for m in measured if m["kind"] == kind]) for kind in KINDS
    }
    node_q: dict[str, list[float]] = defaultdict(list)
    for m in measured:
        for node in m["nodes"]:
            node_q[node["node"]].append(q_error(node["est_rows"], node["actual_rows"]))
    worst = sorted(measured, key=lambda m: -m["q_error"])[:10]
    return {
        "overall": summarize([m["q_error"] for m in measured]),
        "by_kind": by_kind,
        "root_after_limits": summarize([m["root_q_error"] for m in measured]),
        "by_node": {name: summarize(values) for name, values in sorted(node_q.items())},
        "worst": [
            {k: m[k] for k in ("kind", "tenant", "text", "top_node", "est_rows", "actual_rows")}
            | {"q_error": m["q_error"], "nodes": m["nodes"]}
            for m in worst
        ],
        "queries": [{k: v for k, v in m.items() if k != "nodes"} for m in measured],
        "failed": failed,
    }


def _clear_parse_cache() -> None:
    """Empty the parse cache (``pql.cache.parse`` keeps recent texts' trees)."""
    clear = getattr(pql_cache.parse, "cache_clear", None) or pql_cache._parse_text.cache_clear
    clear()


def planning(
    engine: pql.Engine, tenant: str, now: datetime, repeat: int, warmup: int
) -> dict[str, Any]:
    """``engine.prepare`` times of the contract's examples, parse cache warm and cold."""
    out: dict[str, Any] = {"tenant": tenant, "repeat": repeat, "warmup": warmup}
    for text in CONTRACT_EXAMPLES:
        for _ in range(warmup):
            engine.prepare(text, tenant=tenant, now=now)
    for mode in ("warm", "cold"):
        samples: list[float] = []
        per_query: list[dict[str, Any]] = []
        stages: dict[str, list[float]] = defaultdict(list)
        for text in CONTRACT_EXAMPLES:
            mine: list[float] = []
            for _ in range(repeat):
                if mode == "cold":
                    _clear_parse_cache()
                started = time.perf_counter()
                prepared = engine.prepare(text, tenant=tenant, now=now)
                mine.append((time.perf_counter() - started) * 1000)
                for stage, ms in prepared.timings_ms.items():
                    stages[stage].append(ms)
            samples += mine
            per_query.append(
                {
                    "text": " ".join(text.split()),
                    "median_ms": round(statistics.median(mine), 3),
                    "p95_ms": _p95(mine),
                }
            )
        out[mode] = {
            "median_ms": round(statistics.median(samples), 3),
            "p95_ms": _p95(samples),
            "stages_median_ms": {k: round(statistics.median(v), 4) for k, v in stages.items()},
            "per_query": per_query,
        }
    return out


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)], 3)


# -- the report ------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """The q-error table and the planning overhead, as text."""
    est = report["estimation"]
    lines = [
        f"q-error of est_rows vs actual rows, top operator below LIMIT/cap "
        f"({report['config']['receipts']:,} receipts, {est['overall'].get('n', 0)} queries)",
        f"{'':14} {'n':>5} {'median':>9} {'p90':>9} {'p95':>9} {'max':>12}",
    ]

    def row(name: str, s: dict[str, float]) -> str:
        if not s.get("n"):
            return f"{name:14} {0:>5}"
        return (
            f"{name:14} {s['n']:>5} {s['median']:>9.2f} {s['p90']:>9.2f} {s['p95']:>9.2f} "
            f"{s['max']:>12.2f}"
        )

    lines.append(row("overall", est["overall"]))
    for kind in KINDS:
        lines.append(row(kind, est["by_kind"][kind]))
    lines.append(row("root (capped)", est["root_after_limits"]))
    lines.append("by node type (every node of every plan):")
    for name, s in est["by_node"].items():
        lines.append(row(f"  {name}", s))
    lines.append("worst queries:")
    for w in est["worst"]:
        lines.append(
            f"  q={w['q_error']:>10.1f} est={w['est_rows']:>11,.1f} act={w['actual_rows']:>9,} "
            f"[{w['tenant']}] {w['text']}"
        )
    plan = report["planning"]
    lines.append(
        f"planning overhead, engine.prepare of the 7 contract examples ({plan['tenant']}, "
        f"{plan['repeat']} runs each after {plan['warmup']} warm-up runs):"
    )
    for mode in ("warm", "cold"):
        lines.append(
            f"  parse cache {mode}: median {plan[mode]['median_ms']:.3f} ms, "
            f"p95 {plan[mode]['p95_ms']:.3f} ms  stages (median ms): "
            + ", ".join(f"{k}={v}" for k, v in plan[mode]["stages_median_ms"].items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    args.add_argument("--receipts", type=int, default=1_000_000, help="demo receipts to generate")
    args.add_argument("--queries", type=int, default=240, help="queries in the workload")
    args.add_argument("--seed", type=int, default=7, help="seed of the data and the workload")
    args.add_argument("--repeat", type=int, default=200, help="prepare() runs per example")
    args.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    opts = args.parse_args(argv)

    started = time.perf_counter()
    data = generate(opts.receipts, seed=opts.seed)
    engine = pql.Engine.in_memory(
        limits=pql.Limits(enforce_cost=False, deadline_ms=600_000), cache=False
    )
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    workload = Workload(data, opts.seed).queries(opts.queries)
    largest = data.receipts.get_column("tenant").value_counts(sort=True).item(0, 0)
    build_s = time.perf_counter() - started
    print(f"data and engine ready in {build_s:.1f} s; measuring", file=sys.stderr)

    est = estimation(engine, workload, data.now)
    plan = planning(engine, largest, data.now, repeat=opts.repeat, warmup=20)
    report = {
        "config": {
            "receipts": opts.receipts,
            "queries": opts.queries,
            "seed": opts.seed,
            "now": data.now.isoformat(),
            "compared": "top operator below Limit/Project/Sort: est_rows vs explain-analyze actual_rows",
            "python": platform.python_version(),
            "polars": pl.__version__,
            "pql": pql.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "build_seconds": round(build_s, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "estimation": est,
        "planning": plan,
    }
    out = opts.out or RESULTS / f"estimation-{opts.receipts}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(table(report))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
