"""Automation conditions shared by the asset definitions, and the sensor that evaluates them."""

import dagster as dg

# Lake and warehouse follow their upstream for every month, not only the newest one (a
# backfill or a republished file updates old months too). `eager()` waits while upstream
# runs are in progress and resets once the asset is updated, so months that a service's
# job (or a backfill) covers in one run are not run a second time.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(
    dg.AutomationCondition.in_latest_time_window()
)

# How often the automation sensor evaluates the conditions.
AUTOMATION_INTERVAL_SECONDS = 30


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "taxi_automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_SECONDS,
        emit_backfills=False,
        description="Lake and warehouse partitions follow their raw file, however it arrived.",
    )
