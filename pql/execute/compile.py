"""Plan -> lazy Polars query. Compiles; collects only the first rows' probes.

One public entry, :func:`compile_plan`. Dispatch is by node type; an unknown node is a loud
internal error. Scans ask the store only for one tenant's rows in the window (partition pruning),
and only for the columns the plan reads (projection pruning); Polars pushes the remaining
predicates into the scan.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any, Literal, NamedTuple, cast

import cachetools
import numpy as np
import numpy.typing as npt
import polars as pl

from pql.ast import AggFunc, CompareOp
from pql.catalog import Catalog, DataType
from pql.errors import InternalError
from pql.execute.buckets import bucket_of, fill
from pql.execute.joins import Side, aggregate_input, counts_rows
from pql.execute.rollups import aggregate_rollup
from pql.plan.cost import Estimates, build_side
from pql.plan.expr import NOTHING, AggSpec, AllOf, AnyOf, Cmp, Col, Const, In, Negate, Null, Pred
from pql.plan.nodes import (
    Aggregate,
    Filter,
    Join,
    Limit,
    Node,
    Project,
    RollupAggregate,
    Scan,
    Sort,
    SortKey,
)
from pql.storage.base import (
    JOIN_CODE,
    JoinCodeStore,
    LookupStore,
    RowsKeyStore,
    Store,
    micros,
    provides,
)
from pql.storage.base import Scan as StoredScan
from pql.storage.rollups import RollupStore

__all__ = ["Compiled", "FirstMatches", "ScanInfo", "compile_plan", "key_part", "predicate"]


@dataclass(frozen=True, slots=True)
class ScanInfo:
    subject: str
    partitions: int
    rows: int
    source: str = "partitions"
    lookup: str | None = None
    """The qualified id column whose lookup found the rows, if they were not scanned."""
    coded: str | None = None
    """The qualified join key whose join codes were read beside the rows, if a join used them."""


@dataclass(slots=True)
class Compiled:
    """A lazy query ready to run, and what compiling it learned about the scans."""

    frame: pl.LazyFrame
    cap: int | None
    scans: list[ScanInfo] = field(default_factory=list)
    read_s: float = 0.0
    """Seconds compiling spent reading data: the store's reads (which may wait for an index
    being mapped) and the first rows' probes; the rest of compiling is building the query."""
    pairs: bool = False
    """Whether the query builds the pairs of an inner join (a semi join builds none)."""
    reused: bool = False
    """Whether this query was compiled before, for a plan of the same family that read the same
    rows (:mod:`pql.execute.reuse`): nothing was built or read for it now."""

    @property
    def rows_scanned(self) -> int:
        return sum(s.rows for s in self.scans)

    @property
    def partitions_read(self) -> int:
        return sum(s.partitions for s in self.scans)

    @property
    def lookups(self) -> list[str]:
        """The id columns (qualified) whose lookups read rows instead of a window scan."""
        return [s.lookup for s in self.scans if s.lookup is not None]

    @property
    def join_codes(self) -> list[str]:
        """The join keys (qualified) whose joins compared join codes instead of values."""
        return [s.coded for s in self.scans if s.coded is not None]

    @property
    def path(self) -> str | None:
        """What answered: ``"partitions"`` if any read came from a lake's files, else
        ``"index"`` or ``"memory"`` (``None``: the plan read nothing)."""
        sources = {s.source for s in self.scans}
        for source in ("partitions", "index", "memory"):
            if source in sources:
                return source
        return next(iter(sorted(sources)), None)


def compile_plan(
    plan: Node,
    store: Store,
    catalog: Catalog,
    estimates: Estimates | None = None,
    first_matches: FirstMatches | None = None,
) -> Compiled:
    """Turn a safe, optimized plan into a :class:`Compiled` lazy query.

    With the plan's ``estimates`` each join builds its hash table on the side estimated smaller
    (:func:`~pql.plan.cost.build_side`); without them Polars chooses. ``first_matches`` keeps
    what the first rows' probes found for the next compile (see :class:`FirstMatches`).
    """
    compiler = _Compiler(store, catalog, estimates, first_matches)
    cap: int | None = None
    if isinstance(plan, Limit) and plan.cap:
        cap = plan.count
        # One row more than the cap tells the runner whether rows were cut.
        frame = compiler.compile(Limit(plan.input, cap + 1))
    else:
        frame = compiler.compile(plan)
    return Compiled(frame, cap, compiler.scans, compiler.read_s, compiler.pairs)


