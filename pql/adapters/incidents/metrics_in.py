"""Metric samples in: JSON lines (or CSV) of ``tenant, ts, name, value, labels``."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from pql.adapters.incidents.subjects import METRIC_SAMPLES
from pql.errors import InputError
from pql.signing import to_utc

__all__ = ["read_samples"]


def _bad(path: Path, line: int, why: str) -> InputError:
    return InputError(
        "PQL-E452",
        f"{path}:{line}: {why}",
        hints=('each sample: {"tenant": T, "ts": ISO-8601, "name": N, "value": X, "labels": {}}',),
    )


def read_samples(path: Path) -> pl.DataFrame:
    """The samples of a ``.jsonl`` or ``.csv`` file as ``metric_samples`` rows."""
    if not path.exists():
        raise InputError("PQL-E452", f"no metric file {str(path)!r}")
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    labels = json.loads(row.get("labels") or "{}")
                except ValueError:
                    raise _bad(path, number, "labels is not a JSON object") from None
                records.append((number, {**row, "labels": labels}))
    else:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except ValueError:
                raise _bad(path, number, "not a JSON object") from None
    out: dict[str, list[Any]] = {c: [] for c in METRIC_SAMPLES.names}
    for number, rec in records:
        try:
            tenant, name = str(rec["tenant"]), str(rec["name"])
            ts = to_utc(str(rec["ts"]))
            value = float(rec["value"])
        except (KeyError, ValueError, TypeError, Exception) as exc:
            raise _bad(path, number, f"bad sample ({type(exc).__name__}: {exc})") from None
        labels = rec.get("labels") or {}
        if not isinstance(labels, dict):
            raise _bad(path, number, "labels must be an object")
        text = json.dumps({str(k): str(v) for k, v in labels.items()}, sort_keys=True)
        digest = hashlib.sha256(f"{name}|{text}|{ts.isoformat()}".encode()).hexdigest()[:16]
        out["sampleId"].append(f"m-{digest}")
        out["tenant"].append(tenant)
        out["ts"].append(ts)
        out["name"].append(name)
        out["value"].append(value)
        out["labels"].append(text)
        out["workflow_label"].append(labels.get("workflow"))
    return pl.DataFrame(out, schema=METRIC_SAMPLES.polars_schema())
