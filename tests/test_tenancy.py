"""The tenancy adapter: create (defaults, idempotence, conflicts), budgets enforced at once,
quotas at ingest (whole files), and preflight from Python and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import pql
from pql import cli
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.disclose import create_operator_key
from pql.adapters.tenancy.preflight import run_preflight, synthetic_tenant
from pql.demo import generate
from pql.signing import SigningKey
from tests.clock import TEST_NOW
from tests.paths import copy_lake, write_lake


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = generate(receipts=2_000, seed=3, now=TEST_NOW)
    return write_lake(tmp_path_factory.mktemp("written"), demo)


@pytest.fixture
def data(tmp_path: Path, written: Path) -> Path:
    return copy_lake(written, tmp_path)


def receipts_of(tenant: str, n: int, start: int = 0) -> pl.DataFrame:
    ts = TEST_NOW.replace(microsecond=0) - timedelta(hours=1)
    return pl.DataFrame(
        {
            "executionId": [f"x{i}" for i in range(start, start + n)],
            "tenant": [tenant] * n,
            "region": ["us-east-1"] * n,
            "ts": [ts] * n,
            "workflow": ["w"] * n,
            "status": ["ok"] * n,
            "latency_ms": [1.0] * n,
            "cost_usd": [0.1] * n,
        }
    )


def test_create_applies_defaults_is_idempotent_and_refuses_conflicts(data: Path) -> None:
    registry = Registry(data)
    assert not registry.exists() and registry.get("acme") is None and registry.all() == []
    spec = TenantSpec("acme", "us-east-1", max_rows=50)
    tenant, defaulted, created = registry.create(spec, now=TEST_NOW)
    assert registry.exists() and Registry(data).exists()
    assert created and tenant.budget.max_rows == 50 and tenant.allowed_regions == ("us-east-1",)
    assert "max_rows" not in defaulted and {"allowed_regions", "cost_budget"} <= set(defaulted)
    again, _, created_again = registry.create(spec, now=TEST_NOW + timedelta(hours=1))
    assert not created_again and again == tenant  # a no-op: not even `updated` changes
    with pytest.raises(pql.InputError) as conflict:
        registry.create(TenantSpec("acme", "us-east-1", max_rows=60), now=TEST_NOW)
    assert conflict.value.code == "PQL-E203" and "max_rows: 50 vs 60" in conflict.value.message
    refusals = {
        "PQL-E204": TenantSpec("beta", "US East"),
        "PQL-E205": TenantSpec("beta", "us-east-1", allowed_regions=("eu-west-1",)),
        "PQL-E207": TenantSpec("beta", "us-east-1", max_rows=0),
        "PQL-E030": TenantSpec("Beta!", "us-east-1"),
    }
    for code, bad in refusals.items():
        with pytest.raises(pql.InputError) as caught:
            registry.create(bad, now=TEST_NOW)
        assert caught.value.code == code
    assert registry.get("beta") is None
    with pytest.raises(pql.InputError) as unknown:
        registry.require("nobody")
    assert unknown.value.code == "PQL-E202"


def test_the_budget_is_enforced_at_once_with_the_tenants_limit(data: Path) -> None:
    engine = pql.Engine(data)
    query = "FIND receipts SINCE 1d LIMIT 100"
    assert engine.query(query, tenant="acme", now=TEST_NOW).df.height <= 100
    Registry(data).create(TenantSpec("acme", "us-east-1", max_rows=50), now=TEST_NOW)
    with pytest.raises(pql.SafetyError) as caught:
        engine.query(query, tenant="acme", now=TEST_NOW)  # the same engine, no restart
    assert caught.value.code == "PQL-S002" and "maximum of 50 rows" in caught.value.message
    assert engine.query(query, tenant="globex", now=TEST_NOW) is not None  # others unchanged
    Registry(data).create(TenantSpec("globex", "us-east-1", cost_budget=10), now=TEST_NOW)
    with pytest.raises(pql.SafetyError) as cost:
        engine.query("FIND receipts SINCE 1d", tenant="globex", now=TEST_NOW)
    assert cost.value.code == "PQL-S005" and "budget of 10" in cost.value.message
    Registry(data).set_state("globex", "suspended", now=TEST_NOW)
    with pytest.raises(pql.SafetyError) as suspended:
        engine.query(
            "FIND COUNT(*) AS n WHERE receipts.status = 'ok'", tenant="globex", now=TEST_NOW
        )
    assert suspended.value.code == "PQL-S051"


def test_a_file_over_a_quota_is_rejected_whole(data: Path) -> None:
    Registry(data).create(TenantSpec("quota", "us-east-1", rows_per_day=100), now=TEST_NOW)
    engine = pql.Engine(data)
    engine.ingest("receipts", receipts_of("quota", 60))
    mixed = pl.concat([receipts_of("quota", 60, start=60), receipts_of("free", 10)])
    with pytest.raises(pql.SafetyError) as caught:
        engine.ingest("receipts", mixed)
    assert caught.value.code == "PQL-S052" and "quota of 100 rows a day" in caught.value.message
    count = "FIND COUNT(*) AS n WHERE receipts.status = 'ok' SINCE 1d"
    assert engine.query(count, tenant="quota", now=TEST_NOW).df.item() == 60
    assert engine.query(count, tenant="free", now=TEST_NOW).df.item() == 0  # nothing written
    engine.ingest("receipts", receipts_of("quota", 40, start=60))  # exactly up to the quota
    Registry(data).create(TenantSpec("small", "us-east-1", bytes_stored=1_000), now=TEST_NOW)
    with pytest.raises(pql.SafetyError) as size:
        engine.ingest("receipts", receipts_of("small", 100))
    assert size.value.code == "PQL-S053"


def test_preflight_passes_for_a_ready_tenant_and_names_what_is_missing(data: Path) -> None:
    keys = data / "_pql" / "keys"
    SigningKey.generate("ops-1").write(keys, not_after=TEST_NOW + timedelta(days=365))
    SigningKey.generate("ops-2").write(keys, not_after=TEST_NOW + timedelta(days=10))
    registry = Registry(data)
    registry.create(TenantSpec("acme", "us-east-1", trusted_keys=("ops-1",)), now=TEST_NOW)
    registry.create(TenantSpec("globex", "us-east-1", trusted_keys=("ops-2",)), now=TEST_NOW)
    create_operator_key(data)
    engine = pql.Engine(data)
    results = run_preflight(engine, "acme", TEST_NOW)
    assert [r.code for r in results] == [
        "TEN-REGISTERED",
        "TEN-RESIDENCY",
        "TEN-BUDGET",
        "TEN-QUOTA",
        "TEN-KEYS",
        "TEN-SLO",
        "TEN-SYNTHETIC",
        "TEN-DISCLOSURE",
    ]
    assert all(r.ok for r in results), results
    count = "FIND COUNT(*) AS n WHERE receipts.workflow = 'preflight' SINCE 1d"
    assert engine.query(count, tenant="acme", now=TEST_NOW).df.item() == 0  # never counted
    assert engine.query(count, tenant=synthetic_tenant("acme"), now=TEST_NOW).df.item() == 1
    failing = {r.code: r for r in run_preflight(engine, "globex", TEST_NOW) if not r.ok}
    assert list(failing) == ["TEN-KEYS"] and "pql keys generate" in failing["TEN-KEYS"].hint


def test_the_command_line_creates_and_preflights(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cli.ADAPTERS_ENV, raising=False)
    create = ["tenants", "create", "acme", "--region", "us-east-1", "--data", str(data)]
    assert cli.main([*create, "--format", "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["created"] and "trusted_keys" in made["defaulted"]
    assert cli.main(create) == 0
    assert capsys.readouterr().out.startswith("tenant acme already exists with this spec")
    assert cli.main([*create[:-2], "--data", str(data), "--max-rows", "7"]) == 2
    assert "error[PQL-E203]" in capsys.readouterr().err
    now = ["--now", TEST_NOW.isoformat()]
    assert cli.main(["tenants", "preflight", "acme", "--data", str(data), *now]) == 1
    table = capsys.readouterr().out
    assert (
        "FAIL  TEN-KEYS" in table
        and "FAIL  TEN-DISCLOSURE" in table
        and "PASS  TEN-SLO" in table
        and "6 of 8 checks" in table
    )
    assert (
        cli.main(["tenants", "preflight", "acme", "--data", str(data), "--format", "json", *now])
        == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and {c["code"] for c in doc["checks"] if not c["ok"]} == {
        "TEN-KEYS",
        "TEN-DISCLOSURE",
    }
    assert cli.main(["tenants", "preflight", "nobody", "--data", str(data)]) == 2
    assert "PQL-E202" in capsys.readouterr().err


def test_the_command_line_exits_zero_when_every_check_passes(data: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    SigningKey.generate("ops-1").write(keys, not_after=TEST_NOW + timedelta(days=90))
    pql_cli = [sys.executable, "-m", "pql.cli"]
    subprocess.run(
        [
            *pql_cli,
            "tenants",
            "create",
            "acme",
            "--region",
            "us-east-1",
            "--trust-key",
            "ops-1",
            "--data",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*pql_cli, "tenants", "operator-key", "create", "--data", str(data)],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [
            *pql_cli,
            "tenants",
            "preflight",
            "acme",
            "--data",
            str(data),
            "--keys",
            str(keys),
            "--now",
            TEST_NOW.isoformat(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("8 of 8 checks passed")
