"""The estimator's small cases, exactly, on statistics written by hand.

The estimates elsewhere are checked within a factor on generated data, or pinned in
``tests/golden/estimates.txt``; neither builds a window holding less than one row, a column the
statistics do not summarise, a range on a number column without a histogram, or two subjects
read over different windows. These do, so a slip in any of those branches shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pql.ast import CompareOp
from pql.catalog import DataType
from pql.errors import InternalError
from pql.plan.cost import _Bounds, _Estimator
from pql.plan.expr import Cmp, Col, Const, Null
from pql.plan.nodes import Scan
from pql.plan.rollups import _rewrite
from pql.stats import ColumnSummary, PartitionArrays, SubjectSummary, Window
from pql.storage.base import PartitionStats

TENANT = "acme"


class _Stats:
    """Hand-written statistics for one tenant; any other tenant has none."""

    def __init__(
        self, summaries: dict[str, SubjectSummary], arrays: dict[str, PartitionArrays]
    ) -> None:
        self.summaries = summaries
        self.arrays = arrays

    def partitions(self, tenant: str, subject: str) -> Sequence[PartitionStats]:
        return ()

    def partition_arrays(self, tenant: str, subject: str) -> PartitionArrays:
        empty = PartitionArrays(np.zeros(0), np.zeros(0), np.zeros(0))
        return self.arrays.get(subject, empty) if tenant == TENANT else empty

    def summary(
        self, tenant: str, subject: str, window: Window | None = None
    ) -> SubjectSummary | None:
        return self.summaries.get(subject) if tenant == TENANT else None


def _one_partition(rows: float, start: float = 0.0, end: float = 100.0) -> PartitionArrays:
    return PartitionArrays(np.array([start]), np.array([end]), np.array([rows]))


def _estimator(columns: dict[str, ColumnSummary], rows: int = 2, **windows: Any) -> _Estimator:
    stats = _Stats(
        {"receipts": SubjectSummary(rows=rows, columns=columns)},
        {"receipts": _one_partition(float(rows))},
    )
    estimator = _Estimator(stats)
    estimator.windows.update(windows)
    return estimator


def _col(name: str, type_: DataType = DataType.STRING, subject: str = "receipts") -> Col:
    return Col(subject, name, type_)


def test_value_shares_in_a_window_holding_less_than_one_row() -> None:
    """Two rows over [0, 100]; the window [0, 25] holds half a row. ``a`` was seen only after
    the window, ``b`` only within it: in the window every row is ``b``."""
    workflow = ColumnSummary(
        mcv={"a": 1, "b": 1},
        mcv_complete=True,
        spans={"a": (50.0, 100.0), "b": (0.0, 20.0)},
    )
    estimator = _estimator({"workflow": workflow}, receipts=(0.0, 25.0))
    assert estimator.window_rows("receipts", TENANT) == pytest.approx(0.5)
    assert estimator.value_shares(_col("workflow"), TENANT) == pytest.approx({"a": 0.0, "b": 1.0})


def test_distinct_of_a_column_without_a_summary_is_the_rows() -> None:
    estimator = _estimator({}, rows=10)
    assert estimator.distinct(_col("unsummarised"), 7.0, TENANT) == 7.0
    assert estimator.distinct(_col("unsummarised"), -1.0, TENANT) == 0.0


def test_uniform_range_keeps_its_lower_bound() -> None:
    """A FLOAT column with a [min, max] but no histogram: ``x > 7.5`` keeps a quarter of the
    non-null rows, ``x > 20`` none."""
    ratio = ColumnSummary(low=0.0, high=10.0)
    estimator = _estimator({"ratio": ratio}, rows=4)
    col = _col("ratio", DataType.FLOAT)
    for value, expected in [(7.5, 0.25), (20.0, 0.0), (-5.0, 1.0)]:
        bounds = _Bounds()
        bounds.add(CompareOp.GT, value)
        assert estimator.interval(col, bounds, TENANT) == pytest.approx(expected), value


def test_null_shares_and_their_complements() -> None:
    """A quarter of the rows are null: ``IS NULL`` keeps 0.25, ``IS NOT NULL`` 0.75."""
    code = ColumnSummary(nulls=1)
    estimator = _estimator({"code": code}, rows=4)
    col = _col("code")
    assert estimator.null_fraction(col, TENANT) == pytest.approx(0.25)
    assert estimator.non_null(col, TENANT) == pytest.approx(0.75)
    assert estimator.selectivity(Null(col), TENANT) == pytest.approx(0.25)
    assert estimator.selectivity(Null(col, negated=True), TENANT) == pytest.approx(0.75)


def test_rollup_rows_are_days_times_the_grain_combinations() -> None:
    """Two workflows and a status with a null: (2) x (1 + 1) combinations a day, 3 days."""
    columns = {
        "workflow": ColumnSummary(mcv={"etl": 600, "ml": 400}, mcv_complete=True),
        "status": ColumnSummary(nulls=5, mcv={"ok": 995}, mcv_complete=True),
    }
    estimator = _estimator(columns, rows=1000)
    node = SimpleNamespace(grain=(_col("workflow"), _col("status")), tenant=TENANT, days=3)
    assert estimator.rollup_rows(node, raw=1000.0) == 12.0  # type: ignore[arg-type]
    assert estimator.rollup_rows(node, raw=5.0) == 5.0  # type: ignore[arg-type]


def test_window_rows_are_kept_per_subject() -> None:
    """Two subjects read over different windows each count their own rows."""
    stats = _Stats({}, {"receipts": _one_partition(100.0), "decisions": _one_partition(400.0)})
    estimator = _Estimator(stats)
    estimator.windows.update(receipts=(0.0, 50.0), decisions=(0.0, 25.0))
    assert estimator.window_rows("receipts", TENANT) == pytest.approx(50.0)
    assert estimator.window_rows("decisions", TENANT) == pytest.approx(100.0)
    assert estimator.window_rows("incidents", TENANT) == 0.0


def test_internal_errors_keep_their_codes() -> None:
    """Only a bug reaches these; the code is what a report of it quotes."""
    estimator = _estimator({})
    with pytest.raises(InternalError) as caught:
        estimator.selectivity(object(), TENANT)  # type: ignore[arg-type]
    assert caught.value.code == "PQL-X032"
    with pytest.raises(InternalError) as caught:
        _rewrite(object(), None)  # type: ignore[arg-type]
    assert caught.value.code == "PQL-X002"


def test_a_scan_refuses_an_empty_window_and_other_subjects_columns() -> None:
    later, earlier = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"^scan window is empty$"):
        Scan("receipts", TENANT, later, earlier, ())
    with pytest.raises(ValueError, match=r"^a scan always has a tenant$"):
        Scan("receipts", "", earlier, later, ())
    foreign = _col("rule", subject="decisions")
    with pytest.raises(ValueError, match=r"^a scan reads only its own subject's columns$"):
        Scan("receipts", TENANT, earlier, later, (foreign,))


def test_conditions_whose_values_do_not_compare_are_taken_as_independent() -> None:
    """The analyzer never lets such values through; a direct call still gets an estimate."""
    ratio = ColumnSummary(low=0.0, high=10.0)
    estimator = _estimator({"ratio": ratio}, rows=4)
    col = _col("ratio", DataType.FLOAT)
    atoms = [Cmp(col, CompareOp.GT, Const(5.0, DataType.FLOAT))]
    atoms.append(Cmp(col, CompareOp.GT, Const("a", DataType.STRING)))
    share = estimator.one_column(col, atoms, TENANT)  # type: ignore[arg-type]
    assert share == pytest.approx(
        estimator.selectivity(atoms[0], TENANT) * estimator.selectivity(atoms[1], TENANT)
    )


def test_a_whole_float_finds_the_integer_it_equals_among_the_most_common_values() -> None:
    """``attempts = 3.0`` is ``attempts = 3``: the same share of the most common values; a
    fraction is no integer's value, so none of a complete list's rows."""
    attempts = ColumnSummary(mcv={"3": 3, "4": 1}, mcv_complete=True)
    estimator = _estimator({"attempts": attempts}, rows=4)
    col = _col("attempts", DataType.INT)
    for value, share in [(3, 0.75), (3.0, 0.75), (4.0, 0.25), (3.5, 0.0), (True, 0.0)]:
        kind = DataType.FLOAT if isinstance(value, float) else DataType.INT
        assert estimator.equal(col, Const(value, kind), TENANT) == pytest.approx(share), value


def test_a_range_over_an_incomplete_value_list_uses_the_range_not_the_list() -> None:
    """An INT column whose most common values are not all its values: ``x > 7.5`` over [0, 10]
    (no histogram) keeps a quarter of the rows, uniformly; the listed value 1 is not the
    answer (from the list alone, no row would be kept)."""
    code = ColumnSummary(mcv={"1": 3}, mcv_complete=False, low=0.0, high=10.0)
    estimator = _estimator({"code": code}, rows=4)
    bounds = _Bounds()
    bounds.add(CompareOp.GT, 7.5)
    assert estimator.interval(_col("code", DataType.INT), bounds, TENANT) == pytest.approx(0.25)


def test_a_column_without_a_summary_has_no_value_shares() -> None:
    estimator = _estimator({}, rows=10)
    assert estimator.value_shares(_col("unsummarised"), TENANT) is None
    assert (
        _estimator({"status": ColumnSummary()}, rows=0).value_shares(_col("status"), TENANT) is None
    )


def test_a_value_seen_at_one_instant_on_the_window_start_is_in_the_window() -> None:
    """``b`` was seen once, exactly at the window's first instant: no partition row lies strictly
    inside its span, so it counts by where that instant is, and the window's start belongs to
    the window. Every row in the window is then ``b``."""
    workflow = ColumnSummary(
        mcv={"a": 1, "b": 1},
        mcv_complete=True,
        spans={"a": (50.0, 100.0), "b": (0.0, 0.0)},
    )
    estimator = _estimator({"workflow": workflow}, receipts=(0.0, 25.0))
    assert estimator.value_shares(_col("workflow"), TENANT) == pytest.approx({"a": 0.0, "b": 1.0})


def test_combinations_are_counted_up_to_a_hundred_thousand() -> None:
    """The distinct combinations of complete value lists are counted while the product of their
    lengths (each value and null) holds at most 100,000 (10 x 10,000), and not beyond
    (11 x 9,091 = 100,001)."""

    def listed(n: int) -> ColumnSummary:
        return ColumnSummary(mcv={f"v{i}": 1 for i in range(n)}, mcv_complete=True)

    columns = {"few": listed(9), "many": listed(9_999), "ten": listed(10), "odd": listed(9_090)}
    estimator = _estimator(columns, rows=10_000)
    counted = estimator.combinations((_col("few"), _col("many")), 1e9, TENANT)
    assert counted == pytest.approx(9 * 9_999, rel=1e-3)  # nulls: none, so no combination
    assert estimator.combinations((_col("ten"), _col("odd")), 1e9, TENANT) is None


def test_nulls_spanning_nearly_the_whole_window_count_at_their_overall_share() -> None:
    """Four rows over [0, 100], one null seen from 1 to 50. In the window [0, 50] the nulls leave
    2% of it uncovered (within the 5% slack): they count at their overall share, a quarter, and
    the partitions are not consulted (which would give a half: one null in two rows)."""
    code = ColumnSummary(nulls=1, null_span=(1.0, 50.0))
    estimator = _estimator({"code": code}, rows=4, receipts=(0.0, 50.0))
    assert estimator.window_rows("receipts", TENANT) == pytest.approx(2.0)
    assert estimator.null_fraction(_col("code"), TENANT) == pytest.approx(0.25)
    wider = _estimator({"code": code}, rows=4, receipts=(0.0, 100.0))  # half of it uncovered
    assert wider.null_fraction(_col("code"), TENANT) == pytest.approx(0.25)


def test_a_join_missing_either_key_is_a_cartesian_product() -> None:
    """Without a key on either side there is no condition: every pair of rows (the join policy
    refuses it). With both keys, four distinct ids on ten rows keep far fewer."""
    ids = ColumnSummary(mcv={f"e{i}": 1 for i in range(4)}, mcv_complete=True)
    estimator = _estimator({"executionId": ids}, rows=10)
    key = _col("executionId")
    assert estimator.join_rows(10.0, 20.0, key, None, TENANT) == 200.0
    assert estimator.join_rows(10.0, 20.0, None, key, TENANT) == 200.0
    assert estimator.join_rows(10.0, 20.0, None, None, TENANT) == 200.0
    assert estimator.join_rows(10.0, 20.0, key, key, TENANT) < 200.0
