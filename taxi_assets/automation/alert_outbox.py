"""Failure alerts the webhook did not accept, kept on their failed runs until delivered.

Dagster's run-failure sensor moves its cursor past a run even when the sensor function
raises (Dagster 1.13, ``_handle_run_reactions``: "we still want to update the cursor, even
though the tick failed"), so the next tick never sees that run again: an alert the webhook
refused was lost. Its state is kept instead as a tag of the failed run (``taxi/alert``),
shown on the run's page and filterable in the UI's run list: ``undelivered`` until the
redelivery sensor (``automation/alerts.py``) posts it, then ``delivered``, or
``abandoned`` once it stayed undelivered for too long.

Dagster's run-retry daemon and the UI's re-execution give the new run its parent's tags
(``create_reexecuted_run(use_parent_run_tags=True)``), these included: a retry of a run
whose alert waited started out ``undelivered``, and the redelivery sensor posted the
retry's failure a second time beside the failure sensor. So each state names the run it
was written for (``taxi/alert_run``), and tags naming another run are not this run's
alert state (:func:`state`).

Tags are written with ``DagsterInstance.add_run_tags``, not Dagster's public API (Dagster's
own run-retry daemon tags failed runs the same way); this module is the one place that
calls it, and ``taxi_assets_tests/test_alerts.py`` pins it on a real instance.
"""

import dagster as dg

from taxi_assets.instance_reads import run_records

ALERT_TAG = "taxi/alert"
ALERT_ERROR_TAG = "taxi/alert_error"
ALERT_RUN_TAG = "taxi/alert_run"  # the run whose alert the two tags above describe
UNDELIVERED = "undelivered"
DELIVERED = "delivered"
ABANDONED = "abandoned"


def mark(instance: dg.DagsterInstance, run_id: str, state: str, error: str | None = None) -> None:
    """Record the alert's state on its run (and, when given, why the last post failed;
    an empty error clears the one the run carries)."""
    tags = {ALERT_TAG: state, ALERT_RUN_TAG: run_id}
    if error is not None:
        tags[ALERT_ERROR_TAG] = error
    instance.add_run_tags(run_id, tags)


def state(run: dg.DagsterRun) -> str | None:
    """The state of the run's own alert; None when the run has none yet, or when its tags
    were copied from the run it re-executes. Tags written before ``taxi/alert_run``
    existed count as the run's own (as they did then: none is dropped)."""
    if run.tags.get(ALERT_RUN_TAG, run.run_id) != run.run_id:
        return None
    return run.tags.get(ALERT_TAG)


def undelivered(instance: dg.DagsterInstance, limit: int) -> list[dg.RunRecord]:
    """Failed runs whose own alert is still undelivered, least recently tried first: a
    failed attempt re-tags its run, which moves it behind the others (one alert the
    webhook keeps refusing does not hold back the rest). Read without a limit, then
    filtered: a failed retry whose copied ``undelivered`` the failure sensor never
    overwrote (it was off) keeps its place at the front of this order for good, and a
    limit in the query would let such runs hide the real ones."""
    records = run_records(
        instance,
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags={ALERT_TAG: UNDELIVERED}),
        limit=None,
        order_by="update_timestamp",
        ascending=True,
    )
    return [r for r in records if state(r.dagster_run) == UNDELIVERED][:limit]
