"""Jobs over the trip assets: one per service.

Each service has its own monthly partitions (from its first published month), and Dagster
refuses a job whose assets have different partitions definitions: "every service for one
month" is an asset backfill instead (``python -m taxi_assets.cli months backfill``).
"""

from __future__ import annotations

import dagster as dg

from taxi_assets.services import SERVICES


def service_job_name(service: str) -> str:
    return f"taxi_{service}_job"


def service_job_assets(service: str) -> list[dg.AssetKey]:
    """The assets of ``taxi_<service>_job``, for a run request to name. A run that names
    them tells the automation sensor it builds lake and warehouse itself (see
    ``automation/conditions.py``, point 4); a job run without a selection names none."""
    return list(SERVICES[service].keys())


def build_service_jobs() -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """`taxi_<service>_job`: one month of one service's three layers, partitioned like them
    (Dagster infers the partitions from the assets)."""
    return {
        name: dg.define_asset_job(
            service_job_name(name),
            selection=dg.AssetSelection.assets(*service_job_assets(name)),
            description=f"One month of {name}: raw file -> lake Parquet -> warehouse table.",
        )
        for name in SERVICES
    }
