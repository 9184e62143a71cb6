"""Analytics computed inside PostgreSQL from the warehouse: joins across the datasets.

``analytics/monthly_zone_stats`` sums up one file month (``partition_month``) of every
service per pickup borough (through ``warehouse.taxi_zones``). No trip row travels to
Python: in one transaction the month's trips are read once into a small temporary table
of sums per service, borough and pickup day, from which an ``INSERT ... SELECT`` replaces
the month's rows and a query takes the trips per day for the chart (which goes to the
lake and, inline, to the materialization's metadata).
"""

import time
from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from upath import UPath

from taxi_assets.assets.trips import OWNERS
from taxi_assets.automation_conditions import FOLLOW_UPSTREAM
from taxi_assets.charts import png_markdown, trips_per_day_png, trips_per_day_sparkline
from taxi_assets.io_managers.pg_ddl import ident, qualified
from taxi_assets.io_managers.storage import (
    lake_root,
    local_staging_dir,
    publish_file,
    staging_name,
)
from taxi_assets.partitions import parse_month
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets.services import SERVICES, ZONES_DATASET

ANALYTICS_SCHEMA = "analytics"
STATS_TABLE = "monthly_zone_stats"
STATS_KEY = dg.AssetKey([ANALYTICS_SCHEMA, STATS_TABLE])
WAREHOUSE_SCHEMA = "warehouse"
# Pickups whose zone is not in warehouse.taxi_zones (or is null) count under this borough.
NO_ZONE_BOROUGH = "Unknown"
# Services whose files publish no fares, passenger counts or distances: nulls in the stats.
WITHOUT_FARES = frozenset({"fhv"})
# Trip durations outside (0, 24 h] are data errors; they are left out of the average.
MAX_TRIP = "24 hours"


@dataclass(frozen=True)
class StatsColumn:
    name: str
    sql_type: str
    description: str


COLUMNS = (
    StatsColumn("partition_month", "date NOT NULL", "File month the trips were published in."),
    StatsColumn("service", "text NOT NULL", "TLC service: yellow, green or fhv."),
    StatsColumn(
        "borough",
        "text NOT NULL",
        f"Pickup borough from warehouse.taxi_zones; '{NO_ZONE_BOROUGH}' when the zone is "
        "unknown or missing.",
    ),
    StatsColumn("trips", "bigint NOT NULL", "Trips (rows) published for the month."),
    StatsColumn("passengers", "bigint", "Sum of passenger_count; null for FHV (not published)."),
    StatsColumn(
        "revenue",
        "numeric(16,2)",
        "Sum of total_amount in USD (cash tips excluded); null for FHV (no fares).",
    ),
    StatsColumn(
        "avg_distance_mi",
        "double precision",
        "Average trip_distance in miles (negative values left out); null for FHV.",
    ),
    StatsColumn(
        "avg_duration_min",
        "double precision",
        "Average minutes from pickup to drop-off, over trips lasting more than 0 and at "
        "most 24 hours.",
    ),
)
PRIMARY_KEY = ("partition_month", "service", "borough")


def chart_path(month_key: str) -> UPath:
    return lake_root().joinpath(ANALYTICS_SCHEMA, STATS_TABLE, f"{month_key}.png")


def _trip_table(service: str) -> str:
    return qualified(WAREHOUSE_SCHEMA, SERVICES[service].dataset)


def _month_trips_sql() -> str:
    """One row per trip of the month, every service, with the measures the stats need."""
    parts = []
    for service in SERVICES:
        if service in WITHOUT_FARES:
            measures = (
                "NULL::bigint AS passengers, NULL::double precision AS revenue, "
                "NULL::double precision AS distance"
            )
        else:
            measures = (
                f"{ident('passenger_count')}::bigint AS passengers, "
                f"{ident('total_amount')} AS revenue, "
                f"CASE WHEN {ident('trip_distance')} >= 0 THEN {ident('trip_distance')} END "
                "AS distance"
            )
        parts.append(
            f"SELECT CAST(:service_{service} AS text) AS service, "
            f"{ident('pu_location_id')} AS location_id, "
            f"{ident('pickup_datetime')} AS pickup, {ident('dropoff_datetime')} AS dropoff, "
            f"{measures} FROM {_trip_table(service)} WHERE {ident('partition_month')} = :month"
        )
    return "\nUNION ALL\n".join(parts)


def _service_params() -> dict[str, str]:
    return {f"service_{service}": service for service in SERVICES}


# The month's trips summed per service, pickup borough and pickup day: both the stats and
# the chart are computed from these few thousand rows, so the trip tables are read once.
MONTH_CELLS = "month_cells"


