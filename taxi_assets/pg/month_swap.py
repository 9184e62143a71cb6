"""Replace months of a range-partitioned table: the one place that does it.

Every month of a partitioned table is a child table of its own. A month is replaced by
building its successor beside it and swapping the two:

1. Lock the month: a session advisory lock on ``<schema>.<table>/<key>``, held to the
   end (a second load of the month waits here). Staging tables that an interrupted load
   of the month left are dropped now: no running load can own them.
2. Stage, in one transaction that takes no lock on the parent: create a table with the
   parent's columns in storage order (no alignment padding; readers of the parent still
   see its own order), with a ``CHECK`` constraint matching the month's bounds; fill it
   (``COPY ... FREEZE`` straight into it; several months go through a throwaway
   partitioned router); compare the rows written with the rows expected; add the
   columns the caller says hold one value in every row (``constants``, below); build the
   parent's indexes on it; ``ANALYZE`` it. A failure or a kill rolls all of it back.
3. Swap, in one short transaction under ``lock_timeout`` (:mod:`taxi_assets.pg.lock_retry`):
   detach and drop the old child, rename the staging table to the child's name, attach
   it (the ``CHECK`` constraint spares ATTACH its scan, the prebuilt indexes spare it
   index builds), run the caller's extra statements (``in_swap``), commit. Readers see
   the old month or the new one, never neither or both. When a long query holds the
   table, the swap gives up after the timeout (the longest the readers queued behind it
   wait), backs off and tries again.

The old rows leave with their child table: no DELETE, so no dead tuples and no vacuum
debt in any month, and a replace costs the same at 1 month as at 1,000.

A column holding one value in every row of the months (``constants``: one month from one
file gives every row the same ``source_file``) is stored in no row. The staging table is
created without it and the fill does not write it; after the fill it is added with the
value as its default, which PostgreSQL (11 and later) keeps once in the catalog
(``pg_attribute.attmissingval``) for every row already there, and the default is dropped
again. Readers see the value in every row; the rows are shorter (an FHVHV 2025 month's
table with its indexes: 196 bytes a row instead of 235). The partition column is the
exception: the bounds ``CHECK`` is declared with the table so that ATTACH skips its scan,
so it is stored, filled from a default set for the fill only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
import sqlalchemy as sa

from taxi_assets.errors import RowCountMismatch
from taxi_assets.pg.ddl import (
    bounded_name,
    grant_statements,
    ident,
    literal,
    qualified,
    relation_kind,
    require_partitioned,
    set_column_defaults,
)
from taxi_assets.pg.interrupts import dropped_if_interrupted, is_interruption
from taxi_assets.pg.lock_retry import LockWaits, with_lock_retries
from taxi_assets.pg.partitions import (
    Column,
    IndexSpec,
    child_name,
    is_partition_of,
    month_lock_key,
    staging_name,
    staging_tables,
    storage_order,
    table_columns,
    table_indexes,
)

# Sort memory for the staging table's index builds (this session only; the default 64 MB
# spills a month's btree build to disk).
INDEX_BUILD_MEMORY = "256MB"
BOUNDS_CONSTRAINT = "partition_bounds"


@dataclass(frozen=True)
class MonthBounds:
    """One partition: its key (which names the child table) and its half-open bounds,
    of the partition column's type (``date`` or naive ``datetime``)."""

    key: str
    start: date | datetime
    end: date | datetime


@dataclass(frozen=True)
class Staging:
    """Where a fill writes: ``target`` (quoted, schema-qualified); ``freeze``: the table was
    created in this transaction, so ``COPY ... (FREEZE)`` may store its rows frozen. Its
    columns are in storage order, not the parent's: a fill names the columns it writes."""

    target: str
    freeze: bool


# fill(connection, staging) -> rows written; in_swap(connection) -> None.
Fill = Callable[[sa.Connection, Staging], int]
InSwap = Callable[[sa.Connection], None]


