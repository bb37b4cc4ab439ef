"""The seven example queries of the PQL v1.1 contract, in one place.

Tests check that each answers exactly as DuckDB does, benchmarks time them, and the abuse suite
mutates them.
"""

from __future__ import annotations

__all__ = ["CONTRACT_EXAMPLES"]

CONTRACT_EXAMPLES: tuple[str, ...] = (
    "FIND receipts SINCE 7d",
    'FIND receipts WHERE receipts.status = "error" AND latency_ms > 250 SINCE 30d LIMIT 100',
    "FIND COUNT(receipts.executionId) SINCE 7d",
    "FIND COUNT(*), AVG(receipts.latency_ms), SUM(receipts.cost_usd) "
    "GROUP BY receipts.region SINCE 180d",
    'FIND AVG(receipts.latency_ms) WHERE workflow IN ("etl", "billing") '
    "GROUP BY receipts.workflow SINCE 30d",
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId "
    "WHERE decisions.effect = 'deny' SINCE 7d",
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
    'receipts.executionId\n     WHERE decisions.effect = "deny" AND NOT (receipts.status = "ok") '
    "GROUP BY decisions.rule SINCE 7d",
)
