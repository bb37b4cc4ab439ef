"""The residency adapter on the S3 backend (moto's server on 127.0.0.1): objects locked by the
server to the policy's retention, refusals from Python and the command line, and the auditor
against the fault injector, which plants every kind of violation through the S3 API itself."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql import cli
from pql.adapters.residency import audit
from pql.adapters.residency.enforce import DECISIONS, append_line
from pql.adapters.residency.journal import JOURNAL
from pql.adapters.residency.objects import S3Objects
from pql.errors import SafetyError
from pql.limits import Limits
from pql.storage.lake import parse_bucket
from pql.storage.s3 import S3Lake
from tests.clock import TEST_NOW
from tests.test_residency import POLICY, receipts, write_policy

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

LOCATION = "s3://pql-meta/residency"
PATIENT = Limits(deadline_ms=120_000)  # no index: each query fetches objects; loaded cores


def s3_lake(engine: pql.Engine) -> S3Lake:
    lake = getattr(engine.store, "lake", engine.store)
    assert isinstance(lake, S3Lake)
    return lake


@pytest.fixture
def options(s3: dict[str, Any]) -> dict[str, Any]:
    """The store's own lock is short and weak, so every lock beyond it is the policy's doing."""
    write_policy(Path(s3["state_dir"]))
    return {**s3, "lock_mode": "governance", "retention_days": 1}


@pytest.fixture
def engine(options: dict[str, Any]) -> pql.Engine:
    eng = pql.Engine(LOCATION, s3=options, region="us-east-1", index=False, limits=PATIENT)
    eng.ingest("receipts", receipts("acme", "us-east-1", 20), who="ops")
    eng.ingest("receipts", receipts("globex", "eu-west-1", 3), who="ops")
    return eng


@pytest.fixture
def environment(options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line finds the server and the state directory in the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret_key"])
    monkeypatch.setenv("PQL_S3_STATE", str(options["state_dir"]))
    monkeypatch.setenv("PQL_REGION", "us-east-1")


def test_objects_are_locked_to_the_policy_and_journalled(engine: pql.Engine) -> None:
    lake = s3_lake(engine)
    stored = S3Objects(lake)
    paths = list(stored.stored())
    assert len(paths) == 23
    for path in paths:
        lock = stored.lock(path)
        assert lock is not None
        tenant = path.split("-")[1]
        if tenant == "acme":  # compliance, 30 days: the store's weak lock was strengthened
            assert lock.mode == "compliance"
        else:  # governance, 30 days
            assert lock.mode == "governance"
        assert lock.retain_until - lock.written >= timedelta(days=30)
        assert lock.tags["tenant"] == tenant
    journal = [json.loads(line) for line in (lake.root / JOURNAL).read_text().splitlines()]
    assert [len(e["objects"]) for e in journal] == [20, 3]
    assert all(e["who"] == "ops" for e in journal)


def test_refusals_on_s3_from_python(engine: pql.Engine) -> None:
    lake = s3_lake(engine)
    before = sorted(lake.objects())
    with pytest.raises(SafetyError) as refused:
        engine.ingest("receipts", receipts("globex", "us-east-1", 2))
    assert refused.value.code == "PQL-S060"
    assert sorted(lake.objects()) == before  # nothing written, no bucket made
    buckets = {b["Name"] for b in lake.client.list_buckets()["Buckets"]}
    assert "mc-globex-us-east-1-receipts" not in buckets
    with pytest.raises(SafetyError) as read:
        engine.query("FIND receipts SINCE 7d", tenant="globex", now=TEST_NOW)
    assert read.value.code == "PQL-S061"
    stored = S3Objects(lake)
    acme = next(p for p in before if p.startswith("mc-acme-"))
    with pytest.raises(SafetyError) as locked:
        stored.delete(acme, now=TEST_NOW, bypass_governance=True, who="ops")
    assert locked.value.code == "PQL-S062" and lake.exists(acme)


def test_refusals_on_s3_from_the_command_line(
    engine: pql.Engine, environment: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = s3_lake(engine)
    objects = sorted(lake.objects())
    acme = next(p for p in objects if p.startswith("mc-acme-"))
    globex = next(p for p in objects if p.startswith("mc-globex-"))
    source = tmp_path / "globex.parquet"
    receipts("globex", "us-east-1", 1).write_parquet(source)
    ingest = ["ingest", "--data", LOCATION, "--table", "receipts", str(source)]
    assert cli.main(ingest) == 3
    assert "PQL-S060" in capsys.readouterr().err
    assert sorted(lake.objects()) == objects
    delete = ["residency", "delete", "--data", LOCATION]
    now = ["--now", TEST_NOW.isoformat()]
    assert cli.main([*delete, acme, *now]) == 3  # compliance: nobody
    assert cli.main([*delete, globex, *now]) == 3  # governance: not without a bypass
    assert "PQL-S063" in capsys.readouterr().err
    assert cli.main([*delete, globex, *now, "--bypass-governance", "--who", "alice"]) == 0
    assert not lake.exists(globex)
    decisions = (lake.root / DECISIONS).read_text().splitlines()
    assert any('"delete-bypass-governance"' in d and '"alice"' in d for d in decisions)


# -- the fault injector, on S3 ----------------------------------------------------------------


def _put(
    lake: S3Lake, path: str, frame: pl.DataFrame, tenant: str, region: str, **lock: Any
) -> str:
    bucket, key = path.split("/", 1)
    sink = io.BytesIO()
    frame.write_parquet(sink)
    payload = sink.getvalue()

    lake.client.put_object(
        Bucket=bucket,
        Key=key,
        Body=payload,
        ContentMD5=base64.b64encode(hashlib.md5(payload).digest()).decode(),
        Tagging=f"tenant={tenant}&region={region}",
        Metadata={"sha256": hashlib.sha256(payload).hexdigest(), "written": TEST_NOW.isoformat()},
        **lock,
    )
    return hashlib.sha256(payload).hexdigest()


def inject(engine: pql.Engine) -> dict[str, set[str]]:
    """Plant every kind of violation, several of each, through the S3 API (what another writer,
    or a server that does not enforce the lock, lets happen); kind -> the objects planted."""
    lake = s3_lake(engine)
    client = lake.client
    root = lake.root
    objects = sorted(p for p in lake.objects() if p.startswith("mc-acme-"))
    planted: dict[str, set[str]] = {}
    pick = iter(objects)

    def take(n: int) -> list[str]:
        return [next(pick) for _ in range(n)]

    for i in range(2):  # backfills run in us-east-1 that wrote to eu-west-1
        report = engine.ingest(
            "receipts", receipts("acme", "eu-west-1", 1, start=500 + i * 10), mode="backfill"
        )
        planted.setdefault("cross-region-write", set()).add(report.files[0])
    initech = engine.ingest("receipts", receipts("initech", "ap-south-1", 3))
    for path in take(3):  # the server lets a compliance retention be shortened
        bucket, key = path.split("/", 1)
        lock = lake.lock_of(path)
        assert lock is not None
        client.put_object_retention(
            Bucket=bucket,
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": lock.written + timedelta(days=1)},
        )
        planted.setdefault("retention-short", set()).add(path)
    for path in take(3):
        bucket, key = path.split("/", 1)
        client.put_object_tagging(
            Bucket=bucket,
            Key=key,
            Tagging={
                "TagSet": [
                    {"Key": "tenant", "Value": "acme"},
                    {"Key": "region", "Value": "eu-west-1"},
                ]
            },
        )
        planted.setdefault("tags-wrong", set()).add(path)
    keep = {
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": TEST_NOW + timedelta(days=60),
    }
    for path in take(3):  # a new version over a locked key: the server allows it
        bucket, key = path.split("/", 1)
        frame = pl.read_parquet(lake.get_bytes(path)).with_columns(pl.col("latency_ms") + 1)
        parsed = parse_bucket(bucket)
        assert parsed is not None
        _put(lake, path, frame, "acme", parsed[1], **keep)
        planted.setdefault("digest-mismatch", set()).add(path)
    for path in take(3):  # a delete marker hides the current version
        bucket, key = path.split("/", 1)
        client.delete_object(Bucket=bucket, Key=key)
        planted.setdefault("object-missing", set()).add(path)
    client.create_bucket(Bucket="mc-acme-us-east-1-decisions")  # no object lock
    for i in range(3):
        path = f"mc-acme-us-east-1-decisions/day=2026-01-0{i + 1}/part-unlocked{i}.parquet"
        _put(lake, path, receipts("acme", "us-east-1", 1, start=700 + i), "acme", "us-east-1")
        planted.setdefault("lock-missing", set()).add(path)
    for i in range(3):  # another writer put another tenant's rows in acme's bucket
        path = f"mc-acme-us-east-1-receipts/day=2026-01-0{i + 1}/part-foreign{i}.parquet"
        rows = receipts("globex", "us-east-1", 1, start=100 + i)
        sha = _put(lake, path, rows, "acme", "us-east-1", **keep)
        obj = {"path": path, "tenant": "acme", "region": "us-east-1", "sha256": sha}
        append_line(root / JOURNAL, {"at": TEST_NOW.isoformat(), "mode": "live", "objects": [obj]})
        planted.setdefault("foreign-rows", set()).add(path)
    narrowed = json.loads(json.dumps(POLICY))
    narrowed["tenants"]["initech"]["regions"] = ["us-east-1"]  # initech may no longer be there
    write_policy(root, narrowed)
    planted["region-not-allowed"] = set(initech.files)
    return planted


def test_the_auditor_finds_every_violation_planted_on_s3_and_nothing_else(
    engine: pql.Engine, environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = s3_lake(engine)
    clean = audit(S3Objects(lake))
    assert clean.violations == () and clean.objects == 23
    assert cli.main(["residency", "audit", "--data", LOCATION]) == 0
    capsys.readouterr()
    planted = inject(engine)
    report = audit(S3Objects(lake))
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
        print("\nS3 backend: kind      planted found false-positives")
        for row in rows:
            print(f"{row[0]:<20} {row[1]:>7} {row[2]:>5} {row[3]:>15}")
    assert not extra, extra
    assert all(planted_n == found_n and fp == 0 for _, planted_n, found_n, fp in rows), rows
    assert report.backfill_scans == 2
    assert cli.main(["residency", "audit", "--data", LOCATION, "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == report.counts()
    # The dashboard panel over S3: one self-contained page that lists every kind found.
    assert cli.main(["residency", "audit", "--data", LOCATION, "--format", "html"]) == 1
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "<script src" not in page
    assert all(kind in page for kind in planted)
