"""The SQL that sums a month of trips per service, pickup borough and day (BigQuery).

The same computation as ``stats_sql`` (PostgreSQL), generated from the same per-service
measures (``stats_measures``), in BigQuery's dialect: ``DATETIME_DIFF`` for durations,
``COUNTIF``, ``SAFE_DIVIDE``, backquoted ``project.dataset.table`` names. Single
statements take query parameters (``@month``...); the transaction that replaces the
month is a script, which takes none on the emulator, so its month is a ``DATE`` literal
built from a ``date``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import dagster as dg
from google.cloud import bigquery

from taxi_assets.assets.analytics.stats_columns import (
    ANALYTICS_SCHEMA,
    COLUMNS,
    NO_ZONE_BOROUGH,
    STATS_TABLE,
)
from taxi_assets.assets.analytics.stats_measures import MEASURES, Dialect, measures_sql
from taxi_assets.bq.names import TableName, column_sql, date_literal
from taxi_assets.bq.tables import STAGING_LIFETIME
from taxi_assets.services import SERVICES, ZONES_DATASET

WAREHOUSE_DATASET = "warehouse"
BIGQUERY_SQL = Dialect(quote=column_sql, integer="INT64", real="FLOAT64")
# Trip durations outside (0, 24 h] are data errors; they are left out of the average
# (stats_sql.MAX_TRIP, in microseconds).
MAX_TRIP = timedelta(hours=24)
# The analytics columns' PostgreSQL types (stats_columns) in BigQuery.
BIGQUERY_TYPES = {
    "date": "DATE",
    "text": "STRING",
    "bigint": "INT64",
    "double precision": "FLOAT64",
    "numeric(16,2)": "NUMERIC",
}


def stats_schema() -> list[bigquery.SchemaField]:
    """``analytics.monthly_zone_stats`` in BigQuery types, with the columns' descriptions."""
    fields = []
    for column in COLUMNS:
        sql_type = column.sql_type.removesuffix(" NOT NULL")
        resource = {
            "name": column.name,
            "type": BIGQUERY_TYPES[sql_type],
            "mode": "REQUIRED" if column.sql_type.endswith("NOT NULL") else "NULLABLE",
            "description": column.description,
        }
        if sql_type.startswith("numeric("):  # numeric(P,S)
            precision, scale = sql_type.removeprefix("numeric(")[:-1].split(",")
            resource.update(precision=precision, scale=scale)
        fields.append(bigquery.SchemaField.from_api_repr(resource))
    return fields


def _month_trips_sql(project: str, services: Sequence[str]) -> str:
    """One row per trip of the month, for each of ``services``, with the stats' measures."""
    parts = []
    for service in services:
        measures = MEASURES[service]
        table = TableName(project, WAREHOUSE_DATASET, SERVICES[service].dataset)
        q = column_sql
        parts.append(
            f"SELECT @service_{service} AS service, {q(measures.location)} AS location_id, "
            f"{q(measures.pickup)} AS pickup, {q(measures.dropoff)} AS dropoff, "
            f"{measures_sql(measures, BIGQUERY_SQL)} "
            f"FROM {table.sql()} WHERE {q('partition_month')} = @month"
        )
    return "\nUNION ALL\n".join(parts)


