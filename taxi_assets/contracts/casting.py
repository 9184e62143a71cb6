"""Vectorised conversion of one source column onto its contract column's type.

Shared by the CSV and Parquet readers. The fast path is a single safe Arrow cast; only
when it fails do we locate the offending row to name it in the error (vectorised for
numbers; element by element for other casts, on that error path only).
`first_row` is the 1-based data-row number of the array's first element in the file.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from .schema import (
    ContractColumn,
    IncompatibleTypeError,
    InvalidValueError,
    NonIntegralValueError,
)

# Source types each kind of contract type is read from, beyond its own type and the null
# type (TLC writes an all-null column as `null`). pc.cast would convert almost anything,
# silently and wrongly (int64 -> timestamp: 1970 dates; bool -> fare: 0/1; date32 ->
# timestamp: midnight), so every other pair is refused. What real files need:
# - timestamp: timestamps of any unit or zone (TLC: timestamp[us]; ns in other writers'
#   files; zone-labelled ones keep their wall clock), and text, which the CSV reader
#   parses and TLC's yellow 2009 Parquet holds (`Trip_Pickup_DateTime: string`, a public
#   schema report; no sample). No sample holds a date or an integer time.
# - integer: integers of any width (green 2024-01 sample: int64 RatecodeID,
#   passenger_count, payment_type, trip_type; int32 IDs), floats holding whole numbers
#   (passenger_count, RatecodeID, FHV location IDs and SR_Flag are double in months where
#   nulls forced floats; the CSV reader parses them as float64), decimals (existing
#   behaviour) and text. Integrality and range are checked by to_int.
# - float: floats, integers (airport_fee int32 in some yellow months; int64 amounts in the
#   tests), decimals and text.
# - text: text, and numbers kept as their text (yellow 2009 Parquet's `store_and_forward`
#   is double, same public report). Never bool ("true") or times.
_ACCEPTED_SOURCES: dict[str, frozenset[str]] = {
    "timestamp": frozenset({"timestamp", "text"}),
    "integer": frozenset({"integer", "float", "decimal", "text"}),
    "float": frozenset({"integer", "float", "decimal", "text"}),
    "text": frozenset({"text", "integer", "float"}),
}


def _kind(arrow_type: pa.DataType) -> str | None:
    """The family a type belongs to for the cast rules (None: bool, dates, times,
    durations, nested types)."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        # Text in a Parquet byte array its writer did not annotate as UTF-8; Arrow checks
        # the encoding when it casts (as before: the old code accepted it too).
        return "text"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return None


def check_source_type(
    source: pa.DataType, col: ContractColumn, *, file_name: str, header: str | None = None
) -> None:
    """Raise IncompatibleTypeError unless `source` may be cast onto `col.type`."""
    if pa.types.is_dictionary(source):
        source = source.value_type
    if pa.types.is_null(source) or source == col.type:
        return
    target = _kind(col.type)
    if target is not None and _kind(source) in _ACCEPTED_SOURCES[target]:
        return
    raise IncompatibleTypeError(file_name, col.name, str(source), str(col.type), header)


def _int_bounds(arrow_type: pa.DataType) -> tuple[int, int]:
    """The range of a signed integer type (int32 codes, int64 counts such as trip_time)."""
    bits = arrow_type.bit_width
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def conform(arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int) -> pa.Array:
    """Return `arr` as `col.type`, or raise a ContractError naming file, row and column."""
    conformed = _to_contract_type(arr, col, file_name=file_name, first_row=first_row)
    if pa.types.is_string(col.type):
        refuse_nul(conformed, col, file_name=file_name, first_row=first_row)
    return conformed


def refuse_nul(arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int) -> None:
    """A NUL byte in text is corruption (no TLC field holds one), and PostgreSQL's text
    cannot store it: without this the lake would take the month and the warehouse load
    fail later with the driver's message, naming no file or row."""
    _refuse_first(
        pc.match_substring(arr, "\x00"),
        arr,
        col,
        file_name=file_name,
        first_row=first_row,
        detail=lambda _: (
            "text holds a NUL byte (\\x00): no TLC field carries one, and "
            "PostgreSQL text cannot store it"
        ),
    )


def _refuse_first(
    flagged: pa.Array,
    values: pa.Array,
    col: ContractColumn,
    *,
    file_name: str,
    first_row: int,
    detail: Callable[[int], str],
) -> None:
    """InvalidValueError naming the first row ``flagged`` marks (null: not marked), its
    value in ``values`` and ``detail(index)``."""
    idx = pc.index(pc.fill_null(flagged, False), True).as_py()
    if idx >= 0:
        raise InvalidValueError(
            file_name, first_row + idx, col.name, values[idx].as_py(), detail(idx)
        )


