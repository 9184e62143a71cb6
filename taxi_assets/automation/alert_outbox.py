"""Failure alerts the webhook did not accept, kept on their failed runs until delivered.

Dagster's run-failure sensor moves its cursor past a run even when the sensor function
raises (Dagster 1.13, ``_handle_run_reactions``: "we still want to update the cursor, even
though the tick failed"), so the next tick never sees that run again: an alert the webhook
refused was lost. Its state is kept instead as a tag of the failed run (``taxi/alert``),
shown on the run's page and filterable in the UI's run list: ``undelivered`` until the
redelivery sensor (``automation/alerts.py``) posts it, then ``delivered``, or
``abandoned`` once it stayed undelivered for too long.

Tags are written with ``DagsterInstance.add_run_tags``, not Dagster's public API (Dagster's
own run-retry daemon tags failed runs the same way); this module is the one place that
calls it, and ``taxi_assets_tests/test_alerts.py`` pins it on a real instance.
"""

import dagster as dg

from taxi_assets.instance_reads import run_records

ALERT_TAG = "taxi/alert"
ALERT_ERROR_TAG = "taxi/alert_error"
UNDELIVERED = "undelivered"
DELIVERED = "delivered"
ABANDONED = "abandoned"


def mark(instance: dg.DagsterInstance, run_id: str, state: str, error: str | None = None) -> None:
    """Record the alert's state on its run (and, when given, why the last post failed)."""
    tags = {ALERT_TAG: state}
    if error is not None:
        tags[ALERT_ERROR_TAG] = error
    instance.add_run_tags(run_id, tags)


def undelivered(instance: dg.DagsterInstance, limit: int) -> list[dg.RunRecord]:
    """Failed runs whose alert is still undelivered, least recently tried first: a failed
    attempt re-tags its run, which moves it behind the others (one alert the webhook keeps
    refusing does not hold back the rest)."""
    return run_records(
        instance,
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags={ALERT_TAG: UNDELIVERED}),
        limit=limit,
        order_by="update_timestamp",
        ascending=True,
    )
