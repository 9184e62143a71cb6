"""Convert a plain month table of an earlier version into a partitioned one, month by month.

``python -m taxi_assets.cli warehouse migrate`` runs it for every such table. For a
table ``T`` partitioned by month in column ``C``:

1. One transaction: ``T`` becomes ``T__unpartitioned`` (its indexes are renamed alike),
   and a new ``T`` is created, partitioned by range of ``C``, with the same columns and
   the indexes the project's layout asks for. Loads work again from here on.
2. Month by month, with the same routine as every load
   (:func:`taxi_assets.pg.month_swap.replace_months`): the month's rows are copied from
   ``T__unpartitioned`` into a staging table, counted (the count must equal the old
   table's for that month), indexed, analyzed and attached. Each month is committed on
   its own, so an interrupted migration resumes where it stopped; a month that a load
   wrote in the meantime is kept, not overwritten. A column holding one value in every
   row of the month (its ``source_file``, a column null all month) is stored once for
   the month, not in each row, as a load stores it (:func:`month_constants`).
3. When every month is in ``T``, ``T__unpartitioned`` is dropped.

The old table stays whole until the end, so the conversion needs free disk about the
size of the rows still to move (checked before anything changes).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa

from taxi_assets.pg.ddl import (
    PARTITIONED,
    PLAIN,
    TableLayout,
    bounded_name,
    comment_statements,
    create_table,
    grant_statements,
    ident,
    qualified,
    relation_kind,
)
from taxi_assets.pg.lock_retry import LockWaits, with_lock_retries
from taxi_assets.pg.month_swap import MonthBounds, Staging, replace_months
from taxi_assets.pg.partitions import (
    STAGING_MARK,
    Column,
    child_name,
    is_partition_of,
    table_columns,
    table_indexes,
)

LEGACY_SUFFIX = "__unpartitioned"
# The new table and its indexes take about what the old one took; a margin for the
# staging table of the month in flight and the WAL.
DISK_MARGIN = 1.2
# Types whose equality is identity (equal values are the same value, byte for byte), so
# min = max means one value. Others (numeric keeps its scale, 1.0 = 1.00; floats, -0 = 0;
# any other type) are compared as text; booleans have no min or max.
_EXACT_TYPES = ("smallint", "integer", "bigint", "text", "date", '"char"')


class MonthAlreadyLoaded(Exception):
    """A load wrote the month into the new table during the migration: it is newer."""


@dataclass(frozen=True)
class Pending:
    """A table still to convert: its months (``YYYY-MM`` -> rows of the old table) and
    the disk the rows still to move take."""

    schema: str
    table: str
    column: str
    months: dict[str, int]
    done: set[str]
    bytes_to_move: int

    @property
    def remaining(self) -> list[str]:
        return [key for key in self.months if key not in self.done]


def legacy_name(table: str) -> str:
    return bounded_name(f"{table}{LEGACY_SUFFIX}")


def tables_to_convert(
    connection: sa.Connection,
    schemas: tuple[str, ...],
    column: str,
    keep_plain: Collection[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """(schema, table) of every plain table with ``column`` in ``schemas``, and of every
    partitioned table whose conversion was interrupted (its old table is still there), in
    the order of ``schemas`` (the warehouse before the analytics derived from it).
    ``keep_plain``: tables that have the column but are plain by design (a load log)."""
    rows = connection.execute(
        sa.text(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = :column "
            "AND NOT a.attisdropped "
            "WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY 1, 2"
        ),
        {"schemas": list(schemas), "column": column},
    ).all()
    found = []
    for schema, name, kind in rows:
        if STAGING_MARK in name:
            # A killed load's staging table, not a month table of an earlier version: the
            # month's next load drops it (converted, it stayed for good, a whole month).
            continue
        if name.endswith(LEGACY_SUFFIX):
            original = name[: -len(LEGACY_SUFFIX)]
            if (schema, original) not in found:
                found.append((schema, original))
        elif kind == PLAIN and (schema, name) not in found and (schema, name) not in keep_plain:
            found.append((schema, name))
    return sorted(found, key=lambda item: (schemas.index(item[0]), item[1]))


def plan(connection: sa.Connection, schema: str, table: str, column: str) -> Pending:
    """Rows per month of the old table (one pass over it) and the months already moved."""
    kind = relation_kind(connection, schema, table)
    source = table if kind == PLAIN else legacy_name(table)
    if relation_kind(connection, schema, source) != PLAIN:
        raise ValueError(f"{schema}.{table}: no plain table to convert")
    name, month = qualified(schema, source), ident(column)
    rows = connection.exec_driver_sql(
        f"SELECT to_char({month}, 'YYYY-MM'), count(*) FROM {name} GROUP BY 1 ORDER BY 1"
    ).all()
    months = {key: int(count) for key, count in rows if key is not None}
    nulls = sum(int(count) for key, count in rows if key is None)
    if nulls:
        raise ValueError(
            f"{schema}.{source}: {nulls} rows have no {column}, so no month can hold them; "
            "nothing was changed (fix or remove those rows, then run the migration again)"
        )
    done = set()
    if kind == PARTITIONED:
        done = {
            k for k in months if is_partition_of(connection, schema, child_name(table, k), table)
        }
    size = connection.execute(
        sa.text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": name}
    ).scalar()
    total = sum(months.values()) or 1
    left = sum(n for k, n in months.items() if k not in done)
    return Pending(schema, table, column, months, done, int(int(size or 0) * left / total))


def disk_needed(pending: list[Pending]) -> int:
    return int(sum(p.bytes_to_move for p in pending) * DISK_MARGIN)


def server_free_bytes(connection: sa.Connection) -> tuple[str | None, int | None]:
    """(the server's data directory, its disk's free bytes), as far as this machine can
    see them: None when the server does not say (not a superuser) or runs elsewhere."""
    try:
        with connection.begin_nested():
            folder = connection.exec_driver_sql("SHOW data_directory").scalar()
    except sa.exc.DBAPIError:
        return None, None
    if not folder or not Path(folder).exists():
        return folder, None
    return folder, shutil.disk_usage(folder).free


def convert(
    engine: sa.Engine,
    pending: Pending,
    layout: TableLayout,
    *,
    max_months: int | None = None,
    waits: LockWaits = LockWaits(),
    log: Callable[[str], None] = print,
) -> bool:
    """Convert ``pending`` (or its next ``max_months`` months); True when it is complete."""
    schema, table, column = pending.schema, pending.table, pending.column
    legacy = legacy_name(table)
    with engine.connect() as connection:
        with connection.begin():
            plain = relation_kind(connection, schema, table) == PLAIN
        if plain:
            with_lock_retries(
                connection,
                lambda c: _start(c, schema, table, layout, log),
                waits=waits,
                what=f"Converting {schema}.{table}",
                table=(schema, table),
                log=log,
            )
            log(f"{schema}.{table}: now partitioned by {column}; old rows in {schema}.{legacy}")
        with connection.begin():
            is_date = _column_type(connection, schema, table, column) == "date"
    moved = 0
    for key in pending.remaining:
        if max_months is not None and moved >= max_months:
            log(
                f"{schema}.{table}: stopped after {moved} months (--max-months); run again to go on"
            )
            return False
        _move_month(engine, schema, table, column, key, pending.months[key], is_date, waits, log)
        moved += 1
    with engine.connect() as connection:
        with_lock_retries(
            connection,
            lambda c: c.exec_driver_sql(f"DROP TABLE {qualified(schema, legacy)}"),
            waits=waits,
            what=f"Dropping {schema}.{legacy}",
            table=(schema, legacy),
            log=log,
        )
    log(f"{schema}.{table}: converted ({len(pending.months)} months); {schema}.{legacy} dropped")
    return True


def dependent_views(connection: sa.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the views reading ``schema.table`` (``analytics.trips``...)."""
    rows = connection.execute(
        sa.text(
            "SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid) "
            "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_class v ON v.oid = r.ev_class "
            "WHERE d.refobjid = CAST(:table AS regclass) AND v.relkind = 'v'"
        ),
        {"table": qualified(schema, table)},
    ).all()
    return [(str(name), str(definition)) for name, definition in rows]


