"""The asset ``analytics/monthly_zone_stats``: one month's statistics, its chart, its metadata."""

import time
import warnings
from collections.abc import Callable, Mapping
from datetime import date

import dagster as dg
from upath import UPath

from taxi_assets.assets.analytics.charts import (
    png_markdown,
    trips_per_day_png,
    trips_per_day_sparkline,
)
from taxi_assets.assets.analytics.preview import preview_markdown
from taxi_assets.assets.analytics.stats_columns import (
    ANALYTICS_SCHEMA,
    STATS_KEY,
    STATS_TABLE,
    column_schema,
)
from taxi_assets.assets.analytics.stats_table import MonthStats, replace_month
from taxi_assets.assets.analytics.trips_view_asset import build_trips_view_asset
from taxi_assets.assets.trips import OWNERS
from taxi_assets.automation.conditions import follow_upstream
from taxi_assets.io_managers.arrow_stats import row_count_metadata
from taxi_assets.partitions import parse_month
from taxi_assets.pg.partitions import tree_bytes
from taxi_assets.resources.bigquery import BigQueryWarehouse
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets.run_slots import record_run_host
from taxi_assets.services import SERVICES, zone_key
from taxi_assets.storage.publish import local_staging_dir, publish_file, staging_name
from taxi_assets.warehouse_engine import BIGQUERY, POSTGRES, WarehouseEngine


def write_chart(lake: LakeResource, month_key: str, png: bytes) -> UPath:
    """Publish the chart to ``<lake>/analytics/monthly_zone_stats/<YYYY-MM>.png`` atomically."""
    dest = lake.root().joinpath(ANALYTICS_SCHEMA, STATS_TABLE, f"{month_key}.png")
    local = local_staging_dir(dest) / staging_name(dest)
    local.write_bytes(png)
    publish_file(local, dest)
    return dest


def replace_stats_month(
    warehouse: PostgresResource | BigQueryWarehouse,
    month: date,
    log: Callable[[str], None] = lambda _: None,
    warn: Callable[[str], None] = lambda _: None,
) -> tuple[MonthStats, int]:
    """Recompute ``month`` in the warehouse's engine; the stats and the table's bytes."""
    if isinstance(warehouse, BigQueryWarehouse):
        from taxi_assets.assets.analytics.stats_table_bigquery import replace_month_bigquery

        with warehouse.client() as client:
            return replace_month_bigquery(client, month, warn)
    stats = replace_month(warehouse.engine(), month, waits=warehouse.lock_waits(), log=log)
    with warehouse.engine().connect() as connection:
        table_bytes = tree_bytes(connection, ANALYTICS_SCHEMA, STATS_TABLE)
    return stats, int(table_bytes or 0)


def trip_deps() -> list[dg.AssetDep]:
    """Every service's warehouse table, month to month. The analytics partitions start with
    the earliest service: a month before a service's first partition maps to none of its
    partitions (no error), so automation does not wait for a month that cannot exist."""
    with warnings.catch_warnings():
        # allow_nonexistent_upstream_partitions is marked beta in Dagster 1.13.
        warnings.simplefilter("ignore", dg.BetaWarning)
        same_month = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
    return [
        dg.AssetDep(s.key("warehouse"), partition_mapping=same_month) for s in SERVICES.values()
    ]


def other_partitions_deps(
    partitions_def: dg.PartitionsDefinition,
    trip_partitions: Mapping[str, dg.PartitionsDefinition],
) -> dg.AssetSelection:
    """The dependencies whose partitions are not the analytics': the zones (not
    partitioned) and every service starting later than the earliest (FHVHV, by default).
    Automation follows them once they are materialized, not in the tick that requests
    them: Dagster would run them and the analytics month side by side."""
    later = [
        service.key("warehouse")
        for name, service in SERVICES.items()
        if trip_partitions[name] != partitions_def
    ]
    return dg.AssetSelection.assets(zone_key("warehouse"), *later)


