"""Arrow <-> PostgreSQL through COPY in CSV form, written and read by Arrow's C++ CSV code.

Arrow's CSV writer leaves nulls as unquoted empty fields and quotes every string, which is
exactly how PostgreSQL's CSV COPY tells NULL from an empty string.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from taxi_assets.io_managers.pg_ddl import existing_columns, ident, qualified

COPY_CHUNK_ROWS = 64 * 1024
PROGRESS_EVERY_S = 5.0
_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")

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


def copy_arrow(
    cursor: psycopg.Cursor,
    table_sql: str,
    reader: pa.RecordBatchReader,
    log: Callable[[str], None] = lambda _: None,
) -> int:
    """COPY every batch of ``reader`` into ``table_sql``; the row count PostgreSQL reports."""
    columns = ", ".join(ident(field.name) for field in reader.schema)
    sent = 0
    started = last_report = time.monotonic()
    with cursor.copy(f"COPY {table_sql} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        for batch in _rechunk(reader, COPY_CHUNK_ROWS):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, _WRITE_OPTIONS)
            copy.write(memoryview(sink.getvalue()))
            sent += batch.num_rows
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                log(f"COPY {table_sql}: {sent:,} rows ({sent / (now - started):,.0f} rows/s)")
                last_report = now
    return cursor.rowcount if cursor.rowcount >= 0 else sent


def _rechunk(reader: pa.RecordBatchReader, rows: int):  # noqa: ANN202 - generator of batches
    """Group small batches so each COPY write carries a useful amount of data."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield from pa.Table.from_batches(pending, reader.schema).combine_chunks().to_batches()
            pending, count = [], 0
    if pending:
        yield from pa.Table.from_batches(pending, reader.schema).combine_chunks().to_batches()


def read_query_arrow(
    engine: sa.Engine, schema: str, table: str, where: str, params: dict[str, object]
) -> pa.Table:
    """The rows of ``schema.table`` matching ``where`` as an Arrow table (fully in memory)."""
    with engine.connect() as connection:
        columns = existing_columns(connection, schema, table)
        if not columns:
            raise LookupError(f"table {schema}.{table} does not exist: materialize it first")
        types = {name: _ARROW_FOR_PG.get(pg, pa.string()) for name, pg in columns.items()}
        select = ", ".join(ident(name) for name in columns)
        cursor = connection.connection.driver_connection.cursor()
        sink = pa.BufferOutputStream()
        statement = (
            f"COPY (SELECT {select} FROM {qualified(schema, table)}{where}) TO STDOUT (FORMAT csv)"
        )
        with cursor.copy(statement, params or None) as copy:
            for chunk in copy:
                sink.write(chunk)
    data = sink.getvalue()
    if data.size == 0:
        return pa.schema(types).empty_table()
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=list(columns)),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
