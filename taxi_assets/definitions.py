"""The one ``Definitions`` object of the code location.

Configuration is read when a run starts (resources resolve their fields, then the
environment, then defaults). Four settings are exceptions, read here and only here,
because they are part of the definitions themselves and must be fixed when definitions
load: :func:`first_partition_month` (``TAXI_FIRST_MONTH``: the partitions),
:func:`sensor_interval_seconds` (``TAXI_SENSOR_INTERVAL_SECONDS``: how often the
new-month sensor runs), :func:`automation_interval_seconds`
(``TAXI_AUTOMATION_INTERVAL_SECONDS``: how often the automation sensor evaluates) and
:func:`warehouse_engine` (the scheme of ``TAXI_WAREHOUSE_URL``: which engine's resources,
asset kinds and descriptions).
"""

from __future__ import annotations

import gc
import os
import warnings
from typing import TYPE_CHECKING, Any, cast

import dagster as dg

from taxi_assets.assets.analytics import build_analytics_assets
from taxi_assets.assets.trips import build_trip_assets
from taxi_assets.assets.zones import build_zone_assets
from taxi_assets.automation.alerts import AlertWebhookResource, build_alert_sensors
from taxi_assets.automation.conditions import (
    DEFAULT_AUTOMATION_INTERVAL_SECONDS,
    build_automation_sensor,
)
from taxi_assets.automation.new_month_sensor import (
    DEFAULT_SENSOR_INTERVAL_SECONDS,
    build_new_month_sensor,
)
from taxi_assets.automation.schedules import (
    build_freshness_job,
    build_freshness_schedule,
    build_schedules,
)
from taxi_assets.checks import (
    QualityThresholds,
    blocking_check_keys,
    build_asset_checks,
    freshness_check_keys,
)
from taxi_assets.io_managers.parquet_lake import ParquetLakeIOManager
from taxi_assets.io_managers.raw_files import RawFileIOManager
from taxi_assets.jobs import build_service_jobs
from taxi_assets.partitions import (
    earliest_partitions,
    first_partition_month,
    service_partitions,
)
from taxi_assets.resources import LakeResource, PostgresResource, TaxiSourceResource
from taxi_assets.services import SERVICES
from taxi_assets.warehouse_engine import (
    BIGQUERY,
    POSTGRES,
    WarehouseEngine,
    engine_for_url,
    warehouse_resources,
)

if TYPE_CHECKING:
    from taxi_assets.resources.bigquery import BigQueryWarehouse


