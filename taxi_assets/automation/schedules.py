"""The monthly schedule: each month, the month that should just have been published."""

import dagster as dg

from taxi_assets.partitions import lagged_month

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
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        month = lagged_month(context.scheduled_execution_time.date(), publication_lag())
        if not partitions_def.has_partition_key(month):
            return dg.SkipReason(f"{month} is outside the configured partitions")
        return dg.RunRequest(run_key=f"schedule:{month}", partition_key=month)

    return [taxi_monthly_schedule]
