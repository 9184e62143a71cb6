"""A month's load whose fill runs a long statement, on the warehouse resource's own engine,
for test_lost_client.py to SIGKILL while the server runs it (a run worker killed, or
killed for memory): ``python -m taxi_assets_tests.killed_client URL STATEMENT [INTERVAL]``.

The load holds the month's advisory lock as the IO manager's does (``replace_months``).
``INTERVAL``: the product's own ``CHECK_INTERVAL``, shortened so that the test is quick.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from taxi_assets.pg import lost_client
from taxi_assets.pg.month_swap import Staging, replace_months
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.warehouse_client import MONTH, MONTHS_TABLE, SCHEMA


def load_running(url: str, statement: str) -> None:
    engine = PostgresResource(url=url).engine()

    def fill(connection: sa.Connection, staging: Staging) -> int:
        connection.exec_driver_sql(statement)
        return 0

    replace_months(engine, SCHEMA, MONTHS_TABLE, "m", [MONTH], fill)


if __name__ == "__main__":
    url, statement, *interval = sys.argv[1:]
    if interval:
        lost_client.CHECK_INTERVAL = interval[0]
    load_running(url, statement)