class FirstMatches:
    """Where the first rows' probes found their matches, kept for the next compile of the same
    filtered LIMIT: thread-safe and bounded, least recently used dropped first.

    A probe finds, in one part of a window kept in ts order, the ts of the first ``count`` rows
    a filter keeps (the last, for a descending ts). While those rows all lie in a later window
    of the same stored rows (a query asked again on the wall clock, its window moved by a
    moment), the rows up to the same ts hold at least ``count`` matches, so they hold the
    first ``count`` of the moved window: it is cut there without probing again. A key names the
    stored rows (:meth:`~pql.storage.base.RowsKeyStore.stored_key`), the part, the filter and
    the order, and the engine clears what is kept when it clears its compiled queries (an
    index let go of, an ingest)."""

    def __init__(self, size: int = 1024) -> None:
        self._found: cachetools.LRUCache[Hashable, tuple[int, int]] = cachetools.LRUCache(size)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[int, int] | None:
        """The lowest and highest ts (µs) of the matches found under ``key``, if any."""
        with self._lock:
            return self._found.get(key)

    def put(self, key: Hashable, span: tuple[int, int]) -> None:
        with self._lock:
            self._found[key] = span

    def clear(self) -> None:
        with self._lock:
            self._found.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._found)


class _Kept(NamedTuple):
    """Where the first rows' matches are kept, and the key of each part of one window."""

    memo: FirstMatches
    keys: Sequence[Hashable]