@dataclass(frozen=True)
class MonthReplace:
    """What a replace did and how long each part took (metadata, benchmarks)."""

    rows_written: int
    rows_replaced: int
    fill_s: float
    index_s: float
    analyze_s: float
    swap_lock_ms: float
    swap_attempts: int
    total_s: float


INSUFFICIENT_PRIVILEGE = "42501"


def replace_months(
    engine: sa.Engine,
    schema: str,
    table: str,
    column: str,
    months: Sequence[MonthBounds],
    fill: Fill,
    *,
    expected_rows: int | None = None,
    constants: Mapping[str, object] | None = None,
    in_swap: InSwap | None = None,
    waits: LockWaits = LockWaits(),
    log: Callable[[str], None] = lambda _: None,
) -> MonthReplace:
    """Replace ``months`` of ``schema.table`` (partitioned by range of ``column``) with
    the rows ``fill`` writes, all in one swap; ``in_swap`` runs in the swap's transaction.
    ``constants``: columns holding this one value (None: null) in every row; ``fill`` must
    not write them (see the module's docstring)."""
    if not months:
        raise ValueError("no month to replace")
    started = time.monotonic()
    months = sorted(months, key=lambda m: m.key)
    with engine.connect() as connection:
        try:
            # Interrupted (the run terminated, Ctrl-C) while the server answers nothing,
            # at any statement: the connection is hung up before ``_unlock`` would talk to
            # the server, which then ends the session, its locks and its transaction.
            with dropped_if_interrupted(connection):
                _lock_months(connection, schema, table, months)
                with connection.begin():
                    require_partitioned(connection, schema, table)
                    columns = table_columns(connection, schema, table)
                    indexes = table_indexes(connection, schema, table)
                _drop_leftovers(connection, schema, table, months, log)
                replaced = sum(_rows_of_child(connection, schema, table, m) for m in months)
                stage = _Stage(
                    connection, schema, table, column, months, columns, indexes, constants or {}
                )
                stage.log = log
                written = stage.fill_check_index(fill, expected_rows)
                try:
                    _, lock_ms, attempts = with_lock_retries(
                        connection,
                        lambda c: stage.swap(c, in_swap),
                        waits=waits,
                        what=f"Swap of {schema}.{table} {', '.join(m.key for m in months)}",
                        table=(schema, table),
                        log=log,
                    )
                except BaseException as error:
                    # Interrupted, the run leaves at once: dropping would wait for a server
                    # that may answer nothing (or connect again, on a connection SQLAlchemy
                    # dropped). The month's next load drops what stays.
                    if not is_interruption(error):
                        _drop_quietly(connection, schema, stage.names.values())
                    raise
        finally:
            _unlock(connection)
    return MonthReplace(
        rows_written=written,
        rows_replaced=replaced,
        fill_s=stage.fill_s,
        index_s=stage.index_s,
        analyze_s=stage.analyze_s,
        swap_lock_ms=lock_ms,
        swap_attempts=attempts,
        total_s=time.monotonic() - started,
    )


def _lock_months(
    connection: sa.Connection, schema: str, table: str, months: Sequence[MonthBounds]
) -> None:
    # Session locks (they outlive the staging transaction), taken in key order so that
    # two range loads cannot deadlock.
    with connection.begin():
        for month in months:
            connection.execute(
                sa.text("SELECT pg_advisory_lock(hashtextextended(:lock, 0))"),
                {"lock": month_lock_key(schema, table, month.key)},
            )


def _unlock(connection: sa.Connection) -> None:
    if connection.invalidated:
        # The session, and its locks, ended with the connection. Connecting again would
        # unlock nothing, and wait connect_timeout for a server that does not answer.
        return
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        connection.commit()
    except sa.exc.DBAPIError:
        # The server is gone (its locks with it) or the connection is broken: it must not
        # go back to the pool either way.
        connection.invalidate()


def _drop_leftovers(
    connection: sa.Connection,
    schema: str,
    table: str,
    months: Sequence[MonthBounds],
    log: Callable[[str], None],
) -> None:
    for month in months:
        with connection.begin():
            for name in staging_tables(connection, schema, child_name(table, month.key)):
                connection.exec_driver_sql(f"DROP TABLE {qualified(schema, name)}")
                log(f"Dropped {schema}.{name}, left by an interrupted load of {month.key}")


