"""Schedules, sensors and automation that keep the months current.

- ``taxi_monthly_schedule`` runs ``taxi_monthly_job`` each month for the month that should
  just have been published (TLC publishes about two months late).
- ``taxi_new_month_sensor`` HEADs the source for each service's next unloaded month (and
  re-checks the newest loaded one for a republished file) and requests exactly that
  service's assets for that month.
- ``taxi_automation_sensor`` (running by default) lets lake and warehouse partitions follow
  their raw file however it was materialized.
"""

import dagster as dg

from taxi_assets.jobs import TRIP_LAYERS
from taxi_assets.month_math import lagged_month
from taxi_assets.new_month_probe import VERSION_TAG, plan_service_requests, runs_in_flight
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import SERVICES

DEFAULT_LAG_MONTHS = 2
LAG_ENV = "TAXI_PUBLICATION_LAG_MONTHS"
SENSOR_INTERVAL_SECONDS = 30


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


def service_selection(service: str) -> list[dg.AssetKey]:
    return [dg.AssetKey([layer, SERVICES[service].dataset]) for layer in TRIP_LAYERS]


def build_sensors(partitions_def: dg.PartitionsDefinition) -> list[dg.SensorDefinition]:
    @dg.sensor(
        name="taxi_new_month_sensor",
        target=dg.AssetSelection.assets(*(k for s in SERVICES for k in service_selection(s))),
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="HEADs the source for each service's next month; requests it when published.",
    )
    def taxi_new_month_sensor(
        context: dg.SensorEvaluationContext, source: TaxiSourceResource
    ) -> dg.SensorResult | dg.SkipReason:
        requests: list[dg.RunRequest] = []
        reasons: list[str] = []
        in_flight = runs_in_flight(context.instance)
        for service in SERVICES:
            plan = plan_service_requests(
                context.instance, source, service, partitions_def, publication_lag(), in_flight
            )
            reasons.extend(plan.reasons)
            requests.extend(
                dg.RunRequest(
                    run_key=request.run_key,
                    partition_key=request.month,
                    asset_selection=service_selection(service),
                    tags={VERSION_TAG: request.version, "taxi/service": service},
                )
                for request in plan.requests
            )
        for reason in reasons:
            context.log.info(reason)
        if not requests:
            return dg.SkipReason("; ".join(reasons) or "nothing to check")
        return dg.SensorResult(run_requests=requests)

    automation = dg.AutomationConditionSensorDefinition(
        "taxi_automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        emit_backfills=False,
        description="Lake and warehouse partitions follow their raw file, however it arrived.",
    )
    return [taxi_new_month_sensor, automation]
