"""Generated benchmark data kept on disk, so that runs at 10M rows do not regenerate it each time.

:func:`cached_data` builds the demo data once into ``benchmarks/.data/demo-<N>-t<T>-s<S>/``: the
source frames as Parquet (for DuckDB and hand-written Polars) and a lake written through
``pql.Engine(DIR, index=False)``, as ``pql ingest`` would. Later runs read it back (writing
first the rollup files that a lake cached by an older pql lacks). The data's
``now`` is kept with it: a run on cached data moves its clock from that instant
(:class:`Clock`), so windows hold what they held when the data was new.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

import pql
from pql.catalog import Catalog
from pql.demo import generate
from pql.storage.lake import Lake

CACHE = Path(__file__).parent / ".data"
"""Where generated data is kept (ignored by git)."""
RESULTS = Path(__file__).parent / "results"
"""Where the benchmarks write their results by default."""


def options(description: str, *, repeat: int) -> argparse.ArgumentParser:
    """The options every benchmark on the demo data takes: its size and seed, how many times
    each measurement repeats, and where the results go."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`options` a run was given, for its JSON."""
    return {
        "receipts": args.receipts,
        "tenants": args.tenants,
        "seed": args.seed,
        "repeat": args.repeat,
    }


def stored_rows(lake: Path) -> dict[str, int]:
    """Each tenant's stored rows (every subject), from the lake's manifest."""
    rows: dict[str, int] = {}
    for entry in Lake(lake, Catalog()).manifest().files:
        rows[entry.tenant] = rows.get(entry.tenant, 0) + entry.rows
    return rows


def write_result(out: Path, kind: str, receipts: int, summary: dict[str, Any]) -> Path:
    """Write ``summary`` (with the machine's CPUs and load average) to
    ``out/<kind>-<N>k-<UTC stamp>.json``; the path written."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"{kind}-{receipts // 1000}k-{stamp}.json"
    machine = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    path.write_text(json.dumps({**summary, **machine}, indent=2) + "\n", encoding="utf-8")
    return path


def duckdb_tables(frames: dict[str, pl.DataFrame]) -> Any:
    """A DuckDB connection holding each frame as a native table of its name, in ``tenant, ts``
    order (how the benchmarks give DuckDB the data pql answers from)."""
    import duckdb

    con = duckdb.connect()
    for name, frame in frames.items():
        con.register(f"{name}_src", frame.to_arrow())
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_src ORDER BY tenant, ts")
        con.unregister(f"{name}_src")
    return con


def duckdb_answer(con: Any, sql: str) -> Any:
    """DuckDB's answer to ``sql`` on ``con`` (from :func:`duckdb_tables`) as an Arrow table:
    the call the benchmarks time."""
    return con.sql(sql).to_arrow_table()


def progress(message: str) -> None:
    """A progress line on a terminal; nothing when stderr is piped."""
    if sys.stderr.isatty():
        print(f"  {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Data:
    """A cached lake and the same rows as Parquet files (for DuckDB), read only when asked for:
    a run that does not compare keeps no copy of the rows beside its engine."""

    lake: Path
    home: Path
    now: datetime
    build_s: float | None  # None: read from the cache

    @functools.cached_property
    def receipts(self) -> pl.DataFrame:
        return pl.read_parquet(self.home / "receipts.parquet")

    @functools.cached_property
    def decisions(self) -> pl.DataFrame:
        return pl.read_parquet(self.home / "decisions.parquet")

    def rows(self) -> tuple[int, int]:
        """How many receipts and decisions (from the files' metadata)."""
        return _height(self.home / "receipts.parquet"), _height(self.home / "decisions.parquet")

    def tenant_column(self) -> pl.Series:
        """The receipts' tenant column alone."""
        return pl.read_parquet(self.home / "receipts.parquet", columns=["tenant"]).to_series()


def _height(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def cached_data(receipts: int, *, tenants: int, seed: int, cache: Path = CACHE) -> Data:
    """The generated data as a lake plus Parquet frames, built once into ``cache``."""
    home = cache / f"demo-{receipts}-t{tenants}-s{seed}"
    meta = home / "meta.json"
    if not meta.exists():
        if home.exists():  # an interrupted build: start again
            shutil.rmtree(home)
        t = time.perf_counter()
        progress(f"generating {receipts:,} receipts into {home} (once)")
        data = generate(receipts, seed=seed, tenants=tenants)
        home.mkdir(parents=True, exist_ok=True)
        data.receipts.write_parquet(home / "receipts.parquet")
        data.decisions.write_parquet(home / "decisions.parquet")
        progress("writing the lake")
        writer = pql.Engine(home / "lake", index=False, cache=False)
        writer.ingest("receipts", data.receipts)
        writer.ingest("decisions", data.decisions)
        built = time.perf_counter() - t
        meta.write_text(json.dumps({"now": data.now.isoformat(), "build_s": round(built, 1)}))
        return Data(home / "lake", home, data.now, built)
    now = datetime.fromisoformat(json.loads(meta.read_text())["now"])
    # Data cached by an older pql lacks what today's ingest writes beside each file: written
    # once here (nothing to do after), so that every run reads the lake as ingest leaves it.
    written = Lake(home / "lake", Catalog()).write_missing_rollups()
    if written:
        progress(f"wrote the {written:,} rollup files the cached lake lacked")
    return Data(home / "lake", home, now, None)


@dataclass(frozen=True, slots=True)
class Clock:
    """A wall clock moved back to start at ``start``: ``now()`` advances in real time."""

    start: datetime
    _offset: timedelta = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offset", datetime.now(UTC) - self.start)

    def now(self) -> datetime:
        return datetime.now(UTC) - self._offset
