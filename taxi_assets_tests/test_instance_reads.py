"""What the project reads back from the Dagster instance (taxi_assets/instance_reads.py).

:func:`run_events` calls the instance's non-public ``get_records_for_run``: these tests pin
what it returns on a real run (a planned asset, a passed and a failed check), so that a
Dagster upgrade changing it fails here, not in the failure alerts. Likewise
:func:`materialized_partition_keys` (``get_materialized_partitions``), which the new-month
sensor reads every tick, and :func:`check_outcomes_of` (the event log storage's
``get_asset_check_execution_history``), which it reads for a month whose run failed.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy as sa

from taxi_assets import instance_reads
from taxi_assets.instance_reads import (
    check_outcomes_of,
    latest_materialization,
    latest_metadata,
    materialized_partition_keys,
    materialized_partitions,
    newest_loaded_partition,
    run_check_evaluations,
    run_events,
    run_planned_assets,
    runs,
)

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2021-01", fmt="%Y-%m", end_offset=0)


@dg.asset(partitions_def=MONTHS)
def trips(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    if context.partition_key == "2021-03":
        raise ValueError("this month fails")
    return dg.MaterializeResult(metadata={"month": context.partition_key})


@dg.asset_check(asset=trips, blocking=True, partitions_def=MONTHS)
def never_empty() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=trips, partitions_def=MONTHS, description="fails on purpose")
def always_warns() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.WARN, description="too many zeros"
    )


def materialize(instance: dg.DagsterInstance, month: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [trips, never_empty, always_warns],
        partition_key=month,
        instance=instance,
        raise_on_error=False,
        tags={"taxi/test": month},
    )


def test_a_runs_check_evaluations_and_planned_assets(instance: dg.DagsterInstance) -> None:
    result = materialize(instance, "2021-01")
    evaluations = run_check_evaluations(instance, result.run_id)
    assert sorted((e.check_name, e.passed) for e in evaluations) == [
        ("always_warns", False),
        ("never_empty", True),
    ]
    (failed,) = [e for e in evaluations if not e.passed]
    assert failed.asset_key == dg.AssetKey("trips")
    assert failed.severity == dg.AssetCheckSeverity.WARN and not failed.blocking
    assert failed.description == "too many zeros"
    assert run_planned_assets(instance, result.run_id) == {dg.AssetKey("trips")}
    planned = run_events(instance, result.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert [e.dagster_event.partition for e in planned if e.dagster_event] == ["2021-01"]
    # Another type, another run: nothing of this one.
    assert run_events(instance, result.run_id, dg.DagsterEventType.RUN_FAILURE) == []
    other = materialize(instance, "2021-02")
    assert {e.check_name for e in run_check_evaluations(instance, other.run_id)} == {
        "always_warns",
        "never_empty",
    }
    assert run_check_evaluations(instance, "no-such-run") == []


def test_materialized_partitions_runs_and_latest_metadata(instance: dg.DagsterInstance) -> None:
    assert materialized_partitions(instance, dg.AssetKey("trips"), MONTHS) == []
    for month in ("2021-02", "2021-01", "2021-03"):
        materialize(instance, month)
    # 2021-03 failed: not materialized.
    assert materialized_partitions(instance, dg.AssetKey("trips"), MONTHS) == [
        "2021-01",
        "2021-02",
    ]
    assert latest_metadata(instance, dg.AssetKey("trips"), "2021-02") == {"month": "2021-02"}
    assert latest_metadata(instance, dg.AssetKey("trips"), "2021-03") == {}
    newest_first = runs(instance)
    assert [r.tags["taxi/test"] for r in newest_first] == ["2021-03", "2021-01", "2021-02"]
    failed = runs(instance, dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert [r.tags["taxi/test"] for r in failed] == ["2021-03"]
    assert len(runs(instance, limit=1)) == 1


@dg.asset(partitions_def=MONTHS)
def loads(context: dg.AssetExecutionContext) -> None:
    if context.run.tags.get("taxi/test") == "fail":
        raise ValueError("this attempt fails")


def attempt(instance: dg.DagsterInstance, month: str, fails: bool) -> None:
    dg.materialize(
        [loads],
        partition_key=month,
        instance=instance,
        raise_on_error=False,
        tags={"taxi/test": "fail" if fails else "ok"},
    )


@contextmanager
def counted_event_log_queries(instance: dg.DagsterInstance) -> Iterator[list[str]]:
    """The SQL statements the instance's event log runs meanwhile (the in-memory event log
    is Dagster's SQL event log on SQLite; PostgreSQL's runs the same queries)."""
    engine = instance.event_log_storage._engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_newest_loaded_partition_counts_a_month_whose_later_attempt_failed(
    instance: dg.DagsterInstance,
) -> None:
    key = dg.AssetKey("loads")
    assert newest_loaded_partition(instance, key, MONTHS) is None
    attempt(instance, "2021-03", fails=True)
    assert newest_loaded_partition(instance, key, MONTHS) is None
    attempt(instance, "2021-01", fails=False)
    attempt(instance, "2021-02", fails=False)
    attempt(instance, "2021-02", fails=True)
    # 2021-02 shows as failed, but what its first run stored is still there.
    assert materialized_partitions(instance, key, MONTHS) == ["2021-01"]
    assert materialized_partition_keys(instance, key) == {"2021-01", "2021-02"}
    assert newest_loaded_partition(instance, key, MONTHS) == "2021-02"
    attempt(instance, "2021-03", fails=False)
    assert newest_loaded_partition(instance, key, MONTHS) == "2021-03"
    instance.wipe_assets([key])
    assert materialized_partition_keys(instance, key) == set()
    assert newest_loaded_partition(instance, key, MONTHS) is None


def test_newest_loaded_partition_costs_the_same_however_many_months_failed(
    instance: dg.DagsterInstance,
) -> None:
    """The new-month sensor asks this every tick for every service: it read each failed
    month newer than the newest loaded one, one query per month."""
    key = dg.AssetKey("loads")
    attempt(instance, "2021-01", fails=False)
    attempt(instance, "2021-02", fails=True)
    with counted_event_log_queries(instance) as one_failed:
        assert newest_loaded_partition(instance, key, MONTHS) == "2021-01"
    for month in ("2021-03", "2021-04", "2021-05", "2021-06", "2021-07"):
        attempt(instance, month, fails=True)
    with counted_event_log_queries(instance) as six_failed:
        assert newest_loaded_partition(instance, key, MONTHS) == "2021-01"
    counts = len(one_failed), len(six_failed)
    assert counts[0] > 0 and counts[1] == counts[0], f"event log statements: {counts}"


@dg.asset(partitions_def=MONTHS)
def fares(context: dg.AssetExecutionContext) -> None:
    if context.run.tags.get("taxi/fares") == "raise":
        raise RuntimeError("the fares step failed")


@dg.asset_check(asset=fares, blocking=True, partitions_def=MONTHS)
def as_told(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    told = context.run.tags.get("taxi/check")
    if told == "raise":
        raise RuntimeError("the check could not run")
    return dg.AssetCheckResult(passed=told != "fail")


FARES_CHECK = dg.AssetCheckKey(dg.AssetKey("fares"), "as_told")


def materialize_fares(
    instance: dg.DagsterInstance, month: str, check: str | None, fares_step: str = "ok"
) -> dg.ExecuteInProcessResult:
    """A materialization of ``fares`` with its check ("pass", "fail", "raise") or without
    (None); ``fares_step`` "raise": the asset's own step fails."""
    return dg.materialize(
        [fares, as_told] if check else [fares],
        partition_key=month,
        instance=instance,
        raise_on_error=False,
        tags={"taxi/check": check or "none", "taxi/fares": fares_step},
    )


