"""Asset checks run with each materialization; quality signals are plain functions."""

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets.automation.schedules import build_freshness_job
from taxi_assets.checks import QualityThresholds, freshness_check_keys
from taxi_assets.io_managers.parquet_lake import ParquetLakeIOManager
from taxi_assets.quality import DEFAULT_THRESHOLDS, measure
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets.services import SERVICES
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import ASSETS, pipeline_resources, run


def values(evaluation: dg.AssetCheckEvaluation) -> dict[str, Any]:
    """A check evaluation's metadata as plain values."""
    return {key: entry.value for key, entry in evaluation.metadata.items()}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def test_checks_pass_on_a_good_month_and_report_numbers(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    result = run(
        keys, pipeline_resources(mirror.url, tmp_path / "lake", pg_url), instance, "2021-01"
    )
    checks = evaluations(result)
    assert set(checks) == {
        "lake/yellow_tripdata:rows_match_raw",
        "lake/yellow_tripdata:schema_matches_contract",
        "lake/yellow_tripdata:quality_signals",
        "warehouse/yellow_tripdata:rows_match_lake",
        "warehouse/yellow_tripdata:freshness",
    }
    for name in ("rows_match_raw", "schema_matches_contract"):
        assert checks[f"lake/yellow_tripdata:{name}"].passed, name
    reconciliation = checks["warehouse/yellow_tripdata:rows_match_lake"]
    assert reconciliation.passed
    assert values(reconciliation)["warehouse_rows"] == values(reconciliation)["lake_rows"] > 0
    quality = checks["lake/yellow_tripdata:quality_signals"]
    assert quality.severity == dg.AssetCheckSeverity.WARN
    assert values(quality)["pickup_outside_month"] > 0  # generated months carry some
    assert values(quality)["rows"] == values(reconciliation)["lake_rows"]
    assert values(checks["warehouse/yellow_tripdata:freshness"])["published"] == "no"


def test_reconciliation_fails_when_the_warehouse_lost_rows(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    keys = ["raw/green_tripdata", "lake/green_tripdata", "warehouse/green_tripdata"]
    assert run(keys, resources, instance, "2021-01").success
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "DELETE FROM warehouse.green_tripdata WHERE ctid IN "
            "(SELECT ctid FROM warehouse.green_tripdata LIMIT 7)"
        )
    engine.dispose()
    check = dg.AssetCheckKey(dg.AssetKey(["warehouse", "green_tripdata"]), "rows_match_lake")
    # Run only the check, as "Execute check" in the UI does.
    job = dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(check))
    definitions = dg.Definitions(assets=ASSETS, jobs=[job], resources=resources)
    result = definitions.resolve_job_def("check_only").execute_in_process(
        tags={"dagster/partition": "2021-01"}, instance=instance, raise_on_error=False
    )
    evaluation = evaluations(result)["warehouse/green_tripdata:rows_match_lake"]
    assert not evaluation.passed
    lake_rows = values(evaluation)["lake_rows"]
    assert values(evaluation)["warehouse_rows"] == lake_rows - 7