@dataclass(slots=True)
class _Compiler:
    store: Store
    catalog: Catalog
    estimates: Estimates | None
    first_matches: FirstMatches | None = None
    scans: list[ScanInfo] = field(default_factory=list)
    read_s: float = 0.0
    pairs: bool = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Count the time inside as reading data (:attr:`Compiled.read_s`)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.read_s += time.perf_counter() - started

    def compile(self, node: Node) -> pl.LazyFrame:
        match node:
            case Scan():
                return self.scan(node)
            case Filter(input=Scan() as scan, predicate=pred) if pred == NOTHING:
                return _no_rows(scan)
            case Filter(input=Scan() as scan, predicate=pred):
                found = self.lookup(scan, pred)
                frame = self.scan(scan) if found is None else found
                return _kept(frame, pred)
            case Filter(input=inner, predicate=pred):
                return _kept(self.compile(inner), pred)
            case Join():
                return self.join(node)
            case Aggregate(keys=keys, aggregates=aggs, buckets=buckets):
                frame = aggregate_input(node, self.catalog, self.compile, self.join)
                exprs = [_aggregate(a, self.catalog) for a in aggs]
                if buckets is not None:
                    bucket = bucket_of(buckets.col.qualified, buckets)
                    grouped = frame.group_by([bucket, *(k.qualified for k in keys)]).agg(exprs)
                    return fill(grouped, buckets, keys, aggs)
                if keys:
                    return frame.group_by([k.qualified for k in keys]).agg(exprs)
                return frame.select(exprs)
            case Sort(input=inner, keys=keys):
                return _sorted(self.compile(inner), keys)
            case Limit(input=Project(input=Sort() as inner) as projected):
                # A projection keeps every row: the first rows are found below it (the row
                # cap over ``FIND subject``'s columns).
                return self.compile(replace(projected, input=replace(node, input=inner)))
            case Limit(
                input=Sort(input=Filter(input=Scan() as scan, predicate=pred) as kept, keys=keys)
            ) if pred != NOTHING:
                return self.first_rows(scan, pred, keys, node.count, node, self.kept_share(kept))
            case Limit(input=Sort(input=Scan() as scan, keys=keys)):
                return self.first_rows(scan, None, keys, node.count, node, None)
            case Limit(input=inner, count=count):
                return self.compile(inner).head(count)
            case Project(input=inner, columns=cols):
                return self.compile(inner).select([pl.col(src).alias(out) for src, out in cols])
            case RollupAggregate():
                return self.rollup(node)
        raise InternalError("PQL-X005", f"the compiler met an unknown node {type(node).__name__}")

    def join(self, node: Join, semi: Side | None = None) -> pl.LazyFrame:
        """The inner join of ``node``'s inputs, on their join codes when the store has them
        (:meth:`coded_inputs`), else on the values; with ``semi``, only that side's rows that
        have a match (:func:`~pql.execute.joins.semi_side`): no pair is built, and none of the
        other side's rows is gathered."""
        lk, rk = node.keys()
        coded = self.coded_inputs(node)
        if coded is not None:
            left, right = coded
            left_on, right_on = f"{JOIN_CODE}.left", f"{JOIN_CODE}.right"
        else:
            left, right = self.compile(node.left), self.compile(node.right)
            left_on, right_on = lk.qualified, rk.qualified
        if semi == "right":  # keep the right side's rows
            left, right, left_on, right_on = right, left, right_on, left_on
        if semi is not None:
            joined = left.join(
                right.select(right_on), left_on=left_on, right_on=right_on, how="semi"
            )
        else:
            self.pairs = True
            joined = left.join(
                right,
                left_on=left_on,
                right_on=right_on,
                how="inner",
                coalesce=False,
                build_side=_POLARS_BUILD[build_side(node, self.estimates)],
            )
        return joined if coded is None else joined.drop(left_on, right_on, strict=False)

    def kept_share(self, kept: Filter) -> float | None:
        """The share of its scan's rows that ``kept`` is estimated to keep, or ``None`` without
        an estimate (see :meth:`first_rows`)."""
        if self.estimates is None:
            return None
        out, read = self.estimates.find(kept), self.estimates.find(kept.input)
        if out is None or read is None or read.rows <= 0:
            return None
        return min(1.0, out.rows / read.rows)

    def first_rows(
        self,
        scan: Scan,
        pred: Pred | None,
        keys: tuple[SortKey, ...],
        count: int,
        node: Limit,
        share: float | None,
    ) -> pl.LazyFrame:
        """The first ``count`` rows by ``keys`` of ``scan``'s rows that ``pred`` keeps (a
        ``share`` of them, estimated, when known).

        When the first key is the scan's ``ts``, the store keeps the window's rows in ts order
        and the window is large (twice ``count`` rows without ``pred``; with it, four times the
        first run, or ``_MIN_ROWS`` rows when the share kept is not estimated), the
        answer lies among the rows up to the ts of the ``count``-th match (from the end for a
        descending ts): without ``pred``, the ``count``-th row; with it, ever longer runs of rows
        from that end are filtered until they hold ``count`` matches. The first run is
        ``_FIRST_RUN`` rows, or 16 times ``count``, or long enough to hold four times ``count``
        matches at the estimated share, whichever is longest. Then only the rows up to
        that ts are filtered and sorted (found by binary search), not the whole window. The row
        cap of ``FIND subject`` is such a LIMIT (under its projection). Otherwise,
        or when the matches are too few in any run up to a quarter of the window, the plain
        plan: filter, sort, head. Rows kept in several parts (a tenant of several storage
        regions) are cut so part by part, and the parts' first rows sorted together, instead of
        merging the parts' whole windows first."""
        ts = next((c.qualified for c in scan.columns if c.name == "ts"), None)
        if ts is None or keys[0].name != ts or (pred is not None and self.has_lookup(scan, pred)):
            return self.compile(node.input).head(count)
        got = self.read(scan)
        frame = self.shaped(got, scan)
        matching = frame if pred is None else _kept(frame, pred)
        # Without a filter the cut needs no probing run, only a read of the ts column (a view):
        # it pays once the window holds twice the rows asked for. With one, a probe pays where
        # its first run is likely to hold enough matches and is short beside the window.
        run = _first_run_rows(count, share)
        if pred is None:
            least = 2 * count
        elif share is None:
            least = _MIN_ROWS
        else:
            least = min(_MIN_ROWS, 4 * run)
        if not (got.ordered and got.exact and got.single_tenant) or got.rows < least or not count:
            return _sorted(matching, keys).head(count)
        desc = keys[0].descending
        times: list[npt.NDArray[np.int64] | None] = [*got.times] or [None] * max(1, len(got.parts))
        with self.reading():  # the probes read rows
            if got.parts:  # several parts in ts order: the first rows of each, not their merge
                parts = [
                    _Part(self.shaped(replace(got, frame=part), scan), n, at)
                    for (part, n), at in zip(got.parts, times, strict=True)
                ]
            else:
                parts = [_Part(frame, got.rows, times[0])]
            keys_of = self.matches_keys(scan, pred, ts, desc, count, len(parts))
            spans = self.known_spans(keys_of, scan)
            firsts = pl.concat(_firsts(parts, pred, ts, desc, count, run, spans=spans))
            self.keep_spans(keys_of, spans)
        return _sorted(firsts, keys).head(count)

    def matches_keys(
        self, scan: Scan, pred: Pred | None, ts: str, desc: bool, count: int, parts: int
    ) -> _Kept | None:
        """The :class:`FirstMatches` key of each part of ``scan``'s window, with where they are
        kept, or ``None`` when none is (no filter, no memo, or a store that cannot name its
        rows)."""
        kept = self.first_matches
        if pred is None or kept is None or not provides(self.store, RowsKeyStore):
            return None
        told = cast(RowsKeyStore, self.store)
        stored = told.stored_key(scan.tenant, self.catalog[scan.subject])
        if stored is None:
            return None
        keys = [
            (scan.tenant, scan.subject, stored, at, pred, ts, desc, count) for at in range(parts)
        ]
        return _Kept(kept, keys)

    @staticmethod
    def known_spans(found: _Kept | None, scan: Scan) -> dict[int, tuple[int, int]] | None:
        """The kept matches of each part that all lie in ``scan``'s window, by part."""
        if found is None:
            return None
        start, end = micros(scan.start), micros(scan.end)
        spans: dict[int, tuple[int, int]] = {}
        for at, key in enumerate(found.keys):
            span = found.memo.get(key)
            if span is not None and start <= span[0] and span[1] <= end:
                spans[at] = span
        return spans

    @staticmethod
    def keep_spans(found: _Kept | None, spans: dict[int, tuple[int, int]] | None) -> None:
        if found is None or spans is None:
            return
        for at, span in spans.items():
            found.memo.put(found.keys[at], span)

    def coded_inputs(self, node: Join) -> tuple[pl.LazyFrame, pl.LazyFrame] | None:
        """The join's two inputs with their keys' join codes (as ``JOIN_CODE.left`` and
        ``JOIN_CODE.right``), when the store has codes of one domain for both
        (:class:`~pql.storage.base.JoinCodeStore`); ``None``: join the values. Only a scan, or
        a filter over one that reads no lookup, is read with codes."""
        if not provides(self.store, JoinCodeStore):
            return None
        sides = [
            side
            for side in (_scanned(node.left), _scanned(node.right))
            if side is not None
            and side[1] != NOTHING  # that side reads nothing (see _no_rows)
            and (side[1] is None or not self.has_lookup(side[0], side[1]))
        ]
        if len(sides) != 2:
            return None
        store = cast(JoinCodeStore, self.store)
        reads: list[StoredScan] = []
        for (scan, _), key in zip(sides, node.keys(), strict=True):
            request = list(dict.fromkeys([*(c.name for c in scan.columns), "tenant", "ts"]))
            subject = self.catalog[scan.subject]
            window = (scan.tenant, subject, scan.start, scan.end)
            with self.reading():
                got = store.scan_coded(*window, request, key.name)
            if got is None or got.codes is None or (reads and got.codes != reads[0].codes):
                return None  # the sides are read again, as values
            reads.append(got)
        frames: list[pl.LazyFrame] = []
        for got, (scan, pred), key, name in zip(
            reads, sides, node.keys(), ("left", "right"), strict=True
        ):
            self.scans.append(
                ScanInfo(scan.subject, got.partitions, got.rows, got.source, coded=key.qualified)
            )
            if got.parts:  # nothing here needs ts order: the parts side by side, not merged
                got = replace(got, frame=pl.concat([part for part, _ in got.parts]))
            frame = self.shaped(got, scan, f"{JOIN_CODE}.{name}")
            frames.append(frame if pred is None else _kept(frame, pred))
        return frames[0], frames[1]

    def has_lookup(self, node: Scan, pred: Pred) -> bool:
        """Whether ``pred`` would read ``node``'s rows by an id column's lookup."""
        subject = self.catalog[node.subject]
        ids = {f"{subject.name}.{name}" for name in subject.ids}
        return provides(self.store, LookupStore) and key_part(pred, ids) is not None

    def scan(self, node: Scan) -> pl.LazyFrame:
        got = self.read(node)
        if got.parts:  # nothing here needs ts order: the parts side by side, not merged
            got = replace(got, frame=pl.concat([part for part, _ in got.parts]))
        return self.shaped(got, node)

    def read(self, node: Scan) -> StoredScan:
        """The store's rows of ``node``'s window (counted in :attr:`scans`)."""
        subject = self.catalog[node.subject]
        wanted = [c.name for c in node.columns]
        request = list(dict.fromkeys([*wanted, "tenant", "ts"]))
        with self.reading():
            got = self.store.scan(node.tenant, subject, node.start, node.end, request)
        self.scans.append(ScanInfo(node.subject, got.partitions, got.rows, got.source))
        return got

    def shaped(self, got: StoredScan, node: Scan, code: str | None = None) -> pl.LazyFrame:
        """``got``'s rows of ``node``'s tenant and window, as ``node``'s qualified columns (and
        the join codes, named ``code``)."""
        frame = got.frame
        if not got.single_tenant:  # defence in depth for stores that cannot guarantee it (lake)
            frame = frame.filter(pl.col("tenant") == node.tenant)
        if not got.exact:
            frame = frame.filter(pl.col("ts").is_between(_lit_ts(node.start), _lit_ts(node.end)))
        columns = list(_qualified(node.columns))
        if code is not None:
            columns.append(pl.col(JOIN_CODE).alias(code))
        return frame.select(columns)

    def lookup(self, node: Scan, pred: Pred) -> pl.LazyFrame | None:
        """``node``'s rows that ``pred`` may keep, read by an id column's lookup when ``pred``
        pins that column to a few values or null (:func:`key_part`); ``None``: scan them."""
        if not provides(self.store, LookupStore):
            return None
        subject = self.catalog[node.subject]
        ids = {f"{subject.name}.{name}": name for name in subject.ids}
        part = key_part(pred, ids.keys())
        if part is None:
            return None
        column, values, nulls = part
        wanted = [c.name for c in node.columns]
        request = list(dict.fromkeys([*wanted, "tenant", "ts"]))
        with self.reading():
            got = cast(LookupStore, self.store).lookup(
                node.tenant, subject, ids[column], values, nulls, node.start, node.end, request
            )
        if got is None:
            return None
        self.scans.append(ScanInfo(node.subject, got.partitions, got.rows, got.source, column))
        return self.shaped(got, node)

    def rollup(self, node: RollupAggregate) -> pl.LazyFrame:
        """Rollup rows of the whole days and raw rows of the edge days, aggregated together."""
        if not provides(self.store, RollupStore):
            raise InternalError("PQL-X060", "a rollup plan reached a store that keeps no rollups")
        rollups = cast(RollupStore, self.store)
        with self.reading():
            got = rollups.rollup(node.tenant, node.subject, node.first_day, node.last_day)
        self.scans.append(ScanInfo(node.subject, got.days, got.rows, got.source))
        where = None if node.predicate is None else predicate(node.predicate)
        edges = [self.compile(edge) for edge in node.edges]
        frame = aggregate_rollup(node, got.frame, where, edges)
        if node.buckets is not None:
            return fill(frame, node.buckets, node.keys, node.aggregates)
        return frame


