"""A third-party adapter package, installed into a fresh virtual environment, is picked up with no
change to the core: its subject is queryable and its command group appears; uninstalling it
removes both.

pql itself is installed into the new environment from this checkout (built, not editable) and so
is ``tests/adapter_pkg``. To keep the test to seconds, the heavy dependencies (polars, pyarrow,
hatchling for the builds) come from the running environment through a ``.pth`` path entry instead
of being installed again; ``.pth`` files inside that path are not processed, so this checkout's
own editable install does not leak in. Only the build backend (hatchling) is installed afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tests" / "adapter_pkg"
NOW = "2026-03-02T12:00:00Z"


@dataclass(frozen=True)
class Env:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PQL_ADAPTERS")}
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=self.root,  # never the checkout: `python -c` would import pql from there
            timeout=300,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def pip(self, *args: str) -> None:
        self.run(self.python, "-m", "pip", "--disable-pip-version-check", "-q", *args)

    def pql(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.root / "bin" / "pql", *args, check=check)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=True)
    made = Env(root)
    purelib = made.run(
        made.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    shared = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_shared_dependencies.pth").write_text("\n".join(shared) + "\n")
    # Build from copies: a build must not leave files in the checkout.
    source = root / "src"
    shutil.copytree(
        ROOT, source / "pql", ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "tests")
    )
    shutil.copytree(PACKAGE, source / "adapter_pkg")
    made.pip("install", "hatchling>=1.21")  # the build backend of both packages
    made.pip("install", "--no-deps", "--no-build-isolation", str(source / "pql"))
    return made


def _widgets(env: Env, data: Path) -> None:
    script = f"""
import polars as pl
from datetime import datetime, UTC
import pql
engine = pql.Engine({str(data)!r})
ts = datetime(2026, 3, 1, tzinfo=UTC)
engine.ingest("widgets", pl.DataFrame({{
    "widgetId": ["w1", "w2", "w3"], "tenant": ["acme", "acme", "zeta"],
    "ts": [ts, ts, ts], "size": [3, 5, 7]}}))
"""
    env.run(env.python, "-c", script)


def test_a_third_party_adapter_is_picked_up_and_removed(env: Env, tmp_path: Path) -> None:
    import pql

    assert Path(
        env.run(env.python, "-c", "import pql; print(pql.__file__)").stdout.strip()
    ) != Path(pql.__file__), (
        "pql must be installed into the fresh environment, not borrowed from this checkout"
    )
    query = "FIND COUNT(*) AS n WHERE widgets.size > 0 SINCE 7d"
    data = tmp_path / "lake"
    data.mkdir()

    before = env.pql("query", "--data", str(data), "--tenant", "acme", query, check=False)
    assert before.returncode == 2 and "PQL-E010" in before.stderr  # no such subject yet

    env.pip("install", "--no-deps", "--no-build-isolation", str(env.root / "src" / "adapter_pkg"))
    listed = json.loads(env.pql("adapters", "--format", "json").stdout)
    widgets = next(a for a in listed if a["name"] == "widgets")
    assert widgets["status"] == "loaded"
    assert widgets["distribution"] == "pql-widgets-adapter" and widgets["version"] == "0.3.0"
    assert widgets["subjects"] == ["widgets"] and widgets["commands"] == ["widgets"]
    assert {a["name"] for a in listed} >= {"tenancy", "widgets"}

    _widgets(env, data)
    answer = env.pql(
        "query", "--data", str(data), "--tenant", "acme", "--now", NOW, "--format", "json", query
    )
    assert json.loads(answer.stdout)["rows"] == [[2]]  # acme's two widgets, never zeta's
    counted = env.pql("widgets", "count", "--data", str(data), "--tenant", "zeta", "--now", NOW)
    assert counted.stdout.strip() == "widgets: 1"
    assert "widgets" in env.pql("--help").stdout

    env.pip("uninstall", "-y", "pql-widgets-adapter")
    assert "widgets" not in {
        a["name"] for a in json.loads(env.pql("adapters", "--format", "json").stdout)
    }
    gone = env.pql(
        "query", "--data", str(data), "--tenant", "acme", "--now", NOW, query, check=False
    )
    assert gone.returncode == 2 and "PQL-E010" in gone.stderr
    usage = env.pql("widgets", "count", check=False)
    assert usage.returncode == 2 and "PQL-E070" in usage.stderr
    assert "widgets" not in env.pql("--help").stdout
