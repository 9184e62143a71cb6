"""``taxi_new_month_sensor``: HEADs the source for each service's next unloaded month (and
re-checks the newest loaded one for a republished file) and runs exactly that service's
job for that month. It targets the per-service jobs: each service has its own partitions,
and a sensor target may not mix partitions definitions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import dagster as dg

from taxi_assets.automation.new_month_probe import (
    VERSION_TAG,
    plan_service_requests,
    runs_in_flight,
)
from taxi_assets.automation.schedules import publication_lag
from taxi_assets.jobs import service_job_assets, service_job_name
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource

DEFAULT_SENSOR_INTERVAL_SECONDS = 300
# No HEAD request starts later than this into a tick: Dagster cancels a sensor evaluation
# after 60 s, and each HEAD is one attempt of at most the source's probe timeout.
TICK_BUDGET_SECONDS = 40.0


class NewMonthCheckFailed(Exception):
    """A service's check raised: the tick fails (shown red in the UI) unless other services
    had months to run, which are requested (the failure is then in the tick's log)."""


def build_new_month_sensor(
    jobs: dict[str, dg.UnresolvedAssetJobDefinition],
    partitions: Mapping[str, dg.PartitionsDefinition],
    blocking_checks: Mapping[dg.AssetKey, Sequence[dg.AssetCheckKey]],
    interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    """``blocking_checks``: each asset's blocking checks (``checks.blocking_check_keys``). A
    month whose run stored the raw file and failed counts as rebuilt since only when the
    layers built from that file passed them (``new_month_probe._rebuilt_since``)."""

    @dg.sensor(
        name="taxi_new_month_sensor",
        jobs=list(jobs.values()),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="HEADs the source for each service's next month; requests it when published "
        f"(every {interval_seconds} s: $TAXI_SENSOR_INTERVAL_SECONDS when definitions load).",
    )
    def taxi_new_month_sensor(
        context: dg.SensorEvaluationContext, source: TaxiSourceResource, lake: LakeResource
    ) -> dg.SensorResult | dg.SkipReason:
        deadline = time.monotonic() + TICK_BUDGET_SECONDS
        requests: list[dg.RunRequest] = []
        reasons: list[str] = []
        failures: list[str] = []
        in_flight = runs_in_flight(context.instance)
        for service in jobs:
            try:
                plan = plan_service_requests(
                    context.instance,
                    source,
                    service,
                    partitions[service],
                    publication_lag(),
                    in_flight,
                    blocking_checks,
                    lake_root=lake.root(),  # pinned months are not re-fetched
                    deadline=deadline,
                )
            except Exception as error:
                # One service's failure must not hold back the other services' months: it
                # is logged with its traceback, and fails the tick when nothing else runs.
                context.log.exception(f"{service}: the new-month check failed")
                failures.append(f"{service}: the check failed ({type(error).__name__}: {error})")
                continue
            reasons.extend(plan.reasons)
            requests.extend(
                dg.RunRequest(
                    run_key=request.run_key,
                    job_name=service_job_name(service),
                    asset_selection=service_job_assets(service),
                    partition_key=request.month,
                    tags={VERSION_TAG: request.version, "taxi/service": service},
                )
                for request in plan.requests
            )
        for reason in reasons:
            context.log.info(reason)
        if failures and not requests:
            raise NewMonthCheckFailed("; ".join([*failures, *reasons]))
        if not requests:
            return dg.SkipReason("; ".join(reasons) or "nothing to check")
        return dg.SensorResult(run_requests=requests)

    return taxi_new_month_sensor
