"""The memory budget of an indexed lake: how it is written and its default.

A budget is a number of bytes, given as an integer or as text with a binary or decimal unit
(``"512MiB"``, ``"4GiB"``, ``"2GB"``). The default is a quarter of the machine's physical memory
(1 GiB where that cannot be read). See ``docs/pql/MEMORY.md``.
"""

from __future__ import annotations

import os
import re

from pql.errors import InputError

__all__ = ["DEFAULT_SHARE", "MemoryBudget", "default_budget", "parse_budget"]

MemoryBudget = int | str | None
"""What ``Engine(memory_budget=...)`` takes: bytes, text such as ``"4GiB"``, or ``None`` (the
default)."""

DEFAULT_SHARE = 4
"""The default budget is the physical memory divided by this."""

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def default_budget() -> int:
    """A quarter of the physical memory, or 1 GiB where the machine does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1024**3
    return max(total // DEFAULT_SHARE, 1) if total > 0 else 1024**3


def parse_budget(value: MemoryBudget) -> int:
    """The budget in bytes (``None``: :func:`default_budget`)."""
    if value is None:
        return default_budget()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(value)
    if isinstance(value, int):
        if value < 0:
            raise _bad(value)
        return value
    found = _TEXT.match(value)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise _bad(value)
    return int(float(found.group(1)) * unit)


def _bad(value: object) -> InputError:
    return InputError(
        "PQL-E160",
        f"memory_budget {value!r} is not a size",
        hints=("give bytes (e.g. 4294967296) or a size such as '512MiB', '4GiB' or '2GB'",),
    )
