"""Abuse suite: hostile input against the grammar and the whole engine.

Every input, however hostile, must end in a :class:`pql.Result` or a :class:`pql.PQLError` of the
user-facing kinds (``PQL-E…``, ``PQL-S…``): never another exception, never an internal error
(``PQL-X…``, a bug by definition), never a ``RecursionError``, never a hang. A rendered error
(``exc.render()``) must not raise and stays under :data:`RENDER_MAX` characters whatever the
input's size, and ``exc.to_dict()`` is JSON-ready.

The families of hostile input (each a builder over a ``random.Random``, so the same code feeds
Hypothesis, through ``st.randoms()``, and the fixed corpus of the memory test):

* arbitrary Unicode text, control characters, NUL and lone surrogates;
* token soups of the real keywords, operators, fields and literals, with hostile tokens mixed in;
* valid queries (``tests.strategies.queries()`` and a few fixed ones) mutated: characters
  inserted, dropped, swapped for homoglyphs, quotes removed, comments at odd places;
* huge literals: strings up to and beyond the text limit, ``10**400``, ``-0``, ``1e309``,
  digit runs longer than Python's int-conversion limit, in ``WHERE``, ``LIMIT`` and ``SINCE``;
* nesting of parentheses and ``NOT`` around ``MAX_DEPTH`` and far beyond, mixed, unbalanced;
* ``IN`` lists around ``MAX_LIST`` and far above, predicate chains around ``MAX_PREDICATES``;
* Unicode confusables (Cyrillic letters in keywords and fields, full-width punctuation,
  zero-width spaces, RTL marks);
* ``$params`` without values or with hostile values, and hostile tenants and clocks.

**Sizes.** Most inputs only go through the parser (the fast path); a fraction goes through the
whole engine (``query`` and ``explain``) on the small demo engine of ``conftest.py``. By default
each test runs the Hypothesis profile's ``max_examples`` (``HYPOTHESIS_PROFILE``: ``ci`` 60,
``dev`` 30, ``nightly`` 2,000). With ``PQL_ABUSE_EXAMPLES=N`` the tests share ``N`` generated
inputs between them (``SHARES``, about 80% parse-only), and the two exact-guard tests run a few
more on top (``EXTRA``); ``nox -s abuse`` sets ``N`` to 100,000. The module prints how many
inputs it ran (``-s`` shows it) and, with ``PQL_ABUSE_REPORT=FILE``, writes the counts and
timings there as JSON.

**Memory.** :func:`test_memory_stays_bounded` runs a fixed corpus of 300 hostile queries
through a fresh engine (result cache on) under ``tracemalloc``: the peak of Python allocations
must stay under :data:`MEMORY_BOUND_MIB` MiB, and the process's peak RSS may grow by at most
:data:`RSS_GROWTH_BOUND_MIB` MiB (Polars' own allocations are not traced by ``tracemalloc``).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import resource
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pql
from pql import ast
from pql.demo import DemoData, generate
from pql.examples import CONTRACT_EXAMPLES
from pql.parser import KEYWORDS, MAX_DEPTH, MAX_LIST, MAX_PREDICATES, MAX_TEXT
from tests.clock import TEST_NOW
from tests.strategies import queries

RENDER_MAX = 4_096
"""The most characters a rendered error may have, whatever the input."""
HANG_S = 30.0
"""No single input may take longer than this (parse or whole query), in seconds."""
MEMORY_BOUND_MIB = 200
"""Peak traced Python memory over the memory test's 300 hostile queries, in MiB."""
RSS_GROWTH_BOUND_MIB = 400
"""Growth of the process's peak resident set over the same run, in MiB."""
CORPUS_SIZE = 300

ABUSE_ENV = "PQL_ABUSE_EXAMPLES"
REPORT_ENV = "PQL_ABUSE_REPORT"

SHARES: dict[str, float] = {
    # parse only (the fast path): about 80% of the inputs
    "unicode": 0.16,
    "soup": 0.18,
    "mutated": 0.15,
    "literals": 0.09,
    "nesting": 0.08,
    "lists": 0.04,
    "confusables": 0.11,
    # the whole engine
    "engine": 0.13,
    "params": 0.03,
    "tenants": 0.03,
}
"""How ``PQL_ABUSE_EXAMPLES`` is split between the tests (the shares add up to 1)."""
EXTRA: dict[str, float] = {"nesting_exact": 0.003, "lists_exact": 0.01}
"""The exact-guard tests run this share on top (their input spaces are small)."""

