"""Optional packages: a clear error, with the install hint, when one is missing."""

from __future__ import annotations

import importlib

from pql.errors import InputError

__all__ = ["require"]


def require(module: str, feature: str) -> None:
    """Raise ``PQL-E152`` unless ``module`` can be imported; ``feature`` says what needs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise InputError(
            "PQL-E152",
            f"{feature} needs the optional package {module}, which is not installed",
            hints=(f"pip install 'pql[notebook]' (or pip install {module})",),
        ) from None