def key_part(pred: Pred, columns: Collection[str]) -> tuple[str, frozenset[str], bool] | None:
    """What ``pred`` needs of one of ``columns`` (qualified string columns): ``(column, values,
    nulls)`` when every row ``pred`` keeps holds one of ``values`` there, or null if ``nulls``.

    ``col = v``, ``col IN (...)``, ``col IS NULL``, an OR of those on one column, or an AND with
    one of those among its operands (the one with the fewest values); anything else is ``None``.
    NOT and negated forms never narrow to a few values.
    """
    match pred:
        case Cmp(col=col, op=CompareOp.EQ, value=Const(value=str() as value)):
            if col.qualified in columns:
                return col.qualified, frozenset((value,)), False
        case In(col=col, values=items, negated=False):
            if col.qualified in columns and all(isinstance(v.value, str) for v in items):
                return col.qualified, frozenset(str(v.value) for v in items), False
        case Null(col=col, negated=False):
            if col.qualified in columns:
                return col.qualified, frozenset(), True
        case AnyOf(operands=ops):
            parts = [key_part(op, columns) for op in ops]
            names = {p[0] for p in parts if p is not None}
            if None in parts or len(names) != 1:
                return None
            found = [p for p in parts if p is not None]
            return (
                names.pop(),
                frozenset().union(*(p[1] for p in found)),
                any(p[2] for p in found),
            )
        case AllOf(operands=ops):
            found = [p for op in ops if (p := key_part(op, columns)) is not None]
            if found:
                return min(found, key=lambda p: len(p[1]) + (1 if p[2] else 0))
    return None


