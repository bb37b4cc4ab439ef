"""Storage: validating, deduplicating and keeping ingested rows, and scanning them back.

:class:`Lake` keeps append-only Parquet files in a local directory (the embedded default);
:class:`S3Lake` keeps them as locked objects in S3-compatible buckets;
:class:`MemoryStore` keeps frames in memory; :class:`IndexedLake` serves a lake's scans from
per-tenant memory indexes. Both implement :class:`Store` and validate input
with :func:`validate` before anything is stored.
"""

from pql.storage.base import IngestReport, PartitionStats, Scan, Store
from pql.storage.indexed import IndexedLake
from pql.storage.lake import Lake
from pql.storage.memory import MemoryStore
from pql.storage.s3 import S3Lake
from pql.storage.validate import validate

__all__ = [
    "IndexedLake",
    "IngestReport",
    "Lake",
    "MemoryStore",
    "PartitionStats",
    "S3Lake",
    "Scan",
    "Store",
    "validate",
]
