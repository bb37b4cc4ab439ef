"""The onboarding runbook runs: every `$ ` line of its console blocks, in order, on a temporary
data directory, each exiting 0 or the code the runbook writes after it (`# exit N`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RUNBOOK = Path(__file__).parent.parent / "docs" / "runbooks" / "TENANT_ONBOARDING.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(RUNBOOK.read_text()) if lang == kind]


def commands() -> list[tuple[str, int]]:
    """The runbook's commands in order, each with the exit code it documents (default 0)."""
    out = []
    for body in blocks("console"):
        for line in body.splitlines():
            if not line.startswith("$ "):
                continue
            command = line[2:]
            code = 0
            match = EXIT.search(command)
            if match:
                code = int(match.group(1))
                command = command[: match.start()]
            out.append((command.strip(), code))
    return out


def test_the_runbook_names_the_variables_the_test_sets() -> None:
    exported = {
        m.group(1) for body in blocks("bash") for m in re.finditer(r"^export (\w+)=", body, re.M)
    }
    assert exported == {"DATA", "TENANT", "KEYS", "SIGNERS", "PACK"}
    steps = [c for c, _ in commands()]
    for needed in (
        "pql keys generate",
        "pql tenants create",
        "pql tenants preflight",
        "pql query",
        "pql tenants disclose",
        "pql tenants verify-pack",
        "pql tenants revoke-key",
        "pql tenants purge-retired",
        "pql tenants delete",
    ):
        assert any(s.startswith(needed) for s in steps), needed


def test_the_runbook_runs_in_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATA": str(data),
        "TENANT": "acme",
        "KEYS": str(data / "_pql" / "keys"),
        "SIGNERS": str(tmp_path / "signers"),
        "PACK": str(tmp_path / "packs" / "acme"),
        "HOME": str(tmp_path),
    }
    env.pop("PQL_ADAPTERS", None)
    ran = []
    for command, expected in commands():
        done = subprocess.run(
            ["bash", "-c", command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        ran.append(command)
        if done.returncode != expected:
            pytest.fail(
                f"runbook step {len(ran)} `{command}` exited {done.returncode}, not {expected}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        if expected == 0:
            assert "Traceback" not in done.stderr, command
    assert len(ran) >= 15
    assert not (tmp_path / "packs" / "acme").exists()  # purged
    evidence = sorted(p.name for p in (data / "_pql" / "evidence").iterdir())
    assert any(name.startswith("delete-acme-") for name in evidence)  # the trail stays
