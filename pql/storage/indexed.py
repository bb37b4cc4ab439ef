"""A lake with an in-memory index: each tenant's rows, sorted by ``ts``, loaded on first use.

For long-lived engines (services, notebooks, the load harness): the first query of a tenant reads
that tenant's buckets once; later windows are binary searches and zero-copy slices of memory.
Ingest writes through to the lake and drops the touched tenants' indexes, which the next query
reloads, so an index is never older than the data version it serves.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, DataType, Subject
from pql.errors import PQLError
from pql.storage.base import IngestReport, PartitionStats, Scan
from pql.storage.lake import Lake
from pql.storage.memory import MemoryStore
from pql.storage.rollups import RollupRead, RollupSpec, rollup_specs

__all__ = ["IndexedLake"]

_ALL_START = datetime(1970, 1, 1, tzinfo=UTC)
_ALL_END = datetime(9999, 12, 31, tzinfo=UTC)


class IndexedLake:
    """A :class:`~pql.storage.lake.Lake` whose scans are served from per-tenant memory indexes.

    With ``rollups`` (the default) each index also keeps per-day rollups
    (:mod:`pql.storage.rollups`), built when the index is loaded.
    """

    def __init__(self, lake: Lake, catalog: Catalog, *, rollups: bool = True) -> None:
        self.lake = lake
        self._catalog = catalog
        self._rollups = rollups
        self._indexes: dict[str, tuple[int, MemoryStore]] = {}
        self._lock = threading.Lock()

    def ingest(self, subject: Subject, data: pl.DataFrame | pa.Table) -> IngestReport:
        report = self.lake.ingest(subject, data)
        with self._lock:
            for tenant in report.tenants:
                self._indexes.pop(tenant, None)
        return report

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        return self._index(tenant).scan(tenant, subject, start, end, columns)

    def rollup_specs(self) -> dict[str, RollupSpec]:
        """What the indexes roll up, by subject (nothing with ``rollups=False``)."""
        return rollup_specs(self._catalog) if self._rollups else {}

    def rollup(self, tenant: str, subject: str, first: date, last: date) -> RollupRead:
        """``tenant``'s rollup rows of ``subject`` for the whole days ``first`` to ``last``."""
        return self._index(tenant).rollup(tenant, subject, first, last)

    def load(self, tenant: str) -> None:
        """Build ``tenant``'s index now (for warming at start-up)."""
        self._index(tenant)

    def loaded(self) -> tuple[str, ...]:
        """The tenants whose index is in memory."""
        return tuple(self._indexes)

    def version(self, tenant: str) -> int:
        return self.lake.version(tenant)

    def tenants(self) -> tuple[str, ...]:
        return self.lake.tenants()

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        return self.lake.extras(tenant)

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        return self.lake.stats(tenant, subject)

    def storage_region(self, tenant: str, region: str) -> str:
        return self.lake.storage_region(tenant, region)

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        return self.lake.diagnose(tenant, exc)

    def _index(self, tenant: str) -> MemoryStore:
        version = self.lake.version(tenant)
        cached = self._indexes.get(tenant)
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._lock:
            cached = self._indexes.get(tenant)
            if cached is not None and cached[0] == version:
                return cached[1]
            store = MemoryStore(self._catalog, rollups=self._rollups)
            for subject in self._catalog:
                got = self.lake.scan(tenant, subject, _ALL_START, _ALL_END)
                frame = got.frame.collect()
                if frame.height:
                    store.ingest(subject, frame)
            self._indexes[tenant] = (version, store)
            return store
