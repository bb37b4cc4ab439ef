"""Query texts shared by the golden-file and differential tests."""

from pql.examples import CONTRACT_EXAMPLES

PARSE_CASES = [
    "FIND receipts SINCE 7d",
    'FIND receipts WHERE receipts.status = "error" AND latency_ms > 250 SINCE 30d LIMIT 100',
    "FIND COUNT(receipts.executionId) SINCE 7d",
    "FIND COUNT(*), AVG(receipts.latency_ms), SUM(receipts.cost_usd) GROUP BY receipts.region SINCE 180d",
    'FIND AVG(receipts.latency_ms) WHERE workflow IN ("etl", "billing") GROUP BY receipts.workflow SINCE 30d',
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId WHERE decisions.effect = 'deny' SINCE 7d",
    "find count(decisions.decisionId) join receipts on decisions.executionId = receipts.executionId\n"
    '  where decisions.effect = "deny" and not (receipts.status = "ok") group by decisions.rule since 7d',
    "FIND receipts LIMIT 5 SINCE 2w WHERE latency_ms IS NOT NULL ORDER BY latency_ms DESC, ts",
    "FIND MIN(receipts.ts) AS first, MAX(receipts.ts) AS last WHERE status NOT IN ('ok') OR cost_usd >= 1.5e-3",
    "FIND decisions WHERE rule = $rule AND effect != 'allow' -- a comment\nSINCE 90m",
    'FIND receipts WHERE workflow = "tab\\there \\"quoted\\" \\u00e9"',
    "find count(*) as n where decisions.effect = 'deny' group by decisions.rule timeseries 1h since 2d",
]

ERROR_CASES = [
    # syntax
    "",
    "SELECT * FROM receipts",
    "FIND",
    "FIND receipts WHER status = 'ok'",
    "FIND receipts WHERE status == 'ok'",
    "FIND receipts WHERE status = 'ok",
    "FIND receipts SINCE 7",
    "FIND receipts SINCE 7 days",
    "FIND receipts SINCE",
    "FIND receipts SINCE 0d",
    "FIND receipts SINCE 7d SINCE 30d",
    "FIND receipts GROUP receipts.region",
    "FIND SUM(*)",
    "FIND receipts LIMIT 2.5",
    "FIND receipts WHERE latency_ms > 99999999999999999999999",
    "FIND receipts WHERE status = 'a\\qb'",
    "FIND receipts WHERE status = 'ok' AND\n  region = #",
    "FIND receipts WHERE (status = 'ok'",
    "FIND COUNT(receipts.executionId GROUP BY receipts.region",
    "FIND COUNT(receipts.ts) TIMESERIES 0h",
    "FIND COUNT(receipts.ts) TIMESERIES",
    # meaning
    "FIND reciepts SINCE 7d",
    "FIND receipts WHERE latncy_ms > 250",
    "FIND receipts WHERE receipts.stauts = 'ok'",
    "FIND receipts WHERE rule = 'budget.cap'",
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId WHERE region = 'eu-west-1'",
    "FIND receipts WHERE latency_ms > '250'",
    "FIND receipts WHERE status = 250",
    "FIND receipts WHERE ts > 'yesterday'",
    "FIND receipts WHERE ts > 5",
    "FIND SUM(receipts.status) SINCE 7d",
    "FIND receipts GROUP BY receipts.region",
    "FIND COUNT(*) SINCE 7d",
    "FIND COUNT(*), COUNT(*) WHERE receipts.status = 'ok'",
    "FIND COUNT(*) AS n GROUP BY receipts.region ORDER BY receipts.workflow",
    "FIND receipts WHERE status = $status",
    "FIND receipts TIMESERIES 1h SINCE 7d",
    "FIND COUNT(receipts.ts) AS bucket TIMESERIES 1d",
    # safety
    "FIND receipts SINCE 181d",
    "FIND receipts LIMIT 10001",
    "FIND COUNT(receipts.executionId) TIMESERIES 1h SINCE 180d",
    "FIND COUNT(receipts.executionId) TIMESERIES 30s",
    "FIND receipts WHERE decisions.effect = 'deny'",
    "FIND receipts JOIN decisions ON receipts.status = decisions.effect",
    "FIND receipts JOIN receipts ON receipts.executionId = receipts.executionId",
    "FIND receipts WHERE " + "NOT " * 40 + "status = 'ok'",
    "FIND receipts WHERE status IN (" + ", ".join(f"'s{i}'" for i in range(1001)) + ")",
]

