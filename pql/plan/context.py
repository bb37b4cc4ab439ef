"""What the store offers the optimizer's rules: the context every rule takes.

It sits below :mod:`pql.plan.optimize` and its rules (:mod:`pql.plan.rollups`), so that each of
them imports it and none imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pql.plan.nodes import Node
from pql.stats import StatsProvider
from pql.storage.rollups import RollupSpec

__all__ = ["NO_CONTEXT", "OptimizeContext"]


@dataclass(frozen=True, slots=True)
class OptimizeContext:
    """What the store offers the rules: today, the rollups it keeps (subject -> spec).

    With ``stats``, an aggregate reads the rollup only when the raw plan would bring it at least
    ``rollup_min_rows`` rows (fewer are as fast to aggregate: see
    :data:`pql.plan.rollups.MIN_ROWS`); without, whenever the rollup answers it exactly.
    ``memo`` keeps that decision per aggregate for the query's life: the engine optimizes a plan
    twice (for the cost budget, then to run it) with one context.
    """

    rollups: Mapping[str, RollupSpec] = field(default_factory=dict)
    stats: StatsProvider | None = None
    rollup_min_rows: int = 0
    memo: dict[Node, bool] = field(default_factory=dict, compare=False, repr=False)


NO_CONTEXT = OptimizeContext()
"""A store that offers nothing beyond scans."""
