"""Check ingested data against its subject and bring it to the stored types.

:func:`validate` either returns a normalized frame or raises :class:`~pql.errors.InputError`
naming what is wrong and where; it never changes the catalog, so a rejected file leaves no
trace. Extra columns are checked against the extra columns of each tenant the input has rows
for, and only those: another tenant's column of the same name does not matter. Since other
ingests may add extra columns meanwhile, a store calls :func:`check_extras` again under its
ingest lock, right before it writes, and then registers :func:`extra_columns` for the tenants
that got rows.

Normalized means: strings (including categoricals) are ``String``, ``ts`` and every other
timestamp is ``Datetime("us", "UTC")`` (naive values are taken as UTC, other zones converted),
floats are ``Float64`` (integers are accepted for float columns), integers ``Int64``. Columns
come in the subject's order, then new extra columns in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import polars as pl
import pyarrow as pa

from pql.catalog import Catalog, Column, DataType, Subject, suggest, type_conflict
from pql.errors import InputError, PQLError
from pql.storage.base import current_subject, has_region

__all__ = [
    "ALLOWED_VALUES",
    "LAST_YEAR",
    "REGION_PATTERN",
    "TENANT_PATTERN",
    "check_extras",
    "extra_columns",
    "validate",
    "validate_all",
]

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{1,30}$"
"""What a tenant looks like (it also names directories, so nothing else is allowed)."""

REGION_PATTERN = r"^[a-z]{2}-[a-z]{1,20}-[0-9]{1,3}$"
"""What a region looks like: ``us-east-1``, ``ap-southeast-2``. It names directories too, and
its fixed shape (two letters, a word, a number) keeps bucket names unambiguous: see
:func:`pql.storage.lake.bucket_name`."""

FIRST_YEAR, LAST_YEAR = 1, 9999
"""Timestamps are stored only within these years (UTC), the range every client can read."""

_FIRST_SECOND = -62_135_596_800
"""0001-01-01T00:00:00Z in seconds since the epoch."""

_END_SECOND = 253_402_300_800
"""10000-01-01T00:00:00Z in seconds since the epoch (the first second not allowed)."""

_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

_SECONDS_PER_YEAR = 31_556_952  # the mean Gregorian year

ALLOWED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("decisions", "effect"): ("allow", "deny"),
}
"""Columns restricted to a fixed set of values: (subject, column) -> values."""

_RESERVED_PREFIX = "__pql"

_TYPE_NAMES: dict[DataType, str] = {
    DataType.STRING: "string",
    DataType.INT: "integer",
    DataType.FLOAT: "float64",
    DataType.BOOL: "boolean",
    DataType.TIMESTAMP: "timestamp (UTC or naive)",
}


def validate(subject: Subject, data: pa.Table | pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Check ``data`` against ``subject`` and return it normalized to the stored types.

    Raises :class:`~pql.errors.InputError` for missing columns (PQL-E050), wrong types
    (PQL-E051), extra columns conflicting with the same tenant's stored ones (PQL-E052; another
    tenant's columns do not count), nulls where a value is
    required (PQL-E053), malformed tenants (PQL-E054), effects other than allow/deny (PQL-E055),
    extra columns of a type PQL cannot query (PQL-E056), malformed regions (PQL-E058) and
    timestamps outside the years 1 to 9999 (PQL-E101).
    The catalog is not changed. Row numbers in messages count from 0, as in Polars and pyarrow.

    >>> import polars as pl
    >>> from datetime import datetime
    >>> from pql.catalog import Catalog, RECEIPTS
    >>> row = {"executionId": "e1", "tenant": "acme", "region": "us-east-1",
    ...        "ts": datetime(2024, 5, 1), "workflow": "etl", "status": "ok",
    ...        "latency_ms": 12, "cost_usd": None}
    >>> validate(RECEIPTS, pl.DataFrame([row]), Catalog()).schema["ts"]
    Datetime(time_unit='us', time_zone='UTC')
    """
    declared = current_subject(catalog, subject)
    frame = _to_polars(data)
    _check_missing(declared, frame)
    normalized = _normalize(declared, frame, catalog)
    _check_values(declared, normalized)
    return normalized


