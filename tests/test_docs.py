"""Keep the documentation honest: the codes, rules, limits and examples in docs/ match the code.

Conventions the docs follow (and these tests rely on):

* A fenced ```pql block holds one query that runs; if the block right after it is a ```result
  block, that block's first line lists the answer's columns.
* A fenced ```pql-error block holds one query that fails with a :class:`pql.PQLError`; if the
  block right after it is a ```text block starting with ``error[PQL-...]``, that is the code.
* A row of a table in ERRORS.md whose text says "planned" documents a code that is not built yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

import pql
from pql import parser
from pql.demo import generate
from pql.limits import DEFAULT_LIMITS, Limits
from pql.plan import safety

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "pql" / "LANGUAGE.md"
SAFETY = DOCS / "pql" / "SAFETY.md"
ERRORS = DOCS / "pql" / "ERRORS.md"

CODE = re.compile(r"PQL-[AESX]\d{3}")
OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[\w-]*)[ \t]*$")

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
TENANT = "acme"
PARAMS = {"status": "error", "min_ms": 250, "from": "2026-03-01T00:00:00Z"}
"""Values for the ``$parameters`` the docs' examples use (``$region`` is left out on purpose)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    info: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` in order, with their indentation removed."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = OPEN.match(lines[i])
        if opened is None:
            i += 1
            continue
        indent = len(opened["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
            j += 1
        blocks.append(Block(path, i + 1, opened["info"], "\n".join(body)))
        i = j + 1
    return blocks


def _query_text(block: Block) -> str:
    """The block's text without leading blank and comment-only lines."""
    lines = block.text.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def _starts_with_find(block: Block) -> bool:
    return _query_text(block).lstrip().upper().startswith("FIND")


def _doc_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _blocks(info: str, paths: list[Path]) -> list[tuple[Block, Block | None]]:
    """Blocks of kind ``info`` in ``paths``, each with the block that follows it (if any)."""
    out: list[tuple[Block, Block | None]] = []
    for path in paths:
        blocks = fenced_blocks(path)
        for n, block in enumerate(blocks):
            if block.info == info:
                out.append((block, blocks[n + 1] if n + 1 < len(blocks) else None))
    return out


PQL_BLOCKS = _blocks("pql", _doc_files())
ERROR_BLOCKS = _blocks("pql-error", _doc_files())
LANGUAGE_BLOCKS = [b for b, _ in _blocks("pql", [LANGUAGE]) if _starts_with_find(b)]


def _ids(pairs: list[tuple[Block, Block | None]]) -> list[str]:
    return [block.id for block, _ in pairs]


@pytest.fixture(scope="module")
def engine() -> pql.Engine:
    """An engine over a small slice of the demo data the docs use (same seed and clock)."""
    data = generate(400, seed=7, now=NOW)
    eng = pql.Engine.in_memory()
    eng.ingest("receipts", data.receipts)
    eng.ingest("decisions", data.decisions)
    return eng


# ---------------------------------------------------------------------------------------------
# Error codes


def _source_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "pql").rglob("*.py"):
        codes |= set(CODE.findall(path.read_text(encoding="utf-8")))
    return codes


def _planned_codes(text: str) -> set[str]:
    """Codes documented in a table row that says the code is planned."""
    codes: set[str] = set()
    for line in text.splitlines():
        if line.lstrip().startswith("|") and "planned" in line.lower():
            codes |= set(CODE.findall(line))
    return codes


def test_every_code_in_the_source_is_documented() -> None:
    documented = set(CODE.findall(ERRORS.read_text(encoding="utf-8")))
    missing = sorted(_source_codes() - documented)
    assert not missing, f"codes raised in pql/ but missing from {ERRORS.name}: {missing}"


def test_every_documented_code_exists_or_is_planned() -> None:
    text = ERRORS.read_text(encoding="utf-8")
    stale = sorted(set(CODE.findall(text)) - _source_codes() - _planned_codes(text))
    assert not stale, f"{ERRORS.name} documents codes that pql/ no longer has: {stale}"


def test_planned_codes_are_not_built_yet() -> None:
    built = sorted(_planned_codes(ERRORS.read_text(encoding="utf-8")) & _source_codes())
    assert not built, f"codes marked planned in {ERRORS.name} now exist in pql/: {built}"


def test_every_safety_code_is_in_safety_md() -> None:
    text = SAFETY.read_text(encoding="utf-8")
    missing = sorted(c for c in _source_codes() if c.startswith("PQL-S") and c not in text)
    assert not missing, f"safety codes missing from {SAFETY.name}: {missing}"


# ---------------------------------------------------------------------------------------------
# Safety rules and limits


@pytest.mark.parametrize("rule", safety.RULES, ids=lambda r: r.__name__)
def test_every_safety_rule_is_named_in_safety_md(rule: safety.Rule) -> None:
    name = rule.__name__.replace("_", "-")  # as `explain` lists it
    assert f"`{name}`" in SAFETY.read_text(encoding="utf-8"), f"{name} is not in {SAFETY.name}"


def test_documented_limits_match_the_code() -> None:
    text = SAFETY.read_text(encoding="utf-8")
    for value in (parser.MAX_TEXT, parser.MAX_DEPTH, parser.MAX_LIST, parser.MAX_PREDICATES):
        assert f"{value:,}" in text, f"parser limit {value:,} is not in {SAFETY.name}"
    limits = DEFAULT_LIMITS
    assert f"{limits.max_window.days} days" in text
    assert f"{int(limits.default_window.total_seconds() // 3600)} hours" in text
    assert f"{limits.max_rows:,}" in text
    assert f"{limits.cost_budget:,.0f}" in text
    assert f"{limits.deadline_ms:,} ms" in text
    for name in (f.name for f in fields(Limits)):
        assert f"`{name}`" in text, f"Limits.{name} is not in {SAFETY.name}"
    language = LANGUAGE.read_text(encoding="utf-8")
    for value in (parser.MAX_TEXT, parser.MAX_DEPTH, parser.MAX_LIST, parser.MAX_PREDICATES):
        assert f"{value:,}" in language, f"parser limit {value:,} is not in {LANGUAGE.name}"


# ---------------------------------------------------------------------------------------------
# Examples


def test_the_docs_have_examples() -> None:
    assert len(LANGUAGE_BLOCKS) >= 30
    assert len(ERROR_BLOCKS) >= 15


@pytest.mark.parametrize("block", LANGUAGE_BLOCKS, ids=[b.id for b in LANGUAGE_BLOCKS])
def test_language_examples_parse(block: Block) -> None:
    pql.parse(block.text)


@pytest.mark.parametrize(("block", "after"), PQL_BLOCKS, ids=_ids(PQL_BLOCKS))
def test_pql_examples_run(engine: pql.Engine, block: Block, after: Block | None) -> None:
    if not _starts_with_find(block):
        pytest.skip("not a whole query")
    result = engine.query(block.text, tenant=TENANT, now=NOW, params=PARAMS)
    if after is not None and after.info == "result":
        shown = after.text.splitlines()[0].split() if after.text.strip() else []
        assert shown == result.columns, f"{block.id}: the answer shown has other columns"


@pytest.mark.parametrize(("block", "after"), ERROR_BLOCKS, ids=_ids(ERROR_BLOCKS))
def test_pql_error_examples_fail(engine: pql.Engine, block: Block, after: Block | None) -> None:
    with pytest.raises(pql.PQLError) as caught:
        engine.query(block.text, tenant=TENANT, now=NOW, params=PARAMS)
    if after is not None and after.info == "text" and after.text.startswith("error[PQL-"):
        shown = after.text[len("error[") : after.text.index("]")]
        assert caught.value.code == shown, f"{block.id}: the doc shows {shown}"


def test_result_blocks_follow_a_query() -> None:
    for path in _doc_files():
        blocks = fenced_blocks(path)
        for before, block in pairwise(blocks):
            if block.info == "result":
                assert before.info == "pql", f"{block.id}: a result block must follow a pql block"


def test_the_grammar_summary_names_every_keyword() -> None:
    ebnf = [b for b in fenced_blocks(LANGUAGE) if b.info == "ebnf"]
    assert len(ebnf) == 1, f"{LANGUAGE.name} should have one ebnf block"
    quoted = {w.upper() for w in re.findall(r'"([A-Za-z]+)"', ebnf[0].text)}
    missing = sorted(set(parser.KEYWORDS) - quoted)
    assert not missing, f"keywords missing from the grammar summary: {missing}"
