"""Arrow column types as each warehouse engine's column types, in one table.

Naive timestamps (TLC's New York local times) and decimals depend on the type's
parameters, so each engine's function handles them before looking a type up here."""

from __future__ import annotations

import pyarrow as pa

# Arrow type -> (PostgreSQL, BigQuery); None where the engine has no fitting type here.
# BigQuery has one integer (INT64) and one float (FLOAT64); uint64 goes beyond INT64's
# range (NUMERIC), and a column every row of which is null fits any type (STRING).
_NAMES: dict[pa.DataType, tuple[str | None, str | None]] = {
    pa.int8(): ("smallint", "INT64"),
    pa.int16(): ("smallint", "INT64"),
    pa.int32(): ("integer", "INT64"),
    pa.int64(): ("bigint", "INT64"),
    pa.uint8(): (None, "INT64"),
    pa.uint16(): ("integer", "INT64"),
    pa.uint32(): ("bigint", "INT64"),
    pa.uint64(): (None, "NUMERIC"),
    pa.float16(): (None, "FLOAT64"),
    pa.float32(): ("real", "FLOAT64"),
    pa.float64(): ("double precision", "FLOAT64"),
    pa.bool_(): ("boolean", "BOOL"),
    pa.string(): ("text", "STRING"),
    pa.large_string(): ("text", "STRING"),
    pa.binary(): (None, "BYTES"),
    pa.large_binary(): (None, "BYTES"),
    pa.date32(): ("date", "DATE"),
    pa.date64(): ("date", "DATE"),
    pa.null(): (None, "STRING"),
}
_ENGINES = ("PostgreSQL", "BigQuery")


def decoded_type(arrow_type: pa.DataType) -> pa.DataType:
    """What a column of ``arrow_type`` holds: a dictionary's value type (text columns may
    travel dictionary-encoded), any other type itself."""
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def looked_up(arrow_type: pa.DataType, engine: str) -> str:
    """The ``engine``'s column type for a parameterless Arrow type (a dictionary's: its
    values'); TypeError if none."""
    arrow_type = decoded_type(arrow_type)
    name = _NAMES.get(arrow_type, (None, None))[_ENGINES.index(engine)]
    if name is None:
        raise TypeError(f"no {engine} type for Arrow type {arrow_type}")
    return name