def _to_contract_type(
    arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int
) -> pa.Array:
    check_source_type(arr.type, col, file_name=file_name)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), col.type)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        # Text its writer did not mark as UTF-8: as text from here on, as every cast below
        # (codes, timestamps, numbers) reads it.
        arr = _binary_as_text(arr, col, file_name=file_name, first_row=first_row)
    if col.codes:
        return _decode_codes(arr, col, file_name=file_name, first_row=first_row)
    if pa.types.is_integer(col.type):
        return to_int(arr, col, file_name=file_name, first_row=first_row)
    if pa.types.is_timestamp(col.type) and pa.types.is_timestamp(arr.type):
        if arr.type.tz is not None:
            # Keep the wall-clock time the file shows in its own zone (TLC files are
            # naive NYC time; a writer may have labelled them, e.g. UTC).
            arr = pc.local_timestamp(arr)
        if arr.type.unit == "ns":
            # ns -> us truncates sub-microsecond digits, which TLC never carries.
            return pc.cast(arr, col.type, safe=False)
        # s and ms widen to us safely, or overflow: a year past 294247 names its row.
        return _cast(arr, col, file_name=file_name, first_row=first_row)
    if arr.type == col.type:
        return arr
    return _cast(arr, col, file_name=file_name, first_row=first_row)


def _binary_as_text(
    arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int
) -> pa.Array:
    """Byte arrays as text (Arrow checks they are UTF-8); the first that is not names its
    row and column."""
    text = pa.large_string() if pa.types.is_large_binary(arr.type) else pa.string()
    try:
        return pc.cast(arr, text)
    except pa.ArrowInvalid:
        for offset, value in enumerate(arr.to_pylist()):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidValueError(
                    file_name, first_row + offset, col.name, value[:40], "not UTF-8 text"
                ) from None
        raise


def to_int(arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int) -> pa.Array:
    """Cast to an integer type only if every non-null value is integral and in range.

    Integer text and decimals are cast exactly when they can be: through float64, a
    value beyond 2**53 (an int64 column such as trip_time) would be rounded to another
    integer, silently. Text such as ``1.0`` or ``1e3`` goes through float64."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return _text_to_int(arr, col, file_name=file_name, first_row=first_row)
    if pa.types.is_decimal(arr.type):
        exact = _exact(arr, col.type)
        if exact is not None:
            return exact
        arr = pc.cast(arr, pa.float64())
    try:
        # Safe casts reject fractions, NaN, infinities and overflow.
        return pc.cast(arr, col.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    low, high = _int_bounds(col.type)
    if pa.types.is_floating(arr.type):
        # Bounds as floats Arrow compares exactly: -2**(bits-1) and 2**(bits-1) are
        # doubles, 2**63 - 1 is not (Arrow refuses to compare a double with it).
        bad = pc.or_(
            pc.not_equal(arr, pc.floor(arr)),  # fractions; NaN != NaN too
            pc.or_(pc.less(arr, float(low)), pc.greater_equal(arr, float(high + 1))),
        )
    elif pa.types.is_integer(arr.type):
        bad = pc.or_(pc.less(arr, low), pc.greater(arr, high))
    else:
        raise NonIntegralValueError(
            file_name, None, col.name, str(arr.type), "cannot convert this type to an integer"
        )
    idx = pc.index(pc.fill_null(bad, False), True).as_py()
    row = None if idx < 0 else first_row + idx
    value = None if idx < 0 else arr[idx].as_py()
    raise NonIntegralValueError(
        file_name, row, col.name, value, f"expected an integer fitting {col.type}"
    )


def _text_to_int(arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int) -> pa.Array:
    """Text to integers: digits cast exactly, other numbers (``1.0``, ``1e3``) through
    float64 and checked to be integral, every failure naming its row."""
    text = pc.cast(arr, pa.string())
    if pc.all(pc.fill_null(pc.ascii_is_decimal(text), True)).as_py():
        # Unsigned digits or null, nearly always: cast at once. (Trimming and matching
        # every value took 8 times as long as the cast, on the lake step's hot path.)
        return _cast(text, col, file_name=file_name, first_row=first_row)
    text = pc.utf8_trim_whitespace(text)  # as the CSV parser trims
    matched = pc.match_substring_regex(text, r"^-?[0-9]+$")
    if pc.all(pc.fill_null(matched, True)).as_py():  # digits or null: the usual case
        return _cast(text, col, file_name=file_name, first_row=first_row)
    digits = pc.fill_null(matched, False)
    no_text = pa.scalar(None, pa.string())
    floats = _cast(
        pc.if_else(digits, no_text, text),
        col,
        file_name=file_name,
        first_row=first_row,
        to=pa.float64(),
    )
    others = to_int(floats, col, file_name=file_name, first_row=first_row)
    if not pc.any(digits).as_py():
        return others
    exact = _cast(pc.if_else(digits, text, no_text), col, file_name=file_name, first_row=first_row)
    return pc.if_else(digits, exact, others)


def _exact(arr: pa.Array, target: pa.DataType) -> pa.Array | None:
    """``arr`` cast to ``target`` by a safe cast (no rounding, no overflow), or None."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _decode_codes(
    arr: pa.Array, col: ContractColumn, *, file_name: str, first_row: int
) -> pa.Array:
    """Map text codes (e.g. Y/N) or numbers onto the column's integer codes."""
    allowed = sorted({v for _, v in col.codes})
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = pc.utf8_upper(pc.utf8_trim_whitespace(pc.cast(arr, pa.string())))
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        keys = pa.array([k.upper() for k, _ in col.codes], pa.string())
        positions = pc.index_in(text, value_set=keys)
        missing = pc.and_(pc.is_valid(text), pc.is_null(positions))
        out = pc.take(pa.array([v for _, v in col.codes], col.type), positions)
    else:
        out = to_int(arr, col, file_name=file_name, first_row=first_row)
        missing = pc.and_(
            pc.is_valid(out), pc.invert(pc.is_in(out, value_set=pa.array(allowed, col.type)))
        )
    allowed_text = f"allowed: {[k for k, _ in col.codes]} or empty"
    _refuse_first(
        missing,
        arr,
        col,
        file_name=file_name,
        first_row=first_row,
        detail=lambda _: allowed_text,
    )
    return out