def validate_all(
    subject: Subject,
    inputs: Sequence[tuple[str, pa.Table | pl.DataFrame]],
    catalog: Catalog,
) -> pl.DataFrame:
    """Check several named inputs as one ingest and return them as one normalized frame.

    Each input is validated on its own (an error's message starts with the input's name), then
    the types of their new extra columns are checked against each other (PQL-E052 names both
    inputs), so one bad input rejects them all before anything is stored. An extra column
    missing from some inputs is null in their rows.
    """
    current = current_subject(catalog, subject)
    frames: list[pl.DataFrame] = []
    first_seen: dict[str, tuple[str, DataType]] = {}
    for name, data in inputs:
        try:
            frame = validate(current, data, catalog)
        except PQLError as exc:
            exc.message = f"{name}: {exc.message}"
            raise
        for column, type_ in extra_columns(current, frame).items():
            where, seen = first_seen.setdefault(column, (name, type_))
            if seen is not type_:
                raise InputError(
                    "PQL-E052",
                    f"{name}: column {current.name}.{column} is {type_.value} in this file "
                    f"but {seen.value} in {where}",
                    hints=(
                        "the files of one ingest are stored together: cast the column to one "
                        "type in every file; nothing was stored",
                    ),
                    details={"subject": current.name, "column": column, "input": name},
                )
        frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=current.polars_schema())
    return pl.concat(frames, how="diagonal")