def build_analytics_assets(
    partitions_def: dg.PartitionsDefinition,
    trip_partitions: Mapping[str, dg.PartitionsDefinition],
    engine: WarehouseEngine = POSTGRES,
) -> list[dg.AssetsDefinition]:
    """``analytics/monthly_zone_stats``, partitioned from the earliest service's first month
    (``partitions_def``); ``trip_partitions``: each service's own partitions."""
    column_types = column_schema()
    if engine is BIGQUERY:  # BigQuery's modules only where it is deployed
        from taxi_assets.assets.analytics.stats_sql_bigquery import (
            column_schema as stats_bigquery_schema,
        )

        column_types = stats_bigquery_schema()

    @dg.asset(
        key=STATS_KEY,
        deps=[*trip_deps(), zone_key("warehouse")],
        group_name="analytics",
        partitions_def=partitions_def,
        kinds={engine.kind, "sql"},
        owners=OWNERS,
        tags={"layer": "analytics"},
        code_version="1",
        pool="warehouse",
        metadata={
            "partition_expr": "partition_month",
            "dagster/table_name": f"{ANALYTICS_SCHEMA}.{STATS_TABLE}",
            "dagster/column_schema": column_types,
        },
        # Recomputed when any service's month (or the zones) gets a new data version, once
        # every input of the month is loaded and passes its blocking checks: a month some
        # service lacks waits, unless the month is not a partition of that service (before
        # its first month; see docs/ui.md).
        automation_condition=follow_upstream(
            not_same_tick=other_partitions_deps(partitions_def, trip_partitions)
        ),
        description=(
            "Trips, passengers, revenue, average distance and duration per pickup borough "
            f"and service for each file month, computed in {engine.label}, with a trips-per-day "
            "chart. A service without a warehouse table is left out."
        ),
    )
    def monthly_zone_stats(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[PostgresResource | BigQueryWarehouse],
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        record_run_host(context.instance, context.run)  # it holds a `warehouse` pool slot
        month_key = context.partition_key
        month = parse_month(month_key)
        started = time.monotonic()
        stats, table_bytes = replace_stats_month(
            warehouse, month, context.log.info, context.log.warning
        )
        elapsed = time.monotonic() - started
        skipped = [s for s in SERVICES if s not in stats.services]
        if skipped:
            context.log.info(
                f"nothing in the warehouse yet for {', '.join(skipped)} (no table, or an "
                f"empty one): left out of {month_key}"
            )
        # A service whose table exists but holds nothing of the month: not loaded yet (a
        # run by hand; automation waits for every service that has the month).
        not_loaded = [
            s
            for s in stats.services_without_month()
            if trip_partitions[s].has_partition_key(month_key)
        ]
        if not_loaded:
            context.log.warning(
                f"{', '.join(not_loaded)} {month_key} is not in the warehouse yet: the stats "
                "of the month leave it out until it is loaded (automation recomputes the "
                "month then)"
            )
        summed = [s for s in stats.services if stats.trips_by_service.get(s)]
        context.log.info(
            f"analytics.{STATS_TABLE} {month_key}: {stats.rows_written} rows from "
            f"{stats.trips:,} trips (replaced {stats.rows_replaced}) in {elapsed:.2f} s"
        )
        png = trips_per_day_png(month, stats.daily)
        chart = write_chart(lake, month_key, png)
        return dg.MaterializeResult(
            metadata={
                **row_count_metadata(stats.rows_written, partitioned=True),
                "rows_replaced": dg.MetadataValue.int(stats.rows_replaced),
                "trips": dg.MetadataValue.int(stats.trips),
                # The services whose trips the month sums (a table without the month
                # adds nothing), and those that have the month but have not loaded it.
                "services": ", ".join(summed) or "-",
                "services_not_loaded": ", ".join(not_loaded) or "-",
                "table": f"{ANALYTICS_SCHEMA}.{STATS_TABLE}",
                "table_bytes": dg.MetadataValue.int(table_bytes),
                "duration_s": round(elapsed, 3),
                "rows_per_s": int(stats.trips / elapsed) if elapsed > 0 else 0,
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

    return [monthly_zone_stats, build_trips_view_asset(engine)]
