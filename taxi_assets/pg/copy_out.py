"""PostgreSQL -> Arrow through COPY ... TO STDOUT (CSV parsed by Arrow's C++ reader).

A reader whose host dies or is cut off mid-COPY leaves the server with data in flight,
which it retransmits until ``net.ipv4.tcp_retries2`` gives up (~16 minutes), its session
holding the month's ACCESS SHARE lock all along: a reload of that month waits for it
(``lock_retry_s``), then fails naming the holder. Keepalives do not probe a connection
with data in flight. So the COPY runs with the server's ``tcp_user_timeout`` at
:data:`READER_SILENCE_S` (for its transaction only): the server ends the session
once its data has waited that long for an acknowledgement. It would also end a reader
that is alive and stops reading for that long, which this one does not do (it reads into
memory as fast as the data comes) unless its process is stopped (Ctrl-Z, a debugger).
"""

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

# As long as the silent-peer watch gives a silent server (pg/silent_peer.py): a peer that
# acknowledges nothing for 5 minutes is gone.
READER_SILENCE_S = 300.0
# For this transaction, unless set elsewhere (the URL's options, the role, the server);
# nothing on a server without the setting (before PostgreSQL 12). Over a Unix socket the
# server ignores it; where its kernel has no TCP_USER_TIMEOUT it logs so and goes on.
_BOUND_SILENCE = (
    "SELECT set_config(name, %s, true) FROM pg_settings "
    "WHERE name = 'tcp_user_timeout' AND source = 'default'"
)


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
        connection.exec_driver_sql(_BOUND_SILENCE, (str(round(READER_SILENCE_S * 1000)),))
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