def check_fares_again(instance: dg.DagsterInstance, month: str, check: str) -> None:
    """The check alone, as "Execute checks" in the UI: it looks at the latest materialization."""
    definitions = dg.Definitions(
        assets=[fares],
        asset_checks=[as_told],
        jobs=[dg.define_asset_job("check", selection=dg.AssetSelection.checks(as_told))],
    )
    definitions.resolve_job_def("check").execute_in_process(
        tags={"dagster/partition": month, "taxi/check": check},
        instance=instance,
        raise_on_error=False,
    )


def test_check_outcomes_of_a_materialization_whichever_run_made_them(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instance_reads, "CHECK_HISTORY_PAGE", 2)  # several pages below

    def materialization(month: str) -> dg.EventLogRecord:
        record = latest_materialization(instance, dg.AssetKey("fares"), month)
        assert record is not None
        return record

    def passed(month: str, record: dg.EventLogRecord) -> list[bool | None]:
        """Each outcome: passed, failed, or None (ended without an evaluation)."""
        found = check_outcomes_of(instance, [FARES_CHECK], month, record)
        evaluations = [o.evaluation for o in found if o.evaluation is not None]
        assert all(e.blocking and e.partition == month for e in evaluations)
        return [o.evaluation.passed if o.evaluation else None for o in found]

    materialize_fares(instance, "2021-01", "pass")
    first = materialization("2021-01")
    assert passed("2021-01", first) == [True]
    check_fares_again(instance, "2021-01", "fail")  # the latest evaluation of it counts
    assert passed("2021-01", first) == [False]
    check_fares_again(instance, "2021-01", "pass")
    assert passed("2021-01", first) == [True]
    # "Execute checks" that raised: its latest execution has no evaluation.
    check_fares_again(instance, "2021-01", "raise")
    assert passed("2021-01", first) == [None]
    check_fares_again(instance, "2021-01", "pass")
    assert passed("2021-01", first) == [True]

    # A blocking check that fails in the run of the materialization fails the run, and
    # Dagster keeps the materialization.
    assert not materialize_fares(instance, "2021-01", "fail").success
    second = materialization("2021-01")
    assert second.storage_id > first.storage_id
    assert passed("2021-01", second) == [False]
    for _ in range(3):  # three pages of the newer one's evaluations before the first's
        check_fares_again(instance, "2021-01", "fail")
    assert passed("2021-01", first) == [True]

    # A check that raised in the run of the materialization: no evaluation, and the run
    # failed; later "Execute checks" of an older materialization are not about it.
    assert not materialize_fares(instance, "2021-01", "raise").success
    third = materialization("2021-01")
    assert third.storage_id > second.storage_id
    assert passed("2021-01", third) == [None]
    assert passed("2021-01", second) == [False] and passed("2021-01", first) == [True]
    # A run that was to materialize the month again and failed in the asset's own step
    # (its check planned, never run) is not about the materialization before it.
    assert not materialize_fares(instance, "2021-01", "pass", fares_step="raise").success
    assert materialization("2021-01").storage_id == third.storage_id
    assert passed("2021-01", third) == [None]
    check_fares_again(instance, "2021-01", "pass")
    assert passed("2021-01", third) == [True]

    # Another month's evaluations are not this month's; a materialization without its
    # check has none.
    materialize_fares(instance, "2021-02", "raise")
    assert passed("2021-01", third) == [True] and passed("2021-01", first) == [True]
    assert materialize_fares(instance, "2021-01", None).success
    assert passed("2021-01", materialization("2021-01")) == []
    assert check_outcomes_of(instance, [], "2021-01", first) == []


def test_backfill_pending_is_what_an_unfinished_backfill_will_still_run(
    instance: dg.DagsterInstance,
) -> None:
    import time

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from taxi_assets import defs

    keys = [dg.AssetKey([layer, "green_tripdata"]) for layer in ("raw", "lake")]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="pinned",
        asset_graph=defs.resolve_asset_graph(),
        partition_names=["2021-01", "2021-02"],
        asset_selection=keys,
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    assert instance_reads.backfill_pending(instance) == {
        (key, month) for key in keys for month in ("2021-01", "2021-02")
    }
    instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
    assert instance_reads.backfill_pending(instance) == frozenset()
