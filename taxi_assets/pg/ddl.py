"""Tables from Arrow schemas: create, index and migrate, with every identifier quoted."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

_PREPARER = postgresql.dialect().identifier_preparer
MAX_IDENTIFIER = 63


def ident(name: str) -> str:
    """A PostgreSQL identifier, always quoted (so odd or hostile names stay names)."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return _PREPARER.quote_identifier(name)


def qualified(schema: str, table: str) -> str:
    return f"{ident(schema)}.{ident(table)}"


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (naive timestamps stay naive)."""
    if pa.types.is_int8(arrow_type) or pa.types.is_int16(arrow_type):
        return "smallint"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint16(arrow_type):
        return "integer"
    if pa.types.is_int64(arrow_type) or pa.types.is_uint32(arrow_type):
        return "bigint"
    if pa.types.is_float32(arrow_type):
        return "real"
    if pa.types.is_float64(arrow_type):
        return "double precision"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp with time zone" if arrow_type.tz else "timestamp without time zone"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    raise TypeError(f"no PostgreSQL type for Arrow type {arrow_type}")


def _index_name(table: str, column: str) -> str:
    name = f"{table}_{column}_idx"
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: MAX_IDENTIFIER - 9].decode(errors='ignore')}_{digest}"


def existing_columns(connection: sa.Connection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = :table ORDER BY ordinal_position"
        ),
        {"schema": schema, "table": table},
    )
    return {name: data_type for name, data_type in rows}


def ensure_table(
    engine: sa.Engine,
    schema: str,
    table: str,
    arrow_schema: pa.Schema,
    primary_key: Sequence[str] = (),
    index_columns: Sequence[str] = (),
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Create schema, table and indexes if missing; add columns the table lacks.

    Runs in its own transaction under an advisory lock on the table name, so concurrent
    runs creating the same table do not collide on PostgreSQL's catalog.
    """
    name = qualified(schema, table)
    with engine.begin() as connection:
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
            {"lock": f"ddl:{schema}.{table}"},
        )
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
        present = existing_columns(connection, schema, table)
        if not present:
            columns = [f"{ident(f.name)} {pg_type(f.type)}" for f in arrow_schema]
            if primary_key:
                columns.append(f"PRIMARY KEY ({', '.join(ident(c) for c in primary_key)})")
            connection.exec_driver_sql(f"CREATE TABLE {name} ({', '.join(columns)})")
            log(f"Created table {schema}.{table}")
        else:
            for field in arrow_schema:
                if field.name not in present:
                    connection.exec_driver_sql(
                        f"ALTER TABLE {name} ADD COLUMN {ident(field.name)} {pg_type(field.type)}"
                    )
                    log(f"Migrated {schema}.{table}: added column {field.name} (old rows: null)")
        for column in index_columns:
            connection.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {ident(_index_name(table, column))} "
                f"ON {name} ({ident(column)})"
            )


def driver_cursor(connection: sa.Connection) -> psycopg.Cursor[Any]:
    """A psycopg cursor on the connection SQLAlchemy holds (COPY needs the driver's own)."""
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"expected a psycopg 3 connection, got {type(driver).__name__}")
    return driver.cursor()
