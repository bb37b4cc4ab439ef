"""What the store offers the optimizer's rules: the context every rule takes.

It sits below :mod:`pql.plan.optimize` and its rules (:mod:`pql.plan.rollups`), so that each of
them imports it and none imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pql.stats import StatsProvider
from pql.storage.rollups import RollupSpec

__all__ = ["NO_CONTEXT", "OptimizeContext"]


@dataclass(frozen=True, slots=True)
class OptimizeContext:
    """What the store offers the rules: today, the rollups it keeps (subject -> spec).

    With ``stats``, an aggregate reads the rollup only when its window holds at least
    ``rollup_min_rows`` rows (fewer are as fast to read: see :data:`pql.plan.rollups.MIN_ROWS`);
    without, whenever the rollup answers it exactly.
    """

    rollups: Mapping[str, RollupSpec] = field(default_factory=dict)
    stats: StatsProvider | None = None
    rollup_min_rows: int = 0


NO_CONTEXT = OptimizeContext()
"""A store that offers nothing beyond scans."""
