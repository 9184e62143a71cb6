"""Jobs over the trip assets."""

from __future__ import annotations

import dagster as dg

from taxi_assets.services import SERVICES, trip_keys


def build_monthly_job() -> dg.UnresolvedAssetJobDefinition:
    """Partitioned like its assets (Dagster infers the monthly partitions from them)."""
    return dg.define_asset_job(
        "taxi_monthly_job",
        selection=dg.AssetSelection.assets(*trip_keys()),
        description="One month of every service: raw file -> lake Parquet -> warehouse table.",
    )


def build_service_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """`taxi_<service>_job`: one service's three layers, so a range of one service can be
    loaded (`dagster job backfill -j taxi_yellow_job ...`) where the others are not
    published: taxi_monthly_job's runs would fail on their missing files."""
    return [
        dg.define_asset_job(
            f"taxi_{name}_job",
            selection=dg.AssetSelection.assets(*SERVICES[name].keys()),
            description=f"One month of {name}: raw file -> lake Parquet -> warehouse table.",
        )
        for name in SERVICES
    ]
