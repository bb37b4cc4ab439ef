"""The ``pql serve`` and ``pql tokens`` subcommands.

::

    pql serve  --data DIR [--host 127.0.0.1] [--port 8080] [--keys DIR] [--deadline-ms N]
               [--max-concurrent N] [--max-queued N] [--tenant-max-concurrent N]
               [--tenant-max-queued N] [--max-body-bytes N] [--access-log FILE|-]
    pql tokens create --data DIR --tenant T --scope SCOPE [--scope SCOPE ...] [--label TEXT]
    pql tokens list   --data DIR [--tenant T]
    pql tokens revoke --data DIR ID

Only ``serve`` needs the server extra; ``tokens`` works with the core install.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from pql.errors import InputError
from pql.server.tokens import SCOPES, TokenStore

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``tokens`` to the ``pql`` parser."""
    p = subparsers.add_parser("serve", help="answer PQL over HTTP (pip install 'pql[server]')")
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, metavar="N")
    p.add_argument("--keys", metavar="DIR", help="trusted public keys for saved queries")
    p.add_argument("--deadline-ms", type=int, metavar="N", help="lower Limits.deadline_ms")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="lower Limits.max_concurrent")
    p.add_argument("--max-queued", type=int, metavar="N", help="lower Limits.max_queued")
    p.add_argument(
        "--tenant-max-concurrent", type=int, metavar="N", help="queries one tenant runs at once"
    )
    p.add_argument("--tenant-max-queued", type=int, metavar="N", help="queries one tenant queues")
    p.add_argument("--max-body-bytes", type=int, metavar="N", help="largest request body")
    p.add_argument(
        "--access-log", default="-", metavar="FILE", help="JSON lines, one per request (-: stderr)"
    )
    p.set_defaults(handler=cmd_serve)

    tokens = subparsers.add_parser("tokens", help="create, list and revoke HTTP bearer tokens")
    sub = tokens.add_subparsers(dest="tokens_command", required=True, parser_class=type(tokens))
    p = sub.add_parser("create", help="a new token for one tenant (printed once)")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--tenant", required=True, metavar="T")
    p.add_argument(
        "--scope", action="append", required=True, choices=SCOPES, help="repeat for several"
    )
    p.add_argument("--label", default="", metavar="TEXT", help="who or what holds it")
    p.set_defaults(handler=cmd_tokens_create)
    p = sub.add_parser("list", help="the tokens (ids, tenants, scopes; never the secrets)")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--tenant", metavar="T")
    p.set_defaults(handler=cmd_tokens_list)
    p = sub.add_parser("revoke", help="revoke a token; the server refuses it at once")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_tokens_revoke)


def _data_dir(path: str) -> Path:
    data = Path(path)
    if not data.is_dir():
        raise InputError(
            "PQL-E071",
            f"the data directory {path!r} does not exist",
            hints=("create it with `pql demo --data DIR` or `pql ingest --data DIR ...`",),
        )
    return data


def cmd_tokens_create(args: argparse.Namespace) -> int:
    store = TokenStore.in_data_dir(_data_dir(args.data))
    record, token = store.create(args.tenant, args.scope, args.label)
    print(f"id:     {record.id}")
    print(f"tenant: {record.tenant}")
    print(f"scopes: {' '.join(record.scopes)}")
    print(f"token:  {token}")
    print("(shown once: only its digest is stored)", file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    store = TokenStore.in_data_dir(_data_dir(args.data))
    print("id\ttenant\tscopes\tstatus\tcreated\tlabel")
    for r in store.records():
        if args.tenant is None or r.tenant == args.tenant:
            scopes = ",".join(r.scopes)
            print(f"{r.id}\t{r.tenant}\t{scopes}\t{r.status}\t{r.created_at}\t{r.label}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    record = TokenStore.in_data_dir(_data_dir(args.data)).revoke(args.id)
    print(f"revoked token {record.id} of tenant {record.tenant!r}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pql.server import require

    require()
    import uvicorn

    from pql.engine import Engine
    from pql.limits import DEFAULT_LIMITS, TenantLimits
    from pql.saved import SavedStore
    from pql.server.app import DEFAULT_MAX_BODY, create_app

    data = _data_dir(args.data)
    for flag in (
        "port",
        "deadline_ms",
        "max_concurrent",
        "max_body_bytes",
        "tenant_max_concurrent",
    ):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise InputError("PQL-E311", f"--{flag.replace('_', '-')} must be positive")
    for flag in ("max_queued", "tenant_max_queued"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            raise InputError("PQL-E311", f"--{flag.replace('_', '-')} cannot be negative")
    lowered = {
        name: getattr(args, name)
        for name in ("deadline_ms", "max_concurrent", "max_queued")
        if getattr(args, name) is not None
    }
    limits = DEFAULT_LIMITS.tighten(replace(DEFAULT_LIMITS, **lowered))
    engine = Engine(  # the server preloads every tenant at start
        data, limits=limits, adapters=getattr(args, "adapters", None)
    )
    share = None
    if args.tenant_max_concurrent is not None or args.tenant_max_queued is not None:
        share = TenantLimits(
            max_concurrent=args.tenant_max_concurrent, max_queued=args.tenant_max_queued
        )
    _access_log(args.access_log)
    app = create_app(
        engine,
        TokenStore.in_data_dir(data),
        keys=Path(args.keys) if args.keys else None,
        saved=SavedStore.in_data_dir(data),
        max_body_bytes=args.max_body_bytes or DEFAULT_MAX_BODY,
        tenant_share=share,
    )
    print(f"pql serving {data} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    return 0


def _access_log(target: str) -> None:
    """Access lines as bare JSON (one object a line) to stderr or a file.

    The event loop only puts each line on a queue; a listener thread writes it, so a slow disk
    or terminal never holds up the requests. The listener drains the queue at exit.
    """
    import atexit
    import queue
    from logging.handlers import QueueHandler, QueueListener

    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(lines, handler)
    listener.start()
    atexit.register(listener.stop)
    log = logging.getLogger("pql.server.access")
    log.addHandler(QueueHandler(lines))
    log.setLevel(logging.INFO)
    log.propagate = False
    errors = logging.getLogger("pql.server")
    errors.addHandler(logging.StreamHandler(sys.stderr))
