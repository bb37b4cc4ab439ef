"""Analyzed query -> logical plan, restricted to one tenant and one time window."""

from __future__ import annotations

from datetime import datetime

from pql.analyze import Analyzed
from pql.catalog import Subject
from pql.plan.expr import BUCKET, Col
from pql.plan.nodes import Aggregate, Filter, Join, Limit, Node, Project, Scan, Sort, SortKey

__all__ = ["build"]


def build(an: Analyzed, *, tenant: str, start: datetime, end: datetime) -> Node:
    """The logical plan of ``an`` for ``tenant`` over ``start <= ts <= end``.

    Every scan carries the tenant: there is no way to build a plan that reads all tenants.
    """
    q = an.query
    since_span = q.since.span if q.since is not None else None

    def scan(subject: Subject) -> Scan:
        cols = tuple(Col(subject.name, c.name, c.type) for c in subject.columns)
        return Scan(subject.name, tenant, start, end, cols, span=since_span)

    node: Node = scan(an.base)
    if an.join is not None and q.join is not None:
        joined = an.subjects[1]
        left, right = an.join
        if right.subject == an.base.name and left.subject != an.base.name:
            left, right = right, left
        node = Join(node, scan(joined), left, right, span=q.join.span)
    for subject, span in an.unjoined:
        # No condition: a Cartesian product, which the safety phase refuses.
        node = Join(node, scan(subject), None, None, span=span)
    if an.where is not None:
        node = Filter(node, an.where, span=an.where.span)

    keys = [SortKey(k.name, k.descending) for k in an.order_by]
    if an.aggregates:
        buckets = None if an.timeseries is None else an.timeseries.over(start, end)
        node = Aggregate(node, an.group_by, an.aggregates, buckets, span=q.span)
        defaults = [SortKey(c.qualified) for c in an.group_by]
        if buckets is not None:  # a time series is ordered by bucket first
            defaults.insert(0, SortKey(BUCKET))
    else:
        defaults = [SortKey(f"{an.base.name}.{name}") for name in an.base.order]
        for subject in an.subjects[1:]:
            defaults.append(SortKey(f"{subject.name}.{subject.key}"))
    taken = {k.name for k in keys}
    keys += [k for k in defaults if k.name not in taken]
    if keys:
        node = Sort(node, tuple(keys))
    if q.limit is not None:
        node = Limit(node, q.limit, span=q.limit_span)
    return Project(node, an.outputs)
