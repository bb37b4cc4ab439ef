"""Prometheus metrics for applications embedding pql (``pip install pql[metrics]``).

``prometheus_client`` is optional: without it every method here is a no-op. The metrics (see
``docs/pql/METRICS.md``):

* ``mc_pql11_query_ms`` — histogram of :meth:`pql.Engine.query` latency in milliseconds,
  labelled ``outcome``: ``ok``, ``cache_hit``, ``invalid`` (exit 2), ``refused`` (safety or
  authorization, exits 3 and 4) or ``error`` (anything else);
* ``mc_pql11_cache_hits_total`` / ``mc_pql11_cache_misses_total`` — result-cache lookups;
* ``mc_pql11_rows_scanned_total`` — rows read by queries that ran (cache hits read none).

Engines share one :class:`Metrics` on prometheus_client's default registry unless given their own
(``pql.Engine(..., metrics=Metrics(registry=...))``).
"""

from __future__ import annotations

import threading
from typing import Any

from pql.errors import AuthError, InputError, InternalError, PQLError, QueryError, SafetyError

__all__ = ["BUCKETS_MS", "OUTCOMES", "Metrics", "available", "default_metrics", "outcome_of"]

OUTCOMES = ("ok", "cache_hit", "invalid", "refused", "error")
"""The values of the ``outcome`` label."""

BUCKETS_MS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""Histogram buckets of ``mc_pql11_query_ms``, in milliseconds."""

try:  # optional dependency
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - exercised only without the extra installed
    _prom = None  # type: ignore[assignment]


def available() -> bool:
    """Whether ``prometheus_client`` is installed (otherwise metrics are no-ops)."""
    return _prom is not None


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label of a query that raised ``exc``."""
    if isinstance(exc, (QueryError, InputError)):
        return "invalid"
    if isinstance(exc, (SafetyError, AuthError)):
        return "refused"
    if isinstance(exc, PQLError):
        return "error"
    return "error"


class Metrics:
    """pql's metrics on one prometheus registry, or no-ops without prometheus_client.

    ``registry`` defaults to prometheus_client's global ``REGISTRY``; ``enabled=False`` makes
    every method a no-op even when prometheus_client is installed.
    """

    def __init__(self, registry: Any = None, *, enabled: bool = True) -> None:
        self.enabled = enabled and _prom is not None
        self._extra: dict[str, Any] = {}
        self._extra_lock = threading.Lock()
        self._by_outcome: dict[str, Any] = {}
        if not self.enabled or _prom is None:
            return
        reg = registry if registry is not None else _prom.REGISTRY
        self._registry = reg
        self._query_ms = _prom.Histogram(
            "mc_pql11_query_ms",
            "pql query latency in milliseconds, by outcome",
            ["outcome"],
            buckets=BUCKETS_MS,
            registry=reg,
        )
        self._hits = _prom.Counter(
            "mc_pql11_cache_hits", "pql result-cache lookups that hit", registry=reg
        )
        self._misses = _prom.Counter(
            "mc_pql11_cache_misses", "pql result-cache lookups that missed", registry=reg
        )
        self._rows = _prom.Counter(
            "mc_pql11_rows_scanned", "rows read by pql queries that ran", registry=reg
        )

    def query(self, outcome: str, elapsed_ms: float) -> None:
        """Record one query's latency under ``outcome`` (one of :data:`OUTCOMES`)."""
        if self.enabled:
            child = self._by_outcome.get(outcome)
            if child is None:  # prometheus_client's labels() locks and checks on every call
                child = self._by_outcome[outcome] = self._query_ms.labels(outcome=outcome)
            child.observe(elapsed_ms)

    def cache(self, hit: bool) -> None:
        """Record one result-cache lookup."""
        if self.enabled:
            (self._hits if hit else self._misses).inc()

    def rows_scanned(self, rows: int) -> None:
        """Record rows read by a query that ran."""
        if self.enabled and rows > 0:
            self._rows.inc(rows)

    # -- metrics adapters declare (pql.adapters.MetricSpec) ------------------------------------

    def register(self, spec: Any) -> None:
        """Create the metric an adapter declared (a :class:`pql.adapters.MetricSpec`), once."""
        with self._extra_lock:
            if spec.name in self._extra:
                return
            if not self.enabled or _prom is None:
                self._extra[spec.name] = None
                return
            kinds = {"histogram": _prom.Histogram, "counter": _prom.Counter, "gauge": _prom.Gauge}
            options: dict[str, Any] = {"registry": self._registry}
            if spec.kind == "histogram" and spec.buckets:
                options["buckets"] = spec.buckets
            self._extra[spec.name] = kinds[spec.kind](
                spec.name, spec.help, list(spec.labels), **options
            )

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record ``value`` on the registered histogram (or gauge: set) ``name``."""
        metric = self._metric(name, labels)
        if metric is not None:
            (metric.observe if hasattr(metric, "observe") else metric.set)(value)

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        """Add ``value`` to the registered counter ``name``."""
        metric = self._metric(name, labels)
        if metric is not None:
            metric.inc(value)

    def _metric(self, name: str, labels: dict[str, str]) -> Any:
        if name not in self._extra:
            raise InternalError(
                "PQL-X203",
                f"metric {name!r} was never registered",
                hints=("an adapter must declare its metrics in pql_metrics",),
            )
        metric = self._extra[name]
        if metric is None:
            return None
        return metric.labels(**labels) if labels else metric


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide :class:`Metrics` on the default registry (created once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default