def month_cells_sql(cells: TableName, services: Sequence[str]) -> str:
    """A table of sums and counts per (service, borough, day), from which averages are
    exact (sum / count over the cells of a group): the trip tables are read once."""
    zones = TableName(cells.project, WAREHOUSE_DATASET, ZONES_DATASET)
    minutes = "DATETIME_DIFF(t.dropoff, t.pickup, MICROSECOND) / 60000000.0"
    valid = (
        "(t.dropoff > t.pickup AND DATETIME_DIFF(t.dropoff, t.pickup, MICROSECOND) <= @max_trip_us)"
    )
    lifetime_s = int(STAGING_LIFETIME.total_seconds())
    # The expiry is part of the CREATE: a run killed before it drops the table leaves
    # nothing behind for good (a separate call after the CREATE would leave a window).
    return f"""
CREATE TABLE {cells.sql()}
OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {lifetime_s} SECOND))
AS
SELECT t.service, COALESCE(z.{column_sql("borough")}, @no_zone) AS borough,
       CAST(t.pickup AS DATE) AS day,
       COUNT(*) AS trips,
       SUM(t.passengers) AS passengers,
       SUM(t.revenue) AS revenue,
       SUM(t.distance) AS distance_sum, COUNT(t.distance) AS distances,
       SUM(IF({valid}, {minutes}, NULL)) AS duration_sum,
       COUNTIF({valid}) AS durations,
       MIN(t.pickup) AS first_pickup, MAX(t.pickup) AS last_pickup
FROM ({_month_trips_sql(cells.project, services)}) AS t
LEFT JOIN {zones.sql()} AS z ON z.{column_sql("location_id")} = t.location_id
GROUP BY 1, 2, 3
"""


def month_cells_parameters(
    month: date, services: Sequence[str]
) -> list[bigquery.ScalarQueryParameter]:
    return [
        bigquery.ScalarQueryParameter("month", "DATE", month),
        bigquery.ScalarQueryParameter("no_zone", "STRING", NO_ZONE_BOROUGH),
        bigquery.ScalarQueryParameter(
            "max_trip_us", "INT64", int(MAX_TRIP.total_seconds() * 1_000_000)
        ),
        *(bigquery.ScalarQueryParameter(f"service_{s}", "STRING", s) for s in services),
    ]


def stats_table(project: str) -> TableName:
    return TableName(project, ANALYTICS_SCHEMA, STATS_TABLE)


def replace_month_script(cells: TableName, month: date) -> str:
    """DELETE the month and INSERT it from the cells, in one transaction."""
    table = stats_table(cells.project)
    columns = ", ".join(column_sql(c.name) for c in COLUMNS)
    month_sql = date_literal(month)
    return f"""
BEGIN TRANSACTION;
DELETE FROM {table.sql()} WHERE {column_sql("partition_month")} = {month_sql};
INSERT INTO {table.sql()} ({columns})
SELECT {month_sql}, service, borough,
       SUM(trips),
       SUM(passengers),
       ROUND(CAST(SUM(revenue) AS NUMERIC), 2),
       SAFE_DIVIDE(SUM(distance_sum), SUM(distances)),
       SAFE_DIVIDE(SUM(duration_sum), SUM(durations))
FROM {cells.sql()}
GROUP BY 2, 3;
COMMIT TRANSACTION;
"""


def largest_revenue_sql(cells: TableName) -> str:
    """The largest magnitude of a stats row's revenue (cells grouped as the replace groups
    them), rounded to cents as it is stored."""
    return f"""
SELECT MAX(ABS(ROUND(revenue, 2))) AS largest
FROM (SELECT SUM(revenue) AS revenue FROM {cells.sql()} GROUP BY service, borough)
"""


def daily_trips_sql(cells: TableName) -> str:
    return f"""
SELECT service, day, SUM(trips) AS trips,
       MIN(first_pickup) AS first_pickup, MAX(last_pickup) AS last_pickup
FROM {cells.sql()}
GROUP BY 1, 2
ORDER BY 1, 2
"""


def month_rows_sql(project: str) -> str:
    """The month's rows for the preview (parameter ``@month``)."""
    columns = ", ".join(column_sql(c.name) for c in COLUMNS[1:])
    return (
        f"SELECT {columns} FROM {stats_table(project).sql()} "
        f"WHERE {column_sql('partition_month')} = @month ORDER BY borough, service"
    )


def column_schema() -> dg.TableSchema:
    """The columns as the UI shows them, in BigQuery types."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=field.field_type
                + (f"({field.precision},{field.scale})" if field.precision else ""),
                description=field.description,
                constraints=dg.TableColumnConstraints(nullable=field.mode != "REQUIRED"),
            )
            for field in stats_schema()
        ]
    )
