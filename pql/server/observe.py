"""The server's own Prometheus metrics, beside the engine's (``docs/pql/METRICS.md``).

* ``mc_pql11_http_requests_total`` — requests answered, by ``method``, ``route`` (the route's
  template, ``unmatched`` for none) and ``status``;
* ``mc_pql11_http_request_ms`` — their latency in milliseconds, by ``route``.

Both live on prometheus_client's default registry, created once per process.
"""

from __future__ import annotations

import threading
from typing import Any

from pql.metrics import BUCKETS_MS

__all__ = ["exposition", "request"]

_lock = threading.Lock()
_metrics: tuple[Any, Any] | None = None


def _get() -> tuple[Any, Any] | None:
    global _metrics
    try:
        import prometheus_client as prom
    except ImportError:  # pragma: no cover - the server extra installs it
        return None
    with _lock:
        if _metrics is None:
            _metrics = (
                prom.Counter(
                    "mc_pql11_http_requests",
                    "HTTP requests answered by pql serve",
                    ["method", "route", "status"],
                ),
                prom.Histogram(
                    "mc_pql11_http_request_ms",
                    "HTTP request latency of pql serve in milliseconds, by route",
                    ["route"],
                    buckets=BUCKETS_MS,
                ),
            )
        return _metrics


def request(method: str, route: str, status: int, elapsed_ms: float) -> None:
    """Count one answered request."""
    metrics = _get()
    if metrics is not None:
        metrics[0].labels(method=method, route=route, status=str(status)).inc()
        metrics[1].labels(route=route).observe(elapsed_ms)


def exposition() -> tuple[bytes, str]:
    """The default registry in the Prometheus text format, and its content type."""
    import prometheus_client as prom

    _get()
    return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST
