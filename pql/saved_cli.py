"""The ``pql keys`` and ``pql saved`` subcommands: keys, and signed saved queries.

::

    pql keys generate --out DIR [--kid ID] [--not-before ISO] [--not-after ISO]
    pql keys list     --keys DIR [--now ISO]
    pql keys revoke   --keys DIR [--reason TEXT] KID
    pql saved sign    --data DIR --key FILE.key --tenant T --name NAME [--expires ISO]
                      [--not-before ISO] [--kid ID] [--author A] [--param-type k=TYPE ...]
                      [--now ISO] "QUERY"
    pql saved export  --data DIR --tenant T NAME
    pql saved import  --data DIR --keys DIR FILE.json
    pql saved verify  --data DIR --keys DIR --tenant T NAME
    pql saved run     --data DIR --keys DIR --tenant T NAME [--param k=v ...] [--now ISO]
                      [--format table|json|csv]
    pql saved list    --data DIR --tenant T

:func:`register` adds them to the ``pql`` parser; errors are rendered by :func:`pql.cli.main`
(a signature or authorization failure exits 4 with its ``PQL-A…`` code).

Signatures and keys are judged on the wall clock. ``saved run --now`` sets only the end of the
query's window; ``import`` and ``verify`` take no clock at all.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pql.cli_output import print_result
from pql.engine import Engine
from pql.errors import InputError, PQLError
from pql.plan.safety import check_tenant_name
from pql.saved import MAX_DOCUMENT, SavedQuery, SavedStore, sign_query
from pql.signing import KeyRing, SigningKey, format_time, to_utc, write_sidecar

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``keys`` and ``saved`` (each with its own subcommands) to the ``pql`` parser."""
    keys = subparsers.add_parser("keys", help="generate, list and revoke signing keys")
    _keys_commands(keys.add_subparsers(dest="keys_command", required=True, parser_class=type(keys)))
    saved = subparsers.add_parser("saved", help="sign, share and run signed saved queries")
    _saved_commands(
        saved.add_subparsers(dest="saved_command", required=True, parser_class=type(saved))
    )


# ---------------------------------------------------------------------------------------------
# Parsers


def _keys_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("generate", help="write a new key pair: DIR/ID.key (0600) and DIR/ID.pub")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--kid", metavar="ID", help="the key id (default: date and random digits)")
    p.add_argument("--not-before", metavar="ISO-8601", help="the key is valid from then")
    p.add_argument("--not-after", metavar="ISO-8601", help="the key is valid until then")
    p.set_defaults(handler=cmd_keys_generate)

    p = sub.add_parser("list", help="the keys of a key directory and their status")
    p.add_argument("--keys", required=True, metavar="DIR")
    p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")
    p.set_defaults(handler=cmd_keys_list)

    p = sub.add_parser("revoke", help="revoke a key: nothing it signed runs any more")
    p.add_argument("--keys", required=True, metavar="DIR")
    p.add_argument("--reason", metavar="TEXT")
    p.add_argument("kid", metavar="KID")
    p.set_defaults(handler=cmd_keys_revoke)


def _saved_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("sign", help="sign a query and store it in the data directory")
    _data(p)
    p.add_argument("--key", required=True, metavar="FILE.key", help="the private key")
    p.add_argument("--kid", metavar="ID", help="the key id (default: the key file's stem)")
    p.add_argument("--tenant", required=True, metavar="T")
    p.add_argument("--name", required=True, metavar="NAME")
    p.add_argument("--author", metavar="A", help="who signs (default: the login name)")
    p.add_argument("--expires", metavar="ISO-8601", help="the query stops running then")
    p.add_argument("--not-before", metavar="ISO-8601", help="the query runs from then")
    p.add_argument(
        "--param-type",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="declare $NAME as string, int, float, bool or timestamp (default: inferred)",
    )
    p.add_argument("--now", metavar="ISO-8601", help="the issued-at time (default: now)")
    p.add_argument("query", metavar="QUERY")
    p.set_defaults(handler=cmd_saved_sign)

    p = sub.add_parser("export", help="print a saved query's signed JSON document")
    _data(p, tenant=True)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_saved_export)

    p = sub.add_parser("import", help="verify a signed JSON document and store it")
    _data(p, keys=True)
    p.add_argument("file", metavar="FILE.json", help="the document ('-' reads stdin)")
    p.set_defaults(handler=cmd_saved_import)

    p = sub.add_parser("verify", help="verify a stored saved query")
    _data(p, tenant=True, keys=True)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_saved_verify)

    p = sub.add_parser("run", help="verify and run a saved query")
    _data(p, tenant=True, keys=True)
    p.add_argument(
        "--now",
        metavar="ISO-8601",
        help="the end of the query's window (default: now); validity is judged on the wall clock",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(handler=cmd_saved_run)

    p = sub.add_parser("list", help="list a tenant's saved queries (not verified)")
    _data(p, tenant=True)
    p.set_defaults(handler=cmd_saved_list)


def _data(p: argparse.ArgumentParser, *, tenant: bool = False, keys: bool = False) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")
    if tenant:
        p.add_argument("--tenant", required=True, metavar="T")
    if keys:
        p.add_argument("--keys", required=True, metavar="DIR", help="the trusted public keys")


# ---------------------------------------------------------------------------------------------
# keys


def cmd_keys_generate(args: argparse.Namespace) -> int:
    key = SigningKey.generate(args.kid)
    private, public = key.write(
        args.out,
        not_before=_time(args.not_before, "--not-before"),
        not_after=_time(args.not_after, "--not-after"),
    )
    print(f"key id:  {key.kid}")
    print(f"private: {private}  (mode 0600: for signers only, never for the engine)")
    print(f"public:  {public}  (copy it into the key directories that should trust it)")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    now = to_utc(args.now, what="--now")
    print("kid\tstatus\tnot_before\tnot_after")
    for key in KeyRing.from_dir(args.keys):
        start = format_time(key.not_before) if key.not_before else "-"
        end = format_time(key.not_after) if key.not_after else "-"
        print(f"{key.kid}\t{key.status(now)}\t{start}\t{end}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    key = KeyRing.from_dir(args.keys).get(args.kid)
    path = write_sidecar(args.keys, replace(key, revoked=True, reason=args.reason))
    print(f"revoked key {key.kid!r} ({path})")
    return 0


# ---------------------------------------------------------------------------------------------
# saved


def cmd_saved_sign(args: argparse.Namespace) -> int:
    engine = Engine(_data_dir(args.data), index=False, adapters=getattr(args, "adapters", None))
    saved = sign_query(
        args.query,
        key=SigningKey.from_file(args.key, kid=args.kid),
        name=args.name,
        tenant=check_tenant_name(args.tenant),
        author=args.author or _login(),
        catalog=engine.catalog,
        param_types=_pairs(args.param_type, "--param-type"),
        now=args.now,
        not_before=args.not_before,
        expires_at=args.expires,
    )
    # The safety rules too, with a placeholder per parameter: a query that can never run is
    # refused now rather than at its first run (they run again, with the real values, then).
    dummies = {k: t.dummy() for k, t in saved.params.items()}
    engine.prepare(saved.query, tenant=saved.tenant, now=args.now, params=dummies)
    engine.saved_store.put(saved)
    print(f"signed {saved.name!r} for tenant {saved.tenant!r} with key {saved.kid!r}")
    print(f"query:      {saved.query}")
    print(f"parameters: {_describe_params(saved)}")
    return 0


def cmd_saved_export(args: argparse.Namespace) -> int:
    store = SavedStore.in_data_dir(_data_dir(args.data))
    sys.stdout.write(store.get(check_tenant_name(args.tenant), args.name).to_json())
    return 0


def cmd_saved_import(args: argparse.Namespace) -> int:
    store = SavedStore.in_data_dir(_data_dir(args.data))
    saved = SavedQuery.from_json(_read_document(args.file))
    saved.verify(KeyRing.from_dir(args.keys), tenant=saved.tenant, now=_trusted_now())
    store.put(saved)
    print(f"imported {saved.name!r} for tenant {saved.tenant!r} (signed by {saved.kid!r})")
    return 0


def cmd_saved_verify(args: argparse.Namespace) -> int:
    store = SavedStore.in_data_dir(_data_dir(args.data))
    tenant = check_tenant_name(args.tenant)
    saved = store.get(tenant, args.name)
    key = saved.verify(
        KeyRing.from_dir(args.keys), tenant=tenant, now=_trusted_now(), name=args.name
    )
    expires = format_time(saved.expires_at) if saved.expires_at else "never"
    print(
        f"ok: {saved.name!r} for tenant {saved.tenant!r}, signed by key {key.kid!r} "
        f"({saved.author}) at {format_time(saved.issued_at)}; valid from "
        f"{format_time(saved.not_before)}, expires {expires}"
    )
    return 0


def cmd_saved_run(args: argparse.Namespace) -> int:
    params = _pairs(args.param, "--param")
    tenant = check_tenant_name(args.tenant)
    engine = Engine(_data_dir(args.data), index=False, adapters=getattr(args, "adapters", None))
    result = engine.run_saved(
        args.name, tenant=tenant, keyring=KeyRing.from_dir(args.keys), params=params, now=args.now
    )
    print_result(result, args.format, sys.stdout)
    return 0


def cmd_saved_list(args: argparse.Namespace) -> int:
    store = SavedStore.in_data_dir(_data_dir(args.data))
    tenant = check_tenant_name(args.tenant)
    print("name\tkid\tauthor\tparameters\texpires")
    unreadable = 0
    for name in store.names(tenant):
        try:
            saved = store.get(tenant, name)
        except PQLError as exc:  # one bad row must not hide the others
            unreadable += 1
            print(f"{name}\t-\t-\t-\t(cannot be read: {exc.code}: {exc.message})")
            continue
        expires = format_time(saved.expires_at) if saved.expires_at else "never"
        print(f"{name}\t{saved.kid}\t{saved.author}\t{_describe_params(saved)}\t{expires}")
    if unreadable:
        print(
            f"warning: {unreadable} stored document(s) of tenant {tenant!r} cannot be read; "
            "import them again with `pql saved import`",
            file=sys.stderr,
        )
    return 0


# ---------------------------------------------------------------------------------------------
# helpers


def _data_dir(path: str) -> Path:
    data = Path(path)
    if not data.is_dir():
        raise InputError(
            "PQL-E071",
            f"the data directory {path!r} does not exist",
            hints=("create it with `pql demo --data DIR` or `pql ingest --data DIR ...`",),
        )
    return data


def _trusted_now() -> datetime:
    """The clock signatures and keys are judged on: the wall clock, never a flag."""
    return to_utc(None)


def _time(value: str | None, flag: str) -> datetime | None:
    return to_utc(value, what=flag) if value is not None else None


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a dict; the value is everything after the first ``=``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(
                "PQL-E092",
                f"{flag} {item!r} is not NAME=VALUE",
                hints=(f"write e.g. {flag} status=error",),
            )
        if name in out:
            raise InputError("PQL-E092", f"{flag} gives {name!r} twice")
        out[name] = value
    return out


def _read_document(file: str) -> bytes:
    """The document's bytes, at most one more than a document may have (so a huge file or an
    endless stream costs no memory); decoding them is part of reading the document."""
    try:
        if file == "-":
            return sys.stdin.buffer.read(MAX_DOCUMENT + 1)
        with open(file, "rb") as handle:
            return handle.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise InputError("PQL-E092", f"cannot read {file!r}: {exc.strerror}") from None


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _describe_params(saved: SavedQuery) -> str:
    return ", ".join(f"${k}: {t.value}" for k, t in saved.params.items()) or "none"
