"""Signed saved queries: canonical form, signatures, keys, rotation, parameters, safelist."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import itertools
import json
import math
import pkgutil
import re
import sqlite3
import stat
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from hypothesis import assume, given
from hypothesis import strategies as st

import pql
import pql.saved
import pql.saved.document
import pql.signing
from pql import ast
from pql.catalog import DataType
from pql.demo import generate
from pql.errors import AuthError, InputError, PQLError, QueryError
from pql.parser import KEYWORDS
from pql.plan.expr import Cmp, Const
from pql.saved import (
    AuditRecord,
    MalformedDocumentError,
    MissingParamError,
    NoSuchSavedQueryError,
    ParamType,
    ParamTypeError,
    Safelist,
    SafelistError,
    SafelistLevel,
    SafelistSpec,
    SavedQuery,
    SavedStore,
    TamperedTextError,
    UnexpectedParamError,
    WrongNameError,
    WrongTenantError,
    declare_params,
    sign_query,
)
from pql.signing import (
    BadSignatureError,
    ExpiredError,
    KeyFileError,
    KeyRing,
    NotYetValidError,
    RevokedKeyError,
    SignedQueryError,
    SigningKey,
    TrustedKey,
    UnknownKeyError,
    canonical_form,
    canonical_query,
)
from pql.storage import MemoryStore
from tests.strategies import queries

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
TEXT = """find count(*) AS n
  where status = $status and latency_ms > $slow   -- slow ones
    and workflow IN ("etl", 'billing', "caf\u00e9") group by region since 30d"""


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("team-a")


@pytest.fixture(scope="module")
def ring(key: SigningKey) -> KeyRing:
    return KeyRing([key.trusted()])


@pytest.fixture(scope="module")
def doc(key: SigningKey) -> SavedQuery:
    return sign_query(
        TEXT,
        key=key,
        name="slow-errors",
        tenant="acme",
        author="Ana Lima",
        now=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(days=30),
    )


@pytest.fixture(scope="module")
def engine() -> pql.Engine:
    data = generate(2_000, seed=5, now=NOW, days=30)
    eng = pql.Engine.in_memory(clock=lambda: NOW)
    eng.ingest("receipts", data.receipts)
    eng.ingest("decisions", data.decisions)
    return eng


def check(raw: str | bytes, ring: KeyRing, *, tenant: str = "acme", now: datetime = NOW) -> None:
    SavedQuery.from_json(raw).verify(ring, tenant=tenant, now=now)


SAVED_MODULES = [
    importlib.import_module(f"pql.saved.{info.name}")
    for info in pkgutil.iter_modules(pql.saved.__path__)
]


@pytest.mark.parametrize("module", [pql.signing, *SAVED_MODULES], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, module.__name__
    if module.__name__ not in ("pql.saved.errors", "pql.saved.fields"):
        assert result.attempted > 0, module.__name__


# ---------------------------------------------------------------------------------------------
# The canonical form


def test_canonical_query_ignores_layout_but_keeps_meaning() -> None:
    assert canonical_query(TEXT) == (
        "FIND COUNT(*) AS n WHERE status = $status AND latency_ms > $slow AND workflow IN "
        '("etl", "billing", "caf\u00e9") GROUP BY region SINCE 30d'
    )
    assert canonical_query("FIND receipts WHERE status = 'a'") != canonical_query(
        "FIND receipts WHERE status = 'A'"
    )
    assert canonical_query("FIND receipts LIMIT 5") != canonical_query("FIND RECEIPTS LIMIT 5")


def test_canonical_form_is_sorted_compact_json_after_a_prefix() -> None:
    payload = canonical_form("find receipts", {"b": "1", "a": {"y": None, "x": True}})
    assert payload == (
        b'pql-saved-query/1\n{"a":{"x":true,"y":null},"b":"1","query":"FIND receipts"}'
    )
    with pytest.raises(ValueError, match="query"):
        canonical_form("FIND receipts", {"query": "x"})


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_WORD_RE = re.compile(r"[A-Za-z]+")
_SPACES = st.sampled_from([" ", "  ", "\t", "\n", " \r\n ", " -- a comment\n", "\n\n\t "])


def _rerender(text: str, data: st.DataObject) -> str:
    """``text`` with other whitespace, comments and keyword case; strings left alone."""

    def recase(m: re.Match[str]) -> str:
        word = m.group()
        if word.upper() not in KEYWORDS:
            return word
        flips = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
        return "".join(c.lower() if f else c.upper() for c, f in zip(word, flips, strict=True))

    out = [data.draw(st.sampled_from(["", " ", "\n  "]))]
    pos = 0
    for m in [*_STRING_RE.finditer(text), None]:
        plain = text[pos : m.start() if m else len(text)]
        plain = _WORD_RE.sub(recase, plain)
        out.append(re.sub(" ", lambda _: data.draw(_SPACES), plain))
        if m is not None:
            out.append(m.group())
            pos = m.end()
    out.append(data.draw(st.sampled_from(["", "\n", " -- end"])))
    return "".join(out)


@given(queries(), st.data())
def test_canonical_form_is_stable_under_whitespace_and_keyword_case(
    query: ast.Query, data: st.DataObject
) -> None:
    text = ast.to_text(query)
    variant = _rerender(text, data)
    assert canonical_query(variant) == canonical_query(text)
    meta = {"name": "q", "tenant": "acme"}
    assert canonical_form(variant, meta) == canonical_form(text, meta)


def _leaves(expr: ast.Expr) -> int:
    match expr:
        case ast.Not(operand=inner):
            return _leaves(inner)
        case ast.And(operands=ops) | ast.Or(operands=ops):
            return sum(_leaves(o) for o in ops)
    return 1


def _map_leaf(expr: ast.Expr, target: int, fn: Callable[[ast.Expr], ast.Expr]) -> ast.Expr:
    counter = itertools.count()

    def go(e: ast.Expr) -> ast.Expr:
        match e:
            case ast.Not(operand=inner):
                return ast.Not(go(inner))
            case ast.And(operands=ops):
                return ast.And(tuple(go(o) for o in ops))
            case ast.Or(operands=ops):
                return ast.Or(tuple(go(o) for o in ops))
        return fn(e) if next(counter) == target else e

    return go(expr)


def _bump(value: ast.Value) -> ast.Value:
    assert isinstance(value, ast.Literal)
    v = value.value
    if isinstance(v, bool):
        return ast.Literal(not v)
    if isinstance(v, str):
        return ast.Literal(v[:-1] if v.endswith("x") else v + "x")
    if isinstance(v, int):
        return ast.Literal(float(v) if v % 2 else v + 1)  # 3 -> 3.0 is a change too
    return ast.Literal(math.nextafter(v, math.inf))


def _change_leaf(leaf: ast.Expr, choice: int) -> ast.Expr:
    match leaf:
        case ast.Comparison(op=op) if choice == 0:
            ops = [o for o in ast.CompareOp if o is not op]
            return replace(leaf, op=ops[len(leaf.field.name) % len(ops)])
        case ast.Comparison(value=v):
            return replace(leaf, value=_bump(v))
        case ast.InList(values=vs) if choice == 0:
            return replace(leaf, values=(_bump(vs[0]), *vs[1:]))
        case ast.InList() | ast.IsNull():
            return replace(leaf, negated=not leaf.negated)
    raise AssertionError(leaf)


@st.composite
def changed_meaning(draw: Any) -> tuple[ast.Query, ast.Query]:
    """A query and a copy with one change of meaning: a literal, an operator, a clause value."""
    q = draw(queries())
    kinds = ["since", "limit"] + (["where"] * 4 if q.where is not None else [])
    kinds += ["order"] if q.order_by else []
    kind = draw(st.sampled_from(kinds))
    if kind == "since":
        assert q.since is not None
        return q, replace(q, since=ast.Duration(q.since.amount + 1, q.since.unit))
    if kind == "limit":
        return q, replace(q, limit=None if q.limit == 7 else (q.limit or 0) + 7)
    if kind == "order":
        first = q.order_by[0]
        flipped = replace(first, descending=not first.descending)
        return q, replace(q, order_by=(flipped, *q.order_by[1:]))
    assert q.where is not None
    target = draw(st.integers(0, _leaves(q.where) - 1))
    choice = draw(st.integers(0, 1))
    return q, replace(q, where=_map_leaf(q.where, target, lambda e: _change_leaf(e, choice)))


@given(changed_meaning())
def test_canonical_form_changes_under_any_change_of_meaning(
    pair: tuple[ast.Query, ast.Query],
) -> None:
    before, after = pair
    meta = {"name": "q", "tenant": "acme"}
    assert canonical_form(ast.to_text(before), meta) != canonical_form(ast.to_text(after), meta)


_LITERAL_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\b\f"), max_size=12
)


@given(
    st.one_of(
        st.tuples(_LITERAL_TEXT, _LITERAL_TEXT),
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
    )
)
def test_every_literal_is_part_of_the_canonical_form(pair: tuple[Any, Any]) -> None:
    a, b = pair

    def text(v: Any) -> str:
        where = ast.Comparison(ast.Field("receipts", "status"), ast.CompareOp.EQ, ast.Literal(v))
        return ast.to_text(ast.Query("receipts", where=where))

    same = type(a) is type(b) and repr(a) == repr(b)
    assert (canonical_query(text(a)) == canonical_query(text(b))) == same


# ---------------------------------------------------------------------------------------------
# The document and its signature


def test_a_signed_document_round_trips_and_verifies(doc: SavedQuery, ring: KeyRing) -> None:
    again = SavedQuery.from_json(doc.to_json())
    assert again == doc
    assert again.verify(ring, tenant="acme", now=NOW).kid == "team-a"
    assert doc.query == canonical_query(TEXT)
    assert dict(doc.params) == {"slow": ParamType.FLOAT, "status": ParamType.STRING}
    assert list(json.loads(doc.to_json())) == [
        "format", "name", "tenant", "author", "params", "text", "query", "kid",
        "issued_at", "not_before", "expires_at", "text_sha256", "signature",
    ]  # fmt: skip


def test_every_single_bit_flip_of_a_signed_document_is_rejected(
    doc: SavedQuery, ring: KeyRing
) -> None:
    raw = doc.to_json().encode("utf-8")
    check(raw, ring)
    started = time.perf_counter()
    accepted: list[tuple[int, int]] = []
    other: list[tuple[int, int, str]] = []
    codes: set[str] = set()
    for index, bit in itertools.product(range(len(raw)), range(8)):
        flipped = bytearray(raw)
        flipped[index] ^= 1 << bit
        try:
            check(bytes(flipped), ring)
        except SignedQueryError as exc:
            codes.add(exc.code)
        except Exception as exc:  # anything but a signature failure is a bug
            other.append((index, bit, repr(exc)))
        else:
            accepted.append((index, bit))
    assert accepted == []
    assert other == []
    # The text (A009), signed fields and signature (A001), the key id (A002), the shape (A012).
    assert {"PQL-A001", "PQL-A002", "PQL-A009", "PQL-A012"} <= codes
    assert time.perf_counter() - started < 20


def test_changing_the_text_alone_is_tampering(doc: SavedQuery, ring: KeyRing) -> None:
    edited = doc.to_json().replace("status = $status and", "status = $status or", 1)
    with pytest.raises(TamperedTextError, match="changed after it was signed") as info:
        check(edited, ring)
    assert info.value.code == "PQL-A009"
    assert info.value.exit_code == 4


def test_a_text_that_does_not_mean_the_signed_query_is_tampering(
    key: SigningKey, ring: KeyRing
) -> None:
    # A key holder signs a document whose text says one thing and whose query does another.
    honest = sign_query("FIND receipts WHERE status = 'ok'", key=key, name="q",
                        tenant="acme", author="x", now=NOW)  # fmt: skip
    lying = replace(honest, query='FIND receipts WHERE status = "error"')
    lying = replace(lying, signature=key.sign(lying.payload()))
    with pytest.raises(TamperedTextError, match="does not mean its signed query"):
        lying.verify(ring, tenant="acme", now=NOW)


def test_changing_the_canonical_query_breaks_the_signature(doc: SavedQuery, ring: KeyRing) -> None:
    obj = json.loads(doc.to_json())
    obj["query"] = obj["query"].replace("latency_ms > $slow", "latency_ms < $slow")
    with pytest.raises(BadSignatureError) as info:
        check(json.dumps(obj), ring)
    assert info.value.code == "PQL-A001"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "globex"),
        ("name", "other"),
        ("expires_at", "2099-01-01T00:00:00Z"),
        ("expires_at", None),
        ("not_before", "2020-01-01T00:00:00Z"),
        ("author", "Mallory"),
        ("params", {"slow": "string", "status": "string"}),
    ],
)
def test_changing_any_signed_field_breaks_the_signature(
    doc: SavedQuery, ring: KeyRing, field: str, value: Any
) -> None:
    obj = json.loads(doc.to_json())
    obj[field] = value
    with pytest.raises(BadSignatureError):
        check(json.dumps(obj), ring)


@pytest.mark.parametrize(
    "edit",
    [
        lambda o: o.pop("author"),
        lambda o: o.update(extra="x"),
        lambda o: o.update(format="pql-saved-query/2"),
        lambda o: o.update(issued_at="2026-03-02 10:00:00"),
        lambda o: o.update(params={"status": "date", "slow": "float"}),
        lambda o: o.update(params={"status": "string", "slow": "float"}),  # unsorted
        lambda o: o.update(text=""),
        lambda o: o.update(text="FIND receipts\x00"),
        lambda o: o.update(kid="../etc/passwd"),
    ],
)
def test_malformed_documents_are_refused(
    doc: SavedQuery, ring: KeyRing, edit: Callable[[dict[str, Any]], Any]
) -> None:
    obj = json.loads(doc.to_json())
    edit(obj)
    with pytest.raises(MalformedDocumentError) as info:
        check(json.dumps(obj), ring)
    assert info.value.code == "PQL-A012"


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"\xff\xfe", b"{" * 100_000, b'{"a": 1, "a": 2}', b"x" * 300_000],
)
def test_garbage_is_a_malformed_document(raw: bytes, ring: KeyRing) -> None:
    with pytest.raises(MalformedDocumentError):
        check(raw, ring)


def test_a_non_canonical_signature_spelling_is_refused(doc: SavedQuery, ring: KeyRing) -> None:
    obj = json.loads(doc.to_json())
    obj["signature"] = obj["signature"].rstrip("=")
    with pytest.raises(BadSignatureError, match="canonical base64"):
        check(json.dumps(obj), ring)


# ---------------------------------------------------------------------------------------------
# Keys: unknown, revoked, windows, rotation


def test_unknown_and_revoked_keys(doc: SavedQuery, ring: KeyRing) -> None:
    with pytest.raises(UnknownKeyError, match="'team-a' is not in the key ring") as unknown:
        doc.verify(KeyRing(), tenant="acme", now=NOW)
    with pytest.raises(RevokedKeyError, match=r"revoked \(leaked\)") as revoked:
        doc.verify(ring.revoke("team-a", "leaked"), tenant="acme", now=NOW)
    assert (unknown.value.code, revoked.value.code) == ("PQL-A002", "PQL-A003")


def test_rotation_old_key_works_inside_the_overlap_and_fails_after_it() -> None:
    t0 = datetime(2026, 4, 1, tzinfo=UTC)  # key B becomes valid
    t1 = datetime(2026, 5, 1, tzinfo=UTC)  # key A stops being valid
    a, b = SigningKey.generate("key-a"), SigningKey.generate("key-b")
    ring = KeyRing([a.trusted(not_after=t1), b.trusted(not_before=t0)])
    by_a = sign_query("FIND receipts SINCE 1d", key=a, name="q", tenant="acme", author="x",
                      now=t0 - timedelta(days=10))  # fmt: skip
    by_b = sign_query("FIND receipts SINCE 1d", key=b, name="q", tenant="acme", author="x",
                      now=t0)  # fmt: skip

    for moment in (t0, t0 + timedelta(days=15), t1 - timedelta(seconds=1)):
        assert by_a.verify(ring, tenant="acme", now=moment).kid == "key-a"
        assert by_b.verify(ring, tenant="acme", now=moment).kid == "key-b"
    for moment in (t1, t1 + timedelta(days=1)):
        with pytest.raises(ExpiredError, match="key 'key-a' expired at 2026-05-01") as info:
            by_a.verify(ring, tenant="acme", now=moment)
        assert info.value.code == "PQL-A004"
        assert info.value.details["what"] == "key"
        assert by_b.verify(ring, tenant="acme", now=moment + timedelta(days=365)).kid == "key-b"
    with pytest.raises(NotYetValidError, match="key 'key-b' is valid from") as early:
        by_b.verify(ring, tenant="acme", now=t0 - timedelta(seconds=1))
    assert early.value.code == "PQL-A005"


def test_the_document_window(key: SigningKey, ring: KeyRing) -> None:
    saved = sign_query("FIND receipts SINCE 1d", key=key, name="q", tenant="acme", author="x",
                       now=NOW, not_before=NOW + timedelta(hours=1),
                       expires_at=NOW + timedelta(hours=2))  # fmt: skip
    with pytest.raises(NotYetValidError, match="saved query 'q' is valid from"):
        saved.verify(ring, tenant="acme", now=NOW)
    saved.verify(ring, tenant="acme", now=NOW + timedelta(hours=1))
    with pytest.raises(ExpiredError, match="saved query 'q' expired at") as info:
        saved.verify(ring, tenant="acme", now=NOW + timedelta(hours=2))
    assert info.value.details["what"] == "query"
    with pytest.raises(InputError, match="expire") as inverted:
        sign_query("FIND receipts", key=key, name="q", tenant="acme", author="x", now=NOW,
                   expires_at=NOW - timedelta(days=1))  # fmt: skip
    assert inverted.value.code == "PQL-E098"


def test_key_files_and_sidecars(tmp_path: Path) -> None:
    key = SigningKey.generate("ops-1")
    private, public = key.write(tmp_path, not_after=NOW)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert json.loads((tmp_path / "ops-1.json").read_text())["not_after"] == "2026-03-02T12:00:00Z"
    with pytest.raises(InputError, match="already exists"):
        key.write(tmp_path)
    assert SigningKey.from_file(private).public_pem() == public.read_bytes()

    (tmp_path / "ops-2.key").write_text("never read by the key ring")
    ring = KeyRing.from_dir(tmp_path)
    assert [k.kid for k in ring] == ["ops-1"]
    assert ring.get("ops-1").status(NOW) == "expired"
    assert ring.get("ops-1").status(NOW - timedelta(days=1)) == "valid"

    (tmp_path / "ops-1.json").write_text('{"revoked": true, "reason": "laptop lost"}')
    assert KeyRing.from_dir(tmp_path).get("ops-1").status(NOW) == "revoked"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"k.pub": "not pem"}, "not a PEM public key"),
        ({"k.pub": "<ec>"}, "not an Ed25519 key"),
        ({"k.pub": "<ed>", "k.json": '{"revokd": true}'}, "unknown fields"),
        ({"k.pub": "<ed>", "k.json": '{"not_after": "soon"}'}, "not an ISO-8601 time"),
        ({"k.pub": "<ed>", "k.json": "[1]"}, "JSON object"),
        ({"orphan.json": "{}"}, "no .pub file"),
        ({"bad name!.pub": "<ed>"}, "not a valid key id"),
    ],
)
def test_bad_key_directories_fail_closed(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    ec = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ed = SigningKey.generate("k").public_pem()
    for name, content in files.items():
        data = {"<ec>": ec, "<ed>": ed}.get(content, content.encode())
        (tmp_path / name).write_bytes(data)
    with pytest.raises(KeyFileError, match=message) as info:
        KeyRing.from_dir(tmp_path)
    assert info.value.code == "PQL-A015"


def test_keys_from_the_embedding_application() -> None:
    signer = SigningKey.from_pem("app", SigningKey.generate("x").private_pem().decode())
    trusted = TrustedKey.from_pem("app", signer.public_pem().decode())
    ring = KeyRing().with_key(trusted)
    assert ring.verify("app", b"m", signer.sign(b"m"), now=NOW) is trusted
    with pytest.raises(KeyFileError, match="twice"):
        KeyRing([trusted, trusted])
    with pytest.raises(KeyFileError, match="before it starts"):
        signer.trusted(not_before=NOW, not_after=NOW)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        SigningKey.from_pem("app", "nope")
    assert "PRIVATE" not in repr(signer) and "app" in repr(ring)


# ---------------------------------------------------------------------------------------------
# Tenants, names, parameters


def test_wrong_tenant(doc: SavedQuery, ring: KeyRing) -> None:
    with pytest.raises(WrongTenantError, match="signed for tenant 'acme', not 'globex'") as info:
        doc.verify(ring, tenant="globex", now=NOW)
    assert info.value.code == "PQL-A006"


def test_parameters_are_declared_typed_and_checked(doc: SavedQuery, ring: KeyRing) -> None:
    ok = doc.authorize(ring, tenant="acme", now=NOW, params={"status": "error", "slow": "250"})
    assert ok.params == {"slow": 250.0, "status": "error"}
    assert ok.text == doc.query
    cases: list[tuple[dict[str, Any], type[SignedQueryError], str]] = [
        ({"status": "error"}, MissingParamError, "PQL-A008"),
        ({}, MissingParamError, "PQL-A008"),
        ({"status": "error", "slow": "fast"}, ParamTypeError, "PQL-A007"),
        ({"status": "error", "slow": True}, ParamTypeError, "PQL-A007"),
        ({"status": "error", "slow": "1 OR 1 = 1"}, ParamTypeError, "PQL-A007"),
        ({"status": "error", "slow": "nan"}, ParamTypeError, "PQL-A007"),
        ({"status": 5, "slow": 1}, ParamTypeError, "PQL-A007"),
        ({"status": "e", "slow": 1, "tenant": "globex"}, UnexpectedParamError, "PQL-A014"),
    ]
    for params, error, code in cases:
        with pytest.raises(error) as info:
            doc.authorize(ring, tenant="acme", now=NOW, params=params)
        assert info.value.code == code, params


@pytest.mark.parametrize(
    ("ptype", "raw", "value"),
    [
        (ParamType.INT, "-42", -42),
        (ParamType.INT, 7, 7),
        (ParamType.FLOAT, "2.5e3", 2500.0),
        (ParamType.FLOAT, 3, 3.0),
        (ParamType.BOOL, "TRUE", True),
        (ParamType.BOOL, False, False),
        (ParamType.STRING, "$x", "$x"),
        (ParamType.TIMESTAMP, "2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),
        (ParamType.TIMESTAMP, datetime(2026, 3, 2, 1), datetime(2026, 3, 2, 1, tzinfo=UTC)),
    ],
)
def test_parameter_conversion(ptype: ParamType, raw: Any, value: Any) -> None:
    assert ptype.convert("p", raw) == value


@pytest.mark.parametrize(
    ("ptype", "raw"),
    [
        (ParamType.INT, "1.5"),
        (ParamType.INT, str(2**63)),
        (ParamType.INT, False),
        (ParamType.FLOAT, "inf"),
        (ParamType.BOOL, "yes"),
        (ParamType.BOOL, 1),
        (ParamType.TIMESTAMP, "yesterday"),
        (ParamType.TIMESTAMP, 1700000000),
        (ParamType.STRING, None),
    ],
)
def test_parameter_conversion_refusals(ptype: ParamType, raw: Any) -> None:
    with pytest.raises(ParamTypeError, match=f"declared {ptype.value}"):
        ptype.convert("p", raw)


def test_parameter_types_are_inferred_or_declared(key: SigningKey) -> None:
    cat = pql.Catalog()
    query = pql.parse(
        "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
        "receipts.executionId WHERE decisions.ts > $since AND receipts.cost_usd IN ($a, 1.5) "
        "AND rule = $rule SINCE 7d"
    )
    assert declare_params(query, cat) == {
        "a": ParamType.FLOAT, "rule": ParamType.STRING, "since": ParamType.TIMESTAMP,
    }  # fmt: skip
    assert declare_params(query, cat, {"a": "int"})["a"] is ParamType.INT
    ambiguous = pql.parse("FIND COUNT(*) JOIN decisions ON receipts.executionId = "
                          "decisions.executionId WHERE region = $r SINCE 1d")  # fmt: skip
    with pytest.raises(InputError, match=r"cannot tell the type of \$r") as info:
        declare_params(ambiguous, cat)
    assert info.value.code == "PQL-E090"
    with pytest.raises(InputError, match="does not use"):
        declare_params(query, cat, {"zzz": "int"})
    with pytest.raises(InputError, match="unknown parameter type 'date'"):
        declare_params(query, cat, {"a": "date"})
    with pytest.raises(QueryError, match="status"):  # a declared type the field cannot take
        sign_query("FIND receipts WHERE status = $s", key=key, name="q", tenant="acme",
                   author="x", param_types={"s": "int"})  # fmt: skip
    with pytest.raises(InputError, match="declared"):
        SavedQuery.create("FIND receipts WHERE status = $s", key=key, name="q", tenant="acme",
                          params={}, author="x", issued_at=NOW)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "the name"),
        ({"name": ""}, "the name"),
        ({"author": "a\u202eb"}, "control characters"),
        ({"author": "line\nbreak"}, "one line"),
        ({"text": "FIND receipts WHERE status = 'a\u202eb'"}, "invisible or control"),
        ({"text": "FIND receipts WHERE status = 'a\x07'"}, "invisible or control"),
    ],
)
def test_sign_refuses_unreviewable_input(
    key: SigningKey, kwargs: dict[str, str], message: str
) -> None:
    args: dict[str, Any] = {"name": "q", "author": "x", "text": "FIND receipts"}
    args.update(kwargs)
    text = args.pop("text")
    with pytest.raises(InputError, match=message) as info:
        sign_query(text, key=key, tenant="acme", now=NOW, **args)
    assert info.value.code == "PQL-E096"


def test_sign_refuses_a_query_the_canonical_printer_cannot_represent(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ast.to_text
    monkeypatch.setattr("pql.saved.document.ast.to_text", lambda q: real(q).replace('"a"', '"b"'))
    with pytest.raises(InputError, match="does not parse back to the same query") as info:
        sign_query("FIND receipts WHERE status = 'a'", key=key, name="q", tenant="acme",
                   author="x")  # fmt: skip
    assert info.value.code == "PQL-E099"


PQL_LOOKING = [
    '" OR status != "x',
    "x' OR 1 = 1 --",
    'error") OR (status = "ok',
    "FIND decisions SINCE 180d",
    "$slow",
    '\\" OR true OR \\"',
    "' UNION SELECT * FROM receipts --",
    "ok\nWHERE tenant = 'globex'",
]


@pytest.fixture(scope="module")
def status_doc(key: SigningKey, engine: pql.Engine) -> SavedQuery:
    saved = sign_query(
        "FIND COUNT(*) WHERE status = $status SINCE 30d", key=key, name="by-status",
        tenant="acme", author="x", catalog=engine.catalog, now=NOW,
    )  # fmt: skip
    SavedStore.beside(engine.store).put(saved)
    return saved


@given(st.one_of(st.sampled_from(PQL_LOOKING), st.text(max_size=40)))
def test_a_parameter_value_never_changes_the_shape_of_the_query(
    engine: pql.Engine, status_doc: SavedQuery, ring: KeyRing, value: str
) -> None:
    run = status_doc.authorize(ring, tenant="acme", now=NOW, params={"status": value})
    prepared = engine.prepare(run.text, tenant="acme", now=NOW, params=run.params)
    assert ast.to_text(prepared.analyzed.query) == status_doc.query
    where = prepared.analyzed.where
    assert isinstance(where, Cmp)
    assert (where.col.name, where.op) == ("status", ast.CompareOp.EQ)
    assert where.value == Const(value, DataType.STRING)


@pytest.mark.parametrize("value", [*PQL_LOOKING, "error", "ok"])
def test_a_saved_query_answers_like_the_literal_query(
    engine: pql.Engine, status_doc: SavedQuery, ring: KeyRing, value: str
) -> None:
    saved = engine.run_saved("by-status", tenant="acme", keyring=ring, now=NOW,
                             params={"status": value})  # fmt: skip
    literal = ast.to_text(
        ast.Query(
            None,
            aggregates=(ast.Aggregate(ast.AggFunc.COUNT, None),),
            where=ast.Comparison(ast.Field(None, "status"), ast.CompareOp.EQ, ast.Literal(value)),
            since=ast.Duration(30, "d"),
        )
    )
    expected = engine.query(literal, tenant="acme", now=NOW).rows()
    assert saved.rows() == expected
    assert (saved.rows()[0][0] > 0) == (value in ("error", "ok"))


# ---------------------------------------------------------------------------------------------
# The store and Engine.run_saved


def test_the_store_lives_in_the_data_directory(tmp_path: Path, doc: SavedQuery) -> None:
    data = tmp_path / "data"
    lake = pql.Engine(data)
    lake.ingest("receipts", generate(50, seed=1, now=NOW).receipts)
    manifest = data / "_pql" / "manifest.json"
    before = manifest.read_bytes()
    store = SavedStore.beside(lake.store)
    assert store.path == data / "_pql" / "saved.sqlite"
    assert store.names("acme") == []
    assert not store.path.exists()  # reading never creates it
    store.put(doc)
    store.put(doc)  # replaces
    assert store.names("acme") == ["slow-errors"]
    assert store.get("acme", "slow-errors") == doc
    assert manifest.read_bytes() == before
    with pytest.raises(NoSuchSavedQueryError, match="no saved query 'nope'") as info:
        store.get("acme", "nope")
    assert info.value.code == "PQL-A011"
    assert b"PRIVATE KEY" not in store.path.read_bytes()


def test_a_swapped_or_corrupted_store_row_is_refused(
    tmp_path: Path, doc: SavedQuery, ring: KeyRing
) -> None:
    store = SavedStore.in_data_dir(tmp_path)
    store.put(doc)
    assert store.path is not None
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE saved_query SET name = 'harmless'")
    with pytest.raises(WrongNameError, match="stored as 'harmless' is signed as 'slow-errors'"):
        store.authorize("harmless", tenant="acme", keyring=ring, now=NOW,
                        params={"status": "x", "slow": 1})  # fmt: skip
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE saved_query SET tenant = 'globex'")
    with pytest.raises(WrongTenantError):
        store.authorize("harmless", tenant="globex", keyring=ring, now=NOW)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE saved_query SET document = '{'")
    with pytest.raises(MalformedDocumentError):
        store.get("globex", "harmless")
    store.path.write_bytes(b"not a database" * 100)
    with pytest.raises(InputError, match="cannot be used") as info:
        store.names("acme")
    assert info.value.code == "PQL-E095"


def test_run_saved_verifies_on_every_run(
    engine: pql.Engine, status_doc: SavedQuery, ring: KeyRing
) -> None:
    def run(keys: KeyRing) -> pql.Result:
        return engine.run_saved(
            "by-status", tenant="acme", keyring=keys, now=NOW, params={"status": "error"}
        )

    assert run(ring).rows()[0][0] > 0
    with pytest.raises(RevokedKeyError):
        run(ring.revoke("team-a"))
    with pytest.raises(UnknownKeyError):
        run(KeyRing())
    with pytest.raises(NoSuchSavedQueryError):
        engine.run_saved("nope", tenant="acme", keyring=ring, now=NOW)


# ---------------------------------------------------------------------------------------------
# The safelist


def memory_engine(safelist: SafelistSpec) -> pql.Engine:
    catalog = pql.Catalog()
    return pql.Engine(
        catalog=catalog, store=MemoryStore(catalog), safelist=safelist, clock=lambda: NOW
    )


def test_the_default_safelist_is_off(engine: pql.Engine) -> None:
    assert engine.safelist.level_for("acme") is SafelistLevel.OFF
    engine.query("FIND COUNT(*) WHERE status = 'ok' SINCE 1d", tenant="acme", now=NOW)
    assert engine.safelist.audit_log == ()


def test_audit_records_and_enforce_refuses_free_form_queries(
    key: SigningKey, ring: KeyRing
) -> None:
    seen: list[AuditRecord] = []
    safelist = Safelist({"acme": "enforce", "globex": SafelistLevel.AUDIT}, sink=seen.append)
    eng = memory_engine(safelist)

    eng.query("FIND receipts SINCE 1d", tenant="globex", now=NOW)
    eng.query("FIND receipts SINCE 1d", tenant="initech", now=NOW)  # not listed: off
    with pytest.raises(SafelistError, match="tenant 'acme' runs only signed saved") as info:
        eng.query("FIND receipts SINCE 1d", tenant="acme", now=NOW)
    assert (info.value.code, info.value.exit_code) == ("PQL-A010", 4)
    assert isinstance(info.value, AuthError)
    assert [(r.tenant, r.level, r.admitted) for r in eng.safelist.audit_log] == [
        ("globex", SafelistLevel.AUDIT, True),
        ("acme", SafelistLevel.ENFORCE, False),
    ]
    assert seen == list(eng.safelist.audit_log)

    # Saved queries run whatever the level.
    saved = sign_query("FIND COUNT(receipts.executionId) SINCE 1d", key=key, name="n", tenant="acme",
                       author="x", now=NOW)  # fmt: skip
    SavedStore.beside(eng.store).put(saved)
    assert eng.run_saved("n", tenant="acme", keyring=ring, now=NOW).rows() == [(0,)]


def test_safelist_specs() -> None:
    assert Safelist("enforce").level_for("anyone") is SafelistLevel.ENFORCE
    assert Safelist({"*": "audit", "acme": "off"}).level_for("acme") is SafelistLevel.OFF
    assert Safelist({"*": "audit"}).level_for(None) is SafelistLevel.AUDIT
    same = Safelist()
    assert Safelist.of(same) is same
    with pytest.raises(InputError, match="unknown safelist level 'strict'") as info:
        memory_engine({"acme": "strict"})
    assert info.value.code == "PQL-E097"
    with pytest.raises(InputError, match="not a valid tenant"):
        Safelist({"Not A Tenant": "off"})
    capped = Safelist("audit", capacity=2)
    for i in range(3):
        capped.admit_free_form(f"q{i}", tenant="acme")
    assert [r.text for r in capped.audit_log] == ["q1", "q2"]


def test_every_error_has_a_distinct_code_exit_4_and_a_hint() -> None:
    classes = [
        BadSignatureError, UnknownKeyError, RevokedKeyError, ExpiredError, NotYetValidError,
        WrongTenantError, ParamTypeError, MissingParamError, TamperedTextError, SafelistError,
        NoSuchSavedQueryError, MalformedDocumentError, WrongNameError, UnexpectedParamError,
        KeyFileError,
    ]  # fmt: skip
    codes = [c.CODE for c in classes]
    assert len(set(codes)) == len(codes)
    assert sorted(codes) == [f"PQL-A{n:03d}" for n in range(1, 16)]
    for cls in classes:
        err = cls("what failed")
        assert isinstance(err, AuthError) and isinstance(err, PQLError)
        assert err.exit_code == 4 and err.code == cls.CODE and err.hints
        assert err.render().startswith(f"error[{cls.CODE}]: what failed")


# ---------------------------------------------------------------------------------------------
# Out-of-range input is a PQL error, never OverflowError or TypeError


@pytest.mark.parametrize(
    ("ptype", "value"),
    [
        (ParamType.TIMESTAMP, "0001-01-01T00:00:00+01:00"),
        (ParamType.TIMESTAMP, "9999-12-31T23:59:59-01:00"),
        (ParamType.TIMESTAMP, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        (ParamType.FLOAT, 10**400),
        (ParamType.FLOAT, -(10**400)),
        (ParamType.INT, 10**400),
        (ParamType.INT, 10**5000),  # too long even to print
        (ParamType.STRING, 10**5000),
    ],
    ids=lambda v: v.value if isinstance(v, ParamType) else type(v).__name__,
)
def test_out_of_range_parameters_are_type_errors(ptype: ParamType, value: object) -> None:
    with pytest.raises(ParamTypeError) as info:
        ptype.convert("p", value)
    assert info.value.exit_code == 4 and len(info.value.message) < 300


def test_out_of_range_parameters_through_run_saved(
    engine: pql.Engine, key: SigningKey, ring: KeyRing
) -> None:
    store = SavedStore.in_memory()
    for name, text in (("since", "FIND COUNT(*) WHERE receipts.ts > $p SINCE 1d"),
                       ("slow", "FIND COUNT(*) WHERE latency_ms > $p SINCE 1d")):  # fmt: skip
        store.put(sign_query(text, key=key, name=name, tenant="acme", author="x",
                             catalog=engine.catalog, now=NOW))  # fmt: skip
    for name, value in (("since", "0001-01-01T00:00:00+01:00"), ("slow", 10**400)):
        with pytest.raises(ParamTypeError):
            engine.run_saved(name, tenant="acme", keyring=ring, params={"p": value}, store=store)
    for edge in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        result = engine.run_saved("since", tenant="acme", keyring=ring, params={"p": edge},
                                  store=store, now=NOW)  # fmt: skip
        assert result.rows()[0][0] >= 0


@pytest.mark.parametrize("field", ["now", "not_before", "expires_at"])
def test_out_of_range_signing_times_are_input_errors(key: SigningKey, field: str) -> None:
    times: dict[str, Any] = {"now": NOW, field: "9999-12-31T23:59:59-01:00"}
    with pytest.raises(InputError, match="out of range") as info:
        sign_query("FIND receipts SINCE 1d", key=key, name="x", tenant="acme", author="x",
                   **times)  # fmt: skip
    assert info.value.code == "PQL-E094"


def test_an_out_of_range_key_window_fails_the_ring_closed(tmp_path: Path) -> None:
    SigningKey.generate("k").write(tmp_path)
    (tmp_path / "k.json").write_text('{"not_after": "9999-12-31T23:59:59-01:00"}')
    with pytest.raises(KeyFileError, match="out of range"):
        KeyRing.from_dir(tmp_path)
    with pytest.raises(InputError, match="out of range"):
        SigningKey.generate("k2").trusted(
            not_after=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1)))
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip


@given(field=st.sampled_from(sorted(pql.saved.SavedQuery.__dataclass_fields__.keys() | {"format"})),
       value=json_values, nested=st.booleans())  # fmt: skip
def test_any_value_in_any_field_is_a_malformed_or_refused_document(
    doc: SavedQuery, ring: KeyRing, field: str, value: Any, nested: bool
) -> None:
    obj = doc.to_dict()
    if nested and field == "params":
        obj["params"] = {"status": value, "slow": "float"}
    else:
        obj[field] = value
    assume(obj != doc.to_dict())
    with pytest.raises(SignedQueryError):
        check(json.dumps(obj), ring)


def test_a_declaration_that_is_not_text_is_malformed(doc: SavedQuery, ring: KeyRing) -> None:
    obj = doc.to_dict()
    obj["params"] = {"slow": ["float"], "status": "string"}
    with pytest.raises(MalformedDocumentError, match="is not a declaration"):
        check(json.dumps(obj), ring)


# ---------------------------------------------------------------------------------------------
# One engine, one store, whatever the scan path


def test_indexed_and_plain_engines_share_one_store(
    tmp_path: Path, key: SigningKey, ring: KeyRing
) -> None:
    data = tmp_path / "data"
    rows = generate(300, seed=3, now=NOW, days=5)
    pql.Engine(data).ingest("receipts", rows.receipts)
    plain = pql.Engine(data, clock=lambda: NOW)
    indexed = pql.Engine(data, index=True, clock=lambda: NOW)
    assert plain.saved_store.path == indexed.saved_store.path == data / "_pql" / "saved.sqlite"
    assert SavedStore.beside(indexed.store).path == plain.saved_store.path

    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    for name, signer, runner in (("a", indexed, plain), ("b", plain, indexed)):
        SavedStore.beside(signer.store).put(
            sign_query(text, key=key, name=name, tenant="acme", author="x", now=NOW)
        )
        answer = runner.run_saved(name, tenant="acme", keyring=ring, now=NOW)
        assert answer.rows() == plain.query(text, tenant="acme", now=NOW).rows()
        assert answer.rows()[0][0] > 0
    assert SavedStore.in_data_dir(data).names("acme") == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# Two clocks: validity on the engine's clock, ``now`` only sets the window


def test_an_expired_query_cannot_be_revived_by_an_earlier_now(
    engine: pql.Engine, key: SigningKey, ring: KeyRing
) -> None:
    store = SavedStore.in_memory()
    store.put(sign_query("FIND COUNT(receipts.executionId) SINCE 1d", key=key, name="old",
                         tenant="acme", author="x", now="2026-01-01T00:00:00Z",
                         expires_at="2026-02-01T00:00:00Z"))  # fmt: skip
    assert engine.trusted_now() == NOW
    with pytest.raises(ExpiredError, match="saved query 'old' expired"):
        engine.run_saved("old", tenant="acme", keyring=ring, store=store,
                         now="2026-01-15T00:00:00Z")  # fmt: skip
    back_then = pql.Engine(store=engine.store, catalog=engine.catalog,
                           clock=lambda: datetime(2026, 1, 20, tzinfo=UTC))  # fmt: skip
    back_then.run_saved("old", tenant="acme", keyring=ring, store=store, now=NOW)


def test_a_query_signed_now_replays_a_historical_window(
    engine: pql.Engine, key: SigningKey, ring: KeyRing
) -> None:
    later = datetime(2026, 3, 30, 9, tzinfo=UTC)
    store = SavedStore.in_memory()
    text = "FIND COUNT(receipts.executionId) SINCE 30d"
    store.put(sign_query(text, key=key, name="replay", tenant="acme", author="x", now=later))
    replaying = pql.Engine(store=engine.store, catalog=engine.catalog, clock=lambda: later)
    past = "2026-03-13T15:00:00Z"
    answer = replaying.run_saved("replay", tenant="acme", keyring=ring, store=store, now=past)
    assert answer.stats["window"]["end"] == past
    assert answer.rows() == engine.query(text, tenant="acme", now=past).rows()
    with pytest.raises(NotYetValidError):  # the engine's own clock is before issued-at
        engine.run_saved("replay", tenant="acme", keyring=ring, store=store, now=later)


def test_the_default_trusted_clock_is_the_wall_clock(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    trusted = pql.Engine(tmp_path).trusted_now()
    assert before.replace(microsecond=0) <= trusted <= datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Bounded memory


def test_refused_queries_keep_a_bounded_record(key: SigningKey) -> None:
    eng = memory_engine({"acme": "enforce", "globex": "audit"})
    big = "FIND receipts WHERE status = 'x' " + "OR status = 'y' " * 62_500  # 1 MB
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            with pytest.raises(SafelistError):
                eng.query(big + str(i), tenant="acme")
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, f"the audit log holds {held:,} bytes for 20 refused queries"
    last = eng.safelist.audit_log[-1]
    assert last.text == (big + "19")[: pql.saved.AUDIT_TEXT_MAX] and last.truncated
    assert last.length == len(big) + 2
    assert last.sha256 == hashlib.sha256((big + "19").encode()).hexdigest()

    with pytest.raises(PQLError):  # admitted under audit, then too long to parse
        eng.query(big, tenant="globex")
    assert len(eng.safelist.audit_log[-1].text) == pql.saved.AUDIT_TEXT_MAX
    eng.query("FIND receipts SINCE 1d", tenant="globex", now=NOW)
    short = eng.safelist.audit_log[-1]
    assert (short.text, short.truncated) == ("FIND receipts SINCE 1d", False)
