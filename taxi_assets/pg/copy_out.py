"""PostgreSQL -> Arrow through COPY ... TO STDOUT (CSV parsed by Arrow's C++ reader)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from taxi_assets.pg.ddl import driver_cursor, existing_columns, ident, qualified
from taxi_assets.pg.interrupts import closed_if_interrupted, dropped_if_interrupted

_ARROW_FOR_PG = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


def read_query_arrow(
    engine: sa.Engine, schema: str, table: str, where: str, params: dict[str, object]
) -> pa.Table:
    """The rows of ``schema.table`` matching ``where`` as an Arrow table (fully in memory).

    Interrupted (the run terminated), it hangs up rather than wait for the server: leaving
    the COPY or the connection would otherwise wait for one that answers nothing (psycopg's
    COPY clean-up), or replace the interruption with the error of a ROLLBACK sent while
    the COPY still runs ("another command is already in progress")."""
    with engine.connect() as connection, dropped_if_interrupted(connection):
        columns = existing_columns(connection, schema, table)
        if not columns:
            raise LookupError(f"table {schema}.{table} does not exist: materialize it first")
        types = {name: _ARROW_FOR_PG.get(pg, pa.string()) for name, pg in columns.items()}
        select = ", ".join(ident(name) for name in columns)
        cursor = driver_cursor(connection)
        sink = pa.BufferOutputStream()
        statement = (
            f"COPY (SELECT {select} FROM {qualified(schema, table)}{where}) TO STDOUT (FORMAT csv)"
        )
        with (
            cursor.copy(statement, params or None) as copy,
            closed_if_interrupted(cursor.connection),
        ):
            for chunk in copy:
                sink.write(chunk)
    data = sink.getvalue()
    if data.size == 0:
        return pa.schema(types).empty_table()
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=list(columns)),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            true_values=["t"],  # PostgreSQL writes booleans as t / f
            false_values=["f"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
