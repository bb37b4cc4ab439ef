"""The range arithmetic under the cost model's estimates, exactly (estimates elsewhere are only
checked within a factor, which small slips in these pieces would not break)."""

from __future__ import annotations

import pytest

from pql.ast import CompareOp
from pql.plan.cost import _Bounds, _uniform


def _bounds(*conditions: tuple[CompareOp, int]) -> _Bounds:
    bounds = _Bounds()
    for op, value in conditions:
        bounds.add(op, value)
    return bounds


def test_one_side_is_enough_to_be_bounded() -> None:
    assert not _Bounds().bounded()
    assert _bounds((CompareOp.GT, 5)).bounded()
    assert _bounds((CompareOp.LE, 5)).bounded()


@pytest.mark.parametrize(
    ("low", "high", "empty"),
    [
        (CompareOp.GE, CompareOp.LE, False),  # 5 <= x <= 5
        (CompareOp.GT, CompareOp.LE, True),  # 5 < x <= 5
        (CompareOp.GE, CompareOp.LT, True),  # 5 <= x < 5
        (CompareOp.GT, CompareOp.LT, True),
    ],
)
def test_a_single_point_is_empty_unless_both_ends_include_it(
    low: CompareOp, high: CompareOp, empty: bool
) -> None:
    assert _bounds((low, 5), (high, 5)).empty() is empty


def test_null_lies_within_no_bounds() -> None:
    assert not _Bounds().admit(None)
    assert _Bounds().admit(3)
    assert _bounds((CompareOp.GE, 5)).admit(5) and not _bounds((CompareOp.GT, 5)).admit(5)
    assert _bounds((CompareOp.LE, 5)).admit(5) and not _bounds((CompareOp.LT, 5)).admit(5)


def test_uniform_share_of_a_range() -> None:
    assert _uniform(0.0, 10.0, 2.0, 4.0) == pytest.approx(0.2)
    assert _uniform(0.0, 10.0, None, 5.0) == pytest.approx(0.5)
    assert _uniform(0.0, 10.0, 5.0, None) == pytest.approx(0.5)
    assert _uniform(0.0, 10.0, 20.0, None) == 0.0
    assert _uniform(3.0, 3.0, None, None) == 1.0
    assert _uniform(3.0, 3.0, 4.0, None) == 0.0
