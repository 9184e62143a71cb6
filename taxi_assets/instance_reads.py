"""Everything the project reads back from the Dagster instance, in one module.

The sensors, the checks and the assets read what earlier runs recorded (a
materialization's metadata, which months are loaded, which runs exist) only through the
functions here, which use Dagster's public instance API (``fetch_materializations``,
``get_status_by_partition``, ``get_run_records``).

Three reads have no public call in Dagster 1.13, and each is made in one place only:
:func:`run_event_records` calls the instance's non-public ``get_records_for_run`` (the
events of one run: its asset check evaluations, the assets and checks it planned, which
the failure alerts and the new-month sensor need), :func:`materialized_partition_keys` calls ``get_materialized_partitions``
(every partition ever materialized, in one query, which the new-month sensor needs every
tick), and :func:`check_outcomes_of` calls the event log storage's
``get_asset_check_execution_history`` (the checks of one materialization, whichever run
executed them, which the new-month sensor needs). :func:`backfill_pending` reads the
unfinished asset backfills' target, materialized and failed subsets
(``BulkActionStatus``, ``asset_backfill_data``: a backfill's months before the backfill
daemon has launched their runs). ``taxi_assets_tests/test_instance_reads.py``
pins what they return, so a Dagster upgrade that changes them fails that test rather than
the sensors in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
)


def latest_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str | None
) -> dict[str, object]:
    """Metadata values of the latest materialization of ``asset_key`` (for ``partition_key``);
    empty when there is none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key] if partition_key else None,
        ),
        limit=1,
    ).records
    return metadata_values(records[0]) if records else {}


def metadata_values(record: dg.EventLogRecord) -> dict[str, object]:
    """Metadata values of the materialization ``record``; empty when it is none."""
    materialization = record.asset_materialization
    if materialization is None:
        return {}
    return {key: value.value for key, value in materialization.metadata.items()}


def latest_materialization(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition_key: str,
    before_storage_id: int | None = None,
) -> dg.EventLogRecord | None:
    """The latest materialization of ``asset_key`` for ``partition_key`` (its ``run_id``,
    and its ``storage_id``, which orders the events of every asset); with
    ``before_storage_id``, the latest one recorded before that event."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key],
            before_storage_id=before_storage_id,
        ),
        limit=1,
    ).records
    return records[0] if records else None


# Check executions read per query: a month's checks run once per run of the month (and
# per "Execute checks"), so a month's whole history is a page or two.
CHECK_HISTORY_PAGE = 20


@dataclass(frozen=True)
class CheckOutcome:
    """How the latest execution of a check that looked at one materialization ended."""

    check_name: str
    run_id: str
    # None: it ended without an evaluation (the check raised, or its run was ended first).
    evaluation: dg.AssetCheckEvaluation | None


def check_outcomes_of(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    partition_key: str,
    materialization: dg.EventLogRecord,
) -> list[CheckOutcome]:
    """The latest execution of each check of ``check_keys`` (checks of one asset) that
    looked at ``materialization`` (of ``partition_key``), whichever run made it: the
    materialization's own run, or a later "Execute checks". A check that never looked at
    it has none here.

    An execution that ended without an evaluation (the check raised; Dagster resolves it
    as EXECUTION_FAILED) names no target: it counts for ``materialization`` when it was
    planned by the materialization's own run, or by a run that materialized nothing of the
    asset ("Execute checks") and was planned after ``materialization`` and before the
    month's next materialization. A run that was to materialize the asset again and ended
    before its check ran (its own step failed) is not about this materialization.

    NOT Dagster's public API (``instance.event_log_storage.get_asset_check_execution_history``):
    the instance has no public call for partitioned check executions in 1.13. Kept here
    only; pinned by test_instance_reads.py.
    """
    if not check_keys:
        return []
    asset_key = check_keys[0].asset_key
    after = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key],
            after_storage_id=materialization.storage_id,
        ),
        limit=1,
        ascending=True,
    ).records
    window = (materialization.storage_id, after[0].storage_id if after else None)
    found = []
    for key in check_keys:
        outcome = _latest_outcome_of(instance, key, partition_key, materialization, window)
        if outcome is not None:
            found.append(outcome)
    return found


def _latest_outcome_of(
    instance: dg.DagsterInstance,
    key: dg.AssetCheckKey,
    partition_key: str,
    materialization: dg.EventLogRecord,
    window: tuple[int, int | None],
) -> CheckOutcome | None:
    # Newest first, to the end of the month's history if need be: no stop at the first
    # execution about an older materialization, as two overlapping runs of the month may
    # record their evaluations in the other order than they looked their targets up.
    page = CHECK_HISTORY_PAGE
    cursor: int | None = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=page, cursor=cursor, partition_filter=PartitionKeyFilter(key=partition_key)
        )
        for record in records:
            if record.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES:
                evaluation = record.evaluation
                target = evaluation.target_materialization_data if evaluation else None
                if target is not None and target.storage_id == materialization.storage_id:
                    return CheckOutcome(key.name, record.run_id, evaluation)
            elif _ended_without_evaluation_of(instance, record, materialization, window):
                return CheckOutcome(key.name, record.run_id, None)
        if len(records) < page:
            return None
        cursor = records[-1].id


def _ended_without_evaluation_of(
    instance: dg.DagsterInstance,
    record: AssetCheckExecutionRecord,
    materialization: dg.EventLogRecord,
    window: tuple[int, int | None],
) -> bool:
    """``record`` (PLANNED: no evaluation) is an execution about ``materialization`` that
    ended without one: its run failed (Dagster's EXECUTION_FAILED, as
    ``AssetCheckExecutionRecord.resolve_status`` resolves it; a run that succeeded or was
    canceled without running the check skipped it). ``window``: the storage ids of
    ``materialization`` and of the month's next one (None: none yet)."""
    run = instance.get_run_by_id(record.run_id)
    if run is None or run.status != dg.DagsterRunStatus.FAILURE:
        return False
    if record.run_id == materialization.run_id:
        return True
    if record.key.asset_key in run_planned_assets(instance, record.run_id):
        return False
    begins, ends = window
    planned = [
        found.storage_id
        for found in run_event_records(
            instance, record.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        )
        if _planned_check(found) == record.key
    ]
    return any(
        begins < storage_id and (ends is None or storage_id < ends) for storage_id in planned
    )


