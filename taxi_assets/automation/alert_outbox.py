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
alert state (:func:`state`). A copy of ``undelivered`` is re-marked ``inherited`` (the
run's own, with ``taxi/alert_run`` naming it) by the first read of the outbox that meets
it (:func:`undelivered`), at most ``REMARKS_PER_READ`` per read (fewer for the failure
sensor's, ``alerts.FAILURE_SENSOR_REMARKS``): the UI's filter ``taxi/alert=undelivered``
then lists only the alerts that wait, and the read stays bounded.

Tags are written with ``DagsterInstance.add_run_tags``, not Dagster's public API (Dagster's
own run-retry daemon tags failed runs the same way); this module is the one place that
calls it, and ``taxi_assets_tests/test_alerts.py`` pins it on a real instance.
"""

from dataclasses import dataclass

import dagster as dg

from taxi_assets.instance_reads import run_records, runs

ALERT_TAG = "taxi/alert"
ALERT_ERROR_TAG = "taxi/alert_error"
ALERT_RUN_TAG = "taxi/alert_run"  # the run whose alert the two tags above describe
UNDELIVERED = "undelivered"
DELIVERED = "delivered"
ABANDONED = "abandoned"
# The run carried a copy of another run's ``undelivered`` (a retry, a re-execution): it
# has no alert waiting. Its own alert, should it fail, is the failure sensor's to post.
INHERITED = "inherited"


def mark(instance: dg.DagsterInstance, run_id: str, state: str, error: str | None = None) -> None:
    """Record the alert's state on its run (and, when given, why the last post failed;
    an empty error clears the one the run carries)."""
    tags = {ALERT_TAG: state, ALERT_RUN_TAG: run_id}
    if error is not None:
        tags[ALERT_ERROR_TAG] = error
    instance.add_run_tags(run_id, tags)


def state(run: dg.DagsterRun) -> str | None:
    """The state of the run's own alert; None when the run has none yet, or when its tags
    were copied from the run it re-executes (or were so, and re-marked ``inherited``).
    Tags written before ``taxi/alert_run`` existed count as the run's own (as they did
    then: none is dropped)."""
    if run.tags.get(ALERT_RUN_TAG, run.run_id) != run.run_id:
        return None
    found = run.tags.get(ALERT_TAG)
    return None if found == INHERITED else found


def waits(run: dg.DagsterRun) -> bool:
    """The run's own alert is still undelivered. A run that did not fail has no alert: a
    ``taxi/alert=undelivered`` it carries, even without ``taxi/alert_run``, is a copy (a
    retry that succeeded, or one still running)."""
    return run.status == dg.DagsterRunStatus.FAILURE and state(run) == UNDELIVERED


# Copies a read re-marks at most. Each re-mark is a read and a write of the run storage,
# and both alert sensors read the outbox inside a sensor tick, which Dagster ends after
# 60 s: 200 took 2.2-2.4 s on on-disk SQLite (about 12 ms a copy) and 4.7 s on
# PostgreSQL (the production storage, embedded on a test machine), so a backlog of 5,000
# copies left by older versions (each a retry of a run whose alert waited) would have
# taken a minute or more in one tick. The rest are re-marked by the next reads: 200 a
# tick, a minute apart for the redelivery sensor. The failure sensor, which reads once
# for each failed run it sees, passes a smaller bound (``alerts.FAILURE_SENSOR_REMARKS``).
REMARKS_PER_READ = 200


class OutboxError(Exception):
    """The outbox could not re-mark a copied state (the write did not take)."""


@dataclass(frozen=True)
class OutboxRead:
    """What a read of the outbox found: ``records``, the failed runs whose alert waits;
    ``copies_left``, whether it stopped at its bound of re-marked copies, so that more
    copies, and alerts behind them, may remain for the next read."""

    records: list[dg.RunRecord]
    copies_left: bool


def undelivered(
    instance: dg.DagsterInstance, limit: int, remarks_per_read: int = REMARKS_PER_READ
) -> list[dg.RunRecord]:
    """Up to ``limit`` failed runs whose own alert is still undelivered, least recently
    tried first (:func:`read`)."""
    return read(instance, limit, remarks_per_read).records


def read(
    instance: dg.DagsterInstance, limit: int, remarks_per_read: int = REMARKS_PER_READ
) -> OutboxRead:
    """Up to ``limit`` failed runs whose own alert is still undelivered, least recently
    tried first: a failed attempt re-tags its run, which moves it behind the others (one
    alert the webhook keeps refusing does not hold back the rest).

    Runs tagged ``undelivered`` by copy (Dagster's retries and re-executions) are re-marked
    ``inherited`` here, when a read first meets them, whatever their status, and the read
    is made again: re-marked, they no longer match it, so each query reads at most
    ``limit`` runs. A read re-marks at most ``remarks_per_read`` copies
    (``REMARKS_PER_READ``), so a tick does bounded work however many copies there are;
    it then returns the alerts that wait among the runs it read, and says copies may be
    left (``copies_left``). Copies never hide an alert that waits for good: each read
    re-marks copies in the outbox's order, so an alert behind more copies than the bound
    is found by a later read (a later tick), once those before it are re-marked (the
    failure sensor may meanwhile post a new alert at once, ahead of it). A copy is
    read and re-marked once in all: the queries of a read are one, plus one per page that
    held a copy (a retry of a run whose alert waits makes one copy; copies left by the
    versions before this one are drained by the first reads, ``remarks_per_read`` a read).
    Before, the read had no limit and dropped the copies in Python, as a failed retry's
    copy that the failure sensor never overwrote (it was off), or a successful retry's,
    kept its place at the front of this order (and in the UI's filter) for good."""
    if remarks_per_read < 1:
        raise ValueError(f"remarks_per_read must be at least 1, not {remarks_per_read}")
    remarked: set[str] = set()
    while True:
        records = run_records(
            instance,
            dg.RunsFilter(tags={ALERT_TAG: UNDELIVERED}),
            limit=limit,
            order_by="update_timestamp",
            ascending=True,
        )
        copies = [r.dagster_run for r in records if not waits(r.dagster_run)]
        if not copies:
            return OutboxRead(records, copies_left=False)
        budget = remarks_per_read - len(remarked)
        for run in copies[:budget]:
            if run.run_id in remarked:
                raise OutboxError(
                    f"run {run.run_id} is still tagged {ALERT_TAG}={UNDELIVERED} after it was "
                    f"re-marked {INHERITED} (its tags were copied from run "
                    f"{run.tags.get(ALERT_RUN_TAG, '?')}): the instance did not store the tag"
                )
            _disown(instance, run.run_id)
            remarked.add(run.run_id)
        waiting = [r for r in records if waits(r.dagster_run)]
        if len(records) < limit and len(copies) <= budget:
            return OutboxRead(waiting, copies_left=False)  # no other run matched
        if len(remarked) >= remarks_per_read:
            return OutboxRead(waiting, copies_left=True)


def _disown(instance: dg.DagsterInstance, run_id: str) -> None:
    """Re-mark the copied ``undelivered`` of run ``run_id`` as ``inherited``, clearing the
    copied error. Read again first: the failure sensor may have just tagged the run's own
    alert (it failed meanwhile), which must not be overwritten. Dagster has no
    compare-and-set for run tags; what remains is the time between this read and the
    write, as between any two writers of a run's tags."""
    found = runs(instance, dg.RunsFilter(run_ids=[run_id]), limit=1)
    run = found[0] if found else None
    if run is not None and run.tags.get(ALERT_TAG) == UNDELIVERED and not waits(run):
        mark(instance, run_id, INHERITED, error="")
