"""The SQL that sums a month of trips per service, pickup borough and day (PostgreSQL)."""

from collections.abc import Sequence

from taxi_assets.assets.analytics.stats_columns import (
    ANALYTICS_SCHEMA,
    COLUMNS,
    STATS_TABLE,
)
from taxi_assets.assets.analytics.stats_measures import MEASURES, Dialect, measures_sql
from taxi_assets.pg.ddl import ident, qualified
from taxi_assets.services import SERVICES, ZONES_DATASET

WAREHOUSE_SCHEMA = "warehouse"
POSTGRES_SQL = Dialect(quote=ident, integer="bigint", real="double precision")
# Trip durations outside (0, 24 h] are data errors; they are left out of the average.
MAX_TRIP = "24 hours"


def trip_table(service: str) -> str:
    return qualified(WAREHOUSE_SCHEMA, SERVICES[service].dataset)


def _month_trips_sql(services: Sequence[str]) -> str:
    """One row per trip of the month, for each of ``services``, with the stats' measures."""
    parts = []
    for service in services:
        measures = MEASURES[service]
        parts.append(
            f"SELECT CAST(:service_{service} AS text) AS service, "
            f"{ident(measures.location)} AS location_id, "
            f"{ident(measures.pickup)} AS pickup, {ident(measures.dropoff)} AS dropoff, "
            f"{measures_sql(measures, POSTGRES_SQL)} "
            f"FROM {trip_table(service)} WHERE {ident('partition_month')} = :month"
        )
    return "\nUNION ALL\n".join(parts)


def service_params(services: Sequence[str]) -> dict[str, str]:
    return {f"service_{service}": service for service in services}


# The month's trips summed per service, pickup borough and pickup day: both the stats and
# the chart are computed from these few thousand rows, so the trip tables are read once.
MONTH_CELLS = "month_cells"


def month_cells_sql(services: Sequence[str]) -> str:
    """A temporary table, dropped at commit, of sums and counts per (service, borough, day)
    from which averages are exact: sum / count over the cells of a group."""
    zones = qualified(WAREHOUSE_SCHEMA, ZONES_DATASET)
    valid_duration = "t.dropoff > t.pickup AND t.dropoff - t.pickup <= CAST(:max_trip AS interval)"
    return f"""
CREATE TEMPORARY TABLE {MONTH_CELLS} ON COMMIT DROP AS
SELECT t.service, COALESCE(z.{ident("borough")}, :no_zone) AS borough,
       CAST(t.pickup AS date) AS day,
       count(*) AS trips,
       sum(t.passengers) AS passengers,
       sum(t.revenue) AS revenue,
       sum(t.distance) AS distance_sum, count(t.distance) AS distances,
       sum(EXTRACT(EPOCH FROM t.dropoff - t.pickup) / 60.0) FILTER (WHERE {valid_duration})
           AS duration_sum,
       count(*) FILTER (WHERE {valid_duration}) AS durations,
       min(t.pickup) AS first_pickup, max(t.pickup) AS last_pickup
FROM ({_month_trips_sql(services)}) AS t
LEFT JOIN {zones} AS z ON z.{ident("location_id")} = t.location_id
GROUP BY 1, 2, 3
"""


def insert_stats_sql(table: str | None = None) -> str:
    """INSERT of the month's stats into ``table`` (quoted; default the stats table)."""
    table = table or qualified(ANALYTICS_SCHEMA, STATS_TABLE)
    columns = ", ".join(ident(c.name) for c in COLUMNS)
    return f"""
INSERT INTO {table} ({columns})
SELECT CAST(:month AS date), service, borough,
       sum(trips),
       sum(passengers),
       round(sum(revenue)::numeric, 2),
       sum(distance_sum) / NULLIF(sum(distances), 0),
       sum(duration_sum) / NULLIF(sum(durations), 0)
FROM {MONTH_CELLS}
GROUP BY 2, 3
"""


def daily_trips_sql() -> str:
    return f"""
SELECT service, day, CAST(sum(trips) AS bigint) AS trips,
       min(first_pickup) AS first_pickup, max(last_pickup) AS last_pickup
FROM {MONTH_CELLS}
GROUP BY 1, 2
ORDER BY 1, 2
"""
