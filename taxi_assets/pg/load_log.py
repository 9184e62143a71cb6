"""A load log in PostgreSQL: its table, and its records replaced inside a transaction.

:func:`replace_records` runs on the connection of the transaction that publishes the
load (the month swap's, or the whole-table replace's): the records commit with the rows
or not at all. Each record's key is deleted first (``RETURNING`` the record it held:
the previous load's, read in the same transaction), then the record inserted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taxi_assets.io_managers.load_log import TRANSACTION_TIME, LoadLog, Record
from taxi_assets.pg.ddl import TableLayout, ensure_table, ident, qualified
from taxi_assets.pg.lock_retry import LockWaits


def ensure_log_table(
    engine: sa.Engine,
    log: LoadLog,
    waits: LockWaits,
    message: Callable[[str], None] = lambda _: None,
) -> None:
    """The log table, with its key as primary key (created once; columns added later)."""
    ensure_table(
        engine,
        log.schema,
        log.table,
        log.columns,
        TableLayout(primary_key=log.key),
        log=message,
        waits=waits,
    )


def replace_records(connection: sa.Connection, log: LoadLog) -> tuple[list[Record], list[Record]]:
    """Replace each record's key with the record, in the connection's transaction;
    (the records replaced, the records written as stored)."""
    table = qualified(log.schema, log.table)
    names = list(log.columns.names)
    returning = ", ".join(ident(n) for n in names)
    previous: list[Record] = []
    written: list[Record] = []
    for record in log.records:
        keys = {f"k{i}": record[name] for i, name in enumerate(log.key)}
        match = " AND ".join(f"{ident(name)} = :k{i}" for i, name in enumerate(log.key))
        removed = connection.execute(
            sa.text(f"DELETE FROM {table} WHERE {match} RETURNING {returning}"), keys
        )
        previous.extend(dict(row) for row in removed.mappings())
        values: dict[str, Any] = {}
        placeholders = []
        for i, name in enumerate(names):
            if record[name] is TRANSACTION_TIME:
                placeholders.append("now()")  # the transaction's start: one time per load
            else:
                placeholders.append(f":v{i}")
                values[f"v{i}"] = record[name]
        inserted = connection.execute(
            sa.text(
                f"INSERT INTO {table} ({returning}) VALUES ({', '.join(placeholders)}) "
                f"RETURNING {returning}"
            ),
            values,
        )
        written.extend(dict(row) for row in inserted.mappings())
    return previous, written
