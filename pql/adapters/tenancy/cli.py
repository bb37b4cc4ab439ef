"""``pql tenants``: create, show, list, preflight, migrate, disclose and remove tenants."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pql.adapters.tenancy.preflight import KEYS_DIR, run_preflight
from pql.adapters.tenancy.registry import Registry, TenantSpec
from pql.errors import InputError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("tenants", help="create tenants, check them, move them")
    sub = group.add_subparsers(dest="tenants_command", required=True, parser_class=type(group))

    p = sub.add_parser("create", help="register a tenant (defaults for every field not given)")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--region", required=True, metavar="R", help="the home region")
    p.add_argument("--allow", action="append", metavar="R", help="an allowed region (repeat)")
    for name, kind in (
        ("cost-budget", float),
        ("max-rows", int),
        ("max-window-days", int),
        ("max-concurrent", int),
        ("latency-ms", int),
        ("rows-per-day", int),
        ("bytes-stored", int),
    ):
        p.add_argument(f"--{name}", type=kind, metavar="N")
    p.add_argument("--trust-key", action="append", metavar="KID", help="a trusted key id (repeat)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("show", help="a tenant's record")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("list", help="every tenant of the data directory")
    _data(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("preflight", help="is a tenant ready? a table of checks")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--keys", metavar="DIR", help="the trusted public keys (default DATA/_pql/keys)")
    p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=cmd_preflight)

    p = sub.add_parser("migrate", help="move a tenant's files to another region (journaled)")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--to", metavar="REGION", help="the target storage region")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--rollback", action="store_true", help="switch back to the retained copy")
    p.add_argument("--operator", metavar="WHO", help="who runs it (default user@host)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("purge-retired", help="delete the old copies migrations retired")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.set_defaults(handler=cmd_purge_retired)

    p = sub.add_parser("disclose", help="write a tenant's signed disclosure pack")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    p.add_argument("--keys", metavar="DIR", help="the trusted public keys (default DATA/_pql/keys)")
    p.add_argument(
        "--signing-key",
        metavar="FILE",
        help="the operator's private key (default: the data directory's operator key)",
    )
    p.add_argument("--now", metavar="ISO-8601", help="fix the clock (default: now)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_disclose)

    p = sub.add_parser("verify-pack", help="check a disclosure pack's digests and signature")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--key", metavar="PUB", help="the operator's public key (PEM) to pin")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_verify_pack)

    p = sub.add_parser("operator-key", help="the key that signs disclosure packs")
    ops = p.add_subparsers(dest="operator_command", required=True, parser_class=type(group))
    p = ops.add_parser("create", help="make the data directory's operator key (once)")
    _data(p)
    p.add_argument("--kid", metavar="ID", help="the key id (default operator-DATE-RANDOM)")
    p.set_defaults(handler=cmd_operator_key_create)
    p = ops.add_parser("show", help="the operator key's id, fingerprint and public key file")
    _data(p)
    p.set_defaults(handler=cmd_operator_key_show)

    p = sub.add_parser("revoke-key", help="stop a tenant trusting a signing key")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("kid", metavar="KID")
    p.add_argument("--keys", metavar="DIR", help="also mark the key revoked in this key folder")
    p.add_argument("--reason", metavar="TEXT")
    p.set_defaults(handler=cmd_revoke_key)

    p = sub.add_parser("delete", help="remove a tenant with no data (reverts create)")
    _data(p)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--operator", metavar="WHO", help="who runs it (default user@host)")
    p.set_defaults(handler=cmd_delete)


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="the data directory")


def _now(text: str | None) -> datetime:
    from pql.signing import to_utc

    return to_utc(text) if text else datetime.now(UTC)


def cmd_create(args: argparse.Namespace) -> int:
    spec = TenantSpec(
        id=args.tenant,
        region=args.region,
        allowed_regions=tuple(args.allow) if args.allow else None,
        cost_budget=args.cost_budget,
        max_rows=args.max_rows,
        max_window_days=args.max_window_days,
        max_concurrent=args.max_concurrent,
        latency_ms=args.latency_ms,
        rows_per_day=args.rows_per_day,
        bytes_stored=args.bytes_stored,
        trusted_keys=tuple(args.trust_key) if args.trust_key else None,
    )
    tenant, defaulted, created = Registry(args.data).create(spec, now=_now(None))
    if args.format == "json":
        out = {"tenant": tenant.to_dict(), "created": created, "defaulted": list(defaulted)}
        print(json.dumps(out))
        return 0
    print(f"tenant {tenant.id} {'created' if created else 'already exists with this spec'}")
    if defaulted:
        print(f"defaults applied to: {', '.join(defaulted)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(Registry(args.data).require(args.tenant).to_dict(), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for tenant in Registry(args.data).all():
        print(f"{tenant.id}  {tenant.state}  {tenant.home_region}")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from pql.cli import engine_for

    if not Path(args.data).is_dir():
        raise InputError("PQL-E071", f"the data directory {args.data!r} does not exist")
    Registry(args.data).require(args.tenant)
    engine = engine_for(args)
    token = KEYS_DIR.set(Path(args.keys) if args.keys else None)
    try:
        results = run_preflight(engine, args.tenant, _now(args.now))
    finally:
        KEYS_DIR.reset(token)
    passed = all(r.ok for r in results)
    if args.format == "json":
        doc = {"tenant": args.tenant, "ok": passed, "checks": [r.to_dict() for r in results]}
        print(json.dumps(doc))
    else:
        width = max(len(r.code) for r in results)
        for r in results:
            line = f"{'PASS' if r.ok else 'FAIL'}  {r.code:<{width}}  {r.title}: {r.detail}"
            print(line)
            if r.hint:
                print(f"      fix: {r.hint}")
        print(f"{sum(r.ok for r in results)} of {len(results)} checks passed")
    sys.stdout.flush()
    return 0 if passed else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.migrate import Plan, migrate, rollback
    from pql.cli import engine_for

    if args.rollback == bool(args.to):
        raise InputError(
            "PQL-E220",
            "give exactly one of --to REGION and --rollback",
            hints=("pql tenants migrate ID --to eu-west-1 [--dry-run]",),
        )
    engine = engine_for(args)
    if args.rollback:
        if args.dry_run:
            raise InputError("PQL-E220", "--rollback has no dry run")
        outcome: Any = rollback(engine, args.tenant, now=_now(None), operator=args.operator)
    else:
        outcome = migrate(
            engine,
            args.tenant,
            args.to,
            now=_now(None),
            dry_run=args.dry_run,
            operator=args.operator,
        )
    doc = outcome.to_dict()
    if args.format == "json":
        print(json.dumps(doc))
        return 0
    if isinstance(outcome, Plan):
        print(f"plan: tenant {doc['tenant']} {doc['source']} -> {doc['target']} (dry run)")
        for part in doc["partitions"]:
            print(f"  {part['path']}  {part['rows']:,} rows  {part['bytes']:,} B  {part['sha256']}")
        print(f"target buckets: {', '.join(doc['target_buckets']) or '-'}")
        for check in doc["policy"]:
            print(
                f"policy: {'PASS' if check['ok'] else 'FAIL'}  {check['check']} ({check['detail']})"
            )
        print(
            f"{len(doc['partitions'])} files, {doc['rows']:,} rows, {doc['bytes']:,} bytes; "
            f"expected {doc['expected_s']:.2f} s at {doc['throughput_bytes_s']:,} B/s"
        )
        return 0
    print(
        f"{doc['kind']} of {doc['tenant']}: {doc['source']} -> {doc['target']} done in "
        f"{doc['timings_ms']['total']:,.0f} ms{' (resumed)' if doc['resumed'] else ''}"
    )
    print(f"rows unchanged: {doc['unchanged']}; evidence: {', '.join(doc['evidence'])}")
    return 0


def cmd_purge_retired(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.migrate import purge_retired
    from pql.cli import engine_for

    purged = purge_retired(engine_for(args), args.tenant)
    print(f"purged {len(purged)} retired files of {args.tenant}")
    return 0


def cmd_disclose(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.disclose import disclose, load_operator_key
    from pql.cli import engine_for

    if not Path(args.data).is_dir():
        raise InputError("PQL-E071", f"the data directory {args.data!r} does not exist")
    Registry(args.data).require(args.tenant)
    key = load_operator_key(args.data, args.signing_key)
    report = disclose(
        engine_for(args),
        args.tenant,
        args.out,
        now=_now(args.now),
        keys_dir=args.keys,
        signing_key=key,
    )
    if args.format == "json":
        print(json.dumps(report.to_dict()))
        return 0
    print(f"disclosure pack of {report.tenant} written to {report.folder}")
    for name, digest in report.files.items():
        print(f"  {name}  sha256 {digest}")
    print(f"signed by {report.operator_kid} ({report.operator_fingerprint})")
    return 0


def cmd_verify_pack(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.disclose import verify_pack

    report = verify_pack(args.folder, public_key=args.key)
    if args.format == "json":
        print(json.dumps({"ok": True, "pinned": bool(args.key), **report.to_dict()}))
        return 0
    print(f"pack of {report.tenant}: {len(report.files)} files match the signed manifest")
    print(f"signed by {report.operator_kid} ({report.operator_fingerprint})")
    if not args.key:
        print("note: the key was not pinned; give --key PUB to check who signed it")
    return 0


def cmd_operator_key_create(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.disclose import create_operator_key

    private, public = create_operator_key(args.data, kid=args.kid)
    print(f"operator key {private.stem}")
    print(f"private: {private}  (mode 0600: signs disclosure packs; never share it)")
    print(f"public:  {public}  (give it to whoever verifies packs: verify-pack --key)")
    return 0


def cmd_operator_key_show(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.disclose import (
        OPERATOR_DIR,
        fingerprint,
        load_operator_key,
    )

    key = load_operator_key(args.data)
    print(f"operator key {key.kid}")
    print(f"fingerprint: {fingerprint(key.private_key.public_key())}")
    print(f"public: {Path(args.data) / OPERATOR_DIR / (key.kid + '.pub')}")
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.offboard import revoke_key

    tenant, sidecar = revoke_key(
        args.data, args.tenant, args.kid, now=_now(None), keys_dir=args.keys, reason=args.reason
    )
    print(f"tenant {tenant.id} no longer trusts key {args.kid}")
    if sidecar is not None:
        print(f"key {args.kid} marked revoked ({sidecar})")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from pql.adapters.tenancy.offboard import delete_tenant
    from pql.cli import engine_for

    removed, evidence = delete_tenant(
        engine_for(args), args.tenant, now=_now(None), operator=args.operator
    )
    print(f"tenant {removed.id} removed; its last record: {evidence}")
    return 0
