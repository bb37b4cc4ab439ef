"""What an engine does when it opens, so that its first queries (after a restart, every
tenant's at once) do not: the parser and each of its lexer's scanners are built."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json
import pql
from pql import parser

def built():
    lexer = parser._lark().parser.lexer
    return sorted({s._scanner is not None for s in lexer.lexers.values()})

before = parser._lark.cache_info().currsize
pql.Engine.in_memory()
after = built()
parser.parse('FIND COUNT(receipts.executionId) WHERE receipts.status IN ("a", "b") SINCE 7d')
print(json.dumps({"before": before, "after": after}))
"""


def test_opening_an_engine_builds_the_parser_and_every_scanner_of_its_lexer() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["before"] == 0  # a fresh process: nothing built at import
    assert found["after"] == [True]  # every distinct scanner, before any query
