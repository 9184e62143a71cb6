"""Schedule and new-month sensor logic against a real mirror and a real instance."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.storage import tags

from taxi_assets import defs
from taxi_assets.automation.new_month_probe import SCHEDULE_NAME_TAG, VERSION_TAG
from taxi_assets.devdata import write_month
from taxi_assets.instance_reads import latest_metadata
from taxi_assets.partitions import add_months, lagged_month
from taxi_assets.resources import LakeResource, TaxiSourceResource
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import (
    REPO,
    engine_for,
    materialization_metadata,
    pipeline_resources,
    run,
    run_checks_only,
    run_naming_its_assets,
    run_of_request,
    warehouse_counts,
)

SERVICES = ("yellow", "green", "fhv", "fhvhv")
# Rows of the month the overlap test loads first: its UI run's lake step must still be
# parsing them when the test stops it.
ROWS_BEFORE = 60_000

ScheduleContext = Callable[[datetime, Path], dg.ScheduleEvaluationContext]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_schedule_for_the_lagged_month(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, schedule_context: ScheduleContext
) -> None:
    schedule = defs.resolve_schedule_def(f"taxi_{service}_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == f"taxi_{service}_job"
    context = schedule_context(datetime(2021, 3, 5, 6), tmp_path / "lake")
    # TLC publishes January around 20 March: on 5 March the newest month out is December.
    (request,) = schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key == "2020-12"
    # Named, so the automation sensor leaves lake and warehouse to this run.
    assert {key.to_user_string() for key in request.asset_selection or ()} == {
        f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")
    }
    monkeypatch.setenv("TAXI_PUBLICATION_LAG_MONTHS", "3")
    (request,) = schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key == "2020-11"


@pytest.mark.parametrize("service", SERVICES)
def test_each_schedule_runs_after_tlc_published_its_month(service: str) -> None:
    """TLC's files of 2023-2024 came out between the 17th and the 26th of the second month
    after theirs, twice on the 1st or 2nd of the third (their modification times)."""
    schedule = defs.resolve_schedule_def(f"taxi_{service}_schedule")
    assert schedule.cron_schedule == "0 6 5 * *"
    assert schedule.execution_timezone == "America/New_York"


def test_a_schedule_skips_a_month_before_its_service(
    tmp_path: Path, schedule_context: ScheduleContext
) -> None:
    """2019-01 is a yellow month, not an FHVHV one (FHVHV starts 2019-02)."""
    context = schedule_context(datetime(2019, 4, 5, 6), tmp_path / "lake")
    yellow = defs.resolve_schedule_def("taxi_yellow_schedule").evaluate_tick(context)
    assert [r.partition_key for r in yellow.run_requests or []] == ["2019-01"]
    fhvhv = defs.resolve_schedule_def("taxi_fhvhv_schedule").evaluate_tick(context)
    assert not fhvhv.run_requests
    assert "2019-01 is outside the fhvhv partitions" in (fhvhv.skip_message or "")


def test_month_math() -> None:
    assert add_months("2021-01", -1) == "2020-12"
    assert add_months("2020-12", 1) == "2021-01"
    assert lagged_month(datetime(2021, 3, 15).date(), 2) == "2020-12"
    assert lagged_month(datetime(2021, 1, 31).date(), 2) == "2020-10"


def yellow_tick(
    instance: dg.DagsterInstance, mirror: FaultyMirror, lake: Path, month: str | None = None
) -> tuple[list[dg.RunRequest], str]:
    """One tick of the new-month sensor: its yellow run requests (of ``month`` only, if
    given), and its skip message."""
    tick = evaluate_sensor(instance, mirror, lake=lake)
    requests = [
        r
        for r in tick.run_requests or []
        if r.tags["taxi/service"] == "yellow" and month in (None, r.partition_key)
    ]
    return requests, tick.skip_message or ""


def yellow_requests(
    instance: dg.DagsterInstance, mirror: FaultyMirror, lake: Path, month: str | None = None
) -> list[dg.RunRequest]:
    """The yellow run requests of one tick of the new-month sensor (of ``month`` only)."""
    return yellow_tick(instance, mirror, lake, month)[0]


def assert_yellow_2021_02_not_owed(
    instance: dg.DagsterInstance, mirror: FaultyMirror, lake: Path
) -> None:
    """A tick of the new-month sensor requests no yellow run and says yellow 2021-02 is
    loaded and unchanged upstream."""
    requests, message = yellow_tick(instance, mirror, lake)
    assert requests == [], [r.run_key for r in requests]
    assert "yellow 2021-02: loaded, upstream unchanged" in message


def evaluate_sensor(  # noqa: ANN201
    instance: dg.DagsterInstance,
    mirror: FaultyMirror,
    cursor: str | None = None,
    lake: Path | None = None,
    source: str = "dtc",
    tlc_url: str | None = None,
):
    sensor = defs.resolve_sensor_def("taxi_new_month_sensor")
    resource = TaxiSourceResource(
        source=source,
        dtc_url=mirror.url,
        tlc_url=tlc_url or mirror.url,
        # The download policy: the sensor must not use it (one attempt per HEAD).
        attempts=5,
        backoff_seconds=2.0,
        probe_timeout_seconds=1.0,
    )
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"source": resource, "lake": LakeResource(url=str(lake) if lake else None)},
        repository_def=defs.get_repository_def(),
    )
    return sensor.evaluate_tick(context)


def test_a_loaded_month_the_source_no_longer_has_is_not_called_unpublished(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A 404 for the newest loaded month (the source was switched, or the file withdrawn)
    is said as such, not as "not published yet"; nothing is requested, the month is kept."""
    root = Path(own_mirror.root)
    resources = pipeline_resources(own_mirror.url, tmp_path / "lake")
    assert run("raw/yellow_tripdata", resources, instance, "2021-02").success
    (root / "yellow" / "yellow_tripdata_2021-02.csv.gz").unlink()
    result = evaluate_sensor(instance, own_mirror, lake=tmp_path / "lake")
    assert [r for r in result.run_requests if "yellow" in (r.job_name or "")] == []
    url = f"{own_mirror.url}/yellow/yellow_tripdata_2021-02.csv.gz"
    assert (
        f"yellow 2021-02: loaded, but {url} answers 404 now: this source does not have the file"
        in result.skip_message
        or ""
    ), result.skip_message
    assert "yellow 2021-02 not published yet" not in (result.skip_message or "")
    assert "yellow 2021-03 not published yet" in (result.skip_message or "")