# A filtered LIMIT over rows in ts order probes runs of rows from the first run of _FIRST_RUN rows
# (16 x the limit, or four times the rows expected to hold the limit's matches, when more), in
# windows of four times that run; without an estimate of the share its filter keeps, only in
# windows of at least _MIN_ROWS rows (below, a probe's own cost may outweigh what it spares).
_MIN_ROWS = 200_000
_FIRST_RUN = 8192
_NEVER = 2**62


def _first_run_rows(count: int, share: float | None) -> int:
    """The first run of rows a filtered LIMIT of ``count`` probes, its filter keeping an
    estimated ``share`` of the rows (``None``: not estimated)."""
    run = max(16 * count, _FIRST_RUN)
    if share is None:
        return run
    # Nothing expected to match: no run is long enough (the window's rows are fewer).
    return max(run, math.ceil(4 * count / share)) if share > 0 else _NEVER


@dataclass(frozen=True, slots=True)
class _Part:
    """Rows in ``ts`` order: a window, or one part of it, for :func:`_firsts`."""

    frame: pl.LazyFrame
    rows: int
    times: npt.NDArray[np.int64] | None
    """Its ``ts`` as µs since the epoch, when the store gave them (else read when needed)."""

    def ts_values(self, ts: str) -> npt.NDArray[np.int64]:
        return self.times if self.times is not None else _ts_values(self.frame, ts)


