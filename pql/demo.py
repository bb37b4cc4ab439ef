"""Seeded demo data: receipts and policy decisions that look like a production orchestrator's.

:func:`generate` builds both subjects in one pass, fully vectorized (NumPy and Polars, no
per-row Python), so a million receipts take a few seconds. The same arguments always give the
same frames; the data drives the demo, the differential tests and the benchmarks.

What makes it look like production:

* **Tenants** have Zipf-skewed sizes (the largest holds about 40-50% of the rows with the default
  eight), a home region and sometimes a second one. Profiles are fixed per tenant name, so
  ``acme`` is always the largest tenant, in ``us-east-1`` and ``eu-west-1``, whatever the seed.
* **Time** follows a daily cycle in each region's local time (business hours for interactive
  workflows, a night-time peak for batch ones), a mild weekly cycle and a slow growth, so recent
  days are a little busier.
* **Workflows** have their own lognormal latency body plus a heavy tail (p99 far above p50),
  timeouts, costs that follow run time, and about 2% null latencies and 3% null costs.
* **Status** is mostly ``ok``, with ``error`` and ``rollback``, rare ``timeout`` and
  ``cancelled``, and error *bursts*: short windows where one tenant's workflow fails a lot
  (and slows down, and retries).
* **Decisions** average about 1.5 per receipt (0 to 4), a few milliseconds to seconds after the
  receipt, with distinct rules per execution, mostly ``allow`` but with *deny storms*: a rate
  limiter or budget cap pushing back on a burst's retries, a tenant's budget running out for the
  rest of the day, a bad policy push denying one rule for everybody for a while. A blocking deny
  usually fails the execution. ``policy_version`` moves forward about monthly, rolled out tenant
  by tenant, smallest first. About 1% of decisions have no ``executionId`` and about 1% name an
  execution that has no receipt.

One error burst, with a deny storm on its retries, always hits the largest tenant in the last
three days, so a ``SINCE 7d`` demo has an incident to find.

Rows come in the default order (``ts``, then ``executionId``, then ``decisionId``; a missing
``executionId`` last). Identifiers are ``ex-`` / ``dec-`` and 16 hex digits, unique across the
whole dataset (orphan executions are numbered after the receipts, so they never collide).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pql.catalog import DECISIONS, RECEIPTS
from pql.errors import InputError

__all__ = ["REGIONS", "RULES", "STATUSES", "TENANT_NAMES", "WORKFLOWS", "DemoData", "generate"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

_US_PER_MS = 1_000
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_MAX_TENANTS = 10_000

# --- the world -----------------------------------------------------------------------------------

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")
_REGION_UTC_OFFSET_H = np.array([-5, -8, 0, 1, 10], dtype=np.int64)
_EU = np.array([r.startswith("eu-") for r in REGIONS])

TENANT_NAMES = (
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
    "cyberdyne", "soylent", "wonka", "oscorp", "aperture", "vandelay", "nakatomi", "weyland",
    "pied-piper", "dunder-mifflin", "massive-dynamic", "gringotts", "virtucon", "monarch",
    "blue-sun", "krusty",
)  # fmt: skip
"""Tenant names in size order; beyond these, tenants are named ``tenant-0025`` and so on."""

# home region, second region (or None)
_TENANT_REGIONS: dict[str, tuple[str, str | None]] = {
    "acme": ("us-east-1", "eu-west-1"),
    "globex": ("eu-west-1", None),
    "initech": ("us-west-2", "us-east-1"),
    "umbrella": ("eu-central-1", None),
    "hooli": ("us-west-2", "ap-southeast-2"),
    "stark": ("us-east-1", None),
    "wayne": ("us-east-1", "eu-central-1"),
    "tyrell": ("ap-southeast-2", None),
}
_SECOND_REGION_SHARE = 0.3
_ZIPF_EXPONENT = 1.2

RULES = (
    "budget.cap", "residency.eu", "pii.mask", "rate.limit", "approval.required",
    "data.retention", "egress.allowlist", "secrets.scan", "change.freeze", "sla.guard",
)  # fmt: skip
_RULE = {name: i for i, name in enumerate(RULES)}
# per rule: base deny probability, median gap after the previous step (ms), and whether a deny
# blocks the execution
_RULE_DENY = np.array([0.03, 0.01, 0.004, 0.035, 0.06, 0.008, 0.02, 0.006, 0.012, 0.015])
_RULE_GAP_MS = np.array([6.0, 4.0, 12.0, 2.0, 1800.0, 8.0, 5.0, 40.0, 3.0, 6.0])
_RULE_BLOCKS = np.array([True, True, False, True, True, False, True, True, True, False])
_STORM_RULES = ("rate.limit", "budget.cap", "approval.required", "egress.allowlist",
                "change.freeze", "residency.eu")  # fmt: skip
_STORM_WEIGHTS = np.array([4.0, 3.0, 2.0, 1.5, 1.0, 1.0])
_LAST_VERSION = 13  # the current policy version (unless the window is longer than a year)


@dataclass(frozen=True, slots=True)
class _Workflow:
    name: str
    share: float  # of all executions
    median_ms: float  # latency body: lognormal(median, sigma)
    sigma: float
    timeout_ms: float
    nightly: float  # fraction of traffic on the night-time batch profile
    error: float  # base status rates
    rollback: float
    cost_base: float  # USD per execution
    cost_per_s: float  # USD per second of run time
    rules: tuple[tuple[str, float], ...]  # candidate rules and weights (exactly 6)


_WORKFLOW_SPECS = (
    _Workflow("etl", 0.18, 4200, 0.55, 900_000, 0.6, 0.025, 0.008, 0.004, 0.00011,
              (("budget.cap", 3), ("data.retention", 2), ("residency.eu", 2), ("pii.mask", 1.5),
               ("egress.allowlist", 1), ("change.freeze", 0.5))),
    _Workflow("billing", 0.12, 850, 0.45, 60_000, 0.2, 0.012, 0.010, 0.002, 0.00025,
              (("budget.cap", 4), ("approval.required", 2), ("pii.mask", 2), ("rate.limit", 1),
               ("residency.eu", 1), ("secrets.scan", 0.5))),
    _Workflow("ingest", 0.22, 320, 0.60, 30_000, 0.1, 0.020, 0.003, 0.0008, 0.00009,
              (("rate.limit", 4), ("residency.eu", 2.5), ("pii.mask", 2), ("data.retention", 1),
               ("budget.cap", 1), ("egress.allowlist", 0.5))),
    _Workflow("report", 0.08, 6500, 0.70, 600_000, 0.4, 0.015, 0.002, 0.003, 0.00015,
              (("pii.mask", 3), ("residency.eu", 2), ("data.retention", 2), ("budget.cap", 1.5),
               ("egress.allowlist", 1), ("approval.required", 0.5))),
    _Workflow("sync", 0.15, 180, 0.50, 30_000, 0.15, 0.018, 0.004, 0.0005, 0.00008,
              (("rate.limit", 3), ("egress.allowlist", 2.5), ("residency.eu", 1.5),
               ("secrets.scan", 1), ("budget.cap", 1), ("sla.guard", 1))),
    _Workflow("notify", 0.12, 45, 0.40, 10_000, 0.05, 0.008, 0.001, 0.0001, 0.00005,
              (("rate.limit", 4), ("pii.mask", 2), ("egress.allowlist", 1.5), ("sla.guard", 1),
               ("budget.cap", 0.5), ("approval.required", 0.2))),
    _Workflow("export", 0.05, 2500, 0.65, 300_000, 0.3, 0.020, 0.005, 0.002, 0.00012,
              (("egress.allowlist", 3), ("residency.eu", 3), ("pii.mask", 2),
               ("approval.required", 1.5), ("data.retention", 1), ("budget.cap", 1))),
    _Workflow("backup", 0.03, 28000, 0.50, 3_600_000, 0.85, 0.010, 0.002, 0.01, 0.00004,
              (("data.retention", 3), ("residency.eu", 2), ("budget.cap", 1.5),
               ("secrets.scan", 1), ("change.freeze", 1), ("egress.allowlist", 0.5))),
    _Workflow("reconcile", 0.05, 1500, 0.60, 120_000, 0.5, 0.020, 0.015, 0.0015, 0.0002,
              (("budget.cap", 3), ("approval.required", 2.5), ("change.freeze", 1.5),
               ("sla.guard", 1), ("data.retention", 1), ("rate.limit", 0.5))),
)  # fmt: skip
WORKFLOWS = tuple(w.name for w in _WORKFLOW_SPECS)


def _wf_array(attr: str) -> F64:
    return np.array([float(getattr(w, attr)) for w in _WORKFLOW_SPECS])


_WF_SHARE = _wf_array("share") / _wf_array("share").sum()
_WF_MEDIAN, _WF_SIGMA, _WF_TIMEOUT = (
    _wf_array("median_ms"),
    _wf_array("sigma"),
    _wf_array("timeout_ms"),
)
_WF_NIGHTLY, _WF_ERROR, _WF_ROLLBACK = (
    _wf_array("nightly"),
    _wf_array("error"),
    _wf_array("rollback"),
)
_WF_COST_BASE, _WF_COST_PER_S = _wf_array("cost_base"), _wf_array("cost_per_s")
_WF_RULES = np.array([[_RULE[r] for r, _ in w.rules] for w in _WORKFLOW_SPECS], dtype=np.int64)
_WF_RULE_WEIGHTS = np.array([[x for _, x in w.rules] for w in _WORKFLOW_SPECS], dtype=np.float32)

STATUSES = ("ok", "error", "rollback", "timeout", "cancelled")
_OK, _ERROR, _ROLLBACK, _TIMEOUT, _CANCELLED = range(len(STATUSES))
_TIMEOUT_RATE, _CANCELLED_RATE = 0.0015, 0.0005

_DECISIONS_PER_RECEIPT = np.array([0.15, 0.38, 0.32, 0.10, 0.05])  # 0..4, mean 1.52
_ATTEMPT_P = np.array([0.93, 0.05, 0.015, 0.005])
_ATTEMPT_P_BURST = np.array([0.45, 0.25, 0.18, 0.12])
_NULL_LATENCY, _NULL_COST = 0.02, 0.03
_BURST_SHARE = 0.006  # of all receipts: retries packed into the error bursts
_RULE_ORDERS = 1024  # pre-drawn rule evaluation orders per workflow
_ORPHAN_NULL, _ORPHAN_DANGLING = 0.01, 0.01


@dataclass(frozen=True, slots=True)
class DemoData:
    """Generated demo data.

    ``receipts`` has the :data:`~pql.catalog.RECEIPTS` columns, in order, plus ``attempt`` (Int64,
    1 to 4, the retry number); ``decisions`` has exactly the :data:`~pql.catalog.DECISIONS`
    columns. Both are sorted in the default row order (``ts``, ``executionId``, ``decisionId``).
    ``now`` is the clock the data was generated against: every ``ts`` lies in
    ``[now - days, now]``.
    """

    receipts: pl.DataFrame
    decisions: pl.DataFrame
    now: datetime


def generate(
    receipts: int = 100_000,
    *,
    seed: int = 7,
    now: datetime | None = None,
    days: int = 180,
    tenants: int = 8,
) -> DemoData:
    """Generate ``receipts`` receipts and about 1.5 times as many decisions.

    ``now`` defaults to the current UTC time truncated to the hour (a naive ``now`` is read as
    UTC; any sub-second part is dropped). Timestamps spread over the ``days`` days before
    ``now``; ``tenants`` picks how many tenants share the rows. The same arguments always give
    identical frames; a different ``seed`` gives different data.

    Example:

    >>> from datetime import UTC, datetime
    >>> data = generate(1_000, seed=1, now=datetime(2026, 3, 2, 12, tzinfo=UTC), days=30)
    >>> data.receipts.height, data.receipts.columns[:4]
    (1000, ['executionId', 'tenant', 'region', 'ts'])
    >>> data.receipts["tenant"].mode().to_list()
    ['acme']
    >>> 1.3 < data.decisions.height / data.receipts.height < 1.7
    True
    >>> sorted(data.decisions["effect"].unique())
    ['allow', 'deny']
    """
    _check(receipts, seed, days, tenants)
    clock = _clock(now)
    end_us = int((clock - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    world = _World(np.random.default_rng(seed), tenants, days, end_us)
    r = world.receipts(receipts)
    d = world.decisions(r)
    world.finish_receipts(r, d)
    receipts_frame = _receipts_frame(r)
    del r  # keep the peak memory down: one subject's working arrays at a time
    return DemoData(receipts=receipts_frame, decisions=_decisions_frame(d), now=clock)


def _check(receipts: int, seed: int, days: int, tenants: int) -> None:
    for name, value, low, high in (
        ("receipts", receipts, 0, 100_000_000),
        ("seed", seed, 0, 2**63 - 1),
        ("days", days, 1, 3650),
        ("tenants", tenants, 1, _MAX_TENANTS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(
                "PQL-E080",
                f"demo {name} must be an integer from {low:,} to {high:,}, not {value!r}",
                setting=name,
            )


def _clock(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


# --- generation ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Receipts:
    tenant: I64
    region: I64
    workflow: I64
    ts: I64
    status: I64
    attempt: I64
    slow: F64  # latency factor from incidents
    id: U64
    latency: F64 | None = None
    cost: F64 | None = None


@dataclass(slots=True)
class _Decisions:
    tenant: I64
    region: I64
    ts: I64
    rule: I64
    deny: Bool
    version: I64
    execution: U64
    no_execution: Bool
    linked: int  # the first ``linked`` decisions belong to receipts ``receipt[:linked]``
    receipt: I64
    id: U64
    first_version: int


@dataclass(frozen=True, slots=True)
class _Incident:
    tenant: int  # -1: every tenant
    key: int  # workflow (error burst) or rule (deny storm)
    start: int
    end: int
    strength: float  # error or deny probability inside the window
    slow: float  # latency factor (bursts only)


class _World:
    """Tenant profiles, time profiles and incidents drawn once; then receipts and decisions."""

    def __init__(self, rng: np.random.Generator, tenants: int, days: int, end_us: int) -> None:
        self.rng = rng
        self.end = end_us
        self.start = end_us - days * _US_PER_DAY
        self.hours = days * 24
        self.names = _tenant_names(tenants)
        self.home, self.second = _tenant_regions(self.names)
        weights = 1.0 / np.arange(1, tenants + 1, dtype=np.float64) ** _ZIPF_EXPONENT
        self.share = weights / weights.sum()
        # per-tenant workflow mix and flakiness
        self.mix = rng.dirichlet(_WF_SHARE * 40.0, size=tenants)
        mix_cum = np.cumsum(self.mix, axis=1)
        mix_cum[:, -1] = 1.0
        # shifted by tenant number: one searchsorted draws every tenant's workflows
        self.mix_flat = (mix_cum + np.arange(tenants)[:, None]).ravel()
        self.flaky = rng.lognormal(0.0, 0.3, size=tenants)
        self.strict = rng.lognormal(0.0, 0.3, size=tenants)
        self.rule_orders = self._rule_orders()
        self.time_cdf = self._time_profiles()
        self.time_cdf_ext = np.concatenate([np.zeros(1), self.time_cdf])
        self.releases, self.first_version = self._releases(days)
        self.bursts = self._bursts(max(2, round(days / 15)))
        self.storms = self._storms(max(3, round(days / 20)))
        # canary order: the smallest tenants get a release first, the largest up to 2 days later
        rank = np.arange(tenants, dtype=np.float64)
        self.rollout_lag = ((1.0 - rank / max(tenants - 1, 1)) * 2 * _US_PER_DAY).astype(np.int64)
        self.exec_key, self.decision_key = (int(k) for k in rng.integers(0, 2**63, size=2))

    # -- profiles

    def _rule_orders(self) -> I64:
        """Per workflow, ``_RULE_ORDERS`` orders of its candidate rules, drawn by weight without
        replacement (Efraimidis-Spirakis keys); an execution's decisions follow one of them."""
        shape = (len(WORKFLOWS), _RULE_ORDERS, _WF_RULES.shape[1])
        keys = np.log1p(-self.rng.random(shape)) / _WF_RULE_WEIGHTS[:, None, :]
        rank = np.argsort(-keys, axis=2)[:, :, : len(_DECISIONS_PER_RECEIPT) - 1]
        orders: I64 = np.take_along_axis(
            np.broadcast_to(_WF_RULES[:, None, :], shape), rank, axis=2
        )
        return orders

    def _time_profiles(self) -> F64:
        """Per (region, workflow): the cumulative distribution of traffic over the window's hours,
        each shifted by its group number so that one ``searchsorted`` serves every group."""
        hour_start = self.start + np.arange(self.hours, dtype=np.int64) * _US_PER_HOUR
        trend = np.exp(np.log(1.25) * np.arange(self.hours) / self.hours)
        local = hour_start[None, :] + _REGION_UTC_OFFSET_H[:, None] * _US_PER_HOUR
        hod = (local // _US_PER_HOUR) % 24
        dow = (local // _US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        business = 0.18 + np.exp(-0.5 * ((hod - 13.0) / 3.0) ** 2)
        business += 0.35 * np.exp(-0.5 * ((hod - 10.0) / 1.2) ** 2)
        business *= np.select([dow == 5, dow == 6], [0.8, 0.72], 1.0)
        night = ((hod - 2.5 + 12.0) % 24.0) - 12.0
        nightly = 0.1 + np.exp(-0.5 * (night / 1.5) ** 2)
        nightly *= np.where(dow == 6, 0.9, 1.0)
        f = _WF_NIGHTLY[None, :, None]
        weight = ((1.0 - f) * business[:, None, :] + f * nightly[:, None, :]) * trend
        cdf = np.cumsum(weight, axis=2)
        cdf /= cdf[:, :, -1:]
        cdf[:, :, -1] = 1.0
        groups = np.arange(len(REGIONS) * len(WORKFLOWS), dtype=np.float64)
        flat: F64 = (cdf.reshape(len(groups), self.hours) + groups[:, None]).ravel()
        return flat

    def _window(
        self, median_minutes: float, low: float, high: float, recent: bool
    ) -> tuple[int, int]:
        minutes = float(np.clip(self.rng.lognormal(np.log(median_minutes), 0.6), low, high))
        length = int(minutes * 60e6)
        earliest = max(self.start, self.end - 3 * _US_PER_DAY) if recent else self.start
        begin = int(self.rng.integers(earliest, max(earliest + 1, self.end - length)))
        return begin, begin + length

    def _bursts(self, count: int) -> list[_Incident]:
        """Error bursts: one tenant's workflow fails, slows down and retries (the first one hits
        the largest tenant in the last three days)."""
        rng, out = self.rng, []
        size_weight = np.sqrt(self.share) / np.sqrt(self.share).sum()
        for i in range(count):
            tenant = 0 if i == 0 else int(rng.choice(len(self.names), p=size_weight))
            workflow = int(rng.choice(len(WORKFLOWS), p=self.mix[tenant]))
            recent = i == 0  # the demo's incident: recent, long enough and strong enough to see
            begin, end = self._window(50.0, 30 if recent else 15, 180, recent=recent)
            strength = float(rng.uniform(0.5 if recent else 0.35, 0.8))
            slow = float(rng.uniform(1.5, 4.0))
            out.append(_Incident(tenant, workflow, begin, end, strength, slow))
        return out

    def _storms(self, count: int) -> list[_Incident]:
        """Deny storms, in turn: a guard (rate limiter or budget cap) pushing back on the first
        burst's retries; a tenant's budget running out until the end of its (UTC) day; a bad
        policy push right after a release, denying one rule for everybody until it is fixed; a
        single tenant tripping one rule for a while."""
        rng, first = self.rng, self.bursts[0]
        # the guard the bursting workflow runs into most: its rate limiter or its budget cap
        weight = dict(_WORKFLOW_SPECS[first.key].rules)
        guard = max(("rate.limit", "budget.cap"), key=lambda rule: weight.get(rule, 0.0))
        out = [
            _Incident(first.tenant, _RULE[guard], first.start - 10 * 60_000_000,
                      first.end + 30 * 60_000_000, float(rng.uniform(0.75, 0.95)), 1.0)
        ]  # fmt: skip
        size_weight = np.sqrt(self.share) / np.sqrt(self.share).sum()
        weights = _STORM_WEIGHTS / _STORM_WEIGHTS.sum()
        for i in range(1, count):
            kind = i % 3
            if kind == 1:  # budget exhausted
                tenant = int(rng.choice(len(self.names), p=self.share))
                begin = int(rng.integers(self.start, self.end))
                end = (begin // _US_PER_DAY + 1) * _US_PER_DAY
                out.append(_Incident(tenant, _RULE["budget.cap"], begin, end, 0.95, 1.0))
            elif kind == 2:  # bad policy push
                rule = _RULE[_STORM_RULES[int(rng.choice(len(_STORM_RULES), p=weights))]]
                release = int(self.releases[int(rng.integers(0, len(self.releases)))])
                begin = release + int(rng.integers(0, 2 * _US_PER_HOUR))
                end = begin + int(rng.uniform(0.5, 4.0) * _US_PER_HOUR)
                out.append(_Incident(-1, rule, begin, end, float(rng.uniform(0.5, 0.9)), 1.0))
            else:  # one tenant trips one rule
                rule = _RULE[_STORM_RULES[int(rng.choice(len(_STORM_RULES), p=weights))]]
                tenant = int(rng.choice(len(self.names), p=size_weight))
                begin, end = self._window(90.0, 20, 360, recent=False)
                out.append(_Incident(tenant, rule, begin, end, float(rng.uniform(0.5, 0.95)), 1.0))
        return out

    def _releases(self, days: int) -> tuple[I64, int]:
        count = max(1, days // 30)
        span = self.end - self.start
        at = self.start + (np.arange(1, count + 1) * span) // (count + 1)
        jitter = self.rng.integers(-2 * _US_PER_DAY, 2 * _US_PER_DAY, size=count) // 4
        return np.sort(at + jitter).astype(np.int64), max(1, _LAST_VERSION - count)

    # -- sampling helpers

    def _regions_of(self, tenant: I64) -> I64:
        second = self.second[tenant]
        use_second = (second >= 0) & (self.rng.random(len(tenant)) < _SECOND_REGION_SHARE)
        return np.where(use_second, second, self.home[tenant])

    def _times(self, region: I64, workflow: I64) -> tuple[I64, I64]:
        """Draw a time for each row from its (region, workflow) profile.

        Returns ``(order, ts)``: ``ts`` ascending, ``ts[i]`` the time of row ``order[i]``. Rows of
        one group are exchangeable, so each group's sorted times go to its rows in row order;
        sorted draws make the lookups cache-friendly and the final sort a merge of a few runs.
        """
        hours = self.hours
        group16 = (region * len(WORKFLOWS) + workflow).astype(np.int16)
        by_group = np.argsort(group16, kind="stable")  # a radix sort on small integers
        group = group16[by_group].astype(np.int64)
        target = group + _sorted_uniforms(self.rng, group, len(REGIONS) * len(WORKFLOWS))
        at = np.searchsorted(self.time_cdf, target, side="right")
        low, high = self.time_cdf_ext[at], self.time_cdf_ext[at + 1]
        frac = np.clip((target - low) / (high - low), 0.0, 1.0 - 1e-12)
        hour = np.minimum(at - group * hours, hours - 1)
        ts = self.start + hour * _US_PER_HOUR + (frac * _US_PER_HOUR).astype(np.int64)
        ts = np.minimum(ts, self.end)
        by_time = np.argsort(ts, kind="stable")  # merges the groups' sorted runs
        return by_group[by_time], ts[by_time]

    def _in_window(self, inc: _Incident, tenant: I64, ts: I64) -> Bool:
        inside: Bool = (ts >= inc.start) & (ts < inc.end)
        if inc.tenant >= 0:
            inside &= tenant == inc.tenant
        return inside

    # -- receipts

    def receipts(self, n: int) -> _Receipts:
        rng = self.rng
        # a small share of the rows are the bursts' retries, packed into their windows
        lengths = np.array([b.end - b.start for b in self.bursts], dtype=np.float64)
        extra = rng.multinomial(round(_BURST_SHARE * n), lengths / lengths.sum())
        normal = n - int(extra.sum())
        tenant = rng.choice(len(self.names), size=normal, p=self.share).astype(np.int64)
        region = self._regions_of(tenant)
        workflow = np.searchsorted(self.mix_flat, tenant + rng.random(normal), side="right")
        workflow = np.minimum(workflow - tenant * len(WORKFLOWS), len(WORKFLOWS) - 1)
        order, ts = self._times(region, workflow)
        b_tenant = np.repeat(np.array([b.tenant for b in self.bursts], dtype=np.int64), extra)
        b_workflow = np.repeat(np.array([b.key for b in self.bursts], dtype=np.int64), extra)
        b_start = np.repeat(np.array([b.start for b in self.bursts], dtype=np.int64), extra)
        b_length = np.repeat(lengths.astype(np.int64), extra)
        b_ts = b_start + (rng.random(len(b_start)) * b_length).astype(np.int64)
        tenant = np.concatenate([tenant[order], b_tenant])
        region = np.concatenate([region[order], self._regions_of(b_tenant)])
        workflow = np.concatenate([workflow[order], b_workflow])
        ts = np.concatenate([ts, np.minimum(b_ts, self.end)])
        by_time = np.argsort(ts, kind="stable")  # from here on, rows are in time order
        tenant, region, workflow, ts = (
            tenant[by_time],
            region[by_time],
            workflow[by_time],
            ts[by_time],
        )

        # status: base rates by workflow and tenant
        u = rng.random(n)
        err = _WF_ERROR[workflow] * self.flaky[tenant]
        rb = _WF_ROLLBACK[workflow] * self.flaky[tenant]
        status = np.select(
            [u < err, u < err + rb, u < err + rb + _TIMEOUT_RATE,
             u < err + rb + _TIMEOUT_RATE + _CANCELLED_RATE],
            [_ERROR, _ROLLBACK, _TIMEOUT, _CANCELLED],
            _OK,
        ).astype(np.int64)  # fmt: skip
        attempt = _draw(rng, _ATTEMPT_P, n) + 1
        slow = np.ones(n)
        # error bursts: one tenant's workflow fails, slows down and retries
        for inc in self.bursts:
            hit = self._in_window(inc, tenant, ts) & (workflow == inc.key)
            k = int(hit.sum())
            if k:
                status[hit] = np.where(rng.random(k) < inc.strength, _ERROR, status[hit])
                attempt[hit] = _draw(rng, _ATTEMPT_P_BURST, k) + 1
                slow[hit] = inc.slow
        ids = _mix64(np.arange(n, dtype=np.uint64), self.exec_key)
        return _Receipts(tenant, region, workflow, ts, status, attempt, slow, ids)

    # -- decisions

    def decisions(self, r: _Receipts) -> _Decisions:
        rng = self.rng
        n = len(r.ts)
        counts = _draw(rng, _DECISIONS_PER_RECEIPT, n)
        linked = int(counts.sum())
        receipt = np.repeat(np.arange(n, dtype=np.int64), counts)
        first = np.cumsum(counts) - counts
        k = np.arange(linked, dtype=np.int64) - np.repeat(first, counts)
        # distinct rules per execution, in one of the workflow's pre-drawn evaluation orders
        pattern = rng.integers(0, _RULE_ORDERS, size=n)
        rule = self.rule_orders[r.workflow[receipt], pattern[receipt], k]
        # each decision a few ms to seconds after the previous step
        gap = rng.lognormal(np.log(_RULE_GAP_MS[rule] * _US_PER_MS), 1.0) + 300.0
        total = np.cumsum(gap.astype(np.int64))
        before = np.concatenate([np.zeros(1, dtype=np.int64), total])[first]
        ts = np.minimum(r.ts[receipt] + total - np.repeat(before, counts), self.end)
        del gap, total, before, pattern

        # orphans: decisions with no execution, and decisions whose execution has no receipt
        n_null = round(_ORPHAN_NULL * linked)
        n_dangling = round(_ORPHAN_DANGLING * linked)
        m = n_null + n_dangling
        o_tenant = rng.choice(len(self.names), size=m, p=self.share).astype(np.int64)
        o_region = self._regions_of(o_tenant)
        o_order, o_ts = self._times(o_region, _draw(rng, _WF_SHARE, m))
        o_tenant, o_region = o_tenant[o_order], o_region[o_order]
        global_rules = np.bincount(
            _WF_RULES.ravel(), (_WF_RULE_WEIGHTS * _WF_SHARE[:, None]).ravel(), len(RULES)
        )
        o_rule = _draw(rng, global_rules / global_rules.sum(), m)
        dangling = _mix64(np.arange(n, n + n_dangling, dtype=np.uint64), self.exec_key)

        tenant = np.concatenate([r.tenant[receipt], o_tenant])
        ts = np.concatenate([ts, o_ts])
        rule = np.concatenate([rule, o_rule])
        region = np.concatenate([r.region[receipt], o_region])
        execution = np.concatenate([r.id[receipt], np.zeros(n_null, np.uint64), dangling])
        no_execution = np.zeros(linked + m, dtype=np.bool_)
        no_execution[linked : linked + n_null] = True

        # effects: base rate by rule and tenant; residency denies mostly outside the EU; storms
        p = _RULE_DENY[rule] * self.strict[tenant]
        p = np.where((rule == _RULE["residency.eu"]) & ~_EU[region], p * 4.0, p)
        for inc in self.storms:
            hit = self._in_window(inc, tenant, ts) & (rule == inc.key)
            p = np.where(hit, np.maximum(p, inc.strength), p)
        deny = rng.random(len(p)) < p
        version = np.searchsorted(self.releases, ts - self.rollout_lag[tenant], side="right")
        ids = _mix64(np.arange(linked + m, dtype=np.uint64), self.decision_key)
        return _Decisions(
            tenant, region, ts, rule, deny, version.astype(np.int64), execution, no_execution,
            linked, receipt, ids, self.first_version,
        )  # fmt: skip

    # -- receipts, second pass: outcomes that depend on the decisions

    def finish_receipts(self, r: _Receipts, d: _Decisions) -> None:
        rng = self.rng
        n = len(r.ts)
        # a blocking deny usually fails the execution
        blocked = np.zeros(n, dtype=np.bool_)
        hit = d.deny[: d.linked] & _RULE_BLOCKS[d.rule[: d.linked]]
        blocked[d.receipt[hit]] = True
        u = rng.random(n)
        ok_blocked = blocked & (r.status == _OK)
        r.status = np.where(ok_blocked & (u < 0.55), _ERROR, r.status)
        r.status = np.where(ok_blocked & (u >= 0.55) & (u < 0.75), _ROLLBACK, r.status)

        # latency: lognormal body, heavy tail, incident slowdowns, then by status
        wf = r.workflow
        latency = _WF_MEDIAN[wf] * np.exp(_WF_SIGMA[wf] * rng.standard_normal(n)) * r.slow
        tail = rng.random(n) < 0.03
        latency[tail] *= 8.0 * (1.0 + rng.pareto(1.5, int(tail.sum())))
        latency = np.minimum(latency, _WF_TIMEOUT[wf] * 0.98)
        u = rng.random(n)
        latency = np.select(
            [r.status == _ERROR, r.status == _ROLLBACK, r.status == _CANCELLED,
             r.status == _TIMEOUT],
            [latency * (0.05 + 0.95 * u), latency * (1.3 + rng.exponential(1.0, n)),
             latency * u, _WF_TIMEOUT[wf] * (1.0 + 0.01 * u)],
            latency,
        )  # fmt: skip
        cost = _WF_COST_BASE[wf] + _WF_COST_PER_S[wf] * latency / 1000.0 * rng.lognormal(
            0.0, 0.15, n
        )
        latency = np.round(latency, 3)
        cost = np.round(cost, 6)
        latency[rng.random(n) < _NULL_LATENCY] = np.nan
        cost[rng.random(n) < _NULL_COST] = np.nan
        r.latency, r.cost = latency, cost


# --- frames --------------------------------------------------------------------------------------


def _receipts_frame(r: _Receipts) -> pl.DataFrame:
    order = _sort_order(r.ts, r.id)
    assert r.latency is not None
    assert r.cost is not None
    columns = {
        "executionId": _hex_ids("ex-", r.id[order]),
        "tenant": _pick(_tenant_names(int(r.tenant.max(initial=0)) + 1), r.tenant[order]),
        "region": _pick(REGIONS, r.region[order]),
        "ts": _timestamps(r.ts[order]),
        "workflow": _pick(WORKFLOWS, r.workflow[order]),
        "status": _pick(STATUSES, r.status[order]),
        "latency_ms": pl.Series(r.latency[order], nan_to_null=True),
        "cost_usd": pl.Series(r.cost[order], nan_to_null=True),
        "attempt": pl.Series(r.attempt[order], dtype=pl.Int64),
    }
    frame = pl.DataFrame([s.alias(name) for name, s in columns.items()])
    return frame.select([*RECEIPTS.names, "attempt"])


def _decisions_frame(d: _Decisions) -> pl.DataFrame:
    execution = np.where(d.no_execution, np.uint64(2**64 - 1), d.execution)
    order = _sort_order(d.ts, d.no_execution, execution, d.id)
    versions = [f"v{d.first_version + i}" for i in range(int(d.version.max(initial=0)) + 1)]
    columns = {
        "decisionId": _hex_ids("dec-", d.id[order]),
        "executionId": _hex_ids("ex-", d.execution[order], null=d.no_execution[order]),
        "tenant": _pick(_tenant_names(int(d.tenant.max(initial=0)) + 1), d.tenant[order]),
        "region": _pick(REGIONS, d.region[order]),
        "ts": _timestamps(d.ts[order]),
        "rule": _pick(RULES, d.rule[order]),
        "effect": _pick(("allow", "deny"), d.deny[order].astype(np.int64)),
        "policy_version": _pick(versions, d.version[order]),
    }
    frame = pl.DataFrame([s.alias(name) for name, s in columns.items()])
    return frame.select(DECISIONS.names)


def _pick(names: tuple[str, ...] | list[str], index: I64) -> pl.Series:
    return pl.Series(list(names), dtype=pl.String).gather(index)


def _timestamps(us: I64) -> pl.Series:
    return pl.Series(us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))


# two ASCII hex digits per byte value, as one native uint16 each
_HEX_PAIRS = np.frombuffer(
    bytes(ord(c) for b in range(256) for c in f"{b:02x}"), dtype=np.uint16
).copy()


def _hex_ids(prefix: str, values: U64, null: Bool | None = None) -> pl.Series:
    """``prefix`` + 16 lowercase hex digits of each value, built as one Arrow string buffer.

    Fixed-width hex of a big-endian value sorts like the value, so ordering by the numbers is
    ordering by the strings.
    """
    n, p = len(values), len(prefix)
    width = p + 16
    digits = _HEX_PAIRS[values.astype(">u8").view(np.uint8)]  # (n * 8,) uint16, two digits each
    rows = np.empty(n, dtype=np.dtype([("prefix", f"S{p}"), ("hex", "S16")]))
    rows["prefix"] = prefix.encode()
    rows["hex"] = digits.view("S16")
    buf = rows.view(np.uint8)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    validity = None
    if null is not None and null.any():
        validity = pa.py_buffer(np.packbits(~null, bitorder="little"))
    array = pa.Array.from_buffers(
        pa.large_string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(buf)]
    )
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.cast(pl.String)


# --- small helpers -------------------------------------------------------------------------------


def _tenant_names(count: int) -> list[str]:
    named = list(TENANT_NAMES[:count])
    return named + [f"tenant-{i:04d}" for i in range(len(named) + 1, count + 1)]


def _tenant_regions(names: list[str]) -> tuple[I64, I64]:
    index = {r: i for i, r in enumerate(REGIONS)}
    home, second = [], []
    for i, name in enumerate(names):
        if name in _TENANT_REGIONS:
            h, s = _TENANT_REGIONS[name]
            home.append(index[h])
            second.append(-1 if s is None else index[s])
        else:  # a fixed spread, independent of the seed
            home.append((i * 3) % len(REGIONS))
            second.append((i * 3 + 2) % len(REGIONS) if i % 3 == 0 else -1)
    return np.array(home, dtype=np.int64), np.array(second, dtype=np.int64)


def _sort_order(primary: I64, *then: npt.NDArray[np.generic]) -> I64:
    """The order by ``primary``, then by each of ``then``: a fast sort on the first key, and a
    full sort only of the (rare) runs of equal ``primary`` values."""
    order = np.argsort(primary, kind="stable")
    ranked = primary[order]
    tie = ranked[1:] == ranked[:-1]
    if tie.any():
        involved = np.zeros(len(order), dtype=np.bool_)
        involved[1:] |= tie
        involved[:-1] |= tie
        at = np.flatnonzero(involved)
        sub = order[at]
        keys = [k[sub] for k in reversed(then)]
        order[at] = sub[np.lexsort((*keys, primary[sub]))]
    return order


def _sorted_uniforms(rng: np.random.Generator, group: I64, groups: int) -> F64:
    """For rows sorted by ``group``: uniform draws in (0, 1), ascending within each group.

    Uses normalized exponential spacings, so no sort is needed.
    """
    counts = np.bincount(group, minlength=groups)
    spacing = rng.standard_exponential(len(group) + groups)
    total = np.cumsum(spacing)
    last = np.cumsum(counts + 1) - 1  # each group's segment ends with one extra spacing
    first = last - counts
    base = total[first] - spacing[first]
    keep = np.ones(len(spacing), dtype=np.bool_)
    keep[last] = False
    u: F64 = (total[keep] - base[group]) / (total[last] - base)[group]
    return u


def _draw(rng: np.random.Generator, p: F64, size: int) -> I64:
    """``size`` draws of 0..len(p)-1 with probabilities ``p``."""
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)


def _mix64(x: U64, key: int) -> U64:
    """A keyed bijection on 64-bit integers (SplitMix64's finalizer): distinct in, distinct out."""
    z = x + np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z