def test_sensor_requests_the_next_month_once_per_upstream_version(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = Path(own_mirror.root)
    for service in ("yellow", "green", "fhv"):
        (root / service / f"{service}_tripdata_2021-02.csv.gz").unlink()
    resources = pipeline_resources(own_mirror.url, tmp_path / "lake")
    for service in ("yellow", "green", "fhv"):
        assert run(f"raw/{service}_tripdata", resources, instance, "2021-01").success

    lake = tmp_path / "lake"
    nothing = evaluate_sensor(instance, own_mirror, lake=lake)
    assert nothing.run_requests == []
    assert "yellow 2021-02 not published yet" in nothing.skip_message
    assert "yellow 2021-01: loaded, upstream unchanged" in nothing.skip_message
    heads = own_mirror.requests_seen("/yellow/yellow_tripdata_2021-02.csv.gz")
    assert heads == ["HEAD"]  # no download from a sensor

    write_month(root, source="dtc", service="yellow", month="2021-02", rows=300)
    found = evaluate_sensor(instance, own_mirror, lake=lake)
    assert len(found.run_requests) == 1
    request = found.run_requests[0]
    assert request.partition_key == "2021-02"
    # The service's own job (raw, lake, warehouse): a target may not mix partitions.
    assert request.job_name == "taxi_yellow_job"
    assert request.run_key.startswith("yellow:2021-02:")
    assert {key.to_user_string() for key in request.asset_selection or ()} == {
        "raw/yellow_tripdata",
        "lake/yellow_tripdata",
        "warehouse/yellow_tripdata",
    }

    # TLC republishes 2021-01: a new ETag, a new request for that month.
    write_month(root, source="dtc", service="green", month="2021-01", rows=77, seed=9)
    republished = evaluate_sensor(instance, own_mirror, lake=lake)
    keys = {r.run_key.rsplit(":", 1)[0] for r in republished.run_requests}
    assert keys == {"yellow:2021-02", "green:2021-01"}


def test_sensor_retries_its_run_that_stored_the_file_then_failed(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance, pg_url: str
) -> None:
    """The sensor's run of yellow 2021-02 stores the raw file, then fails in the warehouse
    step. The month now counts as loaded, and the automation sensor leaves it to that run:
    the new-month sensor requests it again, up to three runs of the file in all."""
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    assert run("raw/yellow_tripdata", no_warehouse, instance, "2021-01").success
    (request,) = evaluate_sensor(instance, own_mirror, lake=lake).run_requests
    assert request.partition_key == "2021-02"

    raw_key = dg.AssetKey(["raw", "yellow_tripdata"])
    for attempt in range(1, 4):
        # The run the daemon makes of the request: its assets, month and tags.
        failed = run_of_request(
            request,
            [key.to_user_string() for key in request.asset_selection or ()],
            no_warehouse,
            instance,
        )
        assert not failed.success
        stored = {e.materialization.asset_key for e in failed.get_asset_materialization_events()}
        assert raw_key in stored and dg.AssetKey(["warehouse", "yellow_tripdata"]) not in stored
        tick = evaluate_sensor(instance, own_mirror, lake=lake)
        if attempt < 3:
            (request,) = tick.run_requests
            assert request.partition_key == "2021-02"
            assert request.run_key and request.run_key.endswith(f"#retry{attempt}")
        else:
            assert tick.run_requests == []
            assert "yellow 2021-02: 3 runs failed for this file; re-run it by hand" in (
                tick.skip_message or ""
            )

    # By hand, with the warehouse up: loaded, and the sensor is content.
    working = pipeline_resources(own_mirror.url, lake, pg_url)
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    assert run(layers, working, instance, "2021-02").success
    done = evaluate_sensor(instance, own_mirror, lake=lake)
    assert done.run_requests == []
    assert "yellow 2021-02: loaded, upstream unchanged" in (done.skip_message or "")


def test_sensor_retries_a_scheduled_run_that_stored_the_file_then_failed(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The monthly schedule's run of yellow 2021-02 stores the raw file, then fails in the
    warehouse step. The schedule does not retry (its next run is next month's), the
    automation sensor leaves the month to the run that targeted it, and run_retries only
    re-runs crashed runs: the sensor took the month for loaded and unchanged, and its lake
    and warehouse were never built. It now retries it as it retries its own runs."""
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    assert run("raw/yellow_tripdata", no_warehouse, instance, "2021-01").success
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    scheduled = run_naming_its_assets(
        layers,
        no_warehouse,
        instance,
        "2021-02",
        # The tags the daemon gives a run of the schedule's request.
        tags={
            SCHEDULE_NAME_TAG: "taxi_yellow_schedule",
            tags.RUN_KEY_TAG: "schedule:yellow:2021-02",
        },
    )
    assert not scheduled.success
    assert SCHEDULE_NAME_TAG == tags.SCHEDULE_NAME_TAG  # Dagster's own, not public API
    stored = {e.materialization.asset_key for e in scheduled.get_asset_materialization_events()}
    assert dg.AssetKey(["raw", "yellow_tripdata"]) in stored

    (request,) = yellow_requests(instance, own_mirror, lake)
    assert request.partition_key == "2021-02"
    for attempt in range(1, 4):
        failed = run_of_request(
            request,
            layers,
            no_warehouse,
            instance,
        )
        assert not failed.success
        if attempt < 3:
            (request,) = yellow_requests(instance, own_mirror, lake)
            assert (request.run_key or "").endswith(f"#retry{attempt}")
    # Three runs of the sensor failed: bounded, as for its own runs.
    assert yellow_requests(instance, own_mirror, lake) == []


@pytest.mark.parametrize("stored_by", ["schedule", "sensor"])
def test_a_retry_that_failed_before_storing_the_file_is_retried_again(
    stored_by: str, own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A run of the schedule (or of the sensor) stores yellow 2021-02, then fails in the
    warehouse step; the sensor's retry fails before storing the file (the source answers
    503 meanwhile). The month's latest raw materialization is still the first
    run's, so the sensor, which asked whether its newest run had stored the file, took the
    month for loaded and unchanged and never retried it again: lake and warehouse stayed
    unbuilt. It is retried until the sensor's 3 runs of the file have failed."""
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    assert run("raw/yellow_tripdata", no_warehouse, instance, "2021-01").success
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    raw_key = dg.AssetKey(["raw", "yellow_tripdata"])

    def run_request(request: dg.RunRequest, source_down: bool) -> set[dg.AssetKey]:
        """The run the daemon makes of ``request``; the assets it stored before failing."""
        if source_down:  # every request of the run: HEAD and GET, each attempt
            own_mirror.inject("/yellow/yellow_tripdata_2021-02.csv.gz", *[Fault.status(503)] * 10)
        failed = run_of_request(
            request,
            layers,
            no_warehouse,
            instance,
        )
        own_mirror.clear()  # the source is back for the sensor's HEAD
        assert not failed.success
        return {e.materialization.asset_key for e in failed.get_asset_materialization_events()}

    if stored_by == "schedule":
        scheduled = run_naming_its_assets(
            layers,
            no_warehouse,
            instance,
            "2021-02",
            tags={SCHEDULE_NAME_TAG: "taxi_yellow_schedule"},
        )
        assert not scheduled.success
        (request,) = yellow_tick(instance, own_mirror, lake)[0]
        sensor_runs = 0
    else:
        (request,) = yellow_tick(instance, own_mirror, lake)[0]  # the next month, not loaded yet
        assert raw_key in run_request(request, source_down=False)
        (request,) = yellow_tick(instance, own_mirror, lake)[0]
        sensor_runs = 1
    assert request.partition_key == "2021-02"
    while sensor_runs < 3:
        assert raw_key not in run_request(request, source_down=True)
        sensor_runs += 1
        requests, message = yellow_tick(instance, own_mirror, lake)
        if sensor_runs < 3:
            assert len(requests) == 1, message
            request = requests[0]
            assert (request.run_key or "").endswith(f"#retry{sensor_runs}")
    # Bounded as before: the sensor's third failed run of the file is its last.
    assert requests == []
    assert "yellow 2021-02: 3 runs failed for this file; re-run it by hand" in message


@pytest.mark.parametrize("rebuilt_by", ["hand", "re-execution", "warehouse alone"])
def test_lake_and_warehouse_rebuilt_after_the_failure_owe_no_retry(
    rebuilt_by: str,
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pg_url: str,
) -> None:
    """The sensor's run of yellow 2021-02 stores the raw file and the lake month, then
    fails in the warehouse step; then a successful run builds lake and warehouse without
    raw: someone's run from the UI, or the re-execution of the failed run from its failure
    (the parent's tags, the sensor's version tag included, and only the steps that
    failed), or a run from the UI of the warehouse alone. The month's latest raw
    materialization was still the failed run's, so the sensor took the month for
    stored-but-failed and requested it again, though nothing was owed; with the warehouse
    alone rebuilt it still did, as the lake's latest materialization was the failed run's
    (valid: Dagster records it only once the lake month was stored)."""
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    assert run("raw/yellow_tripdata", no_warehouse, instance, "2021-01").success
    raw_key = dg.AssetKey(["raw", "yellow_tripdata"])
    lake_key = dg.AssetKey(["lake", "yellow_tripdata"])

    (request,) = yellow_tick(instance, own_mirror, lake)[0]
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    failed = run_of_request(request, layers, no_warehouse, instance)
    assert not failed.success
    stored = {e.asset_key for e in failed.get_asset_materialization_events()}
    assert {raw_key, lake_key} <= stored
    (retry,) = yellow_tick(instance, own_mirror, lake)[
        0
    ]  # owed, as the failed run left the warehouse unbuilt
    assert (retry.run_key or "").endswith("#retry1")

    working = pipeline_resources(own_mirror.url, lake, pg_url)
    rebuilt = run_naming_its_assets(
        ["warehouse/yellow_tripdata"]
        if rebuilt_by == "warehouse alone"
        else ["lake/yellow_tripdata", "warehouse/yellow_tripdata"],
        working,
        instance,
        "2021-02",
        tags={**failed.dagster_run.tags} if rebuilt_by == "re-execution" else None,
    )
    assert rebuilt.success
    assert raw_key not in {e.asset_key for e in rebuilt.get_asset_materialization_events()}
    assert_yellow_2021_02_not_owed(instance, own_mirror, lake)


def test_a_warehouse_built_from_the_lake_before_the_failed_runs_file_is_still_owed(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pg_url: str,
) -> None:
    """Yellow 2021-02 is loaded; TLC republishes it and the sensor's run stores the new
    file, builds no lake month from it and fails. Then a successful run from the UI
    rebuilds the warehouse alone (from the lake month of the previous file), and only
    after it one rebuilds the lake. Lake and warehouse were each materialized after the
    failed run's raw file, the warehouse by a successful run, yet the warehouse holds the
    previous file's rows: the month is still owed. (The failed run runs raw and warehouse
    only, standing for a run whose lake step failed after raw was stored: such a lake
    failure cannot be caused here without failing the later lake rebuild too.)"""
    root = Path(own_mirror.root)
    lake = tmp_path / "lake"
    working = pipeline_resources(own_mirror.url, lake, pg_url)
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    assert run(layers, working, instance, "2021-02").success
    write_month(root, source="dtc", service="yellow", month="2021-02", rows=77, seed=9)

    (request,) = yellow_requests(instance, own_mirror, lake, "2021-02")
    failed = run_of_request(
        request, ["raw/yellow_tripdata", "warehouse/yellow_tripdata"], no_warehouse, instance
    )
    assert not failed.success
    assert {e.asset_key for e in failed.get_asset_materialization_events()} == {
        dg.AssetKey(["raw", "yellow_tripdata"])
    }
    assert run_naming_its_assets(
        ["warehouse/yellow_tripdata"], working, instance, "2021-02"
    ).success
    assert run_naming_its_assets(["lake/yellow_tripdata"], working, instance, "2021-02").success
    (retry,) = yellow_requests(instance, own_mirror, lake, "2021-02")
    assert (retry.run_key or "").endswith("#retry1")


@pytest.mark.parametrize("failing", ["lake", "warehouse", "lake-check-raised"])
def test_a_month_rebuilt_from_a_layer_that_failed_a_blocking_check_is_still_owed(
    failing: str,
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pg_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The sensor's run of yellow 2021-02 stores the raw file and the lake month (whose
    checks pass), then fails in the warehouse step; a successful run from the UI builds
    the warehouse alone. But a layer the warehouse came from failed a blocking check
    since its checks passed: the lake month, which then lost a row (written over by hand)
    and failed rows_match_raw before the warehouse was built from it (Dagster builds it
    all the same: a blocking check stops the later steps of its own run only); or the
    warehouse month, which lost rows afterwards and failed rows_match_lake; or the lake
    month's checks, run again, raised instead (its file cut short then, put back after):
    Dagster records no evaluation of a check that raises, only a run that failed. The
    sensor took the month for rebuilt ("loaded, upstream unchanged"). It is still owed,
    and the sensor names the check (and the run where it raised); the retry rebuilds the month from the raw file, and then
    nothing is owed. (Only damage fails these checks after their layer's own run: the
    lake step compares the rows it parsed with the raw file's itself, and the warehouse
    step the rows it loaded with the lake's.)"""
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    working = pipeline_resources(own_mirror.url, lake, pg_url)
    assert run("raw/yellow_tripdata", no_warehouse, instance, "2021-01").success
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]

    def blocking(result: dg.ExecuteInProcessResult) -> set[tuple[str, bool]]:
        return {
            (e.check_name, e.passed) for e in result.get_asset_check_evaluations() if e.blocking
        }

    (request,) = yellow_tick(instance, own_mirror, lake)[0]
    failed = run_of_request(request, layers, no_warehouse, instance)
    assert not failed.success
    assert blocking(failed) == {("rows_match_raw", True), ("schema_matches_contract", True)}
    if failing == "lake":
        path = Path(materialization_metadata(failed, "lake/yellow_tripdata")["path"])
        pq.write_table(pq.read_table(path).slice(1), path)
        checks = run_checks_only(
            dg.AssetKey(["lake", "yellow_tripdata"]), working, instance, "2021-02"
        )
        assert blocking(checks) == {("rows_match_raw", False), ("schema_matches_contract", True)}
    if failing == "lake-check-raised":
        path = Path(materialization_metadata(failed, "lake/yellow_tripdata")["path"])
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
        checks = run_checks_only(
            dg.AssetKey(["lake", "yellow_tripdata"]), working, instance, "2021-02"
        )
        assert not checks.success and blocking(checks) == set()
        path.write_bytes(whole)
    built = run_naming_its_assets(["warehouse/yellow_tripdata"], working, instance, "2021-02")
    assert built.success
    assert blocking(built) == {("rows_match_lake", True)}
    if failing == "warehouse":
        engine = engine_for(pg_url)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "DELETE FROM warehouse.yellow_tripdata WHERE ctid IN "
                "(SELECT ctid FROM warehouse.yellow_tripdata LIMIT 7)"
            )
        engine.dispose()
        key = dg.AssetKey(["warehouse", "yellow_tripdata"])
        assert blocking(run_checks_only(key, working, instance, "2021-02")) == {
            ("rows_match_lake", False)
        }

    capfd.readouterr()
    requests, message = yellow_tick(instance, own_mirror, lake)
    logged = capfd.readouterr().err  # the sensor's log (the tick's, in the UI)
    assert len(requests) == 1, message
    assert (requests[0].run_key or "").endswith("#retry1")
    lake_note = f"the warehouse was built from the lake month of run {failed.run_id[:8]}, "
    if failing == "lake":
        note = lake_note + "whose blocking check rows_match_raw failed"
    elif failing == "lake-check-raised":
        note = (
            lake_note + f"whose blocking check rows_match_raw (raised in run {checks.run_id[:8]})"
        )
    else:
        note = f"the warehouse month of run {built.run_id[:8]} failed its blocking check "
        note += "rows_match_lake"
    assert f"yellow 2021-02: owed: {note}" in logged, logged

    assert run_of_request(requests[0], layers, working, instance).success
    assert_yellow_2021_02_not_owed(instance, own_mirror, lake)


def test_a_warehouse_holding_the_previous_file_is_still_owed_whatever_the_lake_events_say(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pg_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Yellow 2021-02 is loaded; TLC republishes it and the sensor's run stores the new
    file and its lake month, then fails in the warehouse step. The lake month file then
    holds the previous file's rows again, and a successful run from the UI builds the
    warehouse alone from it. This stands for two runs of the month overlapping: a run of
    lake and warehouse from the UI whose lake step read the previous raw file before the
    sensor's run stored the new one, and wrote its lake file (the month's one path) after
    the sensor's run wrote its own. Every event is in the order that counted as rebuilt
    (a warehouse from a run that succeeded, after the new raw file, and the latest lake
    month before it after the raw file too), yet the warehouse holds the previous file's
    rows, as its own materialization says (source_sha256, read from the lake file it
    loaded). The sensor took the month for rebuilt; it is still owed."""
    root = Path(own_mirror.root)
    lake = tmp_path / "lake"
    working = pipeline_resources(own_mirror.url, lake, pg_url)
    no_warehouse = pipeline_resources(own_mirror.url, lake)  # nothing listens there
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    first = run(layers, working, instance, "2021-02")
    previous_sha = materialization_metadata(first, "raw/yellow_tripdata")["sha256"]
    lake_file = Path(materialization_metadata(first, "lake/yellow_tripdata")["path"])
    previous_lake = tmp_path / "previous_lake_month.parquet"
    shutil.copyfile(lake_file, previous_lake)
    write_month(root, source="dtc", service="yellow", month="2021-02", rows=77, seed=9)

    (request,) = yellow_requests(instance, own_mirror, lake, "2021-02")
    failed = run_of_request(request, layers, no_warehouse, instance)
    assert not failed.success
    new_sha = materialization_metadata(failed, "raw/yellow_tripdata")["sha256"]
    assert new_sha != previous_sha
    assert Path(materialization_metadata(failed, "lake/yellow_tripdata")["path"]) == lake_file
    shutil.copyfile(previous_lake, lake_file)
    built = run_naming_its_assets(["warehouse/yellow_tripdata"], working, instance, "2021-02")
    assert built.success
    assert materialization_metadata(built, "warehouse/yellow_tripdata")["source_sha256"] == (
        previous_sha
    )

    capfd.readouterr()
    (retry,) = yellow_requests(instance, own_mirror, lake, "2021-02")
    logged = capfd.readouterr().err
    assert (retry.run_key or "").endswith("#retry1")
    assert (
        f"yellow 2021-02: owed: the warehouse month of run {built.run_id[:8]} holds raw "
        f"revision {previous_sha[:12]}, not {new_sha[:12]}, which run {failed.run_id[:8]} "
        "stored" in logged
    ), logged
    assert run_of_request(retry, layers, working, instance).success
    assert yellow_requests(instance, own_mirror, lake, "2021-02") == []


def test_two_overlapping_runs_of_a_month_publish_no_superseded_lake_month(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs of one month in two processes on one instance on disk (fault 5i). Yellow
    2021-02 is loaded (ROWS_BEFORE rows); TLC republishes it (77 rows). A run of lake and
    warehouse from the UI starts in a process of its own; its lake step reads the loaded
    raw revision and is stopped (SIGSTOP) while it parses it. Meanwhile the sensor's run
    (in this process) stores the new file, writes its lake month and loads the warehouse.
    The UI run goes on and would publish its lake month (the previous revision's rows) over
    the sensor run's, at the month's one path: it fails instead, naming the month and both
    revisions, and the lake keeps the new file's rows. Before, it published them and only
    its blocking check failed, leaving raw and warehouse on the new revision and the lake
    on the previous one. (About 15 s: the UI run starts a process.)"""
    home = tmp_path / "shared_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    root = Path(own_mirror.root)
    lake = tmp_path / "lake"
    layers = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    working = pipeline_resources(own_mirror.url, lake, pg_url)
    lake_file = lake / "lake/yellow_tripdata/year=2021/month=02/yellow_tripdata_2021-02.parquet"

    write_month(root, source="dtc", service="yellow", month="2021-02", rows=ROWS_BEFORE, seed=3)
    ui_run = str(uuid.uuid4())
    ui_args = [own_mirror.url, str(lake), pg_url, ",".join(layers[1:]), "2021-02", ui_run, "{}"]
    with dg.DagsterInstance.get() as instance:
        first = run_naming_its_assets(layers, working, instance, "2021-02")
        assert first.success
        previous_sha = materialization_metadata(first, layers[0])["sha256"]
        write_month(root, source="dtc", service="yellow", month="2021-02", rows=77, seed=9)
        (request,) = yellow_requests(instance, own_mirror, lake, "2021-02")
        # The UI run in a process of its own; this one runs the sensor's meanwhile.
        ui = subprocess.Popen(
            [sys.executable, "-m", "taxi_assets_tests.run_process", *ui_args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not any(
                "reading revision" in (entry.user_message or "")
                for entry in instance.all_logs(ui_run)
            ):
                assert time.monotonic() < deadline and ui.poll() is None, "no lake step"
                time.sleep(0.02)
            os.kill(ui.pid, signal.SIGSTOP)
            sensor_run = run_of_request(request, layers, working, instance)
            assert sensor_run.success
            os.kill(ui.pid, signal.SIGCONT)
            assert ui.communicate(timeout=120)[0].strip() == "failed"
        finally:
            if ui.poll() is None:
                ui.send_signal(signal.SIGCONT)
                ui.kill()
                ui.wait(timeout=30)

        new_sha = materialization_metadata(sensor_run, layers[0])["sha256"]
        assert new_sha != previous_sha
        failures = [
            event.dagster_event.step_failure_data.error
            for event in instance.all_logs(ui_run, of_type=dg.DagsterEventType.STEP_FAILURE)
            if event.dagster_event and event.dagster_event.step_failure_data
        ]
        (error,) = [e for e in failures if e is not None]
        shown = error.to_string()
        assert "yellow_tripdata 2021-02: the raw month changed while this run converted it" in shown
        assert f"it read revision {previous_sha}, and {new_sha} is current now" in shown, shown
        assert "Run it again." in shown
        assert shown.count("the raw month changed while") == 1, shown  # said once, not twice
        # The lake keeps the sensor run's month: the new file's rows, and no lake
        # materialization of the UI run.
        footer = pq.read_metadata(lake_file)
        assert footer.num_rows == 77
        assert (footer.metadata or {})[b"source_sha256"].decode() == new_sha
        assert not [n for n in lake_file.parent.iterdir() if n.name.startswith(".")]
        latest = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(layers[1]))
        assert latest is not None and latest.run_id == sensor_run.run_id
        assert yellow_requests(instance, own_mirror, lake, "2021-02") == []
    assert warehouse_counts(pg_url, "yellow_tripdata")["2021-02"] == 77


def test_sensor_leaves_a_failed_run_from_the_ui_to_whoever_started_it(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    no_warehouse = pipeline_resources(own_mirror.url, lake)
    layers = [f"{layer}/yellow_tripdata" for layer in ("raw", "lake", "warehouse")]
    assert not run_naming_its_assets(layers, no_warehouse, instance, "2021-02").success
    assert_yellow_2021_02_not_owed(instance, own_mirror, lake)


def test_sensor_with_nothing_loaded_probes_the_lagged_month(
    mirror: FaultyMirror, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = evaluate_sensor(instance, mirror, lake=tmp_path / "lake")
    # Today's lagged month is not in the generated mirror: it says so, per service.
    expected = lagged_month(datetime.now().date(), 2)
    assert f"yellow {expected}" in result.skip_message
    assert json.dumps(result.skip_message)


@pytest.mark.parametrize("tags_of", ["partition", "range"])
def test_sensor_skips_a_month_a_run_in_flight_already_loads(
    mirror: FaultyMirror, instance: dg.DagsterInstance, tags_of: str, tmp_path: Path
) -> None:
    """Runs of a job backfill carry `dagster/partition`; runs of an asset backfill (the UI's
    "Materialize" over a range) carry only a partition range, even for one month."""
    month = lagged_month(datetime.now().date(), 2)
    tags = (
        {"dagster/partition": month}
        if tags_of == "partition"
        else {
            "dagster/asset_partition_range_start": month,
            "dagster/asset_partition_range_end": month,
        }
    )
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,  # a QUEUED record needs a code origin
            tags=tags,
            asset_selection=frozenset({dg.AssetKey(["raw", "yellow_tripdata"])}),
        )
    )
    message = evaluate_sensor(instance, mirror, lake=tmp_path / "lake").skip_message
    assert f"yellow {month}: a queued or running run is loading it" in message
    assert f"green {month}: a queued or running run" not in message  # only yellow is selected


def test_sensor_skips_a_month_a_submitted_backfill_will_run(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    schedule_context: ScheduleContext,
) -> None:
    """`months backfill` (or the UI) records an asset backfill; its runs are launched at
    the backfill daemon's next pass, so until then no run of the month is in flight: the
    sensor requested yellow 2021-02 too, and the month was loaded twice. The backfill is
    recorded here as `months backfill 2021-02 --services yellow` records it."""
    from dagster._core.execution.backfill import PartitionBackfill

    resources = pipeline_resources(own_mirror.url, tmp_path / "lake")
    assert run("raw/yellow_tripdata", resources, instance, "2021-01").success
    write_month(Path(own_mirror.root), source="dtc", service="yellow", month="2021-02", rows=300)
    keys = [dg.AssetKey([layer, "yellow_tripdata"]) for layer in ("raw", "lake", "warehouse")]
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id="pendingbf",
            asset_graph=defs.resolve_asset_graph(),
            partition_names=["2021-02"],
            asset_selection=keys,
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title="yellow, 2021-02",
            description=None,
            run_config=None,
        )
    )
    tick = evaluate_sensor(instance, own_mirror, lake=tmp_path / "lake")
    requested = [r.partition_key for r in tick.run_requests or [] if "yellow" in r.job_name]
    assert requested == []
    assert "yellow 2021-02: a queued or running run is loading it" in (tick.skip_message or "")
    # Nor the schedule, on the 5th that loads 2021-02.
    context = schedule_context(datetime(2021, 5, 5, 6), tmp_path / "lake")
    scheduled = defs.resolve_schedule_def("taxi_yellow_schedule").evaluate_tick(context)
    assert not scheduled.run_requests
    assert scheduled.skip_message == "yellow 2021-02: a queued or running run is loading it"


def test_run_partitions_read_both_tag_styles() -> None:
    from taxi_assets.automation.run_partitions import covers, describe_partitions

    single = {"dagster/partition": "2021-02"}
    ranged = {
        "dagster/asset_partition_range_start": "2021-01",
        "dagster/asset_partition_range_end": "2021-03",
    }
    assert describe_partitions(single) == "2021-02"
    assert describe_partitions(ranged) == "2021-01...2021-03"
    assert describe_partitions({}) is None
    assert covers(ranged, "2021-02") and not covers(ranged, "2021-04")
    assert covers(single, "2021-02") and not covers(single, "2021-01")


def test_a_failed_download_of_a_republished_month_does_not_stop_the_next_one(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Upstream republishes the newest loaded month (yellow 2021-02) as a cut file, and
    the sensor's runs of it fail in the raw step: the month keeps its earlier revision, but
    Dagster now shows it failed. The sensor took it for unloaded, made it "the next month"
    and never probed 2021-03, published meanwhile (it did not even name it)."""
    lake = tmp_path / "lake"
    root = Path(own_mirror.root)
    resources = pipeline_resources(own_mirror.url, lake)
    for month in ("2021-01", "2021-02"):
        assert run("raw/yellow_tripdata", resources, instance, month).success
    cut = root / "yellow" / "yellow_tripdata_2021-02.csv.gz"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])

    (request,) = yellow_requests(instance, own_mirror, lake)
    assert request.partition_key == "2021-02"
    failed = run_of_request(
        request,
        ["raw/yellow_tripdata"],
        resources,
        instance,
    )
    assert not failed.success
    write_month(root, source="dtc", service="yellow", month="2021-03", rows=100)

    requested = {r.partition_key: r.run_key for r in yellow_requests(instance, own_mirror, lake)}
    assert set(requested) == {"2021-02", "2021-03"}
    assert (requested["2021-02"] or "").endswith("#retry1")


def test_upstream_going_back_to_a_version_loaded_before_is_loaded_again(
    own_mirror: FaultyMirror, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Version A, then B, then A's bytes restored (the same ETag as A's): the month held B
    and the sensor said "already requested" for ever, A's first run having succeeded."""
    root = Path(own_mirror.root)
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    published = root / "yellow" / "yellow_tripdata_2021-02.csv.gz"
    first_bytes, first_stat = published.read_bytes(), published.stat()
    assert run("raw/yellow_tripdata", resources, instance, "2021-01").success

    def yellow_requests() -> list[dg.RunRequest]:
        tick = evaluate_sensor(instance, own_mirror, lake=lake)
        return [r for r in tick.run_requests or [] if r.tags["taxi/service"] == "yellow"]

    def load(request: dg.RunRequest) -> str:
        assert run_of_request(request, ["raw/yellow_tripdata"], resources, instance).success
        record = latest_metadata(instance, dg.AssetKey(["raw", "yellow_tripdata"]), "2021-02")
        return str(record["sha256"])

    (first,) = yellow_requests()
    first_sha = load(first)
    write_month(root, source="dtc", service="yellow", month="2021-02", rows=300, seed=9)
    (second,) = yellow_requests()
    assert load(second) != first_sha
    # The first bytes again, with their time: the mirror's ETag is A's again.
    published.write_bytes(first_bytes)
    os.utime(published, ns=(first_stat.st_atime_ns, first_stat.st_mtime_ns))
    (again,) = yellow_requests()
    assert again.tags[VERSION_TAG] == first.tags[VERSION_TAG]
    assert again.run_key != first.run_key  # each run key of the sensor is used once
    assert load(again) == first_sha
    assert yellow_requests() == []  # loaded, upstream unchanged: nothing more
