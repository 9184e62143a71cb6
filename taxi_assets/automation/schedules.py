"""The monthly schedule: each month, the month that should just have been published."""

import dagster as dg

from taxi_assets.partitions import lagged_month
from taxi_assets.raw_zone import pinned_services
from taxi_assets.resources.lake import LakeResource
from taxi_assets.services import SERVICES

DEFAULT_LAG_MONTHS = 2
LAG_ENV = "TAXI_PUBLICATION_LAG_MONTHS"


def publication_lag() -> int:
    """Months between a month's end and its publication (``TAXI_PUBLICATION_LAG_MONTHS``)."""
    raw = dg.EnvVar(LAG_ENV).get_value(str(DEFAULT_LAG_MONTHS)) or str(DEFAULT_LAG_MONTHS)
    if not raw.strip().isdigit():
        raise ValueError(f"{LAG_ENV}={raw!r} is not a whole number of months")
    return int(raw)


def build_schedules(partitions_def: dg.PartitionsDefinition) -> list[dg.ScheduleDefinition]:
    @dg.schedule(
        name="taxi_monthly_schedule",
        job_name="taxi_monthly_job",
        cron_schedule="0 6 1 * *",
        execution_timezone="America/New_York",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Monthly: loads the month that should just have been published (lag: "
        f"${LAG_ENV}, default {DEFAULT_LAG_MONTHS}).",
    )
    def taxi_monthly_schedule(
        context: dg.ScheduleEvaluationContext, lake: LakeResource
    ) -> dg.RunRequest | dg.SkipReason:
        month = lagged_month(context.scheduled_execution_time.date(), publication_lag())
        if not partitions_def.has_partition_key(month):
            return dg.SkipReason(f"{month} is outside the configured partitions")
        # Pins (issue 15): the raw asset of a pinned service makes its pinned revision
        # current instead of downloading; the tag says so on the run. Nothing to fetch
        # when every service is pinned.
        pins = pinned_services(lake.root(), month)
        described = ", ".join(f"{service}@{sha256[:12]}" for service, sha256 in pins.items())
        if pins and len(pins) == len(SERVICES):
            return dg.SkipReason(f"{month}: every service is pinned ({described})")
        tags = {"taxi/pinned": described} if pins else {}
        return dg.RunRequest(run_key=f"schedule:{month}", partition_key=month, tags=tags)

    return [taxi_monthly_schedule]