def _firsts(
    parts: Sequence[_Part],
    pred: Pred | None,
    ts: str,
    descending: bool,
    count: int,
    first_run: int,
    *,
    spans: dict[int, tuple[int, int]] | None = None,
) -> list[pl.LazyFrame]:
    """Of each part, the rows that ``pred`` keeps up to the ``ts`` of the ``count``-th of them
    from the start (the end, ``descending``), ties included: they hold the part's first
    ``count`` by any keys that start with ``ts``. Without ``pred`` that ts is the ``count``-th
    row's. Otherwise ever longer runs from that end, ``first_run`` rows first, are filtered until
    one holds ``count`` matches (the parts' runs of one length in one collect); all of a part's
    matches when no run up to a quarter of it holds enough. The rows up to that ts are found by
    binary search (NumPy, on the ts as microseconds: a Polars search with a zoned literal costs
    more than the rest of the probe).

    ``spans`` holds, by part, the lowest and highest ts (µs) of ``count`` matches known to lie
    in it (:class:`FirstMatches`): such a part is cut at them without a probe. The probes add
    what they find to it."""
    if pred is None:
        return [_first_of(part, ts, descending, count) for part in parts]
    out: dict[int, pl.LazyFrame] = {}
    pending = list(range(len(parts)))
    for i, (low, high) in (spans or {}).items():
        out[i] = _kept(_up_to(parts[i], ts, low if descending else high, descending), pred)
        pending.remove(i)
    run = first_run
    while pending:
        probing = [i for i in pending if run * 4 <= parts[i].rows]
        for i in pending:  # a run longer than a quarter saves too little
            if i not in probing:
                out[i] = _kept(parts[i].frame, pred)
        if not probing:
            break
        edges = pl.collect_all(
            [_probe(parts[i].frame, pred, ts, descending, count, run) for i in probing]
        )
        pending = []
        for i, found in zip(probing, edges, strict=True):
            if found.height < count:
                pending.append(i)
                continue
            edge = _micros(found.get_column(ts))
            low, high = int(edge[0]), int(edge[-1])
            out[i] = _kept(_up_to(parts[i], ts, low if descending else high, descending), pred)
            if spans is not None:
                spans[i] = (low, high)
        run *= 8
    return [out[i] for i in range(len(parts))]


