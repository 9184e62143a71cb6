"""The table ``analytics.monthly_zone_stats`` in BigQuery, and the replace of one month.

As in PostgreSQL the month's trips are read once: into a table of sums per service,
borough and pickup day (``CREATE TABLE ... AS SELECT``), from which one transaction
replaces the month's rows and one query takes the trips per day for the chart and the
sparkline. That table is dropped afterwards (and expires by itself should the run die).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import date

import dagster as dg
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from taxi_assets.assets.analytics.stats_sql_bigquery import (
    WAREHOUSE_DATASET,
    daily_trips_sql,
    largest_revenue_sql,
    month_cells_parameters,
    month_cells_sql,
    month_rows_sql,
    replace_month_script,
    stats_schema,
    stats_table,
)
from taxi_assets.assets.analytics.stats_table import (
    REVENUE_LIMIT,
    MonthStats,
    revenue_overflow,
    tally_month,
)
from taxi_assets.bq.names import TableName
from taxi_assets.bq.query import run_query
from taxi_assets.bq.replace import Window, count_rows
from taxi_assets.bq.tables import TableLayout, drop_expiring_table, ensure_dataset
from taxi_assets.services import SERVICES, ZONES_DATASET

LAYOUT = TableLayout(partition_column="partition_month", cluster_by=("service", "borough"))


def ensure_stats_table(client: bigquery.Client, project: str) -> bigquery.Table:
    name = stats_table(project)
    ensure_dataset(client, name)
    table = LAYOUT.apply(bigquery.Table(name.table_id, schema=stats_schema()))
    return client.create_table(table, exists_ok=True)


def _exists(client: bigquery.Client, name: TableName) -> bool:
    try:
        client.get_table(name.table_id)
    except NotFound:
        return False
    return True


# Before any TLC month (yellow's first is 2009-01).
EVERY_MONTH_FROM = "1900-01-01"


def _row_count(client: bigquery.Client, name: TableName) -> int:
    """Rows of the table (0 when missing): its metadata's count, asked of the table itself
    when that says none (rows still in the streaming buffer; the emulator keeps none)."""
    try:
        counted = int(client.get_table(name.table_id).num_rows or 0)
    except NotFound:
        return 0
    if counted:
        return counted
    # A filter on the partitioning column that keeps every month: a user may set
    # require_partition_filter on a trip table (docs/deployment.md suggests it), and
    # BigQuery refuses a query of such a table without one. Reached when the metadata counts
    # no rows (an empty table: analytics/trips creates those of services not loaded yet).
    rows = list(
        run_query(
            client,
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {name.sql()} "
            f"WHERE partition_month >= DATE '{EVERY_MONTH_FROM}' LIMIT 1)",
        )
    )
    return int(rows[0]["n"])


def loaded_services(client: bigquery.Client, project: str) -> tuple[list[str], list[str]]:
    """(services whose warehouse table exists, the tables that are missing), as
    ``stats_table.loaded_services`` in PostgreSQL: a service without a table is left out."""
    tables = {s: TableName(project, WAREHOUSE_DATASET, SERVICES[s].dataset) for s in SERVICES}
    # An empty table (analytics/trips creates those of services not loaded yet) is left
    # out like a missing one.
    services = [s for s, name in tables.items() if _row_count(client, name)]
    missing = [tables[s].short for s in SERVICES if s not in services]
    zones = TableName(project, WAREHOUSE_DATASET, ZONES_DATASET)
    if not _exists(client, zones):
        missing.append(zones.short)
    return services, missing


_log = logging.getLogger(__name__)


def replace_month_bigquery(
    client: bigquery.Client, month: date, warn: Callable[[str], None] = _log.warning
) -> tuple[MonthStats, int]:
    """Recompute ``month`` in analytics.monthly_zone_stats (atomically) and read it back;
    also the table's size in bytes."""
    project = client.project
    services, missing = loaded_services(client, project)
    zones = TableName(project, WAREHOUSE_DATASET, ZONES_DATASET).short
    if not services or zones in missing:
        raise dg.Failure(
            description=(
                f"analytics/{stats_table(project).table} needs {zones} and at least one trip "
                f"table; missing: {', '.join(missing)}: materialize the warehouse assets first"
            ),
            allow_retries=False,
        )
    ensure_stats_table(client, project)
    name = stats_table(project)
    window = Window("partition_month", month, _next_month(month))
    cells = name.sibling(f"_cells_{name.table}_{month:%Y%m}_{uuid.uuid4().hex[:8]}")
    try:
        run_query(client, month_cells_sql(cells, services), month_cells_parameters(month, services))
        replaced = count_rows(client, name, window)
        # Checked before the transaction (PostgreSQL's overflow error is caught instead):
        # BigQuery refuses a value beyond the column's NUMERIC(16,2) naming neither month
        # nor cause, and the emulator does not enforce the precision at all (it stored
        # 1.8e14 in the month's row).
        largest = next(iter(run_query(client, largest_revenue_sql(cells))))["largest"]
        if largest is not None and largest >= REVENUE_LIMIT:
            raise revenue_overflow(month)
        run_query(client, replace_month_script(cells, month))
        daily_rows = list(run_query(client, daily_trips_sql(cells)))
    finally:
        drop_expiring_table(client, cells, warn)
    preview = (
        run_query(
            client,
            month_rows_sql(project),
            [bigquery.ScalarQueryParameter("month", "DATE", month)],
        )
        .to_arrow(create_bqstorage_client=False)
        .to_pandas()
    )
    stats = tally_month(
        month,
        services,
        (tuple(row.values()) for row in daily_rows),
        preview,
        rows_written=len(preview),
        rows_replaced=replaced,
    )
    return stats, int(client.get_table(name.table_id).num_bytes or 0)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)