def _start(
    connection: sa.Connection,
    schema: str,
    table: str,
    layout: TableLayout,
    log: Callable[[str], None] = print,
) -> None:
    """Rename the plain table (and its indexes) out of the way; create the partitioned one,
    with the privileges granted on the table and its comments (a BI role's SELECT, the
    stats table's column descriptions). Views reading the table would follow the rename to
    the old rows (and keep them from being dropped at the end): they are created again over
    the partitioned table, with the privileges granted on them."""
    legacy = legacy_name(table)
    kept = [
        *grant_statements(connection, qualified(schema, table)),
        *comment_statements(connection, qualified(schema, table)),
    ]
    views = dependent_views(connection, schema, table)
    grants = {name: grant_statements(connection, name) for name, _ in views}
    for name, _ in views:
        connection.exec_driver_sql(f"DROP VIEW {name}")
    for index in table_indexes(connection, schema, table):
        connection.exec_driver_sql(
            f"ALTER INDEX {qualified(schema, index.name)} "
            f"RENAME TO {ident(bounded_name(index.name + LEGACY_SUFFIX))}"
        )
    connection.exec_driver_sql(f"ALTER TABLE {qualified(schema, table)} RENAME TO {ident(legacy)}")
    columns = table_columns(connection, schema, legacy)
    create_table(connection, schema, table, [c.definition() for c in columns], layout)
    for statement in kept:
        connection.exec_driver_sql(statement)
    for name, definition in views:
        connection.exec_driver_sql(f"CREATE VIEW {name} AS {definition}")
        for grant in grants[name]:
            connection.exec_driver_sql(grant)
        log(f"{name} now reads the partitioned {schema}.{table} (created again, its grants kept)")


