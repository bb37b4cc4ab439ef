"""The example queries the benchmarks ask: the contract's and ``docs/pql/LANGUAGE.md``'s.

One list for every benchmark that claims to run "every example", read from the same places the
documentation tests read (``tests/test_docs.py``), so a new example is benchmarked as soon as it
is documented.
"""

from __future__ import annotations

from typing import Any

from pql.examples import CONTRACT_EXAMPLES
from tests.test_docs import LANGUAGE_BLOCKS
from tests.test_docs import PARAMS as DOC_PARAMS

__all__ = ["PARAMS", "examples"]

PARAMS: dict[str, Any] = dict(DOC_PARAMS)
"""Values for the ``$parameters`` of the docs' examples, as the documentation tests bind them."""


def examples() -> dict[str, str]:
    """Every example by name: ``contract-N`` (1-based, the contract's order) and
    ``language-LINE`` (the line of its block in LANGUAGE.md)."""
    out = {f"contract-{n}": text for n, text in enumerate(CONTRACT_EXAMPLES, 1)}
    out.update({f"language-{block.line}": block.text.strip() for block in LANGUAGE_BLOCKS})
    return out
