"""Migration region -> region: the plan, the run, rollback and purge, refusals, evidence, and
resuming after the migrating process is killed (SIGKILL) at several points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import pql
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.migrate import (
    KILL_AT,
    Plan,
    Report,
    content_digest,
    lake_of,
    migrate,
    purge_retired,
    rollback,
)
from pql.storage.repair import RebuildReport, rebuild_manifest
from tests.clock import TEST_NOW

QUERIES = (
    "FIND COUNT(*) AS n, SUM(receipts.cost_usd) AS c GROUP BY receipts.region SINCE 7d",
    "FIND COUNT(*) AS n JOIN decisions ON receipts.executionId = decisions.executionId SINCE 7d",
    "FIND receipts WHERE status = 'ok' SINCE 7d ORDER BY executionId LIMIT 50",
)


def rows(tenant: str, n: int, days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    base = TEST_NOW.replace(microsecond=0) - timedelta(hours=1)
    ts = [base - timedelta(days=i % days) for i in range(n)]
    ids = [f"{tenant}-x{i}" for i in range(n)]
    regions = ["us-east-1" if i % 3 else "us-west-2" for i in range(n)]
    receipts = pl.DataFrame(
        {
            "executionId": ids,
            "tenant": [tenant] * n,
            "region": regions,
            "ts": ts,
            "workflow": ["w"] * n,
            "status": ["ok" if i % 4 else "error" for i in range(n)],
            "latency_ms": [float(i) for i in range(n)],
            "cost_usd": [0.01 * i for i in range(n)],
        }
    )
    decisions = pl.DataFrame(
        {
            "decisionId": [f"{x}-d" for x in ids],
            "executionId": ids,
            "tenant": [tenant] * n,
            "region": regions,
            "ts": ts,
            "rule": ["r"] * n,
            "effect": ["allow"] * n,
            "policy_version": ["v1"] * n,
        }
    )
    return receipts, decisions


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    engine = pql.Engine(root)
    for tenant in ("acme", "other"):
        receipts, decisions = rows(tenant, 300, 3)
        engine.ingest("receipts", receipts)
        engine.ingest("decisions", decisions)
    Registry(root).create(
        # A generous latency budget (it is the query deadline): a loaded machine can take more
        # than the default second for a fresh engine's first query.
        TenantSpec(
            "acme",
            "us-east-1",
            allowed_regions=("us-east-1", "eu-west-1", "eu-north"),
            latency_ms=60_000,
        ),
        now=TEST_NOW,
    )
    return root


def answers(engine: pql.Engine, tenant: str = "acme") -> list[list[tuple[object, ...]]]:
    return [
        sorted(engine.query(q, tenant=tenant, now=TEST_NOW, cache=False).df.rows(), key=repr)
        for q in QUERIES
    ]


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "tenants.sqlite" not in p.name
    }


def test_a_dry_run_prints_the_plan_and_writes_nothing(data: Path) -> None:
    engine = pql.Engine(data)
    before = snapshot(data)
    plan = migrate(engine, "acme", "eu-west-1", now=TEST_NOW, dry_run=True)
    assert isinstance(plan, Plan)
    doc = plan.to_dict()
    manifest = lake_of(engine).manifest()
    mine = [e for e in manifest.files if e.tenant == "acme"]
    assert {p["path"] for p in doc["partitions"]} == {e.path for e in mine}
    assert doc["rows"] == 600 and doc["bytes"] == sum(e.bytes for e in mine)
    assert all(len(p["sha256"]) == 64 for p in doc["partitions"])
    assert doc["target_buckets"] == ["mc-acme-eu-west-1-decisions", "mc-acme-eu-west-1-receipts"]
    assert doc["policy"][0] == {
        "check": "target region allowed",
        "ok": True,
        "detail": "eu-west-1 among eu-north, eu-west-1, us-east-1",
    }
    assert doc["expected_s"] > 0
    assert snapshot(data) == before
    assert Registry(data).require("acme").state == "active"


def test_migrate_copies_verifies_switches_and_keeps_answers(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    others = answers(engine, "other")
    digest = content_digest(lake_of(engine), "acme")
    report = migrate(engine, "acme", "eu-west-1", now=TEST_NOW, operator="ops@test")
    assert isinstance(report, Report)
    assert report.digest_before == report.digest_after == digest
    assert answers(engine) == expected and answers(pql.Engine(data)) == expected
    assert answers(engine, "other") == others
    tenant = Registry(data).require("acme")
    assert tenant.home_region == "eu-west-1" and tenant.state == "active"
    manifest = lake_of(engine).manifest()
    mine = [e for e in manifest.files if e.tenant == "acme"]
    assert mine and all(e.storage == "eu-west-1" for e in mine)
    assert all(e.path.startswith("mc-acme-eu-west-1-") for e in mine)
    assert {e.region for e in mine} == {"us-east-1", "us-west-2"}  # the rows' history stays
    assert len(manifest.retired) == len(mine) and manifest.homes["acme"] == "eu-west-1"
    assert all((data / e.path).is_file() for e in manifest.retired)  # the old copy is kept
    # New rows of the tenant are stored in its new home, whatever their region column says.
    fresh, _ = rows("acme", 310, 1)
    engine.ingest("receipts", fresh.slice(300))
    newest = [e for e in lake_of(engine).manifest().files if e.tenant == "acme"][len(mine) :]
    assert {e.region for e in newest} == {"us-east-1", "us-west-2"}
    assert all(e.path.startswith("mc-acme-eu-west-1-receipts/") for e in newest)
    # Evidence: JSON and Markdown, with the plan, digests, timings and who ran it.
    evidence = json.loads(Path(report.evidence[0]).read_text())
    assert evidence["operator"] == "ops@test" and evidence["unchanged"] is True
    assert evidence["digest_before"] == digest and evidence["timings_ms"]["total"] > 0
    assert len(evidence["plan"]["partitions"]) == len(mine)
    assert "| receipts | 300 |" in Path(report.evidence[1]).read_text()
    assert Path(report.evidence[0]).parent == data / "_pql" / "evidence"


def test_rollback_switches_back_and_purge_is_explicit_and_final(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    originals = sorted(e.path for e in lake_of(engine).manifest().files if e.tenant == "acme")
    migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    back = rollback(engine, "acme", now=TEST_NOW)
    assert back.kind == "rollback" and back.digest_before == back.digest_after
    assert Registry(data).require("acme").home_region == "us-east-1"
    manifest = lake_of(engine).manifest()
    assert sorted(e.path for e in manifest.files if e.tenant == "acme") == originals
    assert answers(engine) == expected
    with pytest.raises(pql.InputError) as twice:
        rollback(engine, "acme", now=TEST_NOW)
    assert twice.value.code == "PQL-E212"
    again = migrate(engine, "acme", "eu-west-1", now=TEST_NOW)  # the copies are reused
    assert isinstance(again, Report) and answers(engine) == expected
    purged = purge_retired(engine, "acme")
    assert sorted(e.path for e in purged) == originals
    assert not any((data / p).exists() for p in originals)
    assert answers(engine) == expected
    with pytest.raises(pql.InputError) as gone:
        rollback(engine, "acme", now=TEST_NOW)
    assert gone.value.code == "PQL-E217"


def test_refusals(data: Path) -> None:
    engine = pql.Engine(data)
    cases: list[tuple[str, str, str]] = [
        ("nobody", "eu-west-1", "PQL-E202"),
        ("acme", "EU West", "PQL-E204"),
        ("acme", "eu-north", "PQL-E210"),  # a registry region, but no bucket can be named by it
        ("acme", "ap-southeast-2", "PQL-S054"),  # not allowed
        ("acme", "us-east-1", "PQL-E213"),  # already home
    ]
    for tenant, target, code in cases:
        for dry_run in (True, False):
            with pytest.raises(pql.PQLError) as caught:
                migrate(engine, tenant, target, now=TEST_NOW, dry_run=dry_run)
            assert caught.value.code == code, (tenant, target)
    Registry(data).set_state("acme", "migrating", now=TEST_NOW)
    with pytest.raises(pql.InputError) as busy:
        migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    assert busy.value.code == "PQL-E211"
    with pytest.raises(pql.InputError) as purge:
        purge_retired(engine, "acme")
    assert purge.value.code == "PQL-E218"
    assert Registry(data).require("acme").home_region == "us-east-1"


def test_a_migration_of_a_migrating_tenant_to_elsewhere_is_refused(data: Path) -> None:
    killed = run_cli(data, "--to", "eu-west-1", kill_at="copied:1")
    assert killed.returncode == -signal.SIGKILL
    other = run_cli(data, "--to", "us-west-2")
    assert other.returncode == 2 and "PQL-E211" in other.stderr


def run_cli(data: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT}
    if kill_at:
        env[KILL_AT] = kill_at
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "pql"),
            "tenants",
            "migrate",
            "acme",
            "--data",
            str(data),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("step", ["begun", "copied:1", "copied:5", "switched"])
def test_killed_at_any_step_the_same_command_finishes_it(data: Path, step: str) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    digest = content_digest(lake_of(engine), "acme")
    count = len([e for e in lake_of(engine).manifest().files if e.tenant == "acme"])
    killed = run_cli(data, "--to", "eu-west-1", kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert Registry(data).require("acme").state == "migrating"
    assert answers(pql.Engine(data)) == expected  # answered while half done
    done = run_cli(data, "--to", "eu-west-1", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed"] is True and report["digest_after"] == digest
    fresh = pql.Engine(data)
    assert answers(fresh) == expected
    manifest = lake_of(fresh).manifest()
    mine = [e for e in manifest.files if e.tenant == "acme"]
    assert len(mine) == count and all(e.storage == "eu-west-1" for e in mine)  # none twice
    assert Registry(data).require("acme").home_region == "eu-west-1"
    assert lake_of(fresh).gc_orphans() == []


def test_killed_during_rollback_the_same_command_finishes_it(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    assert run_cli(data, "--to", "eu-west-1").returncode == 0
    killed = run_cli(data, "--rollback", kill_at="switched")
    assert killed.returncode == -signal.SIGKILL
    done = run_cli(data, "--rollback")
    assert done.returncode == 0, done.stderr
    assert Registry(data).require("acme").home_region == "us-east-1"
    assert answers(pql.Engine(data)) == expected
    bad = run_cli(data, "--to", "eu-west-1", "--rollback")
    assert bad.returncode == 2 and "PQL-E220" in bad.stderr


# -- rebuilding a lost manifest after a migration ----------------------------------------------


def _layout(root: Path) -> dict[str, object]:
    """What a manifest says of where files are: read, retired, and each tenant's home."""
    raw = json.loads((root / "_pql" / "manifest.json").read_text())

    def entries(key: str) -> list[tuple[object, ...]]:
        return sorted((e["path"], e["region"], e["storage"], e["rows"]) for e in raw[key])

    return {"files": entries("files"), "retired": entries("retired"), "homes": raw["homes"]}