def _rows_of_child(connection: sa.Connection, schema: str, table: str, month: MonthBounds) -> int:
    """Rows the month holds now, counted in its child (which locks the child, not the
    parent, so a swap of another month does not wait for the count)."""
    child = child_name(table, month.key)
    with connection.begin():
        if not is_partition_of(connection, schema, child, table):
            return 0
        count = connection.exec_driver_sql(f"SELECT count(*) FROM {qualified(schema, child)}")
        return int(count.scalar() or 0)


def bounds_sql(connection: sa.Connection, month: MonthBounds) -> str:
    return f"FOR VALUES FROM ({literal(connection, month.start)}) TO ({literal(connection, month.end)})"


def bounds_check(connection: sa.Connection, column: str, month: MonthBounds) -> str:
    """The CHECK constraint that lets ATTACH skip its scan. IS NOT NULL too: a range
    partition's constraint includes it, and a CHECK without it does not imply it."""
    name = ident(column)
    return (
        f"CONSTRAINT {BOUNDS_CONSTRAINT} CHECK ({name} IS NOT NULL "
        f"AND {name} >= {literal(connection, month.start)} "
        f"AND {name} < {literal(connection, month.end)})"
    )


def index_stems(indexes: Sequence[IndexSpec]) -> dict[str, str]:
    """Each parent index's name stem on a month's table: its columns, then its method (and a
    number) for a second index on the same columns. From the columns alone, a btree a DBA
    added beside the BRIN on one column gave both the same name: every load failed."""
    stems: dict[str, str] = {}
    for index in indexes:
        if index.primary:
            continue
        stem = base = "_".join(index.columns)
        if stem in stems.values():
            stem = base = f"{base}_{index.method}"
        number = 2
        while stem in stems.values():
            stem, number = f"{base}{number}", number + 1
        stems[index.name] = stem
    return stems


def index_name(owner: str, index: IndexSpec, stems: Mapping[str, str]) -> str:
    """The name of ``index``'s counterpart on table ``owner`` (``stems``: ``index_stems``
    of the parent's indexes)."""
    if index.primary:
        return bounded_name(f"{owner}_pkey")
    return bounded_name(f"{owner}_{stems[index.name]}_idx")


def index_ddl(schema: str, table: str, index: IndexSpec, stems: Mapping[str, str]) -> str:
    """DDL giving table ``table`` the counterpart of ``index`` (a partitioned index of its
    parent-to-be), which ATTACH then adopts instead of building one."""
    columns = ", ".join(ident(c) for c in index.columns)
    name = ident(index_name(table, index, stems))
    if index.primary:
        return (
            f"ALTER TABLE {qualified(schema, table)} ADD CONSTRAINT {name} PRIMARY KEY ({columns})"
        )
    unique = "UNIQUE " if index.unique else ""
    return (
        f"CREATE {unique}INDEX {name} ON {qualified(schema, table)} "
        f"USING {ident(index.method)} ({columns})"
    )


