"""``taxi_new_month_sensor``: HEADs the source for each service's next unloaded month (and
re-checks the newest loaded one for a republished file) and requests exactly that
service's assets for that month."""

import dagster as dg

from taxi_assets.automation.new_month_probe import (
    VERSION_TAG,
    plan_service_requests,
    runs_in_flight,
)
from taxi_assets.automation.schedules import publication_lag
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import SERVICES, trip_keys

SENSOR_INTERVAL_SECONDS = 30


def build_new_month_sensor(partitions_def: dg.PartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="taxi_new_month_sensor",
        target=dg.AssetSelection.assets(*trip_keys()),
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="HEADs the source for each service's next month; requests it when published.",
    )
    def taxi_new_month_sensor(
        context: dg.SensorEvaluationContext, source: TaxiSourceResource, lake: LakeResource
    ) -> dg.SensorResult | dg.SkipReason:
        requests: list[dg.RunRequest] = []
        reasons: list[str] = []
        in_flight = runs_in_flight(context.instance)
        for service in SERVICES:
            plan = plan_service_requests(
                context.instance,
                source,
                service,
                partitions_def,
                publication_lag(),
                in_flight,
                lake_root=lake.root(),  # pinned months are not re-fetched
            )
            reasons.extend(plan.reasons)
            requests.extend(
                dg.RunRequest(
                    run_key=request.run_key,
                    partition_key=request.month,
                    asset_selection=SERVICES[service].keys(),
                    tags={VERSION_TAG: request.version, "taxi/service": service},
                )
                for request in plan.requests
            )
        for reason in reasons:
            context.log.info(reason)
        if not requests:
            return dg.SkipReason("; ".join(reasons) or "nothing to check")
        return dg.SensorResult(run_requests=requests)

    return taxi_new_month_sensor