def _column_names(connection: sa.Connection, schema: str, table: str) -> set[str]:
    return {c.name for c in table_columns(connection, schema, table)}


def _column_type(connection: sa.Connection, schema: str, table: str, column: str) -> str:
    types = {c.name: c.sql_type for c in table_columns(connection, schema, table)}
    return types[column]


def _move_month(
    engine: sa.Engine,
    schema: str,
    table: str,
    column: str,
    key: str,
    rows: int,
    is_date: bool,
    waits: LockWaits,
    log: Callable[[str], None],
) -> None:
    year, number = map(int, key.split("-"))
    start: date | datetime = date(year, number, 1)
    end: date | datetime = date(year + number // 12, number % 12 + 1, 1)
    if not is_date:
        start, end = (
            datetime.combine(start, datetime.min.time()),
            datetime.combine(end, datetime.min.time()),
        )
    legacy = qualified(schema, legacy_name(table))
    child = child_name(table, key)
    in_month = f"{ident(column)} >= :start AND {ident(column)} < :end"
    bounds = {"start": start, "end": end}
    with engine.connect() as connection, connection.begin():
        # A load during the migration may have added a column to the new table (a new
        # contract column): the old table has none of it, so it is null in these rows.
        old = _column_names(connection, schema, legacy_name(table))
        columns = table_columns(connection, schema, table)
        constants: dict[str, object] = {c.name: None for c in columns if c.name not in old}
        shared = [c for c in columns if c.name in old]
        constants.update(month_constants(connection, legacy, shared, in_month, bounds))

    def fill(connection: sa.Connection, staging: Staging) -> int:
        # Under the month's lock: a load that wrote the month since the plan is newer.
        if is_partition_of(connection, schema, child, table):
            raise MonthAlreadyLoaded(key)
        # The month's column is copied, though one value: a month whose every column holds
        # one value (a single row) would otherwise copy no column at all.
        names = ", ".join(
            ident(c.name)
            for c in table_columns(connection, schema, table)
            if c.name in old and (c.name not in constants or c.name == column)
        )
        return connection.execute(
            sa.text(
                f"INSERT INTO {staging.target} ({names}) SELECT {names} FROM {legacy} WHERE {in_month}"
            ),
            bounds,
        ).rowcount

    try:
        done = replace_months(
            engine, schema, table, column, [MonthBounds(key, start, end)], fill,
            expected_rows=rows, constants=constants, waits=waits, log=log,
        )  # fmt: skip
    except MonthAlreadyLoaded:
        log(f"{schema}.{table} {key}: kept the month a load wrote during the migration")
        return
    log(
        f"{schema}.{table} {key}: {done.rows_written:,} rows moved and counted ({done.total_s:.1f} s)"
    )


def month_constants(
    connection: sa.Connection,
    table_sql: str,
    columns: list[Column],
    where: str,
    parameters: Mapping[str, object],
) -> dict[str, object]:
    """The columns holding one value (None: null) in every row of ``table_sql`` that
    ``where`` selects, with that value: one pass over the rows."""
    measures = ["count(*)"]
    for number, column in enumerate(columns):
        name = ident(column.name)
        if column.sql_type == "boolean":
            low, high = f"bool_and({name})", f"bool_or({name})"
        elif column.sql_type in _EXACT_TYPES or column.sql_type.startswith("timestamp"):
            low, high = f"min({name})", f"max({name})"
        else:
            low, high = f"min({name}::text)", f"max({name}::text)"
        measures += [f"count({name})", f"{low} AS low{number}", f"{high} AS high{number}"]
    row = connection.execute(
        sa.text(f"SELECT {', '.join(measures)} FROM {table_sql} WHERE {where}"), parameters
    ).one()
    rows = row[0]
    found: dict[str, object] = {}
    for number, column in enumerate(columns):
        present, low, high = row[1 + 3 * number : 4 + 3 * number]
        if present == 0:
            found[column.name] = None
        elif present == rows and low == high:
            found[column.name] = low
    return found