@pytest.mark.parametrize("hive_format", [None, "%Y/%m"])
def test_the_warehouse_checks_read_the_lake_of_a_new_dagster_instance(
    mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    instance: dg.DagsterInstance,
    hive_format: str | None,
) -> None:
    """A new DAGSTER_HOME over an existing lake (moving to deploy/dagster.yaml, say): the
    warehouse load reads the lake month, and so do its checks, with no record of it,
    where the lake IO manager keeps it (also in a ``hive_format`` of the deployment's)."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    if hive_format is not None:
        resources["lake_io_manager"] = ParquetLakeIOManager(
            lake=resources["lake"], hive_format=hive_format
        )
    assert run(["raw/fhv_tripdata", "lake/fhv_tripdata"], resources, instance, "2021-01").success
    with dg.instance_for_test() as new_instance:
        result = run(["warehouse/fhv_tripdata"], resources, new_instance, "2021-01")
    assert result.success
    checks = evaluations(result)
    reconciliation = checks["warehouse/fhv_tripdata:rows_match_lake"]
    assert reconciliation.passed
    assert values(reconciliation)["warehouse_rows"] == values(reconciliation)["lake_rows"] > 0


def run_check(
    check: dg.AssetCheckKey,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    month: str,
) -> dg.AssetCheckEvaluation:
    """Only ``check`` for ``month``, as "Execute check" in the UI runs it."""
    job = dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(check))
    definitions = dg.Definitions(assets=ASSETS, jobs=[job], resources=resources)
    result = definitions.resolve_job_def("check_only").execute_in_process(
        tags={"dagster/partition": month}, instance=instance, raise_on_error=False
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


ROWS_MATCH_RAW = dg.AssetCheckKey(dg.AssetKey(["lake", "yellow_tripdata"]), "rows_match_raw")


def test_a_lake_file_that_lost_rows_fails_in_any_instance_saying_how_many(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    """The published file's count comes with its raw revision: a new DAGSTER_HOME over the
    lake (no materialization of the raw month) still compares, where it passed as
    "unknown"; the failure says the numbers (the UI and the alerts show it)."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    assert run(["raw/yellow_tripdata", "lake/yellow_tripdata"], resources, instance, "2021-01")
    path = tmp_path / "lake/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
    whole = pq.read_table(path)
    # Kept with its footer's metadata (the source revision), as a lake file of that month.
    pq.write_table(whole.slice(0, whole.num_rows - 5), path)
    for checked_in in ("same instance", "new instance"):
        if checked_in == "same instance":
            evaluation = run_check(ROWS_MATCH_RAW, resources, instance, "2021-01")
        else:
            with dg.instance_for_test() as new_instance:
                evaluation = run_check(ROWS_MATCH_RAW, resources, new_instance, "2021-01")
        assert not evaluation.passed, checked_in
        assert values(evaluation)["raw_rows"] == whole.num_rows, checked_in
        assert evaluation.description == (
            f"the lake has {whole.num_rows - 5:,} rows, the published file {whole.num_rows:,}"
        )
    assert values(evaluation)["raw_rows_from"].startswith("raw revision ")


