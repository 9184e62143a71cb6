"""The view ``analytics.trips``: every service's trips in one shape, for ad-hoc SQL.

One row per warehouse trip row of every service, with the columns all four share (times,
zones, the file month and file) and the stats' measures (``stats_measures``: passengers,
what the rider paid, miles; null where a service does not publish one). A ``WHERE
partition_month = ...`` reaches each trip table's own month partition (PostgreSQL and
BigQuery both push it into every branch of the ``UNION ALL``).

The view reads all four trip tables, so a service loaded later appears in it without
touching the view: materializing it creates the tables of services not loaded yet, empty,
exactly as their warehouse assets would (same columns, partitioning and indexes). Only a
change of this module needs it materialized again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.assets.analytics.stats_measures import MEASURES, Dialect, measures_sql
from taxi_assets.assets.analytics.stats_sql import POSTGRES_SQL, WAREHOUSE_SCHEMA, trip_table
from taxi_assets.assets.contract_stream import warehouse_schema, warehouse_stream_schema
from taxi_assets.assets.trips import warehouse_metadata
from taxi_assets.contracts import CONTRACTS
from taxi_assets.io_managers.postgres import table_layout
from taxi_assets.pg.ddl import (
    create_schema,
    ensure_table,
    grant_statements,
    ident,
    qualified,
    relation_kind,
)
from taxi_assets.pg.lock_retry import LockWaits, with_lock_retries
from taxi_assets.quality import ABSURD_DISTANCE_MILES, HUGE_NUMBER
from taxi_assets.services import SERVICES

ANALYTICS_SCHEMA = "analytics"
TRIPS_VIEW = "trips"
TRIPS_VIEW_KEY = [ANALYTICS_SCHEMA, TRIPS_VIEW]


@dataclass(frozen=True)
class ViewColumn:
    name: str
    postgres_type: str
    bigquery_type: str
    description: str


VIEW_COLUMNS = (
    ViewColumn("service", "text", "STRING", "yellow, green, fhv or fhvhv."),
    ViewColumn("partition_month", "date", "DATE", "The file's month (the trip table's partition)."),
    ViewColumn("pickup_datetime", "timestamp", "DATETIME", "Pickup, New York local time."),
    ViewColumn("dropoff_datetime", "timestamp", "DATETIME", "Drop-off, New York local time."),
    ViewColumn("pu_location_id", "integer", "INT64", "Pickup taxi zone (warehouse.taxi_zones)."),
    ViewColumn("do_location_id", "integer", "INT64", "Drop-off taxi zone."),
    ViewColumn("passengers", "bigint", "INT64", "Passenger count (yellow, green; else null)."),
    ViewColumn(
        "revenue",
        "double precision",
        "FLOAT64",
        "What the rider paid: total_amount (yellow, green), the FHVHV fare plus its charges "
        "and tip; null for FHV, for a trip without a fare, and when any of its amounts is not "
        f"a number, infinite or {HUGE_NUMBER:,.0f} or more in size.",
    ),
    ViewColumn(
        "distance_mi",
        "double precision",
        "FLOAT64",
        "Trip miles (trip_distance; FHVHV trip_miles); null when negative, over "
        f"{ABSURD_DISTANCE_MILES:.0f} miles (a meter's garbage), not a number, or not published.",
    ),
    ViewColumn("source_file", "text", "STRING", "The published file the row came from."),
)


def view_sql(dialect: Dialect, table_of: Callable[[str], str]) -> str:
    """The view's ``SELECT``: one branch per service over the table ``table_of(service)``."""
    q = dialect.quote
    branches = []
    for name in SERVICES:
        measures = MEASURES[name]
        branches.append(
            f"SELECT '{name}' AS service, {q('partition_month')}, "
            f"{q(measures.pickup)} AS pickup_datetime, "
            f"{q(measures.dropoff)} AS dropoff_datetime, "
            f"{q(measures.location)} AS pu_location_id, {q('do_location_id')}, "
            f"{measures_sql(measures, dialect).removesuffix(' AS distance')} AS distance_mi, "
            f"{q('source_file')} FROM {table_of(name)}"
        )
    return "\nUNION ALL\n".join(branches)


def ensure_trip_tables_postgres(
    engine: sa.Engine, waits: LockWaits, log: Callable[[str], None]
) -> list[str]:
    """Create the trip tables missing, as the warehouse IO manager would; those created."""
    created = []
    for name, service in SERVICES.items():
        with engine.connect() as connection:
            exists = relation_kind(connection, WAREHOUSE_SCHEMA, service.dataset) is not None
        if not exists:
            ensure_table(
                engine,
                WAREHOUSE_SCHEMA,
                service.dataset,
                trip_stream_schema(name),
                table_layout(warehouse_metadata(service), partitioned=True),
                log=log,
                waits=waits,
            )
            created.append(name)
    return created


def replace_view_postgres(
    engine: sa.Engine, waits: LockWaits, log: Callable[[str], None] = lambda _: None
) -> str:
    """Create or replace the view, keeping the grants made on it; when a column changed
    type (which CREATE OR REPLACE refuses), drop and create it, in the same transaction.
    The statement run."""
    view = qualified(ANALYTICS_SCHEMA, TRIPS_VIEW)
    select = view_sql(POSTGRES_SQL, trip_table)
    statement = f"CREATE OR REPLACE VIEW {view} AS\n{select}"

    def replace(connection: sa.Connection) -> None:
        create_schema(connection, ANALYTICS_SCHEMA)
        try:
            with connection.begin_nested():
                connection.exec_driver_sql(statement)
        except sa.exc.DBAPIError as error:
            if _sqlstate(error) != INVALID_TABLE_DEFINITION:
                raise
            log(f"{view} changed shape ({error.orig}): dropped and created again")
            grants = grant_statements(connection, view)
            connection.exec_driver_sql(f"DROP VIEW {view}")
            connection.exec_driver_sql(f"CREATE VIEW {view} AS\n{select}")
            for grant in grants:
                connection.exec_driver_sql(grant)
        for column in VIEW_COLUMNS:
            text = column.description.replace("'", "''")
            connection.exec_driver_sql(f"COMMENT ON COLUMN {view}.{ident(column.name)} IS '{text}'")

    # Readers of the view hold it while they query: wait for them a little at a time.
    with engine.connect() as connection:
        with_lock_retries(
            connection,
            replace,
            waits=waits,
            what=f"replacing {view}",
            table=(ANALYTICS_SCHEMA, TRIPS_VIEW),
            log=log,
        )
    return statement


# "cannot change data type of view column", "cannot drop columns from view".
INVALID_TABLE_DEFINITION = "42P16"


def _sqlstate(error: sa.exc.DBAPIError) -> str | None:
    original = error.orig
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def trip_stream_schema(service: str) -> pa.Schema:
    """The Arrow schema a service's warehouse asset hands its IO manager."""
    return warehouse_stream_schema(warehouse_schema(CONTRACTS[service]))
