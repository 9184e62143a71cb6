"""Automation conditions shared by the asset definitions."""

import dagster as dg

# Lake and warehouse follow their upstream for every month, not only the newest one (a
# backfill or a republished file updates old months too). `eager()` waits while upstream
# runs are in progress and resets once the asset is updated, so months that
# taxi_monthly_job covers in one run are not run a second time.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager().without(
    dg.AutomationCondition.in_latest_time_window()
)
