"""A load log in BigQuery: its table, its records read, and the statements replacing them.

The statements (:func:`replace_statements`: per record, ``DELETE`` its key, ``INSERT``
it) go into the month replace (:mod:`taxi_assets.bq.replace`): inside the transaction
that replaces the rows, or, where a copy job replaces the partition, in a transaction of
their own right after the copy (``docs/fault_tolerance.md`` says what that guarantees).
Values are literals built from Python values (scripts take no query parameters on the
emulator); the transaction's time is ``CURRENT_TIMESTAMP()``, the same in every
statement of a script.
"""

from __future__ import annotations

from collections.abc import Callable

from google.cloud import bigquery

from taxi_assets.bq.names import TableName, column_sql, sql_literal
from taxi_assets.bq.query import run_query
from taxi_assets.bq.tables import TableLayout, ensure_table
from taxi_assets.io_managers.load_log import TRANSACTION_TIME, LoadLog, Record


def log_table(client: bigquery.Client, log: LoadLog, message: Callable[[str], None]) -> TableName:
    """The log table (created when missing, columns added later), by name."""
    name = TableName(client.project, log.schema, log.table)
    ensure_table(client, name, log.columns, TableLayout(), message)
    return name


def _matches(log: LoadLog, record: Record) -> str:
    return " AND ".join(f"{column_sql(k)} = {sql_literal(record[k])}" for k in log.key)


def read_records(client: bigquery.Client, name: TableName, log: LoadLog) -> list[Record]:
    """The stored records with the keys of ``log``'s records."""
    if not log.records:
        return []
    columns = ", ".join(column_sql(c) for c in log.columns.names)
    where = " OR ".join(f"({_matches(log, record)})" for record in log.records)
    rows = run_query(client, f"SELECT {columns} FROM {name.sql()} WHERE {where}")
    return [dict(row.items()) for row in rows]


def replace_statements(name: TableName, log: LoadLog) -> list[str]:
    """Statements replacing each record's key with the record (for a script)."""
    columns = ", ".join(column_sql(c) for c in log.columns.names)
    statements = []
    for record in log.records:
        values = ", ".join(
            "CURRENT_TIMESTAMP()" if record[c] is TRANSACTION_TIME else sql_literal(record[c])
            for c in log.columns.names
        )
        statements.append(f"DELETE FROM {name.sql()} WHERE {_matches(log, record)}")
        statements.append(f"INSERT INTO {name.sql()} ({columns}) VALUES ({values})")
    return statements
