"""The S3 backend against a real S3 endpoint (moto's server on 127.0.0.1, started by the tests):
buckets and objects locked and tagged, the checks the server does not make, and the same
answers as the local directory."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql import cli
from pql.catalog import RECEIPTS, Catalog
from pql.demo import DemoData, generate
from pql.errors import InputError, SafetyError
from pql.examples import CONTRACT_EXAMPLES
from pql.limits import Limits
from pql.storage.s3 import S3Lake, parse_location
from tests.cases import DIFFERENTIAL_CASES
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame
from tests.paths import windows_of, with_edges
from tests.test_storage import receipts

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

LOCATION = "s3://pql-meta/lake"
TENANTS = ("acme", "globex", "initech")
PATIENT = Limits(deadline_ms=120_000)
"""A query without an index fetches each object it reads from the server: on two loaded, shared
cores that can take longer than the default deadline, which is not what these tests measure."""


def small_demo() -> DemoData:
    """Three tenants, the last five weeks: few objects, so the server is quick."""
    data = generate(1_200, seed=11, now=TEST_NOW)
    since = TEST_NOW - timedelta(days=35)

    def keep(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("tenant").is_in(TENANTS) & (pl.col("ts") >= since))

    return DemoData(receipts=keep(data.receipts), decisions=keep(data.decisions), now=data.now)


def s3_lake(engine: pql.Engine) -> S3Lake:
    store = engine.store
    lake = getattr(store, "lake", store)
    assert isinstance(lake, S3Lake)
    return lake


def test_buckets_and_objects_are_locked_and_tagged(s3: dict[str, Any]) -> None:
    engine = pql.Engine(LOCATION, s3=s3, adapters=())
    report = engine.ingest("receipts", small_demo().receipts)
    assert report.written > 0 and report.files
    lake = s3_lake(engine)
    client = lake.client
    for path in report.files[:5]:
        bucket, key = path.split("/", 1)
        tenant, region = bucket.split("-")[1], "-".join(bucket.split("-")[2:5])
        assert bucket == f"mc-{tenant}-{region}-receipts"
        config = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert config["ObjectLockEnabled"] == "Enabled"
        assert config["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 365, "Years": 0}
        bucket_tags = client.get_bucket_tagging(Bucket=bucket)["TagSet"]
        assert {t["Key"]: t["Value"] for t in bucket_tags} == {"tenant": tenant, "region": region}
        lock = lake.lock_of(path)
        assert lock is not None and lock.mode == "COMPLIANCE" and lock.bucket_locked
        assert lock.retain_until is not None
        held = lock.retain_until - lock.written  # S3 keeps whole seconds
        assert timedelta(days=365) <= held < timedelta(days=365, seconds=1)
        assert lock.tags == {"tenant": tenant, "region": region}
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert lock.sha256 == hashlib.sha256(body).hexdigest()
        assert pl.read_parquet(body).get_column("tenant").unique().to_list() == [tenant]


def test_the_store_reopens_deduplicates_and_keeps_versions(s3: dict[str, Any]) -> None:
    data = small_demo()
    engine = pql.Engine(LOCATION, s3=s3, adapters=(), index=False)
    first = engine.ingest("receipts", data.receipts)
    again = engine.ingest("receipts", data.receipts)
    assert again.written == 0 and again.duplicates == data.receipts.height
    reopened = pql.Engine(LOCATION, s3=s3, adapters=(), index=False, limits=PATIENT)
    assert reopened.store.tenants() == tuple(sorted(TENANTS))
    assert reopened.store.version("acme") == 1
    answer = reopened.query(
        "FIND COUNT(receipts.executionId) AS n SINCE 60d", tenant="acme", now=TEST_NOW
    )
    assert answer.rows() == [(data.receipts.filter(pl.col("tenant") == "acme").height,)]
    assert first.files and set(first.files) <= set(s3_lake(reopened).objects())


def test_the_store_checks_the_locks_the_server_does_not(s3: dict[str, Any]) -> None:
    engine = pql.Engine(LOCATION, s3=s3, adapters=(), index=False)
    path = engine.ingest("receipts", small_demo().receipts).files[0]
    lake = s3_lake(engine)
    bucket, key = path.split("/", 1)
    lock = lake.lock_of(path)
    assert lock is not None and lock.retain_until is not None
    # the server lets a compliance retention be shortened ...
    shorter = lock.retain_until - timedelta(days=300)
    lake.client.put_object_retention(
        Bucket=bucket, Key=key, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": shorter}
    )
    assert lake.lock_of(path).retain_until == shorter  # type: ignore[union-attr]
    # ... the store never shortens one, and lengthens it when asked
    lake.extend_retention(path, "COMPLIANCE", shorter - timedelta(days=10))
    assert lake.lock_of(path).retain_until == shorter  # type: ignore[union-attr]
    lake.extend_retention(path, "GOVERNANCE", shorter + timedelta(days=10))
    after = lake.lock_of(path)
    assert after is not None and after.mode == "COMPLIANCE"
    assert after.retain_until == shorter + timedelta(days=10)
    # a compliance object is never deleted before its date, whatever the server would do
    with pytest.raises(SafetyError) as refused:
        lake.delete_object(path, now=TEST_NOW, bypass_governance=True)
    assert refused.value.code == "PQL-S062"
    assert lake.lock_of(path) is not None
    # past its date it may go (the server's clock decides too: shorten it below the server's now)
    server_now = lake.client.head_object(Bucket=bucket, Key=key)["LastModified"]
    lake.client.put_object_retention(
        Bucket=bucket,
        Key=key,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": server_now - timedelta(seconds=1)},
    )
    with pytest.raises(SafetyError):  # by the store's clock it is still locked
        lake.delete_object(path, now=server_now - timedelta(seconds=2))
    lake.delete_object(path, now=server_now)
    assert lake.lock_of(path) is None
    with pytest.raises(InputError) as gone:  # nothing left to delete: said, not a traceback
        lake.delete_object(path, now=server_now)
    assert gone.value.code == "PQL-E404"
    assert gone.value.message == f"{path} is not a stored object of {lake.location}"


def test_governance_objects_need_a_bypass(s3: dict[str, Any]) -> None:
    engine = pql.Engine(
        LOCATION, s3={**s3, "lock_mode": "governance", "retention_days": 30}, adapters=()
    )
    path = engine.ingest("receipts", small_demo().receipts).files[0]
    lake = s3_lake(engine)
    lock = lake.lock_of(path)
    assert lock is not None and lock.mode == "GOVERNANCE"
    with pytest.raises(SafetyError) as refused:
        lake.delete_object(path, now=TEST_NOW)
    assert refused.value.code == "PQL-S063"
    lake.client.put_object_legal_hold(
        Bucket=path.split("/")[0], Key=path.split("/", 1)[1], LegalHold={"Status": "ON"}
    )
    with pytest.raises(SafetyError) as held:
        lake.delete_object(path, now=TEST_NOW, bypass_governance=True)
    assert held.value.code == "PQL-S062"
    lake.client.put_object_legal_hold(
        Bucket=path.split("/")[0], Key=path.split("/", 1)[1], LegalHold={"Status": "OFF"}
    )
    lake.delete_object(path, now=TEST_NOW, bypass_governance=True)
    assert lake.lock_of(path) is None


def test_bad_locations_and_locks_are_refused(s3: dict[str, Any]) -> None:
    for location in ("s3://", "s3://mc-acme-us-east-1-receipts"):
        with pytest.raises(InputError) as bad:
            pql.Engine(location, s3=s3, adapters=())
        assert bad.value.code == "PQL-E170"
    with pytest.raises(InputError) as lock:
        pql.Engine(LOCATION, s3={**s3, "lock_mode": "none"}, adapters=())
    assert lock.value.code == "PQL-E171"
    with pytest.raises(InputError) as down:
        pql.Engine(LOCATION, s3={**s3, "endpoint_url": "http://127.0.0.1:9"}, adapters=())
    assert down.value.code == "PQL-E172"


def test_a_location_is_a_bucket_and_a_prefix() -> None:
    assert parse_location("s3://meta/a/b/") == ("meta", "a/b/")
    assert parse_location("s3://meta//a//") == ("meta", "a/")
    assert parse_location("s3://meta") == ("meta", "")
    assert parse_location("s3://meta/") == ("meta", "")


def test_the_local_state_of_a_location_is_kept_under_the_users_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PQL_S3_STATE the store's local state (statistics, caches) goes under
    $XDG_STATE_HOME, else ~/.local/state, one folder per bucket and prefix."""
    from types import SimpleNamespace
    from typing import cast

    from pql.storage.s3 import _default_state

    monkeypatch.delenv("PQL_S3_STATE", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    lake = cast(S3Lake, SimpleNamespace(meta_bucket="meta", prefix="team/a//b/"))
    expected = tmp_path / ".local" / "state" / "pql" / "s3" / "meta" / "team" / "a" / "b"
    assert _default_state(lake) == expected
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert _default_state(lake) == tmp_path / "state" / "pql" / "s3" / "meta" / "team" / "a" / "b"
    monkeypatch.setenv("PQL_S3_STATE", str(tmp_path / "here"))
    assert _default_state(lake) == tmp_path / "here"


@pytest.mark.parametrize(("mode", "days"), [("nope", 30), ("COMPLIANCE", 0)])
def test_a_lock_that_locks_nothing_is_refused(mode: str, days: int) -> None:
    with pytest.raises(InputError) as bad:
        S3Lake("s3://meta", Catalog(), lock_mode=mode, retention_days=days)
    assert bad.value.code == "PQL-E171"
    assert bad.value.message == f"object lock {mode!r} for {days} days is not a lock"


def test_a_session_token_goes_with_every_request(s3: dict[str, Any]) -> None:
    lake = S3Lake(LOCATION, Catalog(), session_token="the-session-token", **s3)
    sent: list[bytes | None] = []
    # Read off each request as it leaves, through the client's public event hooks: the
    # credentials themselves sit in private botocore attributes that may change in any release.
    lake.client.meta.events.register(
        "before-send.s3.*",
        lambda request, **_: sent.append(request.headers.get("X-Amz-Security-Token")),
    )
    lake.manifest()
    lake.exists("pql-meta/anything")
    assert len(sent) >= 2 and set(sent) == {b"the-session-token"}  # a retry sends it again


def test_each_object_carries_its_sha256_and_when_it_was_written(s3: dict[str, Any]) -> None:
    lake = S3Lake(LOCATION, Catalog(), clock=lambda: TEST_NOW, **s3)
    report = lake.ingest(RECEIPTS, receipts(5))
    assert report.files
    for path in report.files:
        lock = lake.lock_of(path)
        assert lock is not None
        assert (lock.sha256, lock.written) == (lake.digest(path), TEST_NOW)


def test_a_refused_request_names_what_the_store_was_doing(s3: dict[str, Any]) -> None:
    from botocore.stub import Stubber

    lake = S3Lake(LOCATION, Catalog(), **s3)
    path = "mc-acme-us-east-1-receipts/day=2024-03-01/part-x.parquet"
    with Stubber(lake.client) as stub:
        stub.add_client_error("head_object", "AccessDenied", "Access Denied", 403)
        stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
        for call, action in ((lake.exists, f"look for {path}"), (lake.get_bytes, f"read {path}")):
            with pytest.raises(InputError) as refused:
                call(path)
            assert refused.value.code == "PQL-E172"
            assert f"could not {action}: " in refused.value.message
            assert "AccessDenied" in refused.value.message


def test_a_damaged_object_is_named_with_its_tenant_and_problem(s3: dict[str, Any]) -> None:
    lake = S3Lake(LOCATION, Catalog(), **s3)
    lake.ingest(RECEIPTS, receipts(5))
    entry = lake.manifest().files[0]
    bucket, key = entry.path.split("/", 1)
    damaged = b"PAR1 not the rows that were written PAR1"
    md5 = base64.b64encode(hashlib.md5(damaged).digest()).decode()
    lake.client.put_object(Bucket=bucket, Key=key, Body=damaged, ContentMD5=md5)
    with pytest.raises(InputError) as bad:  # a new store: this one keeps the rows it wrote
        S3Lake(LOCATION, Catalog(), **s3).read(entry)
    assert bad.value.code == "PQL-E102"
    problem = f"it has {len(damaged):,} bytes, the manifest says {entry.bytes:,}"
    assert bad.value.details == {"path": entry.path, "tenant": "acme", "problem": problem}


def test_the_core_imports_without_boto3() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None; import pql\n"
        "pql.Engine.in_memory()\n"
        "try:\n    pql.Engine('s3://pql-meta')\n"
        "except pql.errors.InputError as e:\n    print(e.code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PQL-E173"


# -- the same answers as the local directory ---------------------------------------------------


@pytest.mark.parametrize("index", [True, False], ids=["indexed", "partitions"])
def test_the_s3_store_answers_as_the_local_directory(
    s3: dict[str, Any], tmp_path: Path, index: bool
) -> None:
    texts = (*CONTRACT_EXAMPLES, *DIFFERENTIAL_CASES)
    # Rows exactly at every window's bounds and partition edges, one microsecond either side.
    data = with_edges(small_demo(), windows_of(texts))
    local = pql.Engine(tmp_path / "lake", adapters=(), index=index, cache=False, limits=PATIENT)
    remote = pql.Engine(LOCATION, s3=s3, adapters=(), index=index, cache=False, limits=PATIENT)
    for engine in (local, remote):
        engine.ingest("receipts", data.receipts)
        engine.ingest("decisions", data.decisions)
        engine.wait_ready()
    assert remote.store.tenants() == local.store.tenants() == tuple(sorted(TENANTS))
    compared = 0
    for text in texts:
        for tenant in TENANTS:
            try:
                ours = local.query(text, tenant=tenant, now=TEST_NOW)
            except pql.errors.PQLError as exc:
                with pytest.raises(type(exc)) as also:
                    remote.query(text, tenant=tenant, now=TEST_NOW)
                assert also.value.code == exc.code
                continue
            theirs = remote.query(text, tenant=tenant, now=TEST_NOW)
            a, b = pl.from_arrow(ours.to_arrow()), pl.from_arrow(theirs.to_arrow())
            assert isinstance(a, pl.DataFrame) and isinstance(b, pl.DataFrame)
            assert_same_frame(b, a, f"{text!r} for {tenant}")
            compared += 1
    assert compared >= len(CONTRACT_EXAMPLES) * len(TENANTS)


def test_the_command_line_reads_an_s3_location(
    s3: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_demo()
    pql.Engine(LOCATION, s3=s3, adapters=()).ingest("receipts", data.receipts)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3["secret_key"])
    monkeypatch.setenv("PQL_S3_STATE", str(s3["state_dir"]))
    query = "FIND COUNT(receipts.executionId) AS n SINCE 3d"  # a few objects: in the deadline
    argv = ["query", "--data", LOCATION, "--tenant", "acme", "--format", "json"]
    assert cli.main([*argv, "--now", TEST_NOW.isoformat(), query]) == 0
    out = json.loads(capsys.readouterr().out)
    since = TEST_NOW - timedelta(days=3)
    expected = data.receipts.filter((pl.col("tenant") == "acme") & (pl.col("ts") >= since)).height
    assert out["rows"] == [[expected]] and expected > 0
