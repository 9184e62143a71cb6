"""The table ``analytics.monthly_zone_stats`` and the transaction that replaces one month."""

from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from taxi_assets.assets.analytics.stats_columns import (
    ANALYTICS_SCHEMA,
    COLUMNS,
    NO_ZONE_BOROUGH,
    PRIMARY_KEY,
    STATS_TABLE,
    StatsColumn,
)
from taxi_assets.assets.analytics.stats_sql import (
    MAX_TRIP,
    WAREHOUSE_SCHEMA,
    daily_trips_sql,
    insert_stats_sql,
    month_cells_sql,
    service_params,
    trip_table,
)
from taxi_assets.pg.ddl import ident, qualified
from taxi_assets.services import SERVICES, ZONES_DATASET


def ensure_stats_table(engine: sa.Engine) -> None:
    """Create the schema and table once; concurrent runs serialise on an advisory lock."""
    table = qualified(ANALYTICS_SCHEMA, STATS_TABLE)
    definition = ", ".join(f"{ident(c.name)} {c.sql_type}" for c in COLUMNS)
    key = ", ".join(ident(c) for c in PRIMARY_KEY)
    with engine.begin() as connection:
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
            {"lock": f"ddl:{ANALYTICS_SCHEMA}.{STATS_TABLE}"},
        )
        exists = connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": table}).scalar()
        if exists is not None:
            return
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {ident(ANALYTICS_SCHEMA)}")
        connection.exec_driver_sql(f"CREATE TABLE {table} ({definition}, PRIMARY KEY ({key}))")
        for column in COLUMNS:
            connection.exec_driver_sql(
                f"COMMENT ON COLUMN {table}.{ident(column.name)} IS {_literal(column)}"
            )


def _literal(column: StatsColumn) -> str:
    # COMMENT takes no bind parameters; the descriptions are constants of this module.
    return "'" + column.description.replace("'", "''") + "'"


def _exists(connection: sa.Connection, table: str) -> bool:
    return (
        connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": table}).scalar()
        is not None
    )


def loaded_services(connection: sa.Connection) -> tuple[list[str], list[str]]:
    """(services whose warehouse table exists, the tables that are missing). A service
    without a table is left out of the stats (the month may predate it, or it is not
    loaded at all); the zones are needed for every service."""
    services = [s for s in SERVICES if _exists(connection, trip_table(s))]
    missing = [f"{WAREHOUSE_SCHEMA}.{SERVICES[s].dataset}" for s in SERVICES if s not in services]
    if not _exists(connection, qualified(WAREHOUSE_SCHEMA, ZONES_DATASET)):
        missing.append(f"{WAREHOUSE_SCHEMA}.{ZONES_DATASET}")
    return services, missing


@dataclass(frozen=True)
class MonthStats:
    rows_written: int
    rows_replaced: int
    trips: int
    preview: pd.DataFrame
    daily: dict[str, dict[date, int]]
    first_pickup: datetime | None
    last_pickup: datetime | None
    pickups_outside_month: int
    services: tuple[str, ...]  # the services summed; the others have no warehouse table


def replace_month(engine: sa.Engine, month: date) -> MonthStats:
    """Recompute ``month`` in analytics.monthly_zone_stats (atomically) and read it back."""
    table = qualified(ANALYTICS_SCHEMA, STATS_TABLE)
    with engine.connect() as connection:
        services, missing = loaded_services(connection)
    if not services or f"{WAREHOUSE_SCHEMA}.{ZONES_DATASET}" in missing:
        raise dg.Failure(
            description=(
                f"analytics/{STATS_TABLE} needs warehouse.{ZONES_DATASET} and at least one "
                f"trip table; missing: {', '.join(missing)}: materialize the warehouse "
                "assets first"
            ),
            allow_retries=False,
        )
    ensure_stats_table(engine)
    params = {
        "month": month,
        "no_zone": NO_ZONE_BOROUGH,
        "max_trip": MAX_TRIP,
        **service_params(services),
    }
    with engine.begin() as connection:
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
            {"lock": f"{ANALYTICS_SCHEMA}.{STATS_TABLE}/{month:%Y-%m}"},
        )
        replaced = connection.execute(
            sa.text(f"DELETE FROM {table} WHERE {ident('partition_month')} = :month"),
            {"month": month},
        ).rowcount
        connection.execute(sa.text(month_cells_sql(services)), params)
        written = connection.execute(sa.text(insert_stats_sql()), params).rowcount
        daily_rows = connection.execute(sa.text(daily_trips_sql())).all()
    with engine.connect() as connection:
        preview = pd.read_sql_query(
            sa.text(
                f"SELECT {', '.join(ident(c.name) for c in COLUMNS[1:])} FROM {table} "
                f"WHERE {ident('partition_month')} = :month ORDER BY borough, service"
            ),
            connection,
            params={"month": month},
        )
    daily: dict[str, dict[date, int]] = {service: {} for service in services}
    first: datetime | None = None
    last: datetime | None = None
    outside = 0
    for service, day, trips, low, high in daily_rows:
        if day is None or (day.year, day.month) != (month.year, month.month):
            outside += trips
        else:
            daily[service][day] = trips
        if low is not None:
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    return MonthStats(
        rows_written=written,
        rows_replaced=replaced,
        trips=int(preview["trips"].sum()) if len(preview) else 0,
        preview=preview,
        daily=daily,
        first_pickup=first,
        last_pickup=last,
        pickups_outside_month=outside,
        services=tuple(services),
    )
