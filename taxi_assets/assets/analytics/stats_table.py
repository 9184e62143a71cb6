"""The table ``analytics.monthly_zone_stats`` (one partition per month) and the month replace."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
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
from taxi_assets.partitions import add_months
from taxi_assets.pg.ddl import create_schema, ident, qualified, require_partitioned
from taxi_assets.pg.lock_retry import LockWaits
from taxi_assets.pg.month_swap import MonthBounds, Staging, replace_months
from taxi_assets.quality import HUGE_NUMBER
from taxi_assets.services import SERVICES, ZONES_DATASET

if TYPE_CHECKING:
    import pandas as pd

MONTH_COLUMN = "partition_month"


def ensure_stats_table(engine: sa.Engine) -> None:
    """Create the schema and the table (partitioned by month) once; concurrent runs
    serialise on an advisory lock. A plain table of an earlier version is refused."""
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
            require_partitioned(connection, ANALYTICS_SCHEMA, STATS_TABLE)
            return
        create_schema(connection, ANALYTICS_SCHEMA)
        connection.exec_driver_sql(
            f"CREATE TABLE {table} ({definition}, PRIMARY KEY ({key})) "
            f"PARTITION BY RANGE ({ident(MONTH_COLUMN)})"
        )
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
    """(services whose warehouse table holds rows, the tables that are missing). A service
    without a table, or with an empty one (``analytics/trips`` creates those of services
    not loaded yet), is left out of the stats: the month may predate it, or it is not
    loaded at all. The zones are needed for every service."""
    services = [
        s
        for s in SERVICES
        if _exists(connection, trip_table(s))
        and connection.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {trip_table(s)})").scalar()
    ]
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
    # Trips of the month's file partition per service summed (pickups outside it too): 0
    # for a service whose table exists but holds nothing of this month.
    trips_by_service: dict[str, int]

    def services_without_month(self) -> list[str]:
        """Services summed whose table holds no row of this month (not loaded yet)."""
        return [s for s in self.services if not self.trips_by_service.get(s)]


def tally_month(
    month: date,
    services: Sequence[str],
    daily_rows: Iterable[Sequence[Any]],
    preview: pd.DataFrame,
    *,
    rows_written: int,
    rows_replaced: int,
) -> MonthStats:
    """The month's stats from its rows read back (``preview``) and its daily trip counts
    (rows of service, day, trips, first and last pickup; either engine's SQL returns them)."""
    daily: dict[str, dict[date, int]] = {service: {} for service in services}
    by_service = dict.fromkeys(services, 0)
    first: datetime | None = None
    last: datetime | None = None
    outside = 0
    for service, day, trips, low, high in daily_rows:
        by_service[service] += int(trips)
        if day is None or (day.year, day.month) != (month.year, month.month):
            outside += int(trips)
        else:
            daily[service][day] = int(trips)
        if low is not None:
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    return MonthStats(
        rows_written=rows_written,
        rows_replaced=rows_replaced,
        trips=int(preview["trips"].sum()) if len(preview) else 0,
        preview=preview,
        # The charts draw only the services with trips in the month: one not loaded for it
        # (FHVHV before 2019-02, a service loaded later) is no flat line at zero.
        daily={service: days for service, days in daily.items() if days},
        first_pickup=first,
        last_pickup=last,
        pickups_outside_month=outside,
        services=tuple(services),
        trips_by_service=by_service,
    )


# numeric(16,2) holds 14 integer digits: a cell's revenue, rounded to cents, must be under.
REVENUE_LIMIT = 10**14


def revenue_overflow(month: date) -> dg.Failure:
    """The failure of a month with a cell whose revenue does not fit numeric(16,2)."""
    return dg.Failure(
        description=(
            f"analytics/{STATS_TABLE} {month:%Y-%m}: a cell's revenue does not fit "
            "numeric(16,2): its trips' amounts sum to 1e14 USD or more (each "
            f"under {HUGE_NUMBER:.0e} as the analytics count): see the month's "
            "huge_number quality signal"
        ),
        allow_retries=False,
    )


def replace_month(
    engine: sa.Engine,
    month: date,
    waits: LockWaits = LockWaits(),
    log: Callable[[str], None] = lambda _: None,
) -> MonthStats:
    """Recompute ``month`` of analytics.monthly_zone_stats and swap it in (the same month
    replace as the warehouse tables'), then read it back."""
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
    daily_rows: list[sa.Row] = []

    def fill(connection: sa.Connection, staging: Staging) -> int:
        # The trip tables are read once, into the temporary cells the stats and the
        # chart both come from (dropped when the staging transaction commits).
        connection.execute(sa.text(month_cells_sql(services)), params)
        try:
            inserted = connection.execute(sa.text(insert_stats_sql(staging.target)), params)
        except sa.exc.DataError as error:
            if not isinstance(error.orig, psycopg.errors.NumericValueOutOfRange):
                raise
            # Each trip's revenue is under HUGE_NUMBER; only very many such trips in one
            # cell get here. Say which month and why, not just PostgreSQL's "overflow".
            raise revenue_overflow(month) from error
        written = inserted.rowcount
        daily_rows.extend(connection.execute(sa.text(daily_trips_sql())).all())
        return int(written)

    key = f"{month:%Y-%m}"
    next_month = date.fromisoformat(f"{add_months(key, 1)}-01")
    done = replace_months(
        engine,
        ANALYTICS_SCHEMA,
        STATS_TABLE,
        MONTH_COLUMN,
        [MonthBounds(key, month, next_month)],
        fill,
        waits=waits,
        log=log,
    )
    written, replaced = done.rows_written, done.rows_replaced
    import pandas as pd  # here, not at import: every run process loads this module

    with engine.connect() as connection:
        preview = pd.read_sql_query(
            sa.text(
                f"SELECT {', '.join(ident(c.name) for c in COLUMNS[1:])} FROM {table} "
                f"WHERE {ident('partition_month')} = :month ORDER BY borough, service"
            ),
            connection,
            params={"month": month},
        )
    return tally_month(
        month, services, daily_rows, preview, rows_written=written, rows_replaced=replaced
    )
