"""Storage: validating, deduplicating and keeping ingested rows, and scanning them back.

:class:`Lake` keeps append-only Parquet files in a local directory (the embedded default);
:class:`MemoryStore` keeps frames in memory. Both implement :class:`Store` and validate input
with :func:`validate` before anything is stored.
"""

from pql.storage.base import IngestReport, PartitionStats, Scan, Store
from pql.storage.lake import Lake
from pql.storage.memory import MemoryStore
from pql.storage.validate import validate

__all__ = ["IngestReport", "Lake", "MemoryStore", "PartitionStats", "Scan", "Store", "validate"]