PLAN_CASES = [
    *CONTRACT_EXAMPLES,
    "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
    "WHERE rule = 'pii.mask' OR receipts.latency_ms > 100 ORDER BY receipts.latency_ms DESC LIMIT 10",
    "FIND COUNT(*) AS n, AVG(receipts.latency_ms) WHERE status != 'ok' GROUP BY receipts.region TIMESERIES 1h SINCE 2d",
    "FIND COUNT(decisions.decisionId) AS denies JOIN receipts ON decisions.executionId = receipts.executionId "
    "WHERE decisions.effect = 'deny' GROUP BY decisions.rule TIMESERIES 1d SINCE 30d ORDER BY bucket DESC",
    # a list in each sense, as explain writes them
    "FIND receipts WHERE workflow NOT IN ('sync', 'etl') AND region IN ('us-east-1') SINCE 7d",
]

DIFFERENTIAL_CASES = [
    # every query here runs on every store path against DuckDB (tests/test_differential.py)
    "FIND receipts",
    "FIND decisions SINCE 2w ORDER BY rule DESC LIMIT 50",
    "FIND COUNT(*) AS n, MIN(receipts.latency_ms), MAX(receipts.ts) GROUP BY status, region SINCE 90d",
    "FIND SUM(receipts.latency_ms) AS s WHERE latency_ms IS NULL SINCE 180d",
    "FIND AVG(receipts.cost_usd) WHERE receipts.status = 'no-such-status' SINCE 30d",
    "FIND COUNT(receipts.latency_ms), COUNT(*) AS rows_ GROUP BY receipts.workflow SINCE 180d ORDER BY rows_ DESC",
    "FIND decisions WHERE executionId IS NULL SINCE 180d",
    "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
    "WHERE rule IN ('budget.cap', 'pii.mask') OR receipts.latency_ms >= 1000 SINCE 30d",
    "FIND receipts WHERE ts >= '2026-11-01' AND NOT status IN ('ok') SINCE 60d",
    # two conditions on each side of a join: both must be pushed below it, on their own side
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId "
    "WHERE decisions.effect = 'deny' AND decisions.rule != 'pii.mask' "
    "AND receipts.status != 'ok' AND receipts.latency_ms > 100 SINCE 30d",
    "FIND COUNT(*) AS n WHERE decisions.effect != 'allow' GROUP BY decisions.policy_version SINCE 180d",
    "FIND receipts WHERE attempt > 1 SINCE 30d ORDER BY attempt DESC, latency_ms",
    "FIND SUM(receipts.attempt), AVG(receipts.attempt) GROUP BY receipts.attempt SINCE 180d",
    "FIND receipts SINCE 180d",
    # TIMESERIES: day buckets (the rollup paths answer these from rollups) and sub-day buckets
    "FIND COUNT(*) AS n, SUM(receipts.latency_ms) AS s GROUP BY receipts.region TIMESERIES 1d SINCE 30d",
    "FIND COUNT(decisions.decisionId) AS n TIMESERIES 6h SINCE 7d",
    # key lookups (the memory paths read these rows by the id column's lookup): values that no
    # row holds, nulls with them, a negation (never a lookup), a key part AND-ed with another
    # column, and a lookup on one side of a join (ids of rows: tests/test_differential.py)
    "FIND decisions WHERE executionId IN ('ex-none', 'no-such-id') SINCE 30d",
    "FIND receipts WHERE executionId = 'ex-none' SINCE 180d",
    "FIND COUNT(decisions.decisionId) AS n WHERE executionId IS NULL OR executionId IN "
    "('ex-1157f8cb944e57ef', 'ex-c058e15e599c1ca8') GROUP BY decisions.executionId SINCE 180d",
    "FIND decisions WHERE executionId IS NULL AND effect = 'deny' SINCE 90d",
    "FIND decisions WHERE NOT executionId IN ('ex-none') AND executionId IS NOT NULL SINCE 7d",
    "FIND receipts WHERE executionId != 'ex-none' SINCE 6h",
    "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
    "WHERE decisions.executionId IS NULL OR decisions.decisionId = 'no-such-id' SINCE 30d",
]