class _Stage:
    """The staging tables of one replace, from creation to the swap."""

    def __init__(
        self,
        connection: sa.Connection,
        schema: str,
        table: str,
        column: str,
        months: Sequence[MonthBounds],
        columns: list[Column],
        indexes: list[IndexSpec],
        constants: Mapping[str, object],
    ) -> None:
        self.connection, self.schema, self.table, self.column = connection, schema, table, column
        self.months, self.columns, self.indexes = months, columns, indexes
        self.stems = index_stems(indexes)
        self.log: Callable[[str], None] = lambda _: None
        self.names = {m.key: staging_name(child_name(table, m.key)) for m in months}
        unknown = sorted(set(constants) - {c.name for c in columns})
        if unknown:
            raise ValueError(f"{schema}.{table} has no column {', '.join(unknown)}")
        # The partition column is filled from a default during the fill; every other
        # constant is added after it.
        self.fill_defaults = {k: v for k, v in constants.items() if k == column and v is not None}
        self.added_after_fill = [
            (c, constants[c.name]) for c in columns if c.name in constants and c.name != column
        ]
        self.fill_s = self.index_s = self.analyze_s = 0.0

    def fill_check_index(self, fill: Fill, expected_rows: int | None) -> int:
        """One transaction: create, fill, count, index, analyze. Rolled back on any error."""
        connection, schema = self.connection, self.schema
        added = {c.name for c, _ in self.added_after_fill}
        stored = [c for c in self.columns if c.name not in added]
        definition = ", ".join(c.definition() for c in storage_order(stored))
        began = time.monotonic()
        with connection.begin():
            for month in self.months:
                connection.exec_driver_sql(
                    f"CREATE TABLE {qualified(schema, self.names[month.key])} "
                    f"({definition}, {bounds_check(connection, self.column, month)})"
                )
            router = self._router(definition) if len(self.months) > 1 else None
            target = Staging(
                router or qualified(schema, self.names[self.months[0].key]), freeze=router is None
            )
            set_column_defaults(connection, target.target, self.fill_defaults)
            written = self._fill(fill, target)
            set_column_defaults(connection, target.target, dict.fromkeys(self.fill_defaults))
            if expected_rows is not None and written != expected_rows:
                raise RowCountMismatch(
                    f"{schema}.{self.table}: loaded {written} rows but expected "
                    f"{expected_rows}; rolled back, the previous rows are intact"
                )
            if router is not None:
                for name in self.names.values():
                    connection.exec_driver_sql(
                        f"ALTER TABLE {router} DETACH PARTITION {qualified(schema, name)}"
                    )
                connection.exec_driver_sql(f"DROP TABLE {router}")
            for name in self.names.values():
                self._add_constant_columns(qualified(schema, name))
            filled = time.monotonic()
            connection.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
            for name in self.names.values():
                for index in self.indexes:
                    connection.exec_driver_sql(index_ddl(schema, name, index, self.stems))
            indexed = time.monotonic()
            for name in self.names.values():
                connection.exec_driver_sql(f"ANALYZE {qualified(schema, name)}")
        done = time.monotonic()
        self.fill_s, self.index_s, self.analyze_s = filled - began, indexed - filled, done - indexed
        return written

    def _add_constant_columns(self, staging: str) -> None:
        """The constants as columns of the filled table, stored in no row (attmissingval),
        in one statement; then the defaults go (rows added later would not get them)."""
        if not self.added_after_fill:
            return
        connection = self.connection
        additions = ", ".join(
            f"ADD COLUMN {column.definition()}"
            + ("" if value is None else f" DEFAULT {literal(connection, value)}")
            for column, value in self.added_after_fill
        )
        connection.exec_driver_sql(f"ALTER TABLE {staging} {additions}")
        set_column_defaults(
            connection,
            staging,
            {column.name: None for column, value in self.added_after_fill if value is not None},
        )

    def _router(self, definition: str) -> str:
        """A partitioned table routing each row to its month's staging table."""
        connection = self.connection
        router = qualified(self.schema, bounded_name(f"{self.table}__route_{uuid.uuid4().hex[:8]}"))
        connection.exec_driver_sql(
            f"CREATE TABLE {router} ({definition}) PARTITION BY RANGE ({ident(self.column)})"
        )
        for month in self.months:
            connection.exec_driver_sql(
                f"ALTER TABLE {router} ATTACH PARTITION "
                f"{qualified(self.schema, self.names[month.key])} {bounds_sql(connection, month)}"
            )
        return router

    def _fill(self, fill: Fill, target: Staging) -> int:
        try:
            # Here too, inside the staging transaction: a fill's COPY is psycopg's, which
            # SQLAlchemy does not see interrupted, so leaving the transaction would send a
            # ROLLBACK on the hung-up connection, whose error would replace the interruption.
            with dropped_if_interrupted(self.connection):
                return fill(self.connection, target)
        except (psycopg.errors.CheckViolation, sa.exc.IntegrityError) as error:
            cause = getattr(error, "orig", None) or error
            if not isinstance(cause, psycopg.errors.CheckViolation):
                raise
            raise ValueError(
                f"{self.schema}.{self.table}: a row's {self.column} is outside the months "
                f"being replaced ({', '.join(m.key for m in self.months)}); nothing was "
                f"changed ({cause.diag.message_primary})"
            ) from error

    def swap(self, connection: sa.Connection, in_swap: InSwap | None) -> None:
        """The swap transaction's statements (``with_lock_retries`` runs and retries it)."""
        for month in self.months:
            self._swap_month(connection, month)
        if in_swap is not None:
            in_swap(connection)

    def _swap_month(self, connection: sa.Connection, month: MonthBounds) -> None:
        schema, parent = self.schema, qualified(self.schema, self.table)
        child = child_name(self.table, month.key)
        staging = self.names[month.key]
        # The month's table keeps its owner and grants (else the loading role's, none):
        # with the tables owned by a group role, the next load by another member failed
        # on a month the first one had reloaded ("permission denied").
        kept_from = child if is_partition_of(connection, schema, child, self.table) else None
        owner = _owner(connection, schema, kept_from or self.table)
        grants = grant_statements(connection, qualified(schema, child)) if kept_from else []
        if kept_from is not None:
            # The parent's ACCESS EXCLUSIVE lock: where a busy table makes the swap wait.
            connection.exec_driver_sql(
                f"ALTER TABLE {parent} DETACH PARTITION {qualified(schema, child)}"
            )
            connection.exec_driver_sql(f"DROP TABLE {qualified(schema, child)}")
        elif relation_kind(connection, schema, child) is not None:
            raise ValueError(
                f"{schema}.{child} exists but is not a partition of {schema}.{self.table}: "
                "rename or drop it, then load the month again"
            )
        connection.exec_driver_sql(
            f"ALTER TABLE {qualified(schema, staging)} RENAME TO {ident(child)}"
        )
        for index in self.indexes:
            connection.exec_driver_sql(
                f"ALTER INDEX {qualified(schema, index_name(staging, index, self.stems))} "
                f"RENAME TO {ident(index_name(child, index, self.stems))}"
            )
        if owner != _owner(connection, schema, child):
            self._as_far_as_allowed(
                connection,
                [f"ALTER TABLE {qualified(schema, child)} OWNER TO {ident(owner)}"],
                f"{schema}.{child} stays owned by the loading role, not {owner}",
            )
        self._as_far_as_allowed(
            connection, grants, f"{schema}.{child} lost grants of the table it replaced"
        )
        connection.exec_driver_sql(
            f"ALTER TABLE {parent} ATTACH PARTITION {qualified(schema, child)} "
            f"{bounds_sql(connection, month)}"
        )

    def _as_far_as_allowed(
        self, connection: sa.Connection, statements: Sequence[str], outcome: str
    ) -> None:
        """Run ``statements``; one the server refuses for want of a privilege (the new owner
        without CREATE on the schema, a role this one may not SET: PostgreSQL 16) is
        skipped with a warning, in a savepoint: the month is still swapped, as before."""
        for statement in statements:
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(statement)
            except sa.exc.ProgrammingError as error:
                if getattr(error.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                    raise
                self.log(f"{outcome}: {str(error.orig).strip().splitlines()[0]} ({statement})")


def _owner(connection: sa.Connection, schema: str, table: str) -> str:
    return str(
        connection.execute(
            sa.text(
                "SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :table"
            ),
            {"schema": schema, "table": table},
        ).scalar_one()
    )


def _drop_quietly(connection: sa.Connection, schema: str, names: Iterable[str]) -> None:
    """Drop staging tables after a failed swap. Best effort, on the way out of an error
    already being raised: what stays is dropped by the month's next load."""
    try:
        if connection.in_transaction():
            connection.rollback()
        with connection.begin():
            for name in names:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {qualified(schema, name)}")
    except sa.exc.DBAPIError:
        pass
