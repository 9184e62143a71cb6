"""Everything the project reads back from the Dagster instance, in one module.

The sensors, the checks and the assets read what earlier runs recorded (a
materialization's metadata, which months are loaded, which runs exist) only through the
functions here, which use Dagster's public instance API (``fetch_materializations``,
``get_status_by_partition``, ``get_run_records``).

Three reads have no public call in Dagster 1.13, and each is made in one place only:
:func:`run_events` calls the instance's non-public ``get_records_for_run`` (the events of
one run: its asset check evaluations, the assets it planned, which the failure alerts
need), :func:`materialized_partition_keys` calls ``get_materialized_partitions``
(every partition ever materialized, in one query, which the new-month sensor needs every
tick), and :func:`check_evaluations_of` calls the event log storage's
``get_asset_check_execution_history`` (the checks of one materialization, whichever run
evaluated them, which the new-month sensor needs). ``taxi_assets_tests/test_instance_reads.py``
pins what they return, so a Dagster upgrade that changes them fails that test rather than
the sensors in production.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
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


def check_evaluations_of(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    partition_key: str,
    materialization_storage_id: int,
) -> list[dg.AssetCheckEvaluation]:
    """The latest evaluation of each check of ``check_keys`` (checks of one asset) that
    looked at the materialization ``materialization_storage_id`` of ``partition_key``,
    passed or not, whichever run made it (the materialization's own run, or a later
    "Execute checks"). A check that never looked at it, or raised, has none here.

    NOT Dagster's public API (``instance.event_log_storage.get_asset_check_execution_history``):
    the instance has no public call for partitioned check evaluations in 1.13. Kept here
    only; pinned by test_instance_reads.py.
    """
    found = []
    for key in check_keys:
        evaluation = _latest_evaluation_of(instance, key, partition_key, materialization_storage_id)
        if evaluation is not None:
            found.append(evaluation)
    return found


def _latest_evaluation_of(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, partition_key: str, storage_id: int
) -> dg.AssetCheckEvaluation | None:
    # Newest first, to the end of the month's history if need be: no stop at the first
    # evaluation of an older materialization, as two overlapping runs of the month may
    # record their evaluations in the other order than they looked their targets up.
    page = CHECK_HISTORY_PAGE
    cursor: int | None = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key,
            limit=page,
            cursor=cursor,
            status=set(COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES),
            partition_filter=PartitionKeyFilter(key=partition_key),
        )
        for record in records:
            evaluation = record.evaluation
            target = evaluation.target_materialization_data if evaluation else None
            if evaluation is None or target is None:
                continue
            if target.storage_id == storage_id:
                return evaluation
        if len(records) < page:
            return None
        cursor = records[-1].id


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

    NOT Dagster's public API (``DagsterInstance.get_records_for_run``): there is no public
    call for a run's events in 1.13. Kept here only; pinned by test_instance_reads.py.
    """
    records = instance.get_records_for_run(run_id=run_id, of_type=event_type).records
    return [record.event_log_entry for record in records]


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
