"""The monthly schedules, one per service: each month, the newest month TLC has surely
published. One per service because each service's job has its own partitions (a schedule
targets one job).

The schedule runs on the 5th: TLC publishes month M around the 20th of M+2 and at times
on the 1st or 2nd of M+3 (``partitions.lagged_month``), so a run on the 1st for M failed
as "not published" every month, and one on the 1st for M-1 would have in those months.
The new-month sensor loads a month within minutes of its publication; the schedule is the
plain monthly load, for deployments without the sensor."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from taxi_assets.jobs import service_job_assets
from taxi_assets.partitions import lagged_month
from taxi_assets.raw_zone import pinned_revision
from taxi_assets.resources.lake import LakeResource
from taxi_assets.services import SERVICES

DEFAULT_LAG_MONTHS = 2
LAG_ENV = "TAXI_PUBLICATION_LAG_MONTHS"


def publication_lag() -> int:
    """TLC publishes a month during the month this many months after it
    (``TAXI_PUBLICATION_LAG_MONTHS``; 2: January during March)."""
    raw = dg.EnvVar(LAG_ENV).get_value(str(DEFAULT_LAG_MONTHS)) or str(DEFAULT_LAG_MONTHS)
    if not raw.strip().isdigit():
        raise ValueError(f"{LAG_ENV}={raw!r} is not a whole number of months")
    return int(raw)


def schedule_name(service: str) -> str:
    return f"taxi_{service}_schedule"


def build_schedule(
    service: str, job: dg.UnresolvedAssetJobDefinition, partitions_def: dg.PartitionsDefinition
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=schedule_name(service),
        job=job,
        cron_schedule="0 6 5 * *",
        execution_timezone="America/New_York",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Monthly, on the 5th: loads the newest {service} month TLC has surely "
        f"published (published during the month ${LAG_ENV} months after it, default "
        f"{DEFAULT_LAG_MONTHS}: on 5 March, December).",
    )
    def monthly_schedule(
        context: dg.ScheduleEvaluationContext, lake: LakeResource
    ) -> dg.RunRequest | dg.SkipReason:
        month = lagged_month(context.scheduled_execution_time.date(), publication_lag())
        if not partitions_def.has_partition_key(month):
            return dg.SkipReason(f"{month} is outside the {service} partitions")
        # A pinned month is rebuilt from its pinned revision, never re-fetched: nothing to
        # load until someone unpins it (python -m taxi_assets.cli raw unpin ...).
        pinned = pinned_revision(lake.root(), service, month)
        if pinned is not None:
            return dg.SkipReason(f"{service} {month} is pinned to revision {pinned[:12]}")
        # Not a second load of a month a run or a backfill (the history's) is loading.
        from taxi_assets.automation.new_month_probe import is_loading, runs_in_flight

        raw_key = SERVICES[service].key("raw")
        if is_loading(runs_in_flight(context.instance), month, raw_key, job.name):
            return dg.SkipReason(f"{service} {month}: a queued or running run is loading it")
        return dg.RunRequest(
            run_key=f"schedule:{service}:{month}",
            asset_selection=service_job_assets(service),
            partition_key=month,
        )

    return monthly_schedule


def build_schedules(
    jobs: dict[str, dg.UnresolvedAssetJobDefinition],
    partitions: Mapping[str, dg.PartitionsDefinition],
) -> list[dg.ScheduleDefinition]:
    """``taxi_<service>_schedule`` for every service."""
    return [build_schedule(service, job, partitions[service]) for service, job in jobs.items()]


FRESHNESS_JOB = "taxi_freshness_job"
FRESHNESS_SCHEDULE = "taxi_freshness_schedule"


def build_freshness_job(check_keys: list[dg.AssetCheckKey]) -> dg.UnresolvedAssetJobDefinition:
    """Every service's freshness check alone: a HEAD request each, nothing loaded."""
    return dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(*check_keys),
        description="Is each service's newest loaded month within freshness_months of the "
        "newest month the source has published? (one HEAD request per service)",
    )


def build_freshness_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Daily: the freshness checks run whether or not anything was loaded, so a deployment
    whose loads stopped (sensor off, every run failing) fails them; with the loads alone
    they ran only when a month was loaded."""
    return dg.ScheduleDefinition(
        name=FRESHNESS_SCHEDULE,
        job=job,
        cron_schedule="0 7 * * *",
        execution_timezone="America/New_York",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Daily at 07:00 New York time: every service's freshness check (WARN when "
        "the source has published months not loaded).",
    )
