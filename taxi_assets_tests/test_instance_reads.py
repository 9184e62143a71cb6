"""What the project reads back from the Dagster instance (taxi_assets/instance_reads.py).

:func:`run_events` calls the instance's non-public ``get_records_for_run``: these tests pin
what it returns on a real run (a planned asset, a passed and a failed check), so that a
Dagster upgrade changing it fails here, not in the failure alerts.
"""

import dagster as dg

from taxi_assets.instance_reads import (
    latest_metadata,
    materialized_partitions,
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