def _first_of(part: _Part, ts: str, descending: bool, count: int) -> pl.LazyFrame:
    """``part``'s rows up to the ts of its ``count``-th row from the start (the end,
    ``descending``), ties included."""
    if part.rows <= count:
        return part.frame
    values = part.ts_values(ts)
    return _up_to(part, ts, values[-count if descending else count - 1], descending)


def _probe(
    frame: pl.LazyFrame, pred: Pred, ts: str, descending: bool, count: int, run: int
) -> pl.LazyFrame:
    """The ts of the first ``count`` rows that ``pred`` keeps among ``run`` rows from the start
    of ``frame`` (from its end, ``descending``)."""
    edges = _kept(frame.tail(run) if descending else frame.head(run), pred).select(ts)
    return edges.tail(count) if descending else edges.head(count)


def _ts_values(frame: pl.LazyFrame, ts: str) -> npt.NDArray[np.int64]:
    """``frame``'s ``ts`` column as µs since the epoch (never null: no copy for one chunk)."""
    return _micros(frame.select(ts).collect().get_column(ts))


def _micros(column: pl.Series) -> npt.NDArray[np.int64]:
    """Timestamps (never null) as µs since the epoch, through NumPy: a Polars cast or
    ``to_physical`` runs a query of its own (40 µs for three values); a µs column of one chunk
    is not copied."""
    return column.to_numpy().astype("datetime64[us]", copy=False).view(np.int64)


def _up_to(part: _Part, ts: str, edge: int, descending: bool) -> pl.LazyFrame:
    """The rows of ``part`` from its start up to ts ``edge`` (µs since the epoch; from its end
    down to it, ``descending``), ties included."""
    values = part.ts_values(ts)
    cut = int(np.searchsorted(values, edge, side="left" if descending else "right"))
    return part.frame.slice(cut) if descending else part.frame.head(cut)


def _no_rows(node: Scan) -> pl.LazyFrame:
    """``node``'s columns with no row, read from nowhere: what a filter that keeps nothing
    (``NOTHING``: another tenant's name, folded when planning) leaves of a scan, which then
    reads none of the tenant's rows (stores keep each column as its catalog type)."""
    return pl.LazyFrame(schema={c.qualified: c.type.polars for c in node.columns})


def _kept(frame: pl.LazyFrame, pred: Pred) -> pl.LazyFrame:
    """The rows of ``frame`` that ``pred`` keeps: for ``NOTHING`` (another tenant's name, folded
    when planning) its columns with no row, without a filter run over every row it reads."""
    return frame.clear() if pred == NOTHING else frame.filter(_filter_expr(pred))


def _sorted(frame: pl.LazyFrame, keys: tuple[SortKey, ...]) -> pl.LazyFrame:
    return frame.sort(
        [k.name for k in keys], descending=[k.descending for k in keys], nulls_last=True
    )


