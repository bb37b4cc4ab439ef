"""What a service's engine imports while it answers: never pandas.

``pa.array`` imports pandas the first time it is called whenever pandas is installed (it is, in
most notebooks and services): a quarter to half a second of work that holds the interpreter. A
restarted engine did that in its loader thread in its first second, while the tenants' first
queries waited for their snapshots to be mapped. The storage builds its Arrow arrays from
buffers instead (:func:`pql.storage.base.arrow_array`); these tests keep it that way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pql.demo import generate
from pql.errors import InternalError
from pql.storage.base import arrow_array
from tests.clock import TEST_NOW
from tests.paths import write_lake

_SERVICE = """
import json, sys
import pql
root, now = sys.argv[1], sys.argv[2]
queries = [
    "FIND COUNT(*) AS n GROUP BY receipts.status SINCE 30d",
    "FIND receipts WHERE receipts.executionId = 'nope' SINCE 30d",
    "FIND COUNT(decisions.decisionId) AS n JOIN receipts ON decisions.executionId = "
    "receipts.executionId WHERE decisions.effect = 'deny' GROUP BY decisions.rule SINCE 30d",
]
found = {}
for start in ("first open", "restart"):
    engine = pql.Engine(root, cache=False, preload="all")
    assert engine.store.wait_ready(300) and engine.store.wait_snapshots(300)
    for tenant in engine.store.tenants():
        for text in queries:
            engine.query(text, tenant=tenant, now=now)
    found[start] = {
        "sources": sorted({i.source for i in engine.store.loads().values()}),
        "pandas": "pandas" in sys.modules,
    }
    engine.close()
print(json.dumps(found))
"""


def test_a_service_engine_never_imports_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pandas")  # installed with the dev extras: the test can fail
    root = write_lake(tmp_path, generate(2_000, seed=3, tenants=2, now=TEST_NOW))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", _SERVICE, str(root), TEST_NOW.isoformat()],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=600,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    # Loaded from Parquet (lookups built, snapshots written), then mapped from the snapshots.
    assert found["first open"] == {"sources": ["parquet"], "pandas": False}
    assert found["restart"] == {"sources": ["snapshot"], "pandas": False}


_NUMBERS = st.sampled_from(
    [np.dtype(t) for t in ("uint64", "uint32", "int64", "int32", "int8", "float64", "float32")]
)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dtype=_NUMBERS)
def test_arrow_array_is_pa_array_without_the_copy(data: st.DataObject, dtype: np.dtype) -> None:
    width: Literal[32, 64] = 32 if dtype.itemsize == 4 else 64
    elements = st.floats(allow_nan=False, width=width) if dtype.kind == "f" else None
    values = data.draw(hnp.arrays(dtype, st.integers(0, 70), elements=elements))
    missing = data.draw(st.none() | hnp.arrays(np.dtype(np.bool_), len(values)))
    got = arrow_array(values, missing)
    assert got.equals(pa.array(values, mask=missing))
    assert got.null_count == (0 if missing is None else int(missing.sum()))
    if len(values):
        assert got.buffers()[1].address == values.ctypes.data  # the NumPy buffer itself


def test_arrow_array_copies_a_strided_view_and_refuses_what_is_not_numbers() -> None:
    every_other = np.arange(10, dtype=np.int64)[::2]
    assert arrow_array(every_other).to_pylist() == [0, 2, 4, 6, 8]
    bad_ones = (np.zeros((2, 2)), np.array(["a", "b"]), np.array([object()]), np.array([True]))
    for bad in bad_ones:
        with pytest.raises(InternalError) as caught:
            arrow_array(bad)
        assert caught.value.code == "PQL-X052"
