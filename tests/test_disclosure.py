"""The disclosure pack: written, signed, verified; every tampering refused, naming the file;
the operator key; preflight's sample; and the commands that revert an onboarding."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine

import pql
from pql import cli
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.disclose import (
    OPERATOR_DIR,
    create_operator_key,
    disclose,
    fingerprint,
    verify_pack,
)
from pql.adapters.tenancy.offboard import delete_tenant, revoke_key
from pql.adapters.tenancy.preflight import run_preflight
from pql.demo import generate
from pql.signing import KeyRing, SigningKey
from tests.clock import TEST_NOW
from tests.paths import copy_lake, write_lake


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = generate(receipts=500, seed=3, now=TEST_NOW)
    root = write_lake(tmp_path_factory.mktemp("written"), demo, decisions=False)
    with time_machine.travel(TEST_NOW, tick=True):  # the tests' clock, outside any one test
        keys = root / "_pql" / "keys"
        SigningKey.generate("ops-1").write(keys, not_after=TEST_NOW + timedelta(days=365))
        Registry(root).create(
            TenantSpec("newco", "us-east-1", trusted_keys=("ops-1", "gone-1"), max_rows=500),
            now=TEST_NOW,
        )
        create_operator_key(root, kid="op-1")
    return root


@pytest.fixture
def data(tmp_path: Path, written: Path) -> Path:
    return copy_lake(written, tmp_path)


@pytest.fixture
def pack(data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pack"
    disclose(pql.Engine(data), "newco", out, now=TEST_NOW)
    return out


def operator_pub(data: Path) -> Path:
    return data / OPERATOR_DIR / "op-1.pub"


def test_a_pack_round_trips_with_what_the_tenant_was_promised(data: Path, pack: Path) -> None:
    report = verify_pack(pack, public_key=operator_pub(data))
    assert sorted(report.files) == ["keys.json", "limits.json", "profile.json", "residency.json"]
    assert sorted(p.name for p in pack.iterdir()) == sorted(
        [*report.files, "MANIFEST.json", "MANIFEST.sig"]
    )
    profile = json.loads((pack / "profile.json").read_text())
    assert profile["id"] == "newco" and profile["budget"]["max_rows"] == 500
    keys = {k["kid"]: k for k in json.loads((pack / "keys.json").read_text())["trusted_keys"]}
    ring = KeyRing.from_dir(data / "_pql" / "keys")
    assert keys["ops-1"]["fingerprint"] == fingerprint(ring.get("ops-1").public_key)
    assert keys["ops-1"]["status"] == "valid" and keys["gone-1"] == {
        "kid": "gone-1",
        "present": False,
    }
    limits = json.loads((pack / "limits.json").read_text())
    assert limits["applied"]["max_rows"] == 500 and limits["quotas"]["rows_per_day"] > 0
    residency = json.loads((pack / "residency.json").read_text())
    assert residency["allowed_regions"] == ["us-east-1"]
    assert residency["residency_adapter"] is True  # answered through pql_disclosure
    assert residency["policy"]["source"] == "tenancy"
    assert residency["locks"]["default_retention"] == {"mode": "compliance", "days": 365}
    manifest = json.loads((pack / "MANIFEST.json").read_text())
    assert manifest["operator_key"]["kid"] == "op-1" and manifest["created"].startswith("20")


def test_residency_section_lists_buckets_and_locks_of_the_tenants_data(
    data: Path, tmp_path: Path
) -> None:
    from tests.test_tenancy import receipts_of

    engine = pql.Engine(data)
    engine.ingest("receipts", receipts_of("newco", 10))
    out = tmp_path / "with-data"
    disclose(engine, "newco", out, now=TEST_NOW)
    residency = json.loads((out / "residency.json").read_text())
    assert [b["bucket"] for b in residency["buckets"]] == ["mc-newco-us-east-1-receipts"]
    assert residency["locks"]["objects"] == 1 and residency["locks"]["modes"] == {"compliance": 1}


def test_without_the_residency_adapter_the_pack_says_so(data: Path, tmp_path: Path) -> None:
    engine = pql.Engine(data, adapters=["tenancy"])
    disclose(engine, "newco", tmp_path / "p", now=TEST_NOW)
    residency = json.loads((tmp_path / "p" / "residency.json").read_text())
    assert residency["residency_adapter"] is False and "policy" not in residency


def _refused(pack: Path, code: str, file: str, key: Path | None = None) -> None:
    with pytest.raises(pql.PQLError) as refused:
        verify_pack(pack, public_key=key)
    assert refused.value.code == code, refused.value
    assert refused.value.details["file"] == file and file in refused.value.message


def test_every_tampering_is_refused_naming_the_file(data: Path, pack: Path) -> None:
    key = operator_pub(data)
    limits = pack / "limits.json"
    original = limits.read_bytes()
    limits.write_bytes(original.replace(b"500", b"900"))
    _refused(pack, "PQL-A112", "limits.json", key)
    limits.write_bytes(original)
    (pack / "extra.txt").write_text("not signed")
    _refused(pack, "PQL-A114", "extra.txt", key)
    (pack / "extra.txt").unlink()
    keys = (pack / "keys.json").read_bytes()
    (pack / "keys.json").unlink()
    _refused(pack, "PQL-A113", "keys.json", key)
    (pack / "keys.json").write_bytes(keys)
    signature = (pack / "MANIFEST.sig").read_text()
    (pack / "MANIFEST.sig").write_text(("A" if signature[0] != "A" else "B") + signature[1:])
    _refused(pack, "PQL-A110", "MANIFEST.sig", key)
    (pack / "MANIFEST.sig").write_text(signature)
    manifest = (pack / "MANIFEST.json").read_text()
    (pack / "MANIFEST.json").write_text(manifest.replace('"newco"', '"newc0"'))
    _refused(pack, "PQL-A110", "MANIFEST.sig", key)
    (pack / "MANIFEST.json").write_text(manifest)
    assert verify_pack(pack, public_key=key).tenant == "newco"  # whole again


def test_a_pack_signed_by_another_key_is_refused(data: Path, pack: Path, tmp_path: Path) -> None:
    other = SigningKey.generate("op-2")
    other.write(tmp_path / "other")
    _refused(pack, "PQL-A111", "MANIFEST.json", tmp_path / "other" / "op-2.pub")
    # Re-signed by someone else with their key embedded: whole, but not ours.
    fake = tmp_path / "fake"
    disclose(pql.Engine(data), "newco", fake, now=TEST_NOW, signing_key=other)
    assert verify_pack(fake).operator_kid == "op-2"
    _refused(fake, "PQL-A111", "MANIFEST.json", operator_pub(data))


def test_unknown_tenant_no_key_and_a_used_folder_are_refused(data: Path, tmp_path: Path) -> None:
    engine = pql.Engine(data)
    with pytest.raises(pql.InputError) as unknown:
        disclose(engine, "nobody", tmp_path / "x", now=TEST_NOW)
    assert unknown.value.code == "PQL-E202" and not (tmp_path / "x").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "a").write_text("x")
    with pytest.raises(pql.InputError) as taken:
        disclose(engine, "newco", used, now=TEST_NOW)
    assert taken.value.code == "PQL-E231"
    bare = tmp_path / "bare"
    pql.Engine(bare)
    Registry(bare).create(TenantSpec("newco", "us-east-1"), now=TEST_NOW)
    with pytest.raises(pql.InputError) as nokey:
        disclose(pql.Engine(bare), "newco", tmp_path / "y", now=TEST_NOW)
    assert nokey.value.code == "PQL-E232" and "operator-key create" in nokey.value.hints[0]
    with pytest.raises(pql.InputError) as twice:
        create_operator_key(data)
    assert twice.value.code == "PQL-E233"
    with pytest.raises(pql.InputError) as notpack:
        verify_pack(tmp_path / "bare")
    assert notpack.value.code == "PQL-E230"


def test_the_operator_key_is_private(data: Path) -> None:
    folder = data / OPERATOR_DIR
    assert stat.S_IMODE(os.stat(folder / "op-1.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder.parent).st_mode) == 0o700


def test_the_command_line_discloses_and_verifies_with_exit_codes(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-pack"
    base = ["tenants", "disclose", "newco", "--data", str(data), "--out", str(out)]
    assert cli.main([*base, "--now", TEST_NOW.isoformat()]) == 0
    assert "signed by op-1" in capsys.readouterr().out
    verify = ["tenants", "verify-pack", str(out), "--key", str(operator_pub(data))]
    assert cli.main([*verify, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert cli.main(["tenants", "verify-pack", str(out)]) == 0
    assert "not pinned" in capsys.readouterr().out
    (out / "profile.json").write_text("{}\n")
    assert cli.main(verify) == 4
    err = capsys.readouterr().err
    assert "PQL-A112" in err and "profile.json" in err and "Traceback" not in err
    assert cli.main(["tenants", "disclose", "nobody", "--data", str(data), "--out", "z"]) == 2
    assert "PQL-E202" in capsys.readouterr().err
    assert cli.main(["tenants", "verify-pack", str(tmp_path)]) == 2
    assert "PQL-E230" in capsys.readouterr().err
    assert cli.main(["tenants", "operator-key", "create", "--data", str(data)]) == 2
    assert "PQL-E233" in capsys.readouterr().err
    assert cli.main(["tenants", "operator-key", "show", "--data", str(data)]) == 0
    assert "SHA256:" in capsys.readouterr().out


def test_preflight_builds_and_verifies_a_sample_pack(data: Path, tmp_path: Path) -> None:
    results = {r.code: r for r in run_preflight(pql.Engine(data), "newco", TEST_NOW)}
    assert results["TEN-DISCLOSURE"].ok, results["TEN-DISCLOSURE"]
    assert "signed by op-1 and verified" in results["TEN-DISCLOSURE"].detail
    bare = tmp_path / "bare"
    pql.Engine(bare)
    Registry(bare).create(TenantSpec("newco", "us-east-1"), now=TEST_NOW)
    failing = {r.code: r for r in run_preflight(pql.Engine(bare), "newco", TEST_NOW)}
    assert not failing["TEN-DISCLOSURE"].ok
    assert failing["TEN-DISCLOSURE"].hint == "pql tenants operator-key create --data DIR"


def test_revoke_key_and_delete_revert_an_onboarding_keeping_the_trail(data: Path) -> None:
    keys = data / "_pql" / "keys"
    tenant, sidecar = revoke_key(data, "newco", "ops-1", now=TEST_NOW, keys_dir=keys, reason="x")
    assert tenant.trusted_keys == ("gone-1",) and sidecar is not None
    assert KeyRing.from_dir(keys).get("ops-1").revoked
    with pytest.raises(pql.InputError) as again:
        revoke_key(data, "newco", "ops-1", now=TEST_NOW)
    assert again.value.code == "PQL-E237"
    removed, evidence = delete_tenant(pql.Engine(data), "newco", now=TEST_NOW, operator="ops")
    assert removed.id == "newco" and Registry(data).get("newco") is None
    assert json.loads(evidence.read_text())["record"]["id"] == "newco"
    with pytest.raises(pql.InputError) as gone:
        delete_tenant(pql.Engine(data), "newco", now=TEST_NOW)
    assert gone.value.code == "PQL-E202"


def test_a_tenant_holding_data_is_not_deleted(data: Path) -> None:
    from tests.test_tenancy import receipts_of

    engine = pql.Engine(data)
    engine.ingest("receipts", receipts_of("newco", 5))
    with pytest.raises(pql.InputError) as held:
        delete_tenant(engine, "newco", now=TEST_NOW)
    assert held.value.code == "PQL-E236" and Registry(data).get("newco") is not None


def test_another_adapters_section_is_signed_and_cannot_replace_the_core_files(
    data: Path, tmp_path: Path
) -> None:
    import types

    from pql.adapters import hookimpl
    from pql.adapters.registry import load_adapters

    extra = types.ModuleType("extra_adapter")

    @hookimpl
    def pql_disclosure(engine: object, tenant: str) -> dict[str, object]:
        return {"deprecations": {"tenant": tenant, "notes": ["v1 retires"]}, "profile": {"x": 1}}

    extra.pql_disclosure = pql_disclosure  # type: ignore[attr-defined]
    adapters = load_adapters(
        ["tenancy", "extra", "residency"], plugins={"extra": extra}, entry_points=True
    )
    engine = pql.Engine(data, adapters=adapters)
    report = disclose(engine, "newco", tmp_path / "p", now=TEST_NOW)
    assert "deprecations.json" in report.files
    assert json.loads((tmp_path / "p" / "deprecations.json").read_text())["tenant"] == "newco"
    assert json.loads((tmp_path / "p" / "profile.json").read_text())["id"] == "newco"
    verify_pack(tmp_path / "p", public_key=operator_pub(data))
