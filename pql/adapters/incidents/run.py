"""Driving detection over time: replay (a range, batch) and streaming (each ingest), one code path.

A :class:`TenantRun` walks a tenant's buckets in order. A bucket is *complete* once data at or
after its end has been seen; its values then join the history and the correlator is told (severity
updates, closes). The bucket still arriving is looked at on a copy, so its signals open incidents
at once and are found again, identically, when more of it arrives. Replay over ``[start, until]``
and streaming ingest of the same records (in time order) therefore give the same events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from pql.adapters.incidents.correlate import Correlator
from pql.adapters.incidents.detect import US, History, detect_bucket, finalize_bucket
from pql.adapters.incidents.observe import observations, workflows_of
from pql.adapters.incidents.settings import Settings

__all__ = ["TenantRun", "replay"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class TenantRun:
    """Detection state of one tenant from ``origin`` on (history loaded from before it)."""

    def __init__(self, engine: Any, tenant: str, origin: datetime, settings: Settings) -> None:
        self.engine = engine
        self.tenant = tenant
        self.settings = settings
        width = settings.bucket_s * US
        self.next_bucket = _us(origin) // width
        self.history = History()
        self.correlator = Correlator(settings)
        self.emitted: list[dict[str, Any]] = []
        self.data_time = self.next_bucket * width - 1
        back = _at(self.next_bucket * width) - timedelta(days=settings.baseline_days, hours=1)
        past = observations(engine, tenant, back, _at(self.next_bucket * width))
        first = self._first_bucket(back)
        self.history.first_bucket = first
        if past.height:
            buckets = past.with_columns((pl.col("ts") // width).alias("bucket"))
            for (bucket,), rows in buckets.group_by(["bucket"], maintain_order=True):
                finalize_bucket(int(bucket), rows, self.history, settings)

    def _first_bucket(self, back: datetime) -> int | None:
        width = self.settings.bucket_s * US
        stats = []
        for subject in ("receipts", "decisions"):
            if self.tenant in self.engine.store.tenants() and subject in self.engine.catalog:
                stats += self.engine.store.stats(self.tenant, subject)
        if not stats:
            return None
        return int(_us(min(s.ts_min for s in stats)) // width)

    def advance(self, until: datetime) -> list[dict[str, Any]]:
        """Process every record up to ``until`` (inclusive); the events not yet handed out."""
        width = self.settings.bucket_s * US
        until_us = max(_us(until), self.data_time)
        start = self.next_bucket * width
        # from the bucket before: the trailing window of its first records reaches into it
        rows = observations(self.engine, self.tenant, _at(start - width), _at(until_us + 1))
        if self.history.first_bucket is None and rows.filter(pl.col("ts") >= start).height:
            self.history.first_bucket = int(rows.filter(pl.col("ts") >= start)["ts"][0]) // width
        lookup = workflows_of(self.engine, self.tenant, _at(start - width), _at(until_us + 1))
        keyed = rows.with_columns((pl.col("ts") // width).alias("bucket"))
        by_bucket = {int(b): g for (b,), g in keyed.group_by(["bucket"], maintain_order=True)}
        last = until_us // width
        bucket = self.next_bucket
        while bucket <= last:
            part = by_bucket.get(bucket, keyed.clear())
            complete = (bucket + 1) * width <= until_us
            target = self.correlator if complete else self.correlator.copy()
            before = by_bucket.get(bucket - 1, keyed.clear())
            for signal in detect_bucket(
                self.tenant, bucket, part, self.history, self.settings, lookup.get, before
            ):
                target.signal(signal)
            if not complete:
                self._hand_out(target)
                break
            values = finalize_bucket(bucket, part, self.history, self.settings)
            target.bucket_done((bucket + 1) * width, values)
            bucket += 1
            self.next_bucket = bucket
        else:
            self._hand_out(self.correlator)
        self.data_time = until_us
        keep = (
            self.next_bucket - (self.settings.baseline_days + 1) * 86400 // self.settings.bucket_s
        )
        self.history.prune(keep)
        new = self._pending
        return new

    def _hand_out(self, correlator: Correlator) -> None:
        events = correlator.events
        self._pending = events[len(self.emitted) :]
        self.emitted = list(events)


def replay(
    engine: Any, tenant: str, start: datetime, until: datetime, settings: Settings
) -> list[dict[str, Any]]:
    """Every event of ``tenant`` detected over ``[start, until]`` (deterministic)."""
    run = TenantRun(engine, tenant, start, settings)
    return run.advance(until)