def _cast(
    arr: pa.Array,
    col: ContractColumn,
    *,
    file_name: str,
    first_row: int,
    to: pa.DataType | None = None,
) -> pa.Array:
    """Safe cast; on failure find the first failing element (error path only)."""
    target = to or col.type
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        error = exc
    kind = NonIntegralValueError if pa.types.is_integer(col.type) else InvalidValueError
    # Error path: cast element by element to find the first bad value's row.
    for i in range(len(arr)):
        try:
            pc.cast(arr.slice(i, 1), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise kind(file_name, first_row + i, col.name, _shown(arr[i]), str(error)) from error
    raise kind(file_name, None, col.name, None, str(error)) from error


def _shown(value: pa.Scalar) -> object:
    """``value`` for an error message, also a time Python's datetime cannot hold."""
    try:
        return value.as_py()
    except (OverflowError, ValueError):
        if not pa.types.is_timestamp(value.type):
            raise
        return f"{value.cast(pa.int64()).as_py()} {value.type.unit} since 1970-01-01"


def _disagreement(first: str, other: str, col: ContractColumn, merged: pa.Array, idx: int) -> str:
    return (
        f"header columns {first!r} and {other!r} both map to {col.name!r} and must agree "
        f"where both are set; {first!r} holds {merged[idx].as_py()!r}"
    )


def from_sources(
    sources: list[tuple[str, pa.Array]],
    col: ContractColumn,
    *,
    file_name: str,
    first_row: int,
    rows: int,
) -> pa.Array:
    """The contract column from its (header name, conformed array) sources: all nulls
    when the file lacks it, merged when the layout carries it twice."""
    if not sources:
        return pa.nulls(rows, col.type)
    if len(sources) == 1:
        return sources[0][1]
    return merge(sources, col, file_name=file_name, first_row=first_row)


def merge(
    sources: list[tuple[str, pa.Array]], col: ContractColumn, *, file_name: str, first_row: int
) -> pa.Array:
    """One contract column from several header columns (already conformed to its type).

    A value set in more than one source must be the same in all: a disagreement is an
    error naming both header columns, so no published value is dropped unnoticed.
    """
    (first_name, merged), *others = sources
    for name, other in others:
        both = pc.and_(pc.is_valid(merged), pc.is_valid(other))
        differ = pc.and_(both, pc.not_equal(merged, other))
        _refuse_first(
            differ,
            other,
            col,
            file_name=file_name,
            first_row=first_row,
            detail=lambda idx: _disagreement(first_name, name, col, merged, idx),  # noqa: B023 - called at once
        )
        merged = pc.coalesce(merged, other)
    return merged