WINDOWS = ["6h", "1d", "7d", "2w", "30d", "60d", "90d", "180d"]
"""Windows whose both edges the differential tests query on every store path."""

WINDOW_CASES = [
    *(
        f"FIND COUNT(*) AS n, MIN(receipts.ts) AS first, MAX(receipts.ts) AS last SINCE {w}"
        for w in WINDOWS
    ),
    *(
        "FIND MIN(decisions.ts) AS first, MAX(receipts.ts) AS last, COUNT(*) AS n JOIN receipts "
        f"ON decisions.executionId = receipts.executionId SINCE {w}"
        for w in WINDOWS
    ),
]

ESTIMATE_CASES = [
    # with every case above, explained over the demo data for tests/golden/estimates.txt: the
    # estimator's branches a user reaches through explain (ranges on a histogram, nulls, NOT,
    # OR, values pinned by a filter, short windows, joins, the rollup edges)
    "FIND receipts WHERE latency_ms < 50 SINCE 1h",
    "FIND receipts WHERE latency_ms <= 50 AND latency_ms >= 10 SINCE 6h",
    "FIND receipts WHERE latency_ms > 5000 OR cost_usd < 0.01 SINCE 30d",
    "FIND receipts WHERE NOT (latency_ms < 100) SINCE 7d",
    "FIND receipts WHERE NOT status IN ('ok', 'error') SINCE 7d",
    "FIND receipts WHERE latency_ms IS NOT NULL SINCE 30d",
    "FIND receipts WHERE latency_ms IS NULL AND status = 'ok' SINCE 30d",
    "FIND receipts WHERE attempt = 2 SINCE 90d",
    "FIND receipts WHERE attempt IN (1, 2, 99) SINCE 90d",
    "FIND receipts WHERE attempt != 1 AND attempt < 3 SINCE 90d",
    "FIND receipts WHERE latency_ms > 100 AND latency_ms < 50 SINCE 30d",
    "FIND receipts WHERE status = 'no-such-status' SINCE 30d",
    "FIND receipts WHERE workflow IN ('etl', 'no-such-workflow') SINCE 2w",
    "FIND receipts WHERE ts >= '2026-11-20' SINCE 30d",
    "FIND decisions WHERE executionId IS NOT NULL SINCE 30d",
    "FIND decisions WHERE NOT (executionId IS NULL) SINCE 30d",
    "FIND decisions WHERE policy_version = 'v3' SINCE 180d",
    "FIND COUNT(*) AS n GROUP BY decisions.policy_version SINCE 60d",
    "FIND COUNT(*) AS n WHERE decisions.rule = 'pii.mask' GROUP BY decisions.rule, decisions.effect SINCE 30d",
    # a pinned value that never occurs makes no group
    "FIND COUNT(*) AS n WHERE receipts.workflow IN ('etl', 'no-such-workflow') "
    "GROUP BY receipts.workflow SINCE 30d",
    "FIND COUNT(*) AS n WHERE receipts.region IN ('eu-west-1', 'us-east-1') GROUP BY receipts.region, receipts.status SINCE 30d",
    "FIND COUNT(*) AS n GROUP BY receipts.workflow, receipts.status, receipts.region SINCE 180d",
    "FIND COUNT(*) AS n, SUM(receipts.cost_usd) GROUP BY receipts.region TIMESERIES 1d SINCE 30d",
    "FIND decisions JOIN receipts ON decisions.executionId = receipts.executionId SINCE 1d",
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId "
    "WHERE receipts.status = 'error' AND decisions.effect != 'allow' SINCE 90d LIMIT 5",
    "FIND COUNT(*) AS n JOIN decisions ON receipts.executionId = decisions.executionId "
    "GROUP BY receipts.region, decisions.effect SINCE 30d",
]