def month_cells_sql() -> str:
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
FROM ({_month_trips_sql()}) AS t
LEFT JOIN {zones} AS z ON z.{ident("location_id")} = t.location_id
GROUP BY 1, 2, 3
"""


def insert_stats_sql() -> str:
    table = qualified(ANALYTICS_SCHEMA, STATS_TABLE)
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


def missing_tables(connection: sa.Connection) -> list[str]:
    tables = [(WAREHOUSE_SCHEMA, SERVICES[s].dataset) for s in SERVICES]
    tables.append((WAREHOUSE_SCHEMA, ZONES_DATASET))
    return [
        f"{schema}.{table}"
        for schema, table in tables
        if connection.execute(
            sa.text("SELECT to_regclass(:name)"), {"name": qualified(schema, table)}
        ).scalar()
        is None
    ]


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


def replace_month(engine: sa.Engine, month: date) -> MonthStats:
    """Recompute ``month`` in analytics.monthly_zone_stats (atomically) and read it back."""
    table = qualified(ANALYTICS_SCHEMA, STATS_TABLE)
    with engine.connect() as connection:
        missing = missing_tables(connection)
    if missing:
        raise dg.Failure(
            description=(
                f"analytics/{STATS_TABLE} needs {', '.join(missing)}: materialize "
                "the warehouse assets first"
            ),
            allow_retries=False,
        )
    ensure_stats_table(engine)
    params = {
        "month": month,
        "no_zone": NO_ZONE_BOROUGH,
        "max_trip": MAX_TRIP,
        **_service_params(),
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
        connection.execute(sa.text(month_cells_sql()), params)
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
    daily: dict[str, dict[date, int]] = {service: {} for service in SERVICES}
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
    )


def preview_markdown(preview: pd.DataFrame) -> str:
    """The month's rows as a markdown table; SQL nulls show as ``null``, never as 0."""
    if preview.empty:
        return "(no trips in this month)"
    formats = {
        "trips": "{:,.0f}",
        "passengers": "{:,.0f}",
        "revenue": "{:,.2f}",
        "avg_distance_mi": "{:.2f}",
        "avg_duration_min": "{:.1f}",
    }
    shown = preview.astype(object)
    for column, template in formats.items():
        shown[column] = [
            "null" if pd.isna(value) else template.format(float(value)) for value in preview[column]
        ]
    return shown.to_markdown(index=False, disable_numparse=True)


def write_chart(month_key: str, png: bytes) -> UPath:
    """Publish the chart to ``<lake>/analytics/monthly_zone_stats/<YYYY-MM>.png`` atomically."""
    dest = chart_path(month_key)
    local = local_staging_dir(dest) / staging_name(dest)
    local.write_bytes(png)
    publish_file(local, dest)
    return dest


def column_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.sql_type.removesuffix(" NOT NULL"),
                description=c.description,
                constraints=dg.TableColumnConstraints(nullable="NOT NULL" not in c.sql_type),
            )
            for c in COLUMNS
        ]
    )


def build_analytics_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``analytics/monthly_zone_stats``, partitioned like the trips it summarises."""
    trip_keys = [dg.AssetKey([WAREHOUSE_SCHEMA, s.dataset]) for s in SERVICES.values()]

    @dg.asset(
        key=STATS_KEY,
        deps=[*trip_keys, dg.AssetKey([WAREHOUSE_SCHEMA, ZONES_DATASET])],
        group_name="analytics",
        partitions_def=partitions_def,
        kinds={"postgres", "sql"},
        owners=OWNERS,
        tags={"layer": "analytics"},
        code_version="1",
        pool="warehouse",
        metadata={"partition_expr": "partition_month"},
        # Recomputed when any service's month (or the zones) changes, once every input of
        # the month is loaded: a month some service lacks waits (see docs/ui.md).
        automation_condition=FOLLOW_UPSTREAM,
        description=(
            "Trips, passengers, revenue, average distance and duration per pickup borough "
            "and service for each file month, computed in PostgreSQL, with a trips-per-day chart."
        ),
    )
    def monthly_zone_stats(
        context: dg.AssetExecutionContext, warehouse: PostgresResource
    ) -> dg.MaterializeResult:
        month_key = context.partition_key
        month = parse_month(month_key)
        started = time.monotonic()
        stats = replace_month(warehouse.engine(), month)
        elapsed = time.monotonic() - started
        context.log.info(
            f"analytics.{STATS_TABLE} {month_key}: {stats.rows_written} rows from "
            f"{stats.trips:,} trips (replaced {stats.rows_replaced}) in {elapsed:.2f} s"
        )
        png = trips_per_day_png(month, stats.daily)
        chart = write_chart(month_key, png)
        with warehouse.engine().connect() as connection:
            table_bytes = connection.execute(
                sa.text("SELECT pg_total_relation_size(to_regclass(:name))"),
                {"name": qualified(ANALYTICS_SCHEMA, STATS_TABLE)},
            ).scalar()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(stats.rows_written),
                "rows_replaced": dg.MetadataValue.int(stats.rows_replaced),
                "trips": dg.MetadataValue.int(stats.trips),
                "table": f"{ANALYTICS_SCHEMA}.{STATS_TABLE}",
                "dagster/table_name": f"{ANALYTICS_SCHEMA}.{STATS_TABLE}",
                "table_bytes": dg.MetadataValue.int(int(table_bytes or 0)),
                "duration_s": round(elapsed, 3),
                "rows_per_s": int(stats.trips / elapsed) if elapsed > 0 else 0,
                "dagster/column_schema": column_schema(),
                "min_pickup_datetime": str(stats.first_pickup) if stats.first_pickup else "-",
                "max_pickup_datetime": str(stats.last_pickup) if stats.last_pickup else "-",
                "rows_outside_partition": dg.MetadataValue.int(stats.pickups_outside_month),
                "preview": dg.MetadataValue.md(preview_markdown(stats.preview)),
                # Inline in the UI (short markdown); the full chart opens from `chart`.
                "trips_per_day": dg.MetadataValue.md(trips_per_day_sparkline(month, stats.daily)),
                "chart": png_markdown(png, f"Trips per day by service, {month_key}"),
                "chart_path": dg.MetadataValue.path(str(chart)),
                "chart_bytes": dg.MetadataValue.int(len(png)),
            }
        )

    return [monthly_zone_stats]
