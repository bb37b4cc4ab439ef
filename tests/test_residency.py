"""The residency adapter: the evaluator's properties, every refusal from Python and the command
line, object locks, the ingest journal, and the auditor against a fault injector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql import cli
from pql.adapters.residency import audit, evaluate
from pql.adapters.residency.enforce import DECISIONS, append_line
from pql.adapters.residency.journal import JOURNAL
from pql.adapters.residency.lock import LOCKS, delete_object, lock_object, read_lock
from pql.adapters.residency.policy import FILE, Policy
from pql.storage import Lake
from tests.clock import TEST_NOW

POLICY = {
    "version": 1,
    "tenants": {
        "acme": {"regions": ["eu-west-1", "us-east-1"], "retention": {"days": 30}},
        "globex": {
            "regions": ["eu-west-1"],
            "retention": {"mode": "governance", "days": 30},
        },
        "initech": {"regions": ["ap-south-1", "us-east-1"], "cross_region_reads": True},
    },
}


def receipts(tenant: str, region: str, days: int, start: int = 0, per_day: int = 5) -> pl.DataFrame:
    base = TEST_NOW.replace(microsecond=0) - timedelta(hours=1)
    n = days * per_day
    return pl.DataFrame(
        {
            "executionId": [f"{tenant}-{region}-{i}" for i in range(start, start + n)],
            "tenant": [tenant] * n,
            "region": [region] * n,
            "ts": [base - timedelta(days=i // per_day) for i in range(n)],
            "workflow": ["w"] * n,
            "status": ["ok"] * n,
            "latency_ms": [float(i) for i in range(n)],
            "cost_usd": [0.1] * n,
        }
    )


def write_policy(root: Path, policy: dict[str, Any] = POLICY) -> None:
    (root / FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / FILE).write_text(json.dumps(policy))


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    write_policy(root)
    engine = pql.Engine(root, region="us-east-1")
    engine.ingest("receipts", receipts("acme", "us-east-1", 20), who="ops")
    engine.ingest("receipts", receipts("globex", "eu-west-1", 3), who="ops")
    return root


# -- the evaluator -----------------------------------------------------------------------------

regions = st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1"])
policies = st.builds(
    lambda rs, cross: {"regions": sorted(set(rs)), "cross_region_reads": cross},
    st.lists(regions, min_size=1, max_size=3),
    st.booleans(),
)


def doc(action: str, region: str, engine: str | None, policy: Any, **extra: Any) -> Any:
    return {
        "input": {
            "action": action,
            "tenant": "acme",
            "bucket": f"mc-acme-{region}-receipts",
            "bucket_region": region,
            "engine_region": engine,
            "policy": policy,
            **extra,
        }
    }


@given(regions, st.one_of(st.none(), regions), policies)
def test_a_write_is_denied_exactly_when_its_region_is_not_allowed(
    region: str, engine: str | None, policy: dict[str, Any]
) -> None:
    result = evaluate(doc("write", region, engine, policy))["result"]
    assert result["allow"] == (region in policy["regions"])
    assert result["allow"] == (not result["deny"])
    if not result["allow"]:
        assert [r["rule"] for r in result["deny"]] == ["region-not-allowed"]


@given(regions, regions, policies)
def test_a_cross_region_read_is_denied_unless_the_policy_allows_it(
    region: str, engine: str, policy: dict[str, Any]
) -> None:
    result = evaluate(doc("read", region, engine, policy))["result"]
    assert result["allow"] == (region == engine or policy["cross_region_reads"])


@given(
    st.sampled_from(["read", "write"]),
    regions,
    regions,
    policies,
    st.dictionaries(
        st.text(min_size=1, max_size=5).filter(
            lambda k: (
                k not in {"action", "tenant", "bucket", "bucket_region", "engine_region", "policy"}
            )
        ),
        st.integers(),
        max_size=3,
    ),
)
def test_the_decision_ignores_irrelevant_fields(
    action: str, region: str, engine: str, policy: dict[str, Any], noise: dict[str, int]
) -> None:
    plain = evaluate(doc(action, region, engine, policy))
    assert evaluate(doc(action, region, engine, policy, **noise)) == plain


@given(st.sampled_from(["read", "write"]), regions, regions, policies, regions)
def test_allowing_more_never_denies_more(
    action: str, region: str, engine: str, policy: dict[str, Any], more: str
) -> None:
    wider = {"regions": sorted({*policy["regions"], more}), "cross_region_reads": True}
    if evaluate(doc(action, region, engine, policy))["result"]["allow"]:
        assert evaluate(doc(action, region, engine, wider))["result"]["allow"]


def test_no_policy_denies_everything() -> None:
    result = evaluate(doc("write", "us-east-1", None, None))["result"]
    assert not result["allow"] and result["deny"][0]["rule"] == "no-policy"


# -- enforcement -------------------------------------------------------------------------------


def test_a_write_to_a_region_the_tenant_may_not_live_in_is_refused_and_logged(lake: Path) -> None:
    engine = pql.Engine(lake, region="us-east-1")
    before = engine.store.version("globex")
    for mode in ("live", "backfill", "replay"):
        with pytest.raises(pql.SafetyError) as caught:
            engine.ingest("receipts", receipts("globex", "us-east-1", 2), mode=mode)
        error = caught.value
        assert error.code == "PQL-S060"
        for part in ("'globex'", "mc-globex-us-east-1-receipts", "us-east-1", "eu-west-1"):
            assert part in error.message
        assert "region-not-allowed" in error.message
    assert engine.store.version("globex") == before
    assert not list(lake.glob("mc-globex-us-east-1-*"))
    log = [json.loads(x) for x in (lake / DECISIONS).read_text().splitlines()]
    assert [d["allow"] for d in log if d["tenant"] == "globex"] == [True, False, False, False]
    assert [d.get("mode") for d in log if not d["allow"]] == ["live", "backfill", "replay"]


def test_a_cross_region_read_is_refused_unless_allowed(lake: Path) -> None:
    there = pql.Engine(lake, region="eu-west-1")
    now = TEST_NOW.isoformat()
    assert (
        there.query(
            "FIND COUNT(receipts.executionId) AS n SINCE 30d", tenant="globex", now=now
        ).rows()[0][0]
        == 15
    )
    with pytest.raises(pql.SafetyError) as caught:
        there.query("FIND COUNT(receipts.executionId) AS n SINCE 30d", tenant="acme", now=now)
    assert caught.value.code == "PQL-S061"
    assert "mc-acme-us-east-1-receipts" in caught.value.message
    assert "cross-region-read" in caught.value.message
    here = pql.Engine(lake, region="us-east-1")
    assert (
        here.query(
            "FIND COUNT(receipts.executionId) AS n SINCE 30d", tenant="acme", now=now
        ).rows()[0][0]
        == 100
    )
    here.ingest("receipts", receipts("initech", "ap-south-1", 1))
    assert (
        here.query(
            "FIND COUNT(receipts.executionId) AS n SINCE 30d", tenant="initech", now=now
        ).rows()[0][0]
        == 5
    )
    log = [json.loads(x) for x in (lake / DECISIONS).read_text().splitlines()]
    reads = [(d["tenant"], d["allow"]) for d in log if d["action"] == "read"]
    assert reads == [("acme", False), ("initech", True)]


def test_every_way_of_running_a_query_is_checked_before_it_reads(lake: Path) -> None:
    """Not only ``query``: a prepared query executed, a signed saved query and an analyzing
    explain read the data too, so residency refuses each of them the same way."""
    from pql.saved import SavedStore, sign_query
    from pql.signing import KeyRing, SigningKey

    there = pql.Engine(lake, region="eu-west-1", clock=lambda: TEST_NOW)
    text = "FIND COUNT(receipts.executionId) AS n SINCE 30d"
    key = SigningKey.generate("ops")
    saved = sign_query(text, key=key, name="n", tenant="acme", author="ops", now=TEST_NOW)
    SavedStore.beside(there.store).put(saved)
    prepared = there.prepare(text, tenant="acme", now=TEST_NOW)
    runs: dict[str, Callable[[], object]] = {
        "execute": lambda: there.execute(prepared),
        "run_saved": lambda: there.run_saved(
            "n", tenant="acme", keyring=KeyRing([key.trusted()]), now=TEST_NOW
        ),
        "explain --analyze": lambda: there.explain(text, tenant="acme", now=TEST_NOW, analyze=True),
    }
    for name, run in runs.items():
        with pytest.raises(pql.SafetyError) as caught:
            run()
        assert caught.value.code == "PQL-S061", name
        assert "mc-acme-us-east-1-receipts" in caught.value.message, name
    assert "est_rows" in str(there.explain(text, tenant="acme", now=TEST_NOW))  # reads nothing
    log = [json.loads(x) for x in (lake / DECISIONS).read_text().splitlines()]
    assert [d["allow"] for d in log if d["action"] == "read"] == [False] * len(runs)
    assert there.execute(there.prepare(text, tenant="globex", now=TEST_NOW)).rows() == [(15,)]


def test_the_command_line_refuses_writes_and_reads(lake: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    receipts("globex", "us-east-1", 1).write_parquet(bad)
    env = {**os.environ, "PQL_REGION": "eu-west-1"}
    env.pop(cli.ADAPTERS_ENV, None)
    run = [sys.executable, "-m", "pql.cli"]
    ingest = [*run, "ingest", "--data", str(lake), "--table", "receipts", "--mode", "replay"]
    done = subprocess.run([*ingest, str(bad)], capture_output=True, text=True, env=env)
    assert done.returncode == 3 and "error[PQL-S060]" in done.stderr
    assert "Traceback" not in done.stderr
    query = [*run, "query", "--data", str(lake), "--tenant", "acme", "--now", TEST_NOW.isoformat()]
    done = subprocess.run(
        [*query, "FIND COUNT(receipts.executionId) SINCE 1d"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 3 and "error[PQL-S061]" in done.stderr


# -- locks and the journal ---------------------------------------------------------------------


def test_every_object_is_locked_tagged_and_journalled(lake: Path) -> None:
    journal = [json.loads(x) for x in (lake / JOURNAL).read_text().splitlines()]
    assert [(e["mode"], e["who"], e["engine_region"]) for e in journal] == [
        ("live", "ops", "us-east-1"),
        ("live", "ops", "us-east-1"),
    ]
    stored = sorted(p.relative_to(lake).as_posix() for p in lake.glob("mc-*/day=*/*.parquet"))
    assert sorted(o["path"] for e in journal for o in e["objects"]) == stored
    lock = read_lock(lake, stored[0])
    assert lock is not None and lock.mode == "compliance"
    assert lock.retain_until - lock.written == timedelta(days=30)
    assert lock.tags == {"tenant": "acme", "region": "us-east-1"}


def test_locked_objects_cannot_be_removed_by_the_lake_or_anyone(lake: Path) -> None:
    engine = pql.Engine(lake, region="us-east-1", index=False)  # the lake itself
    acme = next(lake.glob("mc-acme-*/day=*/*.parquet")).relative_to(lake).as_posix()
    assert isinstance(engine.store, Lake)
    with pytest.raises(pql.SafetyError) as caught:
        engine.store.quarantine(acme)
    assert caught.value.code == "PQL-S062" and "compliance" in caught.value.message
    assert (lake / acme).is_file()
    with pytest.raises(pql.SafetyError):
        delete_object(lake, acme, bypass_governance=True, who="root")
    globex = next(lake.glob("mc-globex-*/day=*/*.parquet")).relative_to(lake).as_posix()
    with pytest.raises(pql.SafetyError) as caught:
        delete_object(lake, globex)
    assert caught.value.code == "PQL-S063"
    assert cli.main(["residency", "delete", "--data", str(lake), globex]) == 3
    assert (
        cli.main(
            [
                "residency",
                "delete",
                "--data",
                str(lake),
                globex,
                "--bypass-governance",
                "--who",
                "ann",
            ]
        )
        == 0
    )
    assert not (lake / globex).exists()
    log = [json.loads(x) for x in (lake / DECISIONS).read_text().splitlines()]
    assert log[-1]["action"] == "delete-bypass-governance" and log[-1]["who"] == "ann"
    later = TEST_NOW + timedelta(days=31)
    delete_object(lake, acme, now=later)  # retention over: allowed
    assert not (lake / acme).exists()


def test_the_lake_command_line_respects_locks(lake: Path) -> None:
    acme = next(lake.glob("mc-acme-*/day=*/*.parquet")).relative_to(lake).as_posix()
    assert cli.main(["lake", "quarantine", "--data", str(lake), acme]) == 3
    assert (lake / acme).is_file()


# -- the auditor and the fault injector --------------------------------------------------------


def rewrite_sidecar(root: Path, path: str, **changes: Any) -> None:
    side = root / LOCKS / f"{path}.json"
    raw = json.loads(side.read_text())
    raw.update(changes)
    side.write_text(json.dumps(raw))


def inject(root: Path) -> dict[str, set[str]]:
    """Plant every kind of violation, several of each; return kind -> the objects planted."""
    engine = pql.Engine(root, region="us-east-1")
    objects = sorted(p.relative_to(root).as_posix() for p in root.glob("mc-acme-*/*/*.parquet"))
    planted: dict[str, set[str]] = {}
    pick = iter(objects)
    for i in range(2):  # backfills run in us-east-1 that wrote to eu-west-1
        report = engine.ingest(
            "receipts", receipts("acme", "eu-west-1", 1, start=500 + i * 10), mode="backfill"
        )
        planted.setdefault("cross-region-write", set()).add(report.files[0])
    report = engine.ingest("receipts", receipts("initech", "ap-south-1", 3))

    def take(n: int) -> list[str]:
        return [next(pick) for _ in range(n)]

    for path in take(3):
        (root / LOCKS / f"{path}.json").unlink()
        planted.setdefault("lock-missing", set()).add(path)
    for path in take(3):
        lock = read_lock(root, path)
        assert lock is not None
        rewrite_sidecar(root, path, retain_until=(lock.written + timedelta(days=1)).isoformat())
        planted.setdefault("retention-short", set()).add(path)
    for path in take(3):
        rewrite_sidecar(root, path, tags={"tenant": "acme", "region": "eu-west-1"})
        planted.setdefault("tags-wrong", set()).add(path)
    for path in take(3):
        frame = pl.read_parquet(root / path).with_columns(pl.col("latency_ms") + 1)
        frame.write_parquet(root / path)
        planted.setdefault("digest-mismatch", set()).add(path)
    for path in take(3):
        (root / path).unlink()
        planted.setdefault("object-missing", set()).add(path)
    for i in range(3):  # a writer that put another tenant's rows in acme's bucket
        path = f"mc-acme-us-east-1-receipts/day=2026-01-0{i + 1}/part-foreign{i}.parquet"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        receipts("globex", "us-east-1", 1, start=100 + i).write_parquet(root / path)
        policy = Policy("acme", ("us-east-1",))
        lock = lock_object(root, path, "acme", "us-east-1", policy, TEST_NOW)
        obj = {"path": path, "tenant": "acme", "region": "us-east-1", "sha256": lock.sha256}
        append_line(root / JOURNAL, {"at": TEST_NOW.isoformat(), "mode": "live", "objects": [obj]})
        planted.setdefault("foreign-rows", set()).add(path)
    narrowed = json.loads(json.dumps(POLICY))
    narrowed["tenants"]["initech"]["regions"] = ["us-east-1"]  # initech may no longer be there
    write_policy(root, narrowed)
    planted["region-not-allowed"] = set(report.files)
    return planted


def test_the_auditor_finds_every_planted_violation_and_nothing_else(
    lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = audit(lake)
    assert clean.violations == () and clean.objects == 23
    assert cli.main(["residency", "audit", "--data", str(lake)]) == 0
    capsys.readouterr()
    planted = inject(lake)
    report = audit(lake)
    found: dict[str, set[str]] = {}
    for v in report.violations:
        found.setdefault(v.kind, set()).add(v.object)
    rows = []
    for kind in sorted(planted):
        hits = found.get(kind, set())
        rows.append(
            (kind, len(planted[kind]), len(hits & planted[kind]), len(hits - planted[kind]))
        )
    extra = sorted(set(found) - set(planted))
    with capsys.disabled():
        print("\nkind                 planted found false-positives")
        for row in rows:
            print(f"{row[0]:<20} {row[1]:>7} {row[2]:>5} {row[3]:>15}")
    assert not extra
    assert all(planted_n == found_n and fp == 0 for _, planted_n, found_n, fp in rows)
    assert report.backfill_scans == 2
    assert cli.main(["residency", "audit", "--data", str(lake), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert sum(doc["counts"].values()) == len(report.violations)
    assert cli.main(["residency", "audit", "--data", str(lake), "--format", "html"]) == 1
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "cross-region-write" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained
    since = (TEST_NOW + timedelta(days=1)).isoformat()
    later = audit(lake, since=pql.analyze.parse_timestamp(since))
    assert {v.kind for v in later.violations} == {"lock-missing"}  # undated: always audited


def test_the_audit_of_a_larger_lake(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    write_policy(root)
    engine = pql.Engine(root, region="us-east-1")
    engine.ingest("receipts", receipts("acme", "us-east-1", 100, per_day=3_000))
    started = time.perf_counter()
    report = audit(root)
    took = time.perf_counter() - started
    print(f"\naudit of 300,000 receipts in {report.objects} objects: {took:.2f} s")
    assert report.violations == () and report.objects == 100


def test_under_a_registry_alone_the_audit_leaves_unregistered_tenants_regions_alone(
    tmp_path: Path,
) -> None:
    from pql.adapters.tenancy import Registry, TenantSpec
    from pql.adapters.tenancy.preflight import synthetic, synthetic_tenant

    root = tmp_path / "data"
    pql.Engine(root)
    Registry(root).create(TenantSpec("acme", "us-east-1"), now=TEST_NOW)
    engine = pql.Engine(root)
    assert synthetic(engine, "acme", TEST_NOW).ok  # writes under the shadow tenant
    engine.ingest("receipts", receipts("acme", "us-east-1", 2))
    report = audit(root)
    stored = len(list(root.glob("mc-*/day=*/*.parquet")))
    assert report.violations == () and report.objects == stored >= 3
    shadow = synthetic_tenant("acme")
    path = next(p for p in root.glob(f"mc-{shadow}-*/day=*/*.parquet"))
    rel = str(path.relative_to(root))
    rewrite_sidecar(root, rel, tags={"tenant": shadow, "region": "eu-west-1"})
    assert [(v.kind, v.tenant) for v in audit(root).violations] == [("tags-wrong", shadow)]
