"""Every store path a user can get, over the same data, with rows at every edge of the window.

The differential and property tests take the ``store_path`` fixture (``tests/conftest.py``), which
runs them once per entry of :data:`PATHS`. Each path is an engine over the same rows, opened the
way a user gets it:

=================  ==============================================================================
``cli``            the lake as the command line reads it: a fresh engine over a lake another
                   engine wrote, opened by the CLI's own ``pql.cli._engine`` (``Engine(DIR)``)
``service``        ``pql.Engine(DIR)``, the default a service gets, which ingested the rows itself
``indexed``        ``pql.Engine(DIR, index=True)``: per-tenant memory indexes over the lake
``indexed+rollup`` the same with ``rollup_min_rows=0``: every exact aggregate reads the rollups
``memory``         ``pql.Engine.in_memory()``
``memory+rollup``  the same with ``rollup_min_rows=0``
``streaming``      ``pql.Engine(DIR, streaming_rows=0)``: every inner join collected on Polars'
                   streaming engine (by default only those reading millions of rows are)
``restart``        the indexes as a restarted service has them: mapped from snapshots with their
                   lookups, a tenant kept in several storage regions in one sorted part per
                   region (scans merge the parts' windows, lookups read each part's)
=================  ==============================================================================

The default engines keep rollups but, on data this small, never read them once a tenant's index
is in memory (the raw plan is cheaper below ``rollup_min_rows``): they are the "rollups off"
paths a user gets. Until it is loaded, a lake path reads the tenant from its files and takes the
rollup whenever it answers (``docs/pql/ROLLUPS.md``).

:func:`with_edges` adds to generated data, for every tenant, rows exactly at ``now``, exactly at
``now - d`` for each window ``d`` the tests use, one microsecond inside and outside each, at the
first and last microsecond of their days (the lake's partition edges) and in the future. A bound
that is off by one microsecond on any path changes some answer.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import time_machine

import pql
from pql.cli import _engine as cli_engine
from pql.demo import DemoData
from pql.limits import DEFAULT_LIMITS
from pql.storage.lake import Lake
from pql.storage.memory import MemoryStore
from pql.storage.snapshots import Snapshots
from tests.clock import TEST_NOW

__all__ = [
    "PATHS",
    "SPARK",
    "StorePath",
    "copy_lake",
    "edge_times",
    "open_path",
    "split_tenants",
    "windows_of",
    "with_edges",
    "write_lake",
]

PATHS = (
    "cli",
    "service",
    "indexed",
    "indexed+rollup",
    "memory",
    "memory+rollup",
    "streaming",
    "restart",
)
SPARK = "spark"
"""The Spark executor over the lake: a path only the tests that name it run (about a second a
query; the matrix runs thousands)."""

TICK = timedelta(microseconds=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StorePath:
    """One way to reach the data: its name (the test id), the engine and its lake, if any."""

    name: str
    engine: pql.Engine
    root: Path | None = None

    @property
    def rollups_forced(self) -> bool:
        return self.name.endswith("+rollup")


def windows_of(texts: Iterable[str]) -> set[timedelta]:
    """The windows the queries ``texts`` read (the default window for those without ``SINCE``)."""
    found = set()
    for text in texts:
        since = pql.parse(text).since
        found.add(
            DEFAULT_LIMITS.default_window if since is None else timedelta(seconds=since.seconds)
        )
    return found


def edge_times(now: datetime, windows: Iterable[timedelta]) -> list[datetime]:
    """The instants at which a window ``[now - d, now]`` or a day partition starts or ends."""
    times: set[datetime] = set()
    for mark in {now, *(now - w for w in windows)}:
        times |= {mark - TICK, mark, mark + TICK}
        for midnight in _midnights_around(mark):
            times |= {midnight - TICK, midnight, midnight + TICK}
    times |= {now + timedelta(hours=1), now + DAY, now + timedelta(days=30)}  # the future
    return sorted(times)


def _midnights_around(mark: datetime) -> tuple[datetime, datetime]:
    """The start of ``mark``'s UTC day and of the next one (the partitions a window cuts)."""
    midnight = datetime.combine(mark.date(), time(), tzinfo=UTC)
    return midnight, midnight + DAY


def with_edges(data: DemoData, windows: Iterable[timedelta]) -> DemoData:
    """``data`` plus, for every tenant and edge instant, one receipt and two decisions.

    Each edge receipt copies the values of one of its tenant's generated receipts (so filters
    and groups meet edge rows too) under a new ``executionId``. One decision of it is stamped at
    the same instant, the other one microsecond earlier, so a join sees one side on each side
    of a bound.
    """
    times = edge_times(data.now, windows)
    receipts, decisions = [], []
    for tenant in sorted(set(data.receipts.get_column("tenant").to_list())):
        mine = data.receipts.filter(pl.col("tenant") == tenant)
        theirs = data.decisions.filter(pl.col("tenant") == tenant)
        picks = [i % mine.height for i in range(len(times))]
        ids = [f"ex-edge-{tenant}-{i:03d}" for i in range(len(times))]
        receipts.append(mine[picks].with_columns(executionId=pl.Series(ids), ts=pl.Series(times)))
        for which, shift in (("a", timedelta(0)), ("b", -TICK)):
            rows = theirs[[i % theirs.height for i in range(len(times))]]
            decisions.append(
                rows.with_columns(
                    decisionId=pl.Series(
                        [f"dec-edge-{tenant}-{i:03d}{which}" for i in range(len(times))]
                    ),
                    executionId=pl.Series(ids),
                    ts=pl.Series([t + shift for t in times]),
                )
            )
    return DemoData(
        receipts=_sorted(pl.concat([data.receipts, *receipts]), "executionId"),
        decisions=_sorted(pl.concat([data.decisions, *decisions]), "decisionId"),
        now=data.now,
    )


