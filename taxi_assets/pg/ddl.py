"""Tables from Arrow schemas: create, index and migrate, with every identifier quoted."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql

from taxi_assets.errors import ColumnTypesDiffer, NotPartitioned
from taxi_assets.sql_types import looked_up

if TYPE_CHECKING:
    from taxi_assets.pg.lock_retry import LockWaits

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
    if pa.types.is_timestamp(arrow_type):
        return "timestamp with time zone" if arrow_type.tz else "timestamp without time zone"
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    return looked_up(arrow_type, "PostgreSQL")


def bounded_name(name: str) -> str:
    """``name`` if it fits PostgreSQL's 63-byte identifiers, else a prefix and a digest."""
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: MAX_IDENTIFIER - 9].decode(errors='ignore')}_{digest}"


def _index_name(table: str, column: str, method: str = "brin", both: bool = False) -> str:
    """``<table>_<column>_idx``; a btree on a column that also has a BRIN (``both``) gets
    ``_btree_idx``: one name for both made the second CREATE fail, or (looked up by name)
    be skipped as present."""
    suffix = f"_{method}" if both and method != "brin" else ""
    return bounded_name(f"{table}_{column}{suffix}_idx")


# pg_class.relkind of a plain table and of a partitioned one.
PLAIN, PARTITIONED = "r", "p"
MIGRATE_COMMAND = "python -m taxi_assets.cli warehouse migrate"


def relation_kind(connection: sa.Connection, schema: str, table: str) -> str | None:
    """``PLAIN``, ``PARTITIONED``, another relkind, or None when there is no such table."""
    return connection.execute(
        sa.text(
            "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :table"
        ),
        {"schema": schema, "table": table},
    ).scalar()


def require_partitioned(connection: sa.Connection, schema: str, table: str) -> None:
    """Refuse a table that exists but is not partitioned, naming the way out."""
    kind = relation_kind(connection, schema, table)
    if kind == PLAIN:
        raise NotPartitioned(
            f"{schema}.{table} is a plain table from an earlier version of taxi_assets, "
            f"whose months are now partitions: convert it once with `{MIGRATE_COMMAND}` "
            "(resumable, month by month; README, 'Upgrading the warehouse'); nothing was loaded"
        )
    if kind != PARTITIONED:
        raise NotPartitioned(f"{schema}.{table} is not a partitioned table (relkind {kind!r})")


# The load's types whose values PostgreSQL casts into another column type without a word,
# each with the only table type that keeps them: a naive New York time into timestamptz is
# read in the session's time zone (hours off), into date or time loses half of it; a float
# into real, numeric or an integer is rounded. Other differences fail loudly, or widen.
KEPT_ONLY_BY = {
    "timestamp without time zone": "timestamp without time zone",
    "double precision": "double precision",
}


def refuse_lossy_types(table: str, present: dict[str, str], arrow_schema: pa.Schema) -> None:
    """Refuse a table made by hand, or by another version, whose column's type would take
    the load's values with a silent change (:data:`KEPT_ONLY_BY`), naming each column,
    before anything is staged (as BigQuery's ``bq.tables.refuse_other_types``)."""
    differ = [
        f"{field.name} is {present[field.name]}, the load's is {pg_type(field.type)}"
        for field in arrow_schema
        if field.name in present
        and KEPT_ONLY_BY.get(pg_type(field.type), present[field.name]) != present[field.name]
    ]
    if differ:
        raise ColumnTypesDiffer(
            f"{table} has columns of other types than the load: {'; '.join(differ)}. Its "
            "values would be cast into them (a naive New York time read in the session's "
            "time zone, a fare rounded): nothing was loaded. Change those columns' types, "
            "or drop or rename the table to have it created again."
        )


def existing_columns(connection: sa.Connection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = :table ORDER BY ordinal_position"
        ),
        {"schema": schema, "table": table},
    )
    return {name: data_type for name, data_type in rows}


@dataclass(frozen=True)
class TableLayout:
    """How a table is laid out: partitioned by range of a column or not; its indexes."""

    partition_by: str | None = None
    primary_key: Sequence[str] = ()
    btree_columns: Sequence[str] = ()
    brin_columns: Sequence[str] = ()


def ensure_table(
    engine: sa.Engine,
    schema: str,
    table: str,
    arrow_schema: pa.Schema,
    layout: TableLayout = TableLayout(),
    log: Callable[[str], None] = lambda _: None,
    waits: LockWaits | None = None,
) -> None:
    """Create schema, table and indexes if missing; add columns the table lacks.

    Looks at the catalog first (no lock) and changes only what is missing, in one
    transaction under an advisory lock on the table name (concurrent runs creating the
    same table do not collide on the catalog) and under ``lock_timeout`` with retries
    (adding a column to a table a long query reads does not stall its other readers).
    A partitioned layout on an existing plain table is refused (:class:`NotPartitioned`).
    """
    from taxi_assets.pg.lock_retry import LockWaits, with_lock_retries

    with engine.connect() as connection:
        with connection.begin():
            kind = relation_kind(connection, schema, table)
            present = existing_columns(connection, schema, table) if kind else {}
            refuse_lossy_types(f"{schema}.{table}", present, arrow_schema)
            if kind is not None and layout.partition_by:
                require_partitioned(connection, schema, table)
            indexes = layout_indexes(table, layout)
            missing_indexes = [
                index
                for index in indexes
                if connection.execute(
                    sa.text("SELECT to_regclass(:name)"),
                    {"name": qualified(schema, index[0])},
                ).scalar()
                is None
            ]
        missing_columns = [f for f in arrow_schema if f.name not in present]
        if kind is not None and not missing_columns and not missing_indexes:
            return

        def change(connection: sa.Connection) -> None:
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
                {"lock": f"ddl:{schema}.{table}"},
            )
            create_schema(connection, schema)
            current = existing_columns(connection, schema, table)
            if not current:
                _create(connection, schema, table, arrow_schema, layout)
                log(f"Created table {schema}.{table}")
            else:
                for field in arrow_schema:
                    if field.name not in current:
                        connection.exec_driver_sql(
                            f"ALTER TABLE {qualified(schema, table)} "
                            f"ADD COLUMN {ident(field.name)} {pg_type(field.type)}"
                        )
                        log(
                            f"Migrated {schema}.{table}: added column {field.name} (old rows: null)"
                        )
            for name, method, column in indexes:
                connection.exec_driver_sql(
                    f"CREATE INDEX IF NOT EXISTS {ident(name)} ON {qualified(schema, table)} "
                    f"USING {method} ({ident(column)})"
                )

        with_lock_retries(
            connection,
            change,
            waits=waits or LockWaits(),
            what=f"Changing {schema}.{table}",
            table=(schema, table),
            log=log,
        )