def _lose_and_rebuild(root: Path) -> RebuildReport:
    (root / "_pql" / "manifest.json").unlink()
    return rebuild_manifest(root)


def test_rebuilt_manifest_after_a_migration_answers_the_same(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    others = answers(engine, "other")
    migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    fresh, _ = rows("acme", 310, 1)
    engine.ingest("receipts", fresh.slice(300))  # stored in the new home
    expected_now = answers(engine)
    layout = _layout(data)

    report = _lose_and_rebuild(data)
    assert report.homes == {"acme": "eu-west-1"} and not report.homes_inferred
    assert report.retired == len(layout["retired"])  # type: ignore[arg-type]
    assert not report.skipped and report.duplicates == 0
    assert _layout(data) == layout
    rebuilt = pql.Engine(data)
    assert answers(rebuilt) == expected_now and answers(rebuilt, "other") == others
    newer, _ = rows("acme", 320, 1)
    rebuilt.ingest("receipts", newer.slice(310))  # still goes to the tenant's storage region
    assert all(
        e.storage == "eu-west-1" for e in lake_of(rebuilt).manifest().files if e.tenant == "acme"
    )
    assert expected  # the answers before the migration had rows


def test_rebuilt_manifest_after_a_rollback_reads_the_originals(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    rollback(engine, "acme", now=TEST_NOW)
    layout = _layout(data)
    report = _lose_and_rebuild(data)
    assert report.homes == {"acme": "us-east-1"}
    assert _layout(data) == layout
    rebuilt = pql.Engine(data)
    assert answers(rebuilt) == expected
    # the rebuilt manifest still knows the retired copy: migrating again reuses it
    again = migrate(rebuilt, "acme", "eu-west-1", now=TEST_NOW)
    assert isinstance(again, Report) and again.digest_before == again.digest_after


def test_rebuild_after_purge_and_without_the_homes_record(data: Path) -> None:
    engine = pql.Engine(data)
    expected = answers(engine)
    migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    purge_retired(engine, "acme")
    layout = _layout(data)
    (data / "_pql" / "homes.json").unlink()
    report = _lose_and_rebuild(data)
    assert report.homes == {"acme": "eu-west-1"} and report.homes_inferred
    assert report.retired == 0
    assert _layout(data) == layout
    assert answers(pql.Engine(data)) == expected


def test_rebuild_still_leaves_out_a_file_of_mixed_regions(data: Path) -> None:
    victim = sorted(data.glob("mc-other-us-east-1-receipts/day=*/*.parquet"))[0]
    frame = pl.read_parquet(victim)
    frame.with_columns(
        region=pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("us-west-2"))
        .otherwise(pl.col("region"))
    ).write_parquet(victim)
    report = _lose_and_rebuild(data)
    reasons = dict(report.skipped)
    assert "another region" in reasons[victim.relative_to(data).as_posix()]


def test_purge_asks_the_removal_guards_and_a_refusal_keeps_everything(data: Path) -> None:
    """An object lock (the residency adapter's ``pql_check_remove``) keeps the old copy: the
    purge is refused whole and no file or manifest entry goes."""
    engine = pql.Engine(data)
    migrate(engine, "acme", "eu-west-1", now=TEST_NOW)
    lake = lake_of(engine)
    retired = sorted(e.path for e in lake.manifest().retired if e.tenant == "acme")
    assert retired
    asked: list[tuple[str, str]] = []

    def locked(action: str, path: str) -> None:
        asked.append((action, path))
        if path == retired[-1]:
            raise pql.SafetyError("PQL-S062", f"{path} is locked")

    lake.removal_guards.append(locked)
    with pytest.raises(pql.SafetyError) as refused:
        purge_retired(engine, "acme")
    assert refused.value.code == "PQL-S062"
    assert asked and all(action == "delete" for action, _ in asked)
    assert all((data / p).is_file() for p in retired)
    assert sorted(e.path for e in lake_of(pql.Engine(data)).manifest().retired) == retired
    lake.removal_guards.remove(locked)
    assert sorted(e.path for e in purge_retired(engine, "acme")) == retired