ERROR_CODE = re.compile(r"PQL-[ES]\d{3}")
"""What hostile input may end in: invalid input (E) or a safety refusal (S)."""

_COUNTS: Counter[str] = Counter()
_SECONDS: defaultdict[str, float] = defaultdict(float)


def _examples(family: str) -> int:
    """``max_examples`` for one test: its share of ``PQL_ABUSE_EXAMPLES``, or the profile's."""
    total = os.environ.get(ABUSE_ENV)
    if not total:
        default = settings.default
        assert default is not None  # the profile loaded when the tests were collected
        return int(default.max_examples)
    return max(1, math.ceil(int(total) * (SHARES.get(family) or EXTRA[family])))


def _abuse_settings(family: str) -> settings:
    return settings(
        max_examples=_examples(family),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# -- the vocabulary -------------------------------------------------------------------------------

COLUMNS = {
    "receipts": [
        "executionId", "tenant", "region", "ts", "workflow", "status", "latency_ms",
        "cost_usd", "attempt",
    ],
    "decisions": [
        "decisionId", "executionId", "tenant", "region", "ts", "rule", "effect",
        "policy_version",
    ],
}  # fmt: skip
FIELDS = sorted({c for cols in COLUMNS.values() for c in cols}) + [
    f"{s}.{c}" for s, cols in COLUMNS.items() for c in cols
]
KEYWORD_TOKENS = [
    *KEYWORDS, "find", "Find", "where", "GROUP BY", "ORDER BY", "IS NULL", "IS NOT NULL",
    "NOT IN", "receipts", "decisions", "JOIN decisions ON receipts.executionId = decisions.executionId",
]  # fmt: skip
OPERATOR_TOKENS = [
    "=", "!=", "<", "<=", ">", ">=", "==", "<>", "!", "=>", "(", ")", ",", ".", "*", ";", "$",
    "-", "+", "/", "%", "[", "]", "{", "}", "`", "\\", "@", "#", "..", "()", "(*)",
]  # fmt: skip
VALUE_TOKENS = [
    '"ok"', "'deny'", "'error'", '"2026-11-01T00:00:00Z"', "'2026-11-01'", "'us-east-1'", "0",
    "1", "-1", "-0", "0.5", "-1.5e3", "1e309", "-1e309", "1e-400", "9223372036854775807",
    "9223372036854775808", "-9223372036854775809", "true", "false", "null", "NULL", "7d", "90m",
    "2w", "0d", "1s", "180d", "181d", "4320h", "$p", "$tenant", "$", "$1", '""', "''", "AS n",
]  # fmt: skip
HOSTILE_TOKENS = [
    "\x00", "\x01", "\x07", "\x08", "\x1b[2J", "\x7f", "\x85", "\u200b", "\u200c", "\u200d",
    "\u2060", "\ufeff", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069", "\u2028",
    "\u2029", "\xa0", "\u3000", "\uff08", "\uff09", "\uff1d", "\uff0c", "\uff02", "\uff07",
    "\u2018", "\u2019", "\u201c", "\u201d", "\uff26\uff29\uff2e\uff24", "F\u0406ND",
    "FI\u039dD", "WH\u0415RE", "r\u0435ceipts", "\u0455tatus", "l\u0430tency_ms",
    "\u0435x\u0435cutionId", "'", '"', "'unterminated", '"open', "'mis\"", "\"mis'", "\\",
    "\\u", "\\uD800", "\\x41", "--", "-- comment", "/* c */", "\r", "\r\n", "\t", "\f", "\v",
    "\ud800", "\udcff", "\U0001f600", "\U0001d405\U0001d408\U0001d40d\U0001d403", "\ufb01nd",
    "\u0301", "e\u0301", "\U000e0041",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", "", "\n", "\t", " --x\n", "\u200b", "  \n  "]

HOMOGLYPHS = {
    "A": "\u0410", "B": "\u0412", "C": "\u0421", "E": "\u0415", "H": "\u041d", "I": "\u0406",
    "K": "\u041a", "M": "\u041c", "N": "\u039d", "O": "\u041e", "P": "\u0420", "T": "\u0422",
    "X": "\u0425", "Y": "\u04ae", "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456",
    "o": "\u043e", "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443", "d": "\u0501",
    "=": "\ua78a", "(": "\uff08", ")": "\uff09", "'": "\u2019", '"': "\u201d",
    ".": "\u2024", ",": "\u201a", "_": "\uff3f", " ": "\xa0", "-": "\u2010",
}  # fmt: skip
INVISIBLES = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u202e"]

SEEDS = [
    *CONTRACT_EXAMPLES,
    "FIND decisions SINCE 2w ORDER BY rule DESC LIMIT 50",
    "FIND receipts WHERE ts >= '2026-11-01' AND NOT status IN ('ok') SINCE 60d",
    "FIND COUNT(*) AS n WHERE decisions.effect != 'allow' GROUP BY decisions.policy_version SINCE 180d",
    "FIND receipts WHERE attempt > 1 AND cost_usd IS NOT NULL SINCE 30d ORDER BY attempt DESC, latency_ms",
    "FIND MIN(receipts.ts), MAX(receipts.latency_ms) WHERE region = $region SINCE 1d",
]
"""Valid queries (one with a parameter) that the mutating families start from."""

# -- builders: one family of hostile text each, over a random.Random -----------------------------


def _pick(rng: random.Random, items: list[str]) -> str:
    return items[rng.randrange(len(items))]


def _as_is(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement for ``re.sub`` that puts in ``text`` as it is (no escapes read in it)."""
    return lambda _: text


def _size(rng: random.Random, fill: int) -> int:
    """A size near an edge: small, around the int-conversion limit, or filling the text limit."""
    return _pick_int(rng, [0, 1, 2, 18, 19, 20, 64, 400, 4_300, 4_301, 10_000, fill, fill + 1])


def _pick_int(rng: random.Random, items: list[int]) -> int:
    if rng.random() < 0.3:
        return rng.randint(0, 50)
    return max(0, items[rng.randrange(len(items))] + rng.randint(-1, 1))


def soup(rng: random.Random) -> str:
    """Up to 40 tokens of the language (and a few hostile ones), joined by odd separators."""
    pools = [KEYWORD_TOKENS, FIELDS, OPERATOR_TOKENS, VALUE_TOKENS, HOSTILE_TOKENS]
    weights = [3, 3, 2, 2, 1]
    parts = ["FIND "] if rng.random() < 0.6 else []
    for _ in range(rng.randint(0, 40)):
        pool = rng.choices(pools, weights)[0]
        parts.append(_pick(rng, pool))
        parts.append(_pick(rng, SEPARATORS))
    return "".join(parts)


def unicode_text(rng: random.Random) -> str:
    """Random code points (surrogates and controls included), maybe after a valid prefix."""
    prefix = _pick(rng, ["", "FIND ", "FIND receipts WHERE ", "FIND receipts WHERE status = '"])
    chars = []
    for _ in range(rng.randint(0, 60)):
        roll = rng.random()
        if roll < 0.3:
            chars.append(chr(rng.randint(0, 0x7F)))
        elif roll < 0.4:
            chars.append(chr(rng.randint(0xD800, 0xDFFF)))
        else:
            chars.append(chr(rng.randint(0, 0x10FFFF)))
    return prefix + "".join(chars)


def mutate(text: str, rng: random.Random) -> str:
    """One to three random edits of ``text``: the kind a fuzzer or a confused user makes."""
    for _ in range(rng.randint(1, 3)):
        n = len(text)
        at = rng.randint(0, n)
        end = min(n, at + rng.randint(1, 12))
        kind = rng.randrange(12)
        if kind == 0:  # insert a token
            pool = rng.choice([KEYWORD_TOKENS, OPERATOR_TOKENS, VALUE_TOKENS, HOSTILE_TOKENS])
            text = text[:at] + _pick(rng, pool) + text[at:]
        elif kind == 1:  # delete a slice
            text = text[:at] + text[end:]
        elif kind == 2:  # duplicate a slice
            text = text[:end] + text[at:end] + text[end:]
        elif kind == 3:  # truncate
            text = text[:at]
        elif kind == 4:  # a comment at an odd place (it swallows the rest of the line)
            text = text[:at] + _pick(rng, ["--", "-- x\n", "--\n", "\n--", "/*"]) + text[at:]
        elif kind == 5:  # drop or flip a quote
            quotes = [i for i, c in enumerate(text) if c in "'\""]
            if quotes:
                i = rng.choice(quotes)
                repl = _pick(rng, ["", "'", '"', "`", "\u2019", "\\'"])
                text = text[:i] + repl + text[i + 1 :]
        elif kind == 6:  # a homoglyph
            spots = [i for i, c in enumerate(text) if c in HOMOGLYPHS]
            if spots:
                i = rng.choice(spots)
                text = text[:i] + HOMOGLYPHS[text[i]] + text[i + 1 :]
        elif kind == 7:  # an invisible character
            text = text[:at] + _pick(rng, INVISIBLES) + text[at:]
        elif kind == 8:  # a literal becomes a huge number or a parameter
            text = re.sub(
                r"(?<![\w.])\d+(\.\d+)?(?![\w])",
                lambda _: _pick(rng, ["9" * 5_000, "1" + "0" * 400, "-0", "1e309", "$p"]),
                text,
                count=1,
            )
        elif kind == 9:  # a string literal becomes long or odd
            body = _pick(rng, ["x" * 19_000, "\\u0000", "\\uD800", "\\ud83d\\ude00", "\x00"])
            literal = f"'{body}'"
            text = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", _as_is(literal), text, count=1)
        elif kind == 10:  # a control character
            text = text[:at] + chr(rng.choice([0, 1, 8, 11, 12, 13, 27, 127, 0x85])) + text[at:]
        else:  # swap two tokens
            words = text.split(" ")
            if len(words) > 1:
                i, j = rng.randrange(len(words)), rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
                text = " ".join(words)
    return text


def confusables(rng: random.Random) -> str:
    """A valid query with one word spelt in look-alike characters (or invisibles inserted)."""
    text = _pick(rng, SEEDS)
    words = list(re.finditer(r"[A-Za-z_.=(),'\"]+", text))
    word = words[rng.randrange(len(words))]
    style = rng.randrange(4)
    if style == 0:  # homoglyphs (Cyrillic, Greek) for some letters
        swapped = "".join(HOMOGLYPHS.get(c, c) if rng.random() < 0.5 else c for c in word.group())
        if swapped == word.group():
            c = next((c for c in word.group() if c in HOMOGLYPHS), None)
            swapped = word.group().replace(c, HOMOGLYPHS[c], 1) if c else word.group() + "\u200b"
    elif style == 1:  # full width
        swapped = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word.group())
    elif style == 2:  # an invisible inside the word
        i = rng.randint(0, len(word.group()))
        swapped = word.group()[:i] + _pick(rng, INVISIBLES) + word.group()[i:]
    else:  # an invisible or a RTL mark between words
        swapped = word.group() + _pick(rng, INVISIBLES)
    return text[: word.start()] + swapped + text[word.end() :]


def huge_literal(rng: random.Random) -> str:
    """A literal of extreme size or value in WHERE, IN, LIMIT or SINCE."""
    slot = rng.randrange(5)
    if slot == 3:  # LIMIT
        digits = "0" * rng.choice([0, 0, 30, 5_000]) + "9" * _size(rng, MAX_TEXT - 20)
        return f"FIND receipts LIMIT {digits or '0'}"
    if slot == 4:  # SINCE
        digits = "0" * rng.choice([0, 0, 30, 5_000]) + "1" * _size(rng, MAX_TEXT - 21)
        return f"FIND receipts SINCE {digits or '0'}{_pick(rng, list('smhdwy'))}"
    field = _pick(rng, FIELDS)
    op = _pick(rng, ["=", "!=", "<", ">=", "IN", "NOT IN"])
    head = f"FIND receipts WHERE {field} {op} " + ("(" if "IN" in op else "")
    tail = ")" if "IN" in op else ""
    fill = MAX_TEXT - len(head) - len(tail)
    kind = rng.randrange(4)
    if kind == 0:  # a long number
        n = _size(rng, fill - 2)
        literal = _pick(rng, ["", "-"]) + "9" * n + _pick(rng, ["", ".5", "e10", "e-400", "0"])
    elif kind == 1:  # extreme but short numbers
        literal = _pick(
            rng,
            ["1" + "0" * 400, "-" + "1" + "0" * 400, "-0", "-0.0", "1e309", "-1e309", "1e-400",
             "0." + "0" * 400 + "1", "1e" + "9" * 400, "9223372036854775807",
             "-9223372036854775808", "9223372036854775808", "0" * 400 + "1", "1.7976931348623157e308",
             "4.9e-324", "-", "--1", "1e", "1.", ".5", "0x10", "1_000", "\u0661\u0662"],
        )  # fmt: skip
    elif kind == 2:  # a long string
        body = _pick(rng, ["x", "\xe9", "\\n", "\\u0000", "\\\\", "\U0001f600", " ", "'", "\\'"])
        quote = _pick(rng, ["'", '"'])
        literal = quote + body * (_size(rng, fill - 2) // len(body)) + quote
    else:  # a long timestamp-like string
        literal = "'" + "2026-11-01T00:00:00" + "9" * _size(rng, fill - 22) + "Z'"
    return head + literal + tail


def nesting(rng: random.Random) -> str:
    """Parentheses and NOT nested around ``MAX_DEPTH`` and far beyond, mixed or unbalanced."""
    depth = _pick_int(rng, [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 64, 1_000, 5_000, 10_000])
    core = _pick(rng, ["status = 'ok'", "latency_ms > 250 AND status = 'ok'", "x", "", "a = 1 OR"])
    style = rng.randrange(6)
    if style == 0:
        opens, closes = "(" * depth, ")" * depth
    elif style == 1:
        opens, closes = "NOT " * depth, ""
    elif style == 2:
        opens, closes = "NOT (" * depth, ")" * depth
    elif style == 3:  # a repeated mixed pattern
        pattern = [rng.choice(["(", "NOT ", "NOT(", "( NOT "]) for _ in range(rng.randint(1, 6))]
        units = [pattern[i % len(pattern)] for i in range(depth)]
        opens = "".join(units)
        closes = "".join(")" * u.count("(") for u in reversed(units))
    elif style == 4:  # unbalanced
        opens, closes = "(" * depth, ")" * max(0, depth + rng.choice([-2, -1, 1, 2]))
    else:  # nested and-or chains
        opens = "(status = 'ok' OR " * depth
        closes = ")" * depth
    return f"FIND receipts WHERE {opens}{core}{closes} SINCE 7d"


def in_list(rng: random.Random) -> str:
    """``IN`` lists around ``MAX_LIST`` and far above, and long predicate chains."""
    if rng.random() < 0.25:
        n = _pick_int(rng, [MAX_PREDICATES - 1, MAX_PREDICATES, MAX_PREDICATES + 1, 1_500])
        joiner = _pick(rng, [" OR ", " AND "])
        return "FIND receipts WHERE " + joiner.join(["attempt = 1"] * max(n, 1))
    n = _pick_int(rng, [MAX_LIST - 1, MAX_LIST, MAX_LIST + 1, 2 * MAX_LIST, 6_000])
    kind = rng.randrange(5)
    if kind == 0:
        values = [str(i % 7) for i in range(n)]
    elif kind == 1:
        values = [f"'s{i}'" for i in range(n)]
    elif kind == 2:
        values = [_pick(rng, VALUE_TOKENS) for _ in range(min(n, 40))] * (n // 40 + 1)
        values = values[:n]
    elif kind == 3:
        values = ["$p"] * n
    else:
        values = ["1"] * n + ([""] if rng.random() < 0.5 else [])
    field = _pick(rng, ["status", "attempt", "latency_ms", "ts", "receipts.region", "nope"])
    neg = _pick(rng, ["", "NOT "])
    return f"FIND receipts WHERE {field} {neg}IN ({', '.join(values)}) SINCE 1d"


def mutated_seed(rng: random.Random) -> str:
    return mutate(_pick(rng, SEEDS), rng)


BUILDERS: dict[str, Callable[[random.Random], str]] = {
    "unicode": unicode_text,
    "soup": soup,
    "mutated": mutated_seed,
    "literals": huge_literal,
    "nesting": nesting,
    "lists": in_list,
    "confusables": confusables,
}


def _family(builder: Callable[[random.Random], str]) -> st.SearchStrategy[str]:
    return st.randoms(use_true_random=False).map(builder)


def hostile_texts() -> st.SearchStrategy[str]:
    """Any of the families, and mutated generated queries."""
    return st.one_of(*(_family(b) for b in BUILDERS.values()), mutated_queries())


def mutated_queries() -> st.SearchStrategy[str]:
    """Generated valid queries (``tests.strategies.queries``), then mutated."""
    return st.tuples(queries(), st.randoms(use_true_random=False)).map(
        lambda pair: mutate(ast.to_text(pair[0]), pair[1])
    )


# -- checking outcomes ----------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the watchdog; a ``BaseException`` so that nothing in pql can swallow it."""


@contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (POSIX, main thread; elsewhere only timed)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_error(exc: pql.PQLError, text: object) -> None:
    """A hostile input's error: user-facing, renderable, bounded, JSON-ready, pointing inside."""
    assert ERROR_CODE.fullmatch(exc.code), f"{type(exc).__name__} {exc.code}: {exc.message[:300]}"
    assert not isinstance(exc, pql.InternalError)
    rendered = exc.render()
    assert isinstance(rendered, str)
    assert len(rendered) <= RENDER_MAX, f"{exc.code} renders {len(rendered):,} characters"
    json.dumps(exc.to_dict())
    str(exc)
    if exc.span is not None and isinstance(text, str) and exc.text == text:
        assert 1 <= exc.span.line <= text.count("\n") + 1, (exc.code, exc.span)
        assert 0 <= exc.span.start <= exc.span.end <= len(text) + 1, (exc.code, exc.span)


def _timed(kind: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        with _watchdog(HANG_S):
            return call()
    finally:
        elapsed = time.perf_counter() - started
        _COUNTS[kind] += 1
        _SECONDS[kind] += elapsed
        assert elapsed < HANG_S, f"{kind} took {elapsed:.1f} s"


def check_parse(text: str) -> ast.Query | None:
    """Parse ``text``: a tree that prints and re-parses to itself, or a user-facing error."""
    try:
        tree = _timed("parse", lambda: pql.parse(text))
    except pql.PQLError as exc:
        _check_error(exc, text)
        return None
    assert isinstance(tree, ast.Query)
    assert pql.parse(ast.to_text(tree)) == tree
    return tree


def check_engine(
    engine: pql.Engine,
    text: object,
    tenant: object,
    now: object,
    *,
    params: Mapping[str, Any] | None = None,
    cache: bool = True,
    explain: bool = False,
) -> object:
    """Run ``text`` through the whole engine: a Result (or an explanation) or a user error."""

    def call() -> object:
        # text, tenant and now are whatever the test made (any object, on purpose): the engine
        # itself must refuse a wrong type with a user error, so they reach it unchecked
        if explain:
            out = engine.explain(text, tenant=tenant, now=now, params=params)  # type: ignore[arg-type]
            str(out)
            json.dumps(out.to_dict(), default=str)
            return out
        return engine.query(text, tenant=tenant, now=now, params=params, cache=cache)  # type: ignore[arg-type]

    try:
        out = _timed("engine", call)
    except pql.PQLError as exc:
        _check_error(exc, text)
        return exc
    if not explain:
        assert isinstance(out, pql.Result)
        assert out.df.height <= engine.limits.max_rows
    return out


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    """Print (and with ``PQL_ABUSE_REPORT`` write) how many inputs ran and how long they took."""
    started = time.perf_counter()
    yield
    total = sum(_COUNTS.values())
    wall = time.perf_counter() - started
    print(
        f"\nabuse: {total:,} inputs ({_COUNTS['parse']:,} parse-only, {_COUNTS['engine']:,} "
        f"through the engine) in {wall:,.1f} s"
    )
    path = os.environ.get(REPORT_ENV)
    if path:
        doc = {
            "inputs": total,
            "by_kind": dict(_COUNTS),
            "seconds_in_calls": {k: round(v, 2) for k, v in _SECONDS.items()},
            "wall_seconds": round(wall, 1),
            "requested": os.environ.get(ABUSE_ENV),
            "profile": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)


# -- the parser (the fast path) -------------------------------------------------------------------


@_abuse_settings("unicode")
@given(
    st.one_of(
        _family(unicode_text),
        st.tuples(
            st.sampled_from(
                ["", "FIND ", "FIND receipts WHERE ", "FIND receipts WHERE status = '"]
            ),
            st.text(st.characters(codec=None, exclude_categories=()), max_size=200),
        ).map("".join),
    )
)
def test_arbitrary_unicode_text(text: str) -> None:
    check_parse(text)


@_abuse_settings("soup")
@given(_family(soup))
def test_token_soup(text: str) -> None:
    check_parse(text)


@_abuse_settings("mutated")
@given(st.one_of(_family(mutated_seed), mutated_queries()))
def test_mutated_queries(text: str) -> None:
    check_parse(text)


@_abuse_settings("literals")
@given(_family(huge_literal))
def test_huge_literals(text: str) -> None:
    tree = check_parse(text)
    if tree is not None and tree.limit is not None:
        assert 0 <= tree.limit < 2**63


@_abuse_settings("nesting")
@given(_family(nesting))
def test_deep_nesting(text: str) -> None:
    check_parse(text)


@_abuse_settings("nesting_exact")
@given(st.integers(0, 3 * MAX_DEPTH), st.sampled_from(["(", "NOT ", "NOT ("]))
def test_nesting_guard_is_exact(depth: int, unit: str) -> None:
    """Up to ``MAX_DEPTH`` levels of one kind parse; one more is ``PQL-S009``."""
    closes = ")" * (depth * unit.count("("))
    text = f"FIND receipts WHERE {unit * depth}status = 'ok'{closes}"
    levels = depth * (2 if unit == "NOT (" else 1)
    try:
        _timed("parse", lambda: pql.parse(text))
    except pql.SafetyError as exc:
        assert exc.code == "PQL-S009"
        assert levels > MAX_DEPTH
    else:
        assert levels <= MAX_DEPTH


@_abuse_settings("lists")
@given(_family(in_list))
def test_enormous_lists(text: str) -> None:
    check_parse(text)


@_abuse_settings("lists_exact")
@given(st.integers(0, 2 * MAX_LIST))
def test_list_guard_is_exact(n: int) -> None:
    """Up to ``MAX_LIST`` values parse; one more is ``PQL-S010``."""
    text = f"FIND receipts WHERE attempt IN ({', '.join(['1'] * n)})"
    try:
        _timed("parse", lambda: pql.parse(text))
    except pql.PQLError as exc:
        assert exc.code == ("PQL-E001" if n == 0 else "PQL-S010")
        assert n == 0 or n > MAX_LIST
    else:
        assert 0 < n <= MAX_LIST


@_abuse_settings("confusables")
@given(_family(confusables))
def test_confusables_are_never_read_as_what_they_look_like(text: str) -> None:
    """A query with look-alike or invisible characters fails, or means something else."""
    tree = check_parse(text)
    if tree is not None:
        plain = text
        for look, real in [(v, k) for k, v in HOMOGLYPHS.items()]:
            plain = plain.replace(look, real)
        for invisible in INVISIBLES:
            plain = plain.replace(invisible, "")
        plain = "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in plain)
        if plain != text:
            try:
                original = pql.parse(plain)
            except pql.PQLError:
                return
            assert tree != original, f"{text!r} reads as {plain!r}"


# -- the whole engine -----------------------------------------------------------------------------

VALID_TENANTS = ["acme", "globex", "initech", "nobody"]


@_abuse_settings("engine")
@given(hostile_texts(), st.sampled_from(VALID_TENANTS), st.booleans(), st.integers(0, 9))
def test_engine_survives_hostile_queries(
    engine: pql.Engine, demo: DemoData, text: str, tenant: str, cache: bool, mode: int
) -> None:
    check_engine(engine, text, tenant, demo.now, cache=cache, explain=mode == 0)


PARAM_QUERIES = [
    "FIND receipts WHERE status = $p SINCE 30d",
    "FIND receipts WHERE status IN ($p, $q) SINCE 30d",
    "FIND receipts WHERE attempt = $p OR attempt IN ($q, $p) SINCE 30d",
    "FIND receipts WHERE latency_ms > $p AND cost_usd <= $q SINCE 30d",
    "FIND receipts WHERE ts >= $p AND ts IN ($q) SINCE 30d",
    "FIND COUNT(*) AS n WHERE receipts.region NOT IN ($p) GROUP BY receipts.status SINCE 30d",
    "FIND decisions WHERE effect = $p AND NOT (rule = $q) SINCE 7d",
    "FIND receipts WHERE $p = status",
    "FIND receipts LIMIT $p",
    "FIND receipts WHERE status = $",
]

_TZ = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400, -(10**30)]),
    st.floats(),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
    st.sampled_from(["\ud800", "x\x00", "2026-11-01", "9999-12-31T23:59:59-05:00", "0001-01-01"]),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.datetimes(),
    st.datetimes(timezones=_TZ),
    st.sampled_from([datetime.min, datetime.max, datetime.min.replace(tzinfo=UTC)]),
)


@_abuse_settings("params")
@given(
    st.sampled_from(PARAM_QUERIES),
    st.dictionaries(st.sampled_from(["p", "q", "r", "", "p q"]), HOSTILE_VALUES, max_size=3),
    st.booleans(),
)
def test_params_unbound_or_hostile(
    engine: pql.Engine, demo: DemoData, text: str, params: dict[str, Any], cache: bool
) -> None:
    check_engine(engine, text, "acme", demo.now, params=params, cache=cache)


HOSTILE_TENANTS = [
    "acme\n", "ACME", "a", "a" * 31, "a" * 32, "acme\x00", "\u0430cme", "../etc", "", " acme",
    "acme ", "-acme", "acme;drop", "acme' OR '1'='1", "\u200bacme", "acme\u202e", "*", "%",
    "mc-acme-us-east-1-receipts", "acme/../globex", "\uff41\uff43\uff4d\uff45", "\ud800",
]  # fmt: skip
HOSTILE_CLOCKS = [
    None, "2026-11-27T11:00:00Z", "x", "", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "2026-13-01", "\x00", 5, 1.5, b"2026", datetime.max,
    datetime.min, datetime.min.replace(tzinfo=UTC), datetime(1970, 1, 1),
]  # fmt: skip


@_abuse_settings("tenants")
@given(
    st.one_of(
        st.sampled_from(HOSTILE_TENANTS + VALID_TENANTS),
        st.text(max_size=40),
        st.from_regex(r"[a-z0-9][a-z0-9-]{0,35}", fullmatch=True),
        st.integers(),
        st.none(),
        st.binary(max_size=8),
    ),
    st.sampled_from(HOSTILE_CLOCKS),
    st.sampled_from(SEEDS[:8]),
)
def test_hostile_tenants_and_clocks(
    engine: pql.Engine, demo: DemoData, tenant: object, now: object, text: str
) -> None:
    out = check_engine(engine, text, tenant, now if now is not None else demo.now)
    if isinstance(out, pql.Result):
        assert isinstance(tenant, str) and re.fullmatch(r"[a-z0-9][a-z0-9-]{1,30}", tenant)
        for name in out.df.columns:
            if name.endswith("tenant"):
                assert set(out.df[name].to_list()) <= {tenant}


# -- memory ---------------------------------------------------------------------------------------


def corpus(size: int = CORPUS_SIZE, seed: int = 20261127) -> list[str]:
    """A fixed list of hostile queries: every family in turn, from one seeded generator."""
    rng = random.Random(seed)
    builders = list(BUILDERS.values())
    return [builders[i % len(builders)](rng) for i in range(size)]


def _max_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def test_memory_stays_bounded() -> None:
    """300 hostile queries through a fresh engine stay within the documented memory bounds."""
    data = generate(3_000, seed=5, now=TEST_NOW)
    engine = pql.Engine.in_memory()
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    texts = corpus()
    for text in SEEDS[:-1]:  # warm up: grammar, Polars, statistics
        engine.query(text, tenant="acme", now=data.now)
    rss_before = _max_rss_mib()
    tracemalloc.start()
    try:
        outcomes: Counter[str] = Counter()
        for text in texts:
            out = check_engine(engine, text, "acme", data.now)
            outcomes["result" if isinstance(out, pql.Result) else "error"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak_mib = peak / (1024 * 1024)
    growth = _max_rss_mib() - rss_before
    print(
        f"\nmemory: {CORPUS_SIZE} hostile queries ({dict(outcomes)}): peak traced "
        f"{peak_mib:.1f} MiB, peak RSS grew {growth:.1f} MiB"
    )
    assert sum(outcomes.values()) == CORPUS_SIZE
    assert peak_mib < MEMORY_BOUND_MIB, f"peak traced memory {peak_mib:.1f} MiB"
    assert growth < RSS_GROWTH_BOUND_MIB, f"peak RSS grew by {growth:.1f} MiB"