def _seconds(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{variable}={raw!r} is not a whole number of seconds")
    return int(raw)


def sensor_interval_seconds() -> int:
    """``TAXI_SENSOR_INTERVAL_SECONDS`` (default 300), read once at load time: the minimum
    interval of ``taxi_new_month_sensor`` (only that sensor) is part of its definition."""
    return _seconds("TAXI_SENSOR_INTERVAL_SECONDS", DEFAULT_SENSOR_INTERVAL_SECONDS)


def automation_interval_seconds() -> int:
    """``TAXI_AUTOMATION_INTERVAL_SECONDS`` (default 30), read once at load time: the
    minimum interval of ``taxi_automation_sensor``."""
    return _seconds("TAXI_AUTOMATION_INTERVAL_SECONDS", DEFAULT_AUTOMATION_INTERVAL_SECONDS)


def warehouse_engine() -> WarehouseEngine:
    """PostgreSQL or BigQuery: the scheme of ``TAXI_WAREHOUSE_URL`` (``postgresql://`` or
    unset: PostgreSQL; ``bigquery://``: BigQuery), read once at load time.

    The engine decides which resources, asset kinds and descriptions the definitions
    hold, so it cannot wait for a run. Only the scheme is read here: the URL itself (a
    secret for PostgreSQL) is read by the warehouse resource when a run starts.
    """
    return engine_for_url(os.environ.get("TAXI_WAREHOUSE_URL"))


def build_resources(
    *,
    engine: WarehouseEngine = POSTGRES,
    source: TaxiSourceResource | None = None,
    lake: LakeResource | None = None,
    warehouse: PostgresResource | BigQueryWarehouse | None = None,
    quality_thresholds: QualityThresholds | None = None,
) -> dict[str, Any]:
    """Every resource the definitions need. Local and production differ only in
    configuration, read when a run starts: by default every setting comes from the
    environment. The lake and the warehouse are each set once here and shared by the
    IO managers, the assets and the checks that use them; ``engine`` picks the
    warehouse's resources (the same keys for both engines)."""
    lake = lake or LakeResource()
    return {
        "source": source or TaxiSourceResource(),
        "quality_thresholds": quality_thresholds or QualityThresholds(),
        "alert_webhook": AlertWebhookResource(),
        "lake": lake,
        "raw_io_manager": RawFileIOManager(lake=lake),
        "lake_io_manager": ParquetLakeIOManager(lake=lake),
        **warehouse_resources(engine, warehouse),
    }


def with_code_references(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Each asset names the file and line of the function that computes it (the UI's
    *Code references* on its overview, opened in the editor): the trip assets are built
    by one factory per layer, so the asset key alone does not say where its code is."""
    with warnings.catch_warnings():
        # Code references are marked beta in Dagster 1.13; they only add metadata.
        warnings.simplefilter("ignore", dg.BetaWarning)
        # Each AssetsDefinition comes back as one (its metadata replaced).
        return cast("list[dg.AssetsDefinition]", list(dg.with_source_code_references(assets)))


def build_definitions(
    first_month: str,
    engine: WarehouseEngine = POSTGRES,
    sensor_interval: int = DEFAULT_SENSOR_INTERVAL_SECONDS,
    automation_interval: int = DEFAULT_AUTOMATION_INTERVAL_SECONDS,
) -> dg.Definitions:
    partitions = service_partitions(first_month)
    jobs = build_service_jobs()
    with warnings.catch_warnings():
        # backfill_policy is marked beta in Dagster 1.13; the policies are deliberate.
        warnings.simplefilter("ignore", dg.BetaWarning)
        trip_assets = [
            asset
            for name, service in SERVICES.items()
            for asset in build_trip_assets(service, partitions[name], engine)
        ]
    # BigQuery can also read the lake in place: optional external tables (no job runs them).
    external: list[dg.AssetsDefinition] = []
    if engine is BIGQUERY:
        from taxi_assets.assets.lake_external import build_external_table_assets

        external = build_external_table_assets()
    checks = build_asset_checks(partitions)
    freshness_job = build_freshness_job(freshness_check_keys())
    assets = [
        *trip_assets,
        *build_zone_assets(engine),
        *build_analytics_assets(earliest_partitions(first_month), partitions, engine),
        *external,
    ]
    return dg.Definitions(
        assets=with_code_references(assets),
        asset_checks=checks,
        jobs=[*jobs.values(), freshness_job],
        # Steps of a run execute in its own process, one after another: a subprocess per
        # step costs ~2-3 s of start-up (imports) for steps that stream in well under that,
        # and runs already parallelise across months (max_concurrent_runs).
        executor=dg.in_process_executor,
        schedules=[*build_schedules(jobs, partitions), build_freshness_schedule(freshness_job)],
        sensors=[
            build_new_month_sensor(jobs, partitions, blocking_check_keys(checks), sensor_interval),
            build_automation_sensor(automation_interval),
            *build_alert_sensors(),
        ],
        resources=build_resources(engine=engine),
    )


defs = build_definitions(
    first_partition_month(),
    warehouse_engine(),
    sensor_interval_seconds(),
    automation_interval_seconds(),
)

# What the imports and definitions built (~200k tracked objects: Dagster's, pandas',
# ours) lives as long as the process. Moving it out of the collector's generations saves
# every process that loads the definitions (each run worker, each CLI call) ~0.5 s at
# exit, where the final collection would walk all of it, and shortens full collections.
gc.freeze()