def _planned_check(record: dg.EventLogRecord) -> dg.AssetCheckKey | None:
    event = record.event_log_entry.dagster_event
    data = event.event_specific_data if event else None
    return data.asset_check_key if isinstance(data, AssetCheckEvaluationPlanned) else None


def materialized_partitions(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> list[str]:
    """Partitions of ``asset_key`` that Dagster shows as materialized, in key order.

    Dagster's partition status: a partition whose latest attempt is still running, or
    failed after an earlier success, shows as in progress or failed, not as materialized.
    """
    keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    status = instance.get_status_by_partition(asset_key, keys, partitions_def) or {}
    return [key for key in keys if status.get(key) == dg.AssetPartitionStatus.MATERIALIZED]


def newest_loaded_partition(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> str | None:
    """The newest partition of ``asset_key`` with a materialization, even one whose latest
    attempt failed or is still running afterwards (Dagster's status then shows it failed
    or in progress, not materialized, though what the earlier run stored is still there).

    One event-log query, whatever the number of failed months: the new-month sensor calls
    this every tick for every service. Reading the status and then each failed or running
    month's latest materialization cost one more query per such month.
    """
    stored = materialized_partition_keys(instance, asset_key)
    keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    return next((key for key in reversed(keys) if key in stored), None)


def materialized_partition_keys(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> set[str]:
    """Every partition of ``asset_key`` with a materialization since the asset's last wipe,
    whatever happened to it afterwards (a later failed or running attempt keeps it here).

    NOT Dagster's public API (``DagsterInstance.get_materialized_partitions``, one grouped
    query; Dagster's own partition status cache is built from it). The public calls need
    one query per partition for this. Kept here only; pinned by test_instance_reads.py.
    """
    return instance.get_materialized_partitions(asset_key)


def runs(
    instance: dg.DagsterInstance, filters: dg.RunsFilter | None = None, limit: int | None = None
) -> list[dg.DagsterRun]:
    """Runs matching ``filters``, newest first."""
    return [record.dagster_run for record in instance.get_run_records(filters, limit=limit)]


def run_records(
    instance: dg.DagsterInstance,
    filters: dg.RunsFilter,
    limit: int | None,
    order_by: str,
    ascending: bool,
) -> list[dg.RunRecord]:
    """Run records matching ``filters`` (with their timestamps), in the given order."""
    return list(
        instance.get_run_records(filters, limit=limit, order_by=order_by, ascending=ascending)
    )


def run_events(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType
) -> list[dg.EventLogEntry]:
    """The run's events of one type, oldest first.

    NOT Dagster's public API: see :func:`run_event_records`.
    """
    return [record.event_log_entry for record in run_event_records(instance, run_id, event_type)]


def run_event_records(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType
) -> Sequence[dg.EventLogRecord]:
    """The run's events of one type with their storage ids, oldest first.

    NOT Dagster's public API (``DagsterInstance.get_records_for_run``): there is no public
    call for a run's events in 1.13. Kept here only; pinned by test_instance_reads.py.
    """
    return instance.get_records_for_run(run_id=run_id, of_type=event_type).records


def run_check_evaluations(
    instance: dg.DagsterInstance, run_id: str
) -> Sequence[dg.AssetCheckEvaluation]:
    """The asset check evaluations a run recorded (passed or not)."""
    found = []
    for entry in run_events(instance, run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            found.append(evaluation)
    return found


def run_planned_assets(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    """The assets a run planned to materialize."""
    events = run_events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    return {
        entry.dagster_event.asset_key
        for entry in events
        if entry.dagster_event is not None and entry.dagster_event.asset_key is not None
    }


def run_worker_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The process id that executed the run's steps, and when it said so (a Unix time):
    from the in-process executor's "Executing steps in process (pid: N)" engine event.
    None when the run recorded none (it never got that far, or another executor ran it)."""
    for entry in run_events(instance, run_id, dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.event_specific_data if event else None
        pid = getattr(data, "metadata", {}).get("pid")
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), entry.timestamp
    return None


def backfill_pending(instance: dg.DagsterInstance) -> frozenset[tuple[dg.AssetKey, str]]:
    """(asset, partition) of every unfinished asset backfill not materialized or failed
    yet: what it will still run. A backfill launches its runs at the backfill daemon's
    next pass (every 30 s), so until then no run of them is queued."""
    pending: set[tuple[dg.AssetKey, str]] = set()
    for backfill in instance.get_backfills(status=BulkActionStatus.REQUESTED):
        data = backfill.asset_backfill_data
        if data is None:
            continue
        left = data.target_subset - data.materialized_subset - data.failed_and_downstream_subset
        pending.update(
            (item.asset_key, item.partition_key)
            for item in left.iterate_asset_partitions()
            if item.partition_key is not None
        )
    return frozenset(pending)
