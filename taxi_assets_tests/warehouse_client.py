"""A read of an input and a load of a month as the Postgres IO manager runs them, for
test_copy_interrupts.py to stop the server under and interrupt: in the test's process, or
in one of their own (``python -m taxi_assets_tests.warehouse_client read URL WHERE`` /
``load URL``), which gets a real Ctrl-C (SIGINT, Python's own handler).
"""

from __future__ import annotations

import sys
from datetime import date

import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.pg.copy_in import copy_arrow
from taxi_assets.pg.copy_out import read_query_arrow
from taxi_assets.pg.ddl import driver_cursor
from taxi_assets.pg.lock_retry import LockWaits
from taxi_assets.pg.month_swap import MonthBounds, MonthReplace, Staging, replace_months
from taxi_assets.resources.postgres import sqlalchemy_url

SCHEMA = "public"
READ_TABLE = "slow_rows"  # 100,000 rows (create_tables)
MONTHS_TABLE = "parted"  # partitioned by month of m, empty (create_tables)
MONTH = MonthBounds("2021-01", date(2021, 1, 1), date(2021, 2, 1))


def create_tables(url: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(url))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {SCHEMA}.{READ_TABLE} AS SELECT n::bigint AS n, "
            "md5(n::text) AS payload FROM generate_series(1, 100000) AS n"
        )
        connection.exec_driver_sql(
            f"CREATE TABLE {SCHEMA}.{MONTHS_TABLE} (n bigint, m date NOT NULL) "
            "PARTITION BY RANGE (m)"
        )
    engine.dispose()


def read(url: str, where: str) -> pa.Table:
    """The rows of the read table matching ``where``, as the IO manager's ``load_input``
    reads an input."""
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        return read_query_arrow(engine, SCHEMA, READ_TABLE, where, {})
    finally:
        engine.dispose()


def month_rows() -> pa.Table:
    """Two rows of the month."""
    return pa.table({"n": pa.array([1, 2], pa.int64()), "m": pa.array([MONTH.start] * 2)})


def load_month(
    url: str, waits: LockWaits = LockWaits(), rows: pa.RecordBatchReader | None = None
) -> MonthReplace:
    """``rows`` (default :func:`month_rows`) as the month, filled as the IO manager's
    ``fill`` fills one; ``waits``: how long its swap waits for the table's locks."""
    engine = sa.create_engine(sqlalchemy_url(url))
    reader = month_rows().to_reader() if rows is None else rows

    def fill(connection: sa.Connection, staging: Staging) -> int:
        return copy_arrow(driver_cursor(connection), staging.target, reader, freeze=staging.freeze)

    try:
        return replace_months(engine, SCHEMA, MONTHS_TABLE, "m", [MONTH], fill, waits=waits)
    finally:
        engine.dispose()


if __name__ == "__main__":
    what, url, *rest = sys.argv[1:]
    if what == "read":
        read(url, *rest)
    else:
        load_month(url)