_POLARS_BUILD: dict[str, Literal["auto", "prefer_left", "prefer_right"]] = {
    "left": "prefer_left",
    "right": "prefer_right",
    "auto": "auto",
}


@functools.lru_cache(maxsize=4096)
def _lit_ts(value: Any) -> pl.Expr:
    # A timezone-aware literal costs Polars a Series and a collect (about 0.2 ms); an expression
    # is an immutable value, so the same instant's is built once.
    return pl.lit(value, dtype=pl.Datetime("us", "UTC"))


def _const(c: Const) -> pl.Expr:
    if c.type is DataType.TIMESTAMP:
        return _lit_ts(c.value)
    return pl.lit(c.value)


_OPS: dict[CompareOp, Callable[[Any, Any], Any]] = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.LT: operator.lt,
    CompareOp.LE: operator.le,
    CompareOp.GT: operator.gt,
    CompareOp.GE: operator.ge,
}


@functools.lru_cache(maxsize=1024)
def _filter_expr(pred: Pred) -> pl.Expr:
    """:func:`predicate`, kept for the next query of the same filter (expressions are immutable
    values; building one takes longer than hashing the predicate to find it)."""
    return predicate(pred)


@functools.lru_cache(maxsize=1024)
def _qualified(columns: tuple[Col, ...]) -> tuple[pl.Expr, ...]:
    """Each stored column of ``columns`` renamed to its qualified name, kept as
    :func:`_filter_expr` keeps filters."""
    return tuple(pl.col(c.name).alias(c.qualified) for c in columns)


def predicate(pred: Pred) -> pl.Expr:
    """A bound predicate as a Polars expression with SQL's three-valued logic."""
    match pred:
        case Cmp(col=col, op=op, value=value):
            result: pl.Expr = _OPS[op](pl.col(col.qualified), _const(value))
            return result
        case In(col=col, values=values, negated=negated):
            column = pl.col(col.qualified)
            if col.type.numeric and any(v.type is DataType.FLOAT for v in values):
                column = column.cast(pl.Float64)
                items: list[Any] = [float(v.value) for v in values]  # type: ignore[arg-type]
                series = pl.Series(items, dtype=pl.Float64)
            else:
                items = [v.value for v in values]
                series = pl.Series(items, dtype=col.type.polars)
            member = column.is_in(series.implode())
            return ~member if negated else member
        case Null(col=col, negated=negated):
            return (
                pl.col(col.qualified).is_not_null() if negated else pl.col(col.qualified).is_null()
            )
        case Negate(operand=inner):
            return ~predicate(inner)
        case AllOf(operands=ops):
            return reduce(operator.and_, (predicate(o) for o in ops))
        case AnyOf(operands=()):  # NOTHING: no row
            return pl.lit(False)
        case AnyOf(operands=ops):
            return reduce(operator.or_, (predicate(o) for o in ops))
    raise InternalError("PQL-X006", f"the compiler met an unknown predicate {type(pred).__name__}")


def _aggregate(spec: AggSpec, catalog: Catalog) -> pl.Expr:
    if spec.col is None or counts_rows(spec, catalog):
        return pl.len().cast(pl.Int64).alias(spec.name)
    col = pl.col(spec.col.qualified)
    match spec.func:
        case AggFunc.COUNT:
            expr = col.count().cast(pl.Int64)
        case AggFunc.SUM:
            # SQL: the sum of no values is NULL, not 0.
            expr = pl.when(col.count() > 0).then(col.sum()).otherwise(None)
        case AggFunc.AVG:
            expr = col.cast(pl.Float64).mean()
        case AggFunc.MIN:
            expr = col.min()
        case AggFunc.MAX:
            expr = col.max()
    return expr.alias(spec.name)


def _scanned(node: Node) -> tuple[Scan, Pred | None] | None:
    """``node`` as a scan and the filter over it (``None``: no filter); ``None`` for any other
    node."""
    match node:
        case Scan():
            return node, None
        case Filter(input=Scan() as scan, predicate=pred):
            return scan, pred
    return None