def _create(
    connection: sa.Connection,
    schema: str,
    table: str,
    arrow_schema: pa.Schema,
    layout: TableLayout,
) -> None:
    create_table(
        connection,
        schema,
        table,
        [f"{ident(f.name)} {pg_type(f.type)}" for f in arrow_schema],
        layout,
    )


def create_table(
    connection: sa.Connection,
    schema: str,
    table: str,
    column_definitions: Sequence[str],
    layout: TableLayout,
) -> None:
    """CREATE TABLE with ``layout``'s primary key, partitioning and indexes (on a
    partitioned table, partitioned indexes: every month's child gets its own)."""
    columns = list(column_definitions)
    if layout.primary_key:
        columns.append(f"PRIMARY KEY ({', '.join(ident(c) for c in layout.primary_key)})")
    partitioning = (
        f" PARTITION BY RANGE ({ident(layout.partition_by)})" if layout.partition_by else ""
    )
    connection.exec_driver_sql(
        f"CREATE TABLE {qualified(schema, table)} ({', '.join(columns)}){partitioning}"
    )
    for name, method, column in layout_indexes(table, layout):
        connection.exec_driver_sql(
            f"CREATE INDEX {ident(name)} ON {qualified(schema, table)} USING {method} ({ident(column)})"
        )


def layout_indexes(table: str, layout: TableLayout) -> list[tuple[str, str, str]]:
    """(name, method, column) of the indexes ``layout`` asks for."""
    both = set(layout.btree_columns) & set(layout.brin_columns)
    return [
        (_index_name(table, column, method, column in both), method, column)
        for method, columns in (("btree", layout.btree_columns), ("brin", layout.brin_columns))
        for column in columns
    ]


def create_schema(connection: sa.Connection, schema: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` under an advisory lock on the schema's name, held to
    the transaction's end: two first loads of different tables into a schema that did not
    exist yet both created it, and one failed on pg_namespace's unique index."""
    connection.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
        {"lock": f"ddl-schema:{schema}"},
    )
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")


def literal(connection: sa.Connection, value: object) -> str:
    """A SQL literal for DDL, which takes no bind parameters (dates, timestamps)."""
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"expected a psycopg 3 connection, got {type(driver).__name__}")
    return sql.Literal(value).as_string(driver)


def set_column_defaults(
    connection: sa.Connection, table_sql: str, defaults: Mapping[str, object]
) -> None:
    """Give columns of ``table_sql`` these defaults (None: drop the column's default)."""
    for column, value in defaults.items():
        change = "DROP DEFAULT" if value is None else f"SET DEFAULT {literal(connection, value)}"
        connection.exec_driver_sql(f"ALTER TABLE {table_sql} ALTER COLUMN {ident(column)} {change}")


def driver_cursor(connection: sa.Connection) -> psycopg.Cursor[Any]:
    """A psycopg cursor on the connection SQLAlchemy holds (COPY needs the driver's own)."""
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"expected a psycopg 3 connection, got {type(driver).__name__}")
    return driver.cursor()


def comment_statements(connection: sa.Connection, relation: str) -> list[str]:
    """The COMMENTs on ``relation`` (a quoted, qualified name) and on its columns: what
    creating it again would lose."""
    rows = connection.execute(
        sa.text(
            "SELECT quote_ident(a.attname), quote_literal(d.description) "
            "FROM pg_description d LEFT JOIN pg_attribute a "
            "ON a.attrelid = d.objoid AND a.attnum = d.objsubid "
            "WHERE d.objoid = CAST(:relation AS regclass) "
            "AND d.classoid = 'pg_class'::regclass ORDER BY d.objsubid"
        ),
        {"relation": relation},
    ).all()
    return [
        f"COMMENT ON TABLE {relation} IS {text}"
        if column is None
        else f"COMMENT ON COLUMN {relation}.{column} IS {text}"
        for column, text in rows
    ]


def grant_statements(connection: sa.Connection, relation: str) -> list[str]:
    """The GRANTs that give back every privilege held on ``relation`` (a quoted, qualified
    name) by a role other than its owner: what dropping and creating it again would lose."""
    rows = connection.execute(
        sa.text(
            "SELECT a.privilege_type, "
            "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
            "a.is_grantable "
            "FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = CAST(:relation AS regclass) AND a.grantee <> c.relowner "
            "ORDER BY 2, 1"
        ),
        {"relation": relation},
    ).all()
    return [
        f"GRANT {privilege} ON {relation} TO {grantee}"
        + (" WITH GRANT OPTION" if grantable else "")
        for privilege, grantee, grantable in rows
    ]