def test_the_checks_read_the_lake_the_warehouse_step_reads(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    """A lake moved to another root: the warehouse step reads the month there, and so do
    its checks (they read the path the last materialization recorded, gone or stale)."""
    keys = ["raw/green_tripdata", "lake/green_tripdata", "warehouse/green_tripdata"]
    old, new = tmp_path / "lake_a", tmp_path / "lake_b"
    assert run(keys, pipeline_resources(mirror.url, old, pg_url), instance, "2021-01").success
    shutil.copytree(old, new)
    shutil.rmtree(old)
    result = run(
        ["warehouse/green_tripdata"],
        pipeline_resources(mirror.url, new, pg_url),
        instance,
        "2021-01",
    )
    assert result.success
    reconciliation = evaluations(result)["warehouse/green_tripdata:rows_match_lake"]
    assert reconciliation.passed
    assert values(reconciliation)["warehouse_rows"] == values(reconciliation)["lake_rows"] > 0


def test_freshness_fails_once_loading_stops_and_its_latest_result_stands(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    """Green 2021-01 is loaded while 2021-02 is not out (one 404); 2021-02 is published
    and nothing loads it: the freshness job (the daily schedule's) fails on its own. Once
    2021-02 is loaded the check passes, and that is the asset's state: the check is the
    asset's, not a month's (it was one per month, run only by loads: it never failed once
    loading stopped, and 2021-01 kept its failure for good)."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    resources["quality_thresholds"] = QualityThresholds(freshness_months=0)
    keys = ["raw/green_tripdata", "lake/green_tripdata", "warehouse/green_tripdata"]
    mirror.inject("/green/green_tripdata_2021-02.csv.gz", Fault.status(404), methods=("HEAD",))
    loaded = run(keys, resources, instance, "2021-01")
    assert values(evaluations(loaded)["warehouse/green_tripdata:freshness"])["published"] == "no"
    job = build_freshness_job(freshness_check_keys())
    definitions = dg.Definitions(assets=ASSETS, jobs=[job], resources=resources)
    checked = definitions.resolve_job_def(job.name).execute_in_process(
        instance=instance, raise_on_error=False
    )
    results = {e.asset_key.to_user_string(): e for e in checked.get_asset_check_evaluations()}
    assert set(results) == {f"warehouse/{service}_tripdata" for service in SERVICES}
    green = results["warehouse/green_tripdata"]
    assert not green.passed and green.severity == dg.AssetCheckSeverity.WARN
    assert green.description == "2021-02 is published but the newest loaded month is 2021-01"
    assert values(results["warehouse/yellow_tripdata"])["newest_loaded"] == "none"
    assert not results["warehouse/yellow_tripdata"].passed  # nothing loaded is not fresh
    assert results["warehouse/yellow_tripdata"].description == (
        "no month of it is loaded (Dagster's records, the load log)"
    )
    # A new DAGSTER_HOME over the same warehouse: the load log says 2021-01 (it passed,
    # "nothing loaded yet", while loading had stopped).
    with dg.instance_for_test() as new_instance:
        again = definitions.resolve_job_def(job.name).execute_in_process(
            instance=new_instance, raise_on_error=False
        )
    (green,) = [e for e in again.get_asset_check_evaluations() if "green" in e.asset_key.path[1]]
    assert not green.passed
    assert green.description == "2021-02 is published but the newest loaded month is 2021-01"

    assert run(keys, resources, instance, "2021-02").success
    key = dg.AssetCheckKey(dg.AssetKey(["warehouse", "green_tripdata"]), "freshness")
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert latest.status.value == "SUCCEEDED"


def test_quality_signals_count_without_removing() -> None:
    month = (datetime(2021, 1, 1), datetime(2021, 2, 1))
    batch = pa.RecordBatch.from_pydict(
        {
            "pickup_datetime": pa.array(
                [datetime(2020, 12, 31, 23), datetime(2021, 1, 5), datetime(2021, 1, 6), None],
                pa.timestamp("us"),
            ),
            "dropoff_datetime": pa.array(
                [datetime(2021, 1, 1, 0, 10), datetime(2021, 1, 4), datetime(2021, 1, 6, 1), None],
                pa.timestamp("us"),
            ),
            "fare_amount": [10.0, -5.0, 3.0, 2e9],
            "total_amount": [12.0, -6.0, float("inf"), None],
            "vendor_id": pa.array([1, 2, None, None], pa.int32()),
            "trip_distance": [0.0, 1.2, 900.0, None],
            "passenger_count": pa.array([0, 1, 1, None], pa.int32()),
            "pu_location_id": pa.array([1, 265, 266, None], pa.int32()),
            "do_location_id": pa.array([0, 5, 6, None], pa.int32()),
        }
    )
    report = measure([batch], month)
    assert report.rows == 4
    assert report.counts == {
        "pickup_outside_month": 1,
        "dropoff_before_pickup": 1,
        "negative_fare_or_total": 1,
        "null_block": 2,
        "zero_distance": 1,
        "location_out_of_range": 2,
        "passenger_count_zero": 1,
        "absurd_distance": 1,
        "non_finite_number": 1,
        "huge_number": 1,
    }
    assert set(report.exceeded(DEFAULT_THRESHOLDS)) == set(report.counts)


def test_quality_signals_at_their_bounds() -> None:
    """Each signal's bound, hand-counted: a pickup at the month's first instant, a drop-off
    at the pickup, a fare and total of 0, 500 miles, an amount just under 1e9, a pickup at
    the request, a trip_time and driver_pay of 0 count for nothing; 1e9 is huge."""
    month = (datetime(2021, 1, 1), datetime(2021, 2, 1))
    ts = pa.timestamp("us")
    at_start = datetime(2021, 1, 1)
    taxi = pa.RecordBatch.from_pydict(
        {
            "pickup_datetime": pa.array([at_start, at_start], ts),
            "dropoff_datetime": pa.array([at_start, datetime(2021, 1, 1, 0, 5)], ts),
            "fare_amount": [0.0, 999_999_999.99],
            "total_amount": [0.0, 1e9],
            "vendor_id": pa.array([1, 2], pa.int32()),
            "trip_distance": [500.0, 0.01],
            "passenger_count": pa.array([1, 1], pa.int32()),
            "pu_location_id": pa.array([1, 265], pa.int32()),
            "do_location_id": pa.array([265, 1], pa.int32()),
        }
    )
    counts = measure([taxi], month).counts
    assert counts == {**dict.fromkeys(counts, 0), "huge_number": 1}
    fhvhv = pa.RecordBatch.from_pydict(
        {
            "request_datetime": pa.array([at_start], ts),
            "pickup_datetime": pa.array([at_start], ts),
            "dropoff_datetime": pa.array([at_start], ts),
            "pu_location_id": pa.array([1], pa.int32()),
            "do_location_id": pa.array([265], pa.int32()),
            "trip_miles": [500.0],
            "trip_time": pa.array([0], pa.int64()),
            "driver_pay": [0.0],
        }
    )
    counts = measure([fhvhv], month).counts
    assert counts == dict.fromkeys(counts, 0)


def test_the_null_block_is_counted_in_both_its_shapes() -> None:
    """2020's CSV block names no vendor; the Parquet block since names it and has neither
    passenger_count nor ratecode_id (green 2024-01, whose 3,415 the sample test counts).
    One code missing alone is no block row."""
    batch = pa.RecordBatch.from_pydict(
        {
            "vendor_id": pa.array([None, 2, 2, 2, 1], pa.int32()),
            "passenger_count": pa.array([None, None, None, 1, 1], pa.int32()),
            "ratecode_id": pa.array([None, None, 1, None, 1], pa.int32()),
        }
    )
    assert measure([batch], None).counts["null_block"] == 2


def test_quality_signals_count_rows_once_and_see_past_a_null() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "fare_amount": [None, 5.0, 1.0],
            "total_amount": [-7.0, None, 1.0],
            "vendor_id": pa.array([None, None, 1], pa.int32()),
            "vendor_name": [None, "VTS", None],  # yellow 2009-2014: the vendor in text
            "pu_location_id": pa.array([0, 12, 3], pa.int32()),
            "do_location_id": pa.array([999, 3, None], pa.int32()),
            "trip_time": pa.array([None, 60, 60], pa.int64()),
            "driver_pay": [-2.0, 1.0, None],
        }
    )
    counts = measure([batch], None).counts
    assert counts["negative_fare_or_total"] == 1  # a null fare does not hide the total
    assert counts["location_out_of_range"] == 1  # both zones wrong: one row
    assert counts["null_block"] == 1  # "VTS" names the second row's vendor
    assert counts["negative_trip_time_or_driver_pay"] == 1


def test_each_service_gets_the_signals_its_columns_allow() -> None:
    from taxi_assets.contracts import CONTRACTS
    from taxi_assets.quality import signals_for

    def names(service: str) -> set[str]:
        return {signal.name for signal in signals_for(CONTRACTS[service].column_names)}

    assert (
        names("yellow")
        == names("green")
        == {
            "pickup_outside_month",
            "dropoff_before_pickup",
            "negative_fare_or_total",
            "null_block",
            "zero_distance",
            "location_out_of_range",
            "passenger_count_zero",
            "absurd_distance",
            "non_finite_number",
            "huge_number",
        }
    )
    assert names("fhv") == {
        "pickup_outside_month",
        "dropoff_before_pickup",
        "location_out_of_range",
    }
    assert names("fhvhv") == {
        "pickup_outside_month",
        "dropoff_before_pickup",
        "zero_distance",
        "location_out_of_range",
        "absurd_distance",
        "negative_trip_time_or_driver_pay",
        "pickup_before_request",
        "non_finite_number",
        "huge_number",
    }
    assert set(DEFAULT_THRESHOLDS) == {name for s in ("yellow", "fhvhv") for name in names(s)}


def test_fhvhv_signals_count_its_own_columns() -> None:
    month = (datetime(2021, 1, 1), datetime(2021, 2, 1))
    ts = pa.timestamp("us")
    batch = pa.RecordBatch.from_pydict(
        {
            "request_datetime": pa.array(
                [datetime(2021, 1, 5, 10), datetime(2021, 1, 5, 10, 30), None, None], ts
            ),
            "pickup_datetime": pa.array(
                [
                    datetime(2021, 1, 5, 10, 5),
                    datetime(2021, 1, 5, 10, 20),
                    datetime(2021, 2, 1),
                    None,
                ],
                ts,
            ),
            "dropoff_datetime": pa.array(
                [
                    datetime(2021, 1, 5, 10, 25),
                    datetime(2021, 1, 5, 10, 40),
                    datetime(2021, 2, 1, 1),
                    None,
                ],
                ts,
            ),
            "pu_location_id": pa.array([1, 265, 5, None], pa.int32()),
            "do_location_id": pa.array([3, 4, 5, None], pa.int32()),
            "trip_miles": [2.5, 0.0, 501.0, float("nan")],
            "trip_time": pa.array([1200, -60, 3600, None], pa.int64()),
            "driver_pay": [10.0, 8.0, -3.5, 1e10],
        }
    )
    report = measure([batch], month)
    assert report.counts == {
        "pickup_outside_month": 1,
        "dropoff_before_pickup": 0,
        "zero_distance": 1,
        "location_out_of_range": 0,
        "absurd_distance": 1,
        "negative_trip_time_or_driver_pay": 2,
        "pickup_before_request": 1,
        "non_finite_number": 1,
        "huge_number": 1,
    }
    assert set(report.exceeded(DEFAULT_THRESHOLDS)) == set(report.counts) - {
        "dropoff_before_pickup",
        "location_out_of_range",
    }