def check_extras(subject: Subject, frame: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Check the extra columns of a validated ``frame`` against the catalog as it is now.

    Stores call this under their ingest lock, right before writing, so that the check and the
    write are one step: an extra column another ingest of the same tenant registered meanwhile
    with another type is refused (PQL-E052). Returns ``frame``, with an integer column cast to
    float where the tenant stores it as float.
    """
    declared = current_subject(catalog, subject)
    names = [n for n in frame.columns if n not in declared]
    targets = _extra_targets(declared, frame, names, catalog)
    casts = [pl.col(n).cast(t.polars) for n, t in targets.items() if frame.schema[n] != t.polars]
    return frame.with_columns(casts) if casts else frame


def extra_columns(subject: Subject, data: pl.DataFrame) -> dict[str, DataType]:
    """The columns of validated ``data`` that ``subject`` does not have yet, with their types."""
    out: dict[str, DataType] = {}
    for name, dtype in data.schema.items():
        if name in subject:
            continue
        found = DataType.from_polars(dtype)
        if found is not None:
            out[name] = found
    return out


# -- input -------------------------------------------------------------------------------------


def _to_polars(data: object) -> pl.DataFrame:
    """``data`` as a Polars frame; a pyarrow table or record batch is converted."""
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pa.Table | pa.RecordBatch):
        _check_arrow_seconds(data)
        try:
            converted = pl.from_arrow(data)
        except (pa.ArrowException, pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            raise InputError(
                "PQL-E056",
                f"the input has a column of a type PQL cannot read: {exc}",
                hints=("cast such columns to string, integer, float, boolean or timestamp",),
            ) from exc
        if isinstance(converted, pl.DataFrame):
            return converted
    raise InputError(
        "PQL-E051",
        f"ingest takes a pyarrow.Table or a polars.DataFrame, not {type(data).__name__}",
        hints=("convert it first, e.g. with polars.from_pandas(...)",),
    )


def _check_missing(subject: Subject, frame: pl.DataFrame) -> None:
    """Raise PQL-E050 listing every required column ``frame`` lacks."""
    missing = [c.name for c in subject.required if c.name not in frame.columns]
    if not missing:
        return
    hints = [
        f"{name!r} may be {near!r}"
        for name in missing
        if (near := suggest(name, [c for c in frame.columns if c not in subject])) is not None
    ]
    hints.append(f"{subject.name} needs: {', '.join(c.name for c in subject.required)}")
    raise InputError(
        "PQL-E050",
        f"{subject.name} input is missing required column{'s' if len(missing) > 1 else ''}: "
        f"{', '.join(missing)}",
        hints=hints,
        details={"subject": subject.name, "missing": missing},
    )


# -- types -------------------------------------------------------------------------------------


def _normalize(subject: Subject, frame: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Cast every column to its stored type, or raise naming every column that cannot be."""
    known = [c for c in subject.columns if c.name in frame.columns]
    extra = [name for name in frame.columns if name not in subject]
    _check_known_types(subject, frame, known)
    extra_types = _extra_targets(subject, frame, extra, catalog)
    _check_time_range(frame)
    exprs = [_cast(c.name, frame.schema[c.name], c.type) for c in known]
    exprs += [_cast(n, frame.schema[n], extra_types[n]) for n in extra]
    try:
        return frame.select([e for e in exprs if e is not None])
    except pl.exceptions.PolarsError as exc:
        raise InputError(
            "PQL-E051",
            f"{subject.name} input has values that do not fit the stored types: {exc}",
            hints=("integers must fit in a signed 64-bit integer",),
        ) from exc


def _check_known_types(subject: Subject, frame: pl.DataFrame, known: list[Column]) -> None:
    """Raise PQL-E051 (required) or PQL-E052 (extra) for columns of the wrong type."""
    wrong = [c for c in known if _cast(c.name, frame.schema[c.name], c.type) is None]
    required = [c for c in wrong if c.required]
    if required:
        problems = [_wrong_type(c, frame.schema[c.name]) for c in required]
        raise InputError(
            "PQL-E051",
            f"{subject.name} input has {'; '.join(problems)}",
            hints=("cast the column to the expected type before ingesting",),
            details={"subject": subject.name, "columns": [c.name for c in required]},
        )
    if wrong:
        column = wrong[0]
        shown = _shown(frame.schema[column.name])
        raise InputError(
            "PQL-E052",
            f"column {subject.name}.{column.name} is {column.type.value} in stored data "
            f"but {shown} in this file",
            hints=("cast the column to the stored type before ingesting",),
            details={"subject": subject.name, "column": column.name},
        )


def _extra_targets(
    subject: Subject, frame: pl.DataFrame, names: list[str], catalog: Catalog
) -> dict[str, DataType]:
    """The type each extra column is stored as, checked against the input's tenants' own.

    A column a tenant of the input already has keeps that tenant's type (PQL-E052 if the input
    cannot be cast to it; an input whose tenants have it with different types is refused too);
    a new one takes the input's type (PQL-E056 naming those PQL cannot query).
    """
    if not names:
        return {}
    tenants = _tenants(frame)
    targets: dict[str, DataType] = {}
    bad: list[str] = []
    for name in names:
        dtype = frame.schema[name]
        if name.startswith(_RESERVED_PREFIX):
            bad.append(name)
            continue
        stored = {
            tenant: found
            for tenant in tenants
            if (found := catalog.extra_type(tenant, subject.name, name)) is not None
        }
        for tenant, type_ in stored.items():
            if _cast(name, dtype, type_) is None:
                raise type_conflict(subject.name, name, type_, _shown(dtype), tenant)
        kinds = dict.fromkeys(stored.values())
        if len(kinds) > 1:
            raise _tenants_disagree(subject, name, stored)
        natural = next(iter(kinds), None) or DataType.from_polars(dtype)
        if natural is None:
            bad.append(name)
        else:
            targets[name] = natural
    if bad:
        shown = ", ".join(f"{n} ({_describe(frame.schema[n])})" for n in bad)
        raise InputError(
            "PQL-E056",
            f"{subject.name} input has extra columns PQL cannot store: {shown}",
            hints=(
                "extra columns may be string, integer, float, boolean or timestamp",
                f"names starting with {_RESERVED_PREFIX!r} are reserved",
                "drop or cast these columns before ingesting",
            ),
            details={"subject": subject.name, "columns": bad},
        )
    return targets


def _tenants(frame: pl.DataFrame) -> list[str]:
    """The distinct tenants of ``frame``, sorted (malformed ones are refused later)."""
    if "tenant" not in frame.columns:
        return []
    values = frame.get_column("tenant").unique().drop_nulls()
    return sorted(str(v) for v in values.to_list())


def _tenants_disagree(subject: Subject, name: str, stored: dict[str, DataType]) -> InputError:
    """PQL-E052: two tenants of one input store the extra column ``name`` as different types."""
    first, a = next(iter(stored.items()))
    second, b = next((t, k) for t, k in stored.items() if k is not a)
    return InputError(
        "PQL-E052",
        f"column {subject.name}.{name} is {a.value} in tenant {first}'s stored data and "
        f"{b.value} in tenant {second}'s; one input cannot hold both",
        hints=("ingest each tenant's rows separately",),
        details={"subject": subject.name, "column": name, "tenants": [first, second]},
    )


def _shown(dtype: pl.DataType) -> str:
    """A dtype as the PQL type it would be, or as Polars names it."""
    found = DataType.from_polars(dtype)
    return found.value if found is not None else str(dtype)


def _cast(name: str, dtype: pl.DataType, target: DataType) -> pl.Expr | None:
    """An expression casting column ``name`` to ``target``, or ``None`` if it cannot be."""
    column = pl.col(name)
    if dtype == pl.Null:
        return column.cast(target.polars)
    if target is DataType.TIMESTAMP:
        return _to_utc_micros(column, dtype)
    if DataType.from_polars(dtype) is target or (target is DataType.FLOAT and dtype.is_integer()):
        return column.cast(target.polars)
    return None


def _to_utc_micros(column: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """A datetime column as microseconds in UTC; naive values are taken as UTC."""
    if not isinstance(dtype, pl.Datetime):
        return None
    if dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    elif dtype.time_zone != "UTC":
        column = column.dt.convert_time_zone("UTC")
    return column.dt.cast_time_unit("us")


def _check_arrow_seconds(data: pa.Table | pa.RecordBatch) -> None:
    """Raise PQL-E101 for Arrow timestamps in seconds outside the years 1 to 9999.

    Polars reads seconds as milliseconds, and a value far enough out of range would wrap around
    silently in that conversion; check it before.
    """
    for index, field_ in enumerate(data.schema):
        if pa.types.is_timestamp(field_.type) and field_.type.unit == "s":
            raw = pl.Series(data.column(index).cast(pa.int64()))
            _first_out_of_range(raw.to_frame(field_.name), field_.name, pl.col(field_.name), 1)


def _check_time_range(frame: pl.DataFrame) -> None:
    """Raise PQL-E101 for any timestamp outside the years 1 to 9999 (UTC), in any column.

    The check reads the stored integers, so it works for values no datetime can hold (a year
    like 11476 makes Python's ``datetime`` and some Polars conversions fail). Nanoseconds cover
    only the years 1677 to 2262 and are always in range.
    """
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime) and dtype.time_unit in ("ms", "us"):
            scale = _PER_SECOND[dtype.time_unit]
            _first_out_of_range(frame, name, pl.col(name).to_physical(), scale)


def _first_out_of_range(frame: pl.DataFrame, name: str, raw: pl.Expr, scale: int) -> None:
    """Raise PQL-E101 at the first row whose ``raw`` value (``scale`` a second) is out of range."""
    bad = raw.is_not_null() & ~raw.is_between(
        _FIRST_SECOND * scale, _END_SECOND * scale, closed="left"
    )
    row, count, value = frame.select(
        row=pl.arg_where(bad).first(), count=bad.sum(), value=raw.filter(bad).first()
    ).row(0)
    if row is None or not count:
        return
    year = 1970 + int(value) // scale // _SECONDS_PER_YEAR
    when = f"before the year {FIRST_YEAR}" if value < 0 else f"about the year {year:,}"
    raise InputError(
        "PQL-E101",
        f"column {name} has a timestamp outside the years {FIRST_YEAR} to {LAST_YEAR} at row "
        f"{row}{_more(int(count))} ({when})",
        hints=(
            f"timestamps must lie in the years {FIRST_YEAR} to {LAST_YEAR} (UTC)",
            "fix or drop those rows; nothing was stored",
        ),
        details={"column": name, "row": int(row), "rows": int(count), "year": year},
    )


def _wrong_type(column: Column, found: pl.DataType) -> str:
    expected = _TYPE_NAMES[column.type]
    if column.type is DataType.FLOAT:
        expected = "float64 (or integer)"
    return f"column {column.name} of type {_describe(found)}, expected {expected}"


def _describe(dtype: pl.DataType) -> str:
    """A dtype as a message shows it, e.g. ``Datetime(time_unit='ms', time_zone=None)``."""
    return str(dtype)


# -- values ------------------------------------------------------------------------------------


def _check_values(subject: Subject, frame: pl.DataFrame) -> None:
    """Raise for nulls where a value is needed, malformed tenants/regions and bad enum values."""
    for column in subject.columns:
        if column.name in frame.columns and not _nullable(subject, column):
            _first_bad(frame, column.name, pl.col(column.name).is_null(), _null_error)
    _check_pattern(frame, "tenant", TENANT_PATTERN, _tenant_error)
    if has_region(subject):
        _check_pattern(frame, "region", REGION_PATTERN, _region_error)
    for (name, column_name), allowed in ALLOWED_VALUES.items():
        if name == subject.name and column_name in frame.columns:
            bad = ~pl.col(column_name).is_in(allowed) & pl.col(column_name).is_not_null()
            _first_bad(frame, column_name, bad, _allowed_error(allowed))


def _nullable(subject: Subject, column: Column) -> bool:
    """Keys, tenants, regions and timestamps always need a value, whatever the column says."""
    if column.name == "region" and not has_region(subject):
        return column.nullable
    return column.nullable and column.name != "region" and not subject.never_null(column.name)


def _check_pattern(
    frame: pl.DataFrame, name: str, pattern: str, error: Callable[[str, int, str, int], InputError]
) -> None:
    if name not in frame.columns:
        return
    values = frame.get_column(name).unique()
    bad = values.filter(~values.str.contains(pattern)).drop_nulls()
    if len(bad):
        _first_bad(frame, name, pl.col(name).is_in(bad.implode()), error)


def _first_bad(
    frame: pl.DataFrame,
    name: str,
    condition: pl.Expr,
    error: Callable[[str, int, str, int], InputError],
) -> None:
    """Raise ``error(column, row, value, count)`` for the first row where ``condition`` holds."""
    found = frame.select(
        row=pl.arg_where(condition).first(),
        count=condition.sum(),
    ).row(0)
    row, count = found
    if row is None or not count:
        return
    value = frame.get_column(name)[int(row)]
    raise error(name, int(row), "null" if value is None else repr(str(value)), int(count))


def _details(column: str, row: int, value: str, count: int) -> dict[str, object]:
    return {"column": column, "row": row, "value": value, "rows": count}


def _more(count: int) -> str:
    return f" ({count - 1} more row{'s' if count > 2 else ''} like it)" if count > 1 else ""


def _null_error(column: str, row: int, value: str, count: int) -> InputError:
    return InputError(
        "PQL-E053",
        f"column {column} has a null at row {row}{_more(count)} but needs a value in every row",
        hints=("fill or drop those rows before ingesting",),
        details=_details(column, row, value, count),
    )


def _tenant_error(column: str, row: int, value: str, count: int) -> InputError:
    return InputError(
        "PQL-E054",
        f"invalid tenant {value} at row {row}{_more(count)}",
        hints=(
            "a tenant is 2 to 31 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ),
        details=_details(column, row, value, count),
    )


def _region_error(column: str, row: int, value: str, count: int) -> InputError:
    return InputError(
        "PQL-E058",
        f"invalid region {value} at row {row}{_more(count)}",
        hints=(
            "a region is two letters, a word and a number joined by '-', "
            "such as 'us-east-1' or 'ap-southeast-2'",
        ),
        details=_details(column, row, value, count),
    )


def _allowed_error(allowed: Iterable[str]) -> Callable[[str, int, str, int], InputError]:
    choices = tuple(allowed)

    def error(column: str, row: int, value: str, count: int) -> InputError:
        return InputError(
            "PQL-E055",
            f"invalid {column} {value} at row {row}{_more(count)}",
            hints=(f"{column} must be one of: {', '.join(repr(c) for c in choices)}",),
            details=_details(column, row, value, count),
        )

    return error
