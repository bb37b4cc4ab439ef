"""An example adapter: the ``widgets`` subject and the ``pql widgets count`` command."""

from __future__ import annotations

import argparse
from typing import Any

from pql.adapters import hookimpl
from pql.catalog import Column, DataType, Subject

WIDGETS = Subject(
    name="widgets",
    key="widgetId",
    order=("ts", "widgetId"),
    doc="Widgets made by a workflow.",
    columns=(
        Column("widgetId", DataType.STRING, nullable=False, required=True),
        Column("tenant", DataType.STRING, nullable=False, required=True),
        Column("ts", DataType.TIMESTAMP, nullable=False, required=True),
        Column("size", DataType.INT),
    ),
)


@hookimpl
def pql_subjects() -> list[Subject]:
    return [WIDGETS]


@hookimpl
def pql_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("widgets", help="widgets made by workflows")
    commands = group.add_subparsers(dest="widgets_command", required=True)
    count = commands.add_parser("count", help="count a tenant's widgets")
    count.add_argument("--data", required=True)
    count.add_argument("--tenant", required=True)
    count.add_argument("--now", required=True)
    count.set_defaults(handler=_count)


def _count(args: argparse.Namespace) -> int:
    from pql.cli import engine_for

    engine = engine_for(args)
    result = engine.query(
        "FIND COUNT(*) AS n WHERE widgets.size >= 0 SINCE 30d", tenant=args.tenant, now=args.now
    )
    print(f"widgets: {result.df.item()}")
    return 0
