"""Join codes: a join key's values as 64-bit integers, so that a join compares integers.

A join of receipts and decisions on ``executionId`` compares strings. On the largest tenant of
10M demo receipts, a count of the 7-day join took 20 ms on the strings and 14 ms on 64-bit
integers, and of the 30-day join 128 ms and 83 ms (``python -m benchmarks.join_codes``). An
index therefore keeps, for each column a join may use (a subject's key that another subject
references, and those references), each row's 64-bit hash as its **code**.

Two different values may share a hash, so codes are kept only for a **domain** where that was
ruled out: one tenant's values of one column name over all its subjects (``executionId`` of
its receipts and its decisions), counted when the codes are made: as many distinct codes as
distinct values means no two values share one. Each proof gets a new domain number; two
scans are joined on their codes only when both carry the same one, so codes made before the
rows changed (an ingest) are never compared with codes made after it.

Counting distinct strings takes the query engine's threads for about 2 s on that tenant, which
a restart cannot afford beside the queries it answers at once. So an index snapshot's lookups
file says which columns were proved for the data it was written at
(:mod:`pql.storage.snapshots`); a tenant mapped from snapshots that all say so gets its codes
(hashing only) without counting again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from pql.catalog import Catalog

__all__ = ["HASH_SEED", "JoinCodes", "code_values", "join_columns", "prove"]

HASH_SEED = 0x5051_4C00
"""The seed of the codes, and of the hashes a lookup sorts
(:class:`~pql.storage.memory.Lookup`). Part of the snapshot format: lookups saved with one seed
are useless with another, and so is a saved proof that codes are distinct
(:data:`pql.storage.snapshots.FORMAT` changes with it)."""

_DOMAINS = itertools.count(1)
"""Numbers the domains (``next`` on it is atomic)."""


@dataclass(frozen=True, slots=True)
class JoinCodes:
    """One column's codes, a row each (null where the value is null), and their domain."""

    domain: int
    values: pl.Series

    @property
    def nbytes(self) -> int:
        return int(self.values.estimated_size())


def code_values(values: pl.Series) -> pl.Series:
    """Each of ``values``' 64-bit hash, null where the value is null."""
    frame = pl.DataFrame({"v": values})
    value = pl.col("v")
    hashed = pl.when(value.is_null()).then(None).otherwise(value.hash(seed=HASH_SEED))
    return frame.select(hashed.alias(values.name)).to_series()


def join_columns(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """The columns of each subject a join may use: a key that another subject references, and
    the references (``{"receipts": ("executionId",), "decisions": ("executionId",)}`` for the
    built-in subjects)."""
    referenced = {name for subject in catalog for name in subject.references}
    return {
        subject.name: tuple(name for name in subject.ids if name in referenced)
        for subject in catalog
        if any(name in referenced for name in subject.ids)
    }


def prove(
    values: Sequence[pl.Series], codes: Sequence[pl.Series], *, proved: bool = False
) -> int | None:
    """A new domain for ``codes`` (each the codes of the matching ``values``) when no two
    distinct values among all of ``values`` share a code; ``None`` when two do. ``proved``:
    that was counted before, for these very values (a snapshot says so): nothing is counted."""
    if proved:
        return next(_DOMAINS)
    distinct = pl.concat(values, rechunk=False).n_unique()
    if pl.concat(codes, rechunk=False).n_unique() != distinct:
        return None
    return next(_DOMAINS)
