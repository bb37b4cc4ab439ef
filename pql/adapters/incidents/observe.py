"""Observations: the engine's rows turned into the series detection watches.

Each observation is one record of one series of one tenant: ``key`` names the series
(``deny|RULE``, ``errors|WORKFLOW``, ``rollbacks|WORKFLOW``, ``latency|WORKFLOW``,
``metric|NAME|LABELS``), ``value`` is 1 for counted series and the measured level otherwise.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from pql.storage.base import as_utc

__all__ = ["COUNTED", "METRIC_SUBJECT", "SCHEMA", "observations", "workflows_of"]

METRIC_SUBJECT = "metric_samples"
"""The subject metric samples are stored in (registered by this adapter)."""

COUNTED = ("deny", "errors", "rollbacks")
"""Series kinds whose bucket value is a count (the others are levels: a mean)."""

SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Int64(),
    "key": pl.String(),
    "kind": pl.String(),
    "value": pl.Float64(),
    "execution": pl.String(),
    "workflow": pl.String(),
    "rule": pl.String(),
    "policy_version": pl.String(),
}


def _scan(
    engine: object, tenant: str, subject: str, start: datetime, end: datetime
) -> pl.DataFrame:
    catalog = engine.catalog  # type: ignore[attr-defined]
    if subject not in catalog:
        return pl.DataFrame()
    target = catalog.for_tenant(tenant)[subject]
    if tenant not in engine.store.tenants():  # type: ignore[attr-defined]
        return pl.DataFrame()
    scan = engine.store.scan(tenant, target, as_utc(start), as_utc(end))  # type: ignore[attr-defined]
    frame = scan.frame.filter((pl.col("ts") >= as_utc(start)) & (pl.col("ts") < as_utc(end)))
    if not scan.single_tenant:
        frame = frame.filter(pl.col("tenant") == tenant)
    collected: pl.DataFrame = frame.collect()
    return collected


def _micros(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("ts").dt.epoch("us").alias("ts")


def observations(engine: object, tenant: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Every observation of ``tenant`` with ``start <= ts < end``, sorted by ts and key."""
    parts: list[pl.DataFrame] = []
    decisions = _scan(engine, tenant, "decisions", start, end)
    receipts = _scan(engine, tenant, "receipts", start, end)
    if decisions.height:
        denies = decisions.filter(pl.col("effect") == "deny")
        parts.append(
            denies.select(
                _micros(denies),
                (pl.lit("deny|") + pl.col("rule")).alias("key"),
                pl.lit("deny").alias("kind"),
                pl.lit(1.0).alias("value"),
                pl.col("executionId").alias("execution"),
                pl.lit(None, pl.String).alias("workflow"),
                pl.col("rule"),
                pl.col("policy_version"),
            )
        )
    if receipts.height:
        for status, kind in (("error", "errors"), ("rollback", "rollbacks")):
            hit = receipts.filter(pl.col("status") == status)
            parts.append(
                hit.select(
                    _micros(hit),
                    (pl.lit(f"{kind}|") + pl.col("workflow")).alias("key"),
                    pl.lit(kind).alias("kind"),
                    pl.lit(1.0).alias("value"),
                    pl.col("executionId").alias("execution"),
                    pl.col("workflow"),
                    pl.lit(None, pl.String).alias("rule"),
                    pl.lit(None, pl.String).alias("policy_version"),
                )
            )
        timed = receipts.filter(pl.col("latency_ms").is_not_null())
        parts.append(
            timed.select(
                _micros(timed),
                (pl.lit("latency|") + pl.col("workflow")).alias("key"),
                pl.lit("latency").alias("kind"),
                pl.col("latency_ms").cast(pl.Float64).alias("value"),
                pl.col("executionId").alias("execution"),
                pl.col("workflow"),
                pl.lit(None, pl.String).alias("rule"),
                pl.lit(None, pl.String).alias("policy_version"),
            )
        )
    samples = _scan(engine, tenant, METRIC_SUBJECT, start, end)
    if samples.height:
        parts.append(
            samples.select(
                _micros(samples),
                (pl.lit("metric|") + pl.col("name") + pl.lit("|") + pl.col("labels")).alias("key"),
                pl.lit("metric").alias("kind"),
                pl.col("value").cast(pl.Float64),
                pl.lit(None, pl.String).alias("execution"),
                pl.col("workflow_label").alias("workflow"),
                pl.lit(None, pl.String).alias("rule"),
                pl.lit(None, pl.String).alias("policy_version"),
            )
        )
    parts = [p.cast(SCHEMA) for p in parts if p.height]  # type: ignore[arg-type]
    if not parts:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(parts).sort(["ts", "key", "execution"], nulls_last=True)


def workflows_of(engine: object, tenant: str, start: datetime, end: datetime) -> dict[str, str]:
    """executionId -> workflow for the receipts of ``tenant`` in ``[start, end)``."""
    receipts = _scan(engine, tenant, "receipts", start, end)
    if not receipts.height:
        return {}
    return dict(zip(receipts["executionId"].to_list(), receipts["workflow"].to_list(), strict=True))