def _sorted(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    return frame.with_columns(pl.col("ts").dt.cast_time_unit("us")).sort("ts", key)


def open_path(name: str, data: DemoData, lake: Path, *, spark: Any = None) -> StorePath:
    """The engine of path ``name`` over ``data``; the lake paths share the directory ``lake``,
    written by the ``service`` path, which must be opened first. ``SPARK`` needs a session."""
    if name == "memory":
        return StorePath(name, _ingest(pql.Engine.in_memory(), data))
    if name == "memory+rollup":
        return StorePath(name, _ingest(pql.Engine.in_memory(rollup_min_rows=0), data))
    if name == "service":
        engine = _ingest(pql.Engine(lake), data)
    elif name == "cli":
        engine = cli_engine(argparse.Namespace(data=str(lake), adapters=None))
    elif name == "indexed":
        engine = pql.Engine(lake, index=True)
    elif name == "indexed+rollup":
        engine = pql.Engine(lake, index=True, rollup_min_rows=0)
    elif name == "streaming":
        engine = pql.Engine(lake, streaming_rows=0)
    elif name == "restart":
        engine = _restarted(lake)
    elif name == SPARK:
        if spark is None:
            raise ValueError(f"path {SPARK!r} runs on a Spark session: pass spark=")
        engine = pql.Engine(
            lake, executor="spark", spark=spark, limits=pql.Limits(deadline_ms=600_000)
        )
    else:
        raise ValueError(f"no store path {name!r}; the paths are {PATHS}")
    return StorePath(name, engine, lake)


def _restarted(lake: Path) -> pql.Engine:
    """An engine over every tenant's index as mapped from snapshots (rows, rollup partials and
    lookups), a tenant of several storage regions in one part per region: a restarted
    service's indexes."""
    catalog = pql.Catalog()
    snapshots = Snapshots(Lake(lake, catalog))
    store = MemoryStore(catalog, rollups=True)
    for tenant in snapshots.lake.tenants():
        first = snapshots.load(tenant, catalog, rollups=True)
        first.store.add_lookups()  # as the loader does before it writes the snapshots
        snapshots.write(first.pending)
        loaded = snapshots.load(tenant, catalog, rollups=True, into=store)
        assert loaded.source == "snapshot", (tenant, loaded.source)
    store.add_lookups()  # the mapped lookups are checked, as the loader does after a load
    for tenant in snapshots.lake.tenants():
        again = snapshots.load(tenant, catalog, rollups=True, into=MemoryStore(catalog))
        again.store.add_lookups()
        assert not any(item.files() for item in again.pending), tenant  # all written, whole
    assert split_tenants(lake), "no tenant of the test data is kept in several regions: moot"
    return pql.Engine(store=store, catalog=catalog)


def split_tenants(lake: Path) -> list[str]:
    """The tenants whose files are kept in more than one storage region (a restarted index
    holds each of them in parts), sorted."""
    manifest = Lake(lake, pql.Catalog()).manifest()
    return [
        tenant
        for tenant in manifest.tenants()
        if len({f.storage for f in manifest.files if f.tenant == tenant}) > 1
    ]


def _ingest(engine: pql.Engine, data: DemoData) -> pql.Engine:
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    return engine


def write_lake(folder: Path, data: DemoData, *, decisions: bool = True) -> Path:
    """A lake at ``folder / "lake"`` holding ``data`` (its decisions too, unless told not to),
    written on the tests' clock: the template a module's tests get copies of (:func:`copy_lake`),
    written by a module-scoped fixture, which runs outside any one test's clock."""
    root = folder / "lake"
    with time_machine.travel(TEST_NOW, tick=True):
        engine = pql.Engine(root, index=False)
        if decisions:
            _ingest(engine, data)
        else:
            engine.ingest("receipts", data.receipts)
    return root


def copy_lake(template: Path, into: Path) -> Path:
    """A private copy of a lake that a module wrote once (``into / "lake"``).

    Ingesting writes and syncs every day file; a module whose tests each need the same fresh lake
    writes it once and copies it (a copy of a few thousand small files takes a tenth of a second
    where the ingest took seconds). The copy keeps the files' times, so nothing tells it apart."""
    root = into / "lake"
    shutil.copytree(template, root)
    return root
