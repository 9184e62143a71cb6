"""Rebuilding a month from an older raw revision: run config, the CLI, and the sensor and
schedule honouring the pin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dagster as dg

from taxi_assets import defs
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    REPO,
    materialization_metadata,
    pipeline_resources,
    raw_manifest,
    run,
    run_naming_its_assets,
    warehouse_counts,
)
from taxi_assets_tests.test_automation import evaluate_sensor
from taxi_assets_tests.test_revision_pipeline import (
    ALL_KEYS,
    CSV,
    FIRST_ROWS,
    MONTH,
    REPUBLISHED_ROWS,
    YELLOW,
    republish,
)

RAW_STEP = "raw__yellow_tripdata"


def cli(*args: str, lake: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "raw", *args, "--lake", str(lake)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pinned_run(revision: str) -> dict:
    return {"ops": {RAW_STEP: {"config": {"revision": revision}}}}


def data_version(result: dg.ExecuteInProcessResult) -> str | None:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(["raw", YELLOW]):
            return (event.materialization.tags or {}).get("dagster/data_version")
    return None


def test_a_month_is_rebuilt_from_a_pinned_revision_until_unpinned(
    own_mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    # Only the pinned month is published: the sensor then has nothing else to request.
    (Path(own_mirror.root) / "yellow" / f"{YELLOW}_2021-02.csv.gz").unlink()
    resources = pipeline_resources(own_mirror.url, lake, pg_url)
    first = materialization_metadata(run(ALL_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    republish(own_mirror, REPUBLISHED_ROWS, seed=7)
    second = materialization_metadata(run(ALL_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    old, new = first["sha256"], second["sha256"]
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: REPUBLISHED_ROWS}

    # Run config names the old revision by a prefix: it becomes current (and pinned)
    # without any request upstream, and lake and warehouse are rebuilt from it.
    requests = len(own_mirror.requests_seen(CSV))
    pinned = run(ALL_KEYS, resources, instance, MONTH, run_config=pinned_run(old[:10]))
    raw = materialization_metadata(pinned, f"raw/{YELLOW}")
    assert len(own_mirror.requests_seen(CSV)) == requests
    assert raw["download"].startswith(f"skipped: revision {old[:12]} from run config")
    assert (raw["sha256"], data_version(pinned)) == (old, old)
    assert (raw["pinned_sha256"], raw["previous_sha256"]) == (old, new)
    assert raw["source_rows_change"] == FIRST_ROWS - REPUBLISHED_ROWS
    assert raw["source_rows"] == FIRST_ROWS and raw["url"].endswith(CSV)
    assert materialization_metadata(pinned, f"lake/{YELLOW}")["source_sha256"] == old
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: FIRST_ROWS}

    # The pin holds: upstream republishes again, a plain run still uses the pinned bytes.
    republish(own_mirror, 777, seed=11)
    held = run(ALL_KEYS, resources, instance, MONTH)
    assert materialization_metadata(held, f"raw/{YELLOW}")["download"].startswith(
        f"skipped: pinned to revision {old[:12]}"
    )
    assert len(own_mirror.requests_seen(CSV)) == requests
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: FIRST_ROWS}

    # The new-month sensor does not re-fetch a pinned month...
    skipped = evaluate_sensor(instance, own_mirror, lake=lake)
    assert skipped.run_requests == []
    assert f"yellow {MONTH}: pinned to revision {old[:12]}, not re-fetched" in str(
        skipped.skip_message
    )
    # ... and the CLI lists, unpins and pins.
    listed = cli("list", "yellow", MONTH, lake=lake)
    assert listed.returncode == 0, listed.stderr
    assert (
        f"{old} {YELLOW}_{MONTH}.csv.gz" in listed.stdout and "[current, pinned]" in listed.stdout
    )
    assert new in listed.stdout
    overview = cli("list", "yellow", lake=lake)
    assert f"{MONTH}  2 revision(s)  current {old[:12]}" in overview.stdout
    assert f"pinned {old[:12]}" in overview.stdout
    unpinned = cli("unpin", "yellow", MONTH, lake=lake)
    assert unpinned.returncode == 0 and "unpinned" in unpinned.stdout
    assert raw_manifest(lake, YELLOW, MONTH)["pinned"] is None
    requested = evaluate_sensor(instance, own_mirror, lake=lake)
    assert [r.partition_key for r in requested.run_requests or [] if "yellow" in r.run_key] == [
        MONTH
    ]

    # Unpinned, a run follows upstream again: the newest file becomes a third revision.
    followed = materialization_metadata(run(ALL_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    assert followed["download"] == "downloaded" and followed["revisions"] == 3
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: 777}

    # Pinned from the CLI: the next materialization (as the schedule starts it) uses it.
    pinned_by_cli = cli("pin", "yellow", MONTH, new[:7], lake=lake)
    assert pinned_by_cli.returncode == 0, pinned_by_cli.stderr
    assert f"yellow {MONTH} pinned to revision {new}" in pinned_by_cli.stdout
    assert "dagster asset materialize" in pinned_by_cli.stdout
    run(ALL_KEYS, resources, instance, MONTH)
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: REPUBLISHED_ROWS}

    # Unpinned from run config: upstream still serves the third revision (same URL, ETag
    # and size as recorded), so it becomes current again without a download.
    gets = own_mirror.requests_seen(CSV).count("GET")
    unpin = {"ops": {RAW_STEP: {"config": {"unpin": True}}}}
    back = run(ALL_KEYS, resources, instance, MONTH, run_config=unpin)
    raw = materialization_metadata(back, f"raw/{YELLOW}")
    assert (raw["download"], raw["pinned_sha256"]) == ("skipped: upstream unchanged", "none")
    assert raw["sha256"] == followed["sha256"] and raw["previous_sha256"] == new
    assert own_mirror.requests_seen(CSV).count("GET") == gets
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: 777}


def test_a_revision_that_does_not_exist_fails_with_those_that_do(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    first = materialization_metadata(
        run(f"raw/{YELLOW}", resources, instance, MONTH), f"raw/{YELLOW}"
    )
    failed = run(
        f"raw/{YELLOW}", resources, instance, MONTH, raise_on_error=False,
        run_config=pinned_run("deadbeef"),
    )  # fmt: skip
    assert not failed.success
    error = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert "no revision 'deadbeef'" in error and first["sha256"] in error
    assert raw_manifest(lake, YELLOW, MONTH)["pinned"] is None  # nothing changed
    both = {"ops": {RAW_STEP: {"config": {"revision": first["sha256"], "unpin": True}}}}
    contradictory = run(
        f"raw/{YELLOW}", resources, instance, MONTH, raise_on_error=False, run_config=both
    )
    assert "sets both `revision` and `unpin`" in str(
        contradictory.get_step_failure_events()[0].step_failure_data.error
    )

    refused = cli("pin", "yellow", MONTH, "deadbeef", lake=lake)
    assert refused.returncode == 1
    assert "no revision 'deadbeef'" in refused.stderr and first["sha256"] in refused.stderr
    nothing = cli("pin", "green", MONTH, "deadbeef", lake=lake)
    assert nothing.returncode == 1 and "nothing is stored" in nothing.stderr
    assert cli("pin", "purple", MONTH, "ab", lake=lake).returncode == 1


def test_the_schedule_honours_pins(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    schedule_context: Callable[[datetime, Path], dg.ScheduleEvaluationContext],
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    context = schedule_context(datetime(2021, 4, 5, 6), lake)  # loads 2021-01
    key = "raw/yellow_tripdata"
    sha256 = materialization_metadata(run(key, resources, instance, MONTH), key)["sha256"]
    schedules = {s: defs.resolve_schedule_def(f"taxi_{s}_schedule") for s in ("yellow", "green")}
    for schedule in schedules.values():
        (request,) = schedule.evaluate_tick(context).run_requests or []
        assert request.partition_key == MONTH

    assert cli("pin", "yellow", MONTH, sha256, lake=lake).returncode == 0
    skipped = schedules["yellow"].evaluate_tick(context)
    assert not skipped.run_requests
    assert f"yellow {MONTH} is pinned to revision {sha256[:12]}" in str(skipped.skip_message)
    # Another service's month is not pinned: its schedule still loads it.
    (request,) = schedules["green"].evaluate_tick(context).run_requests or []
    assert request.partition_key == MONTH


def test_the_sensor_follows_upstream_again_once_a_month_is_unpinned(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The sensor loaded the republished month; it is pinned back to the first revision,
    rebuilt, and unpinned: the sensor requests the newest upstream file again (it did say
    "already requested", as if its earlier run still stood, and nothing loaded it)."""
    lake = tmp_path / "lake"
    for service in ("yellow", "green", "fhv"):
        (Path(own_mirror.root) / service / f"{service}_tripdata_2021-02.csv.gz").unlink()
    resources = pipeline_resources(own_mirror.url, lake)
    key = f"raw/{YELLOW}"
    old = materialization_metadata(run(key, resources, instance, MONTH), key)["sha256"]
    republish(own_mirror, REPUBLISHED_ROWS, seed=7)

    def sensor_run() -> dg.ExecuteInProcessResult:
        """The yellow request of a sensor tick, run as the daemon would."""
        tick = evaluate_sensor(instance, own_mirror, lake=lake)
        (request,) = [r for r in tick.run_requests or [] if r.tags["taxi/service"] == "yellow"]
        assert request.partition_key == MONTH
        tags = {**request.tags, "dagster/run_key": request.run_key or ""}
        return run_naming_its_assets([key], resources, instance, MONTH, tags=tags)

    new = materialization_metadata(sensor_run(), key)["sha256"]
    assert new != old
    assert cli("pin", "yellow", MONTH, old[:10], lake=lake).returncode == 0
    assert materialization_metadata(run(key, resources, instance, MONTH), key)["sha256"] == old
    assert cli("unpin", "yellow", MONTH, lake=lake).returncode == 0

    followed = sensor_run()
    assert materialization_metadata(followed, key)["sha256"] == new
    done = evaluate_sensor(instance, own_mirror, lake=lake)
    assert f"yellow {MONTH}: loaded, upstream unchanged" in str(done.skip_message)


def test_the_sensor_retries_a_failed_run_that_followed_upstream_after_an_unpin(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """After the unpin, the sensor's run of the newest upstream file stores it, then fails
    in its warehouse step: the sensor retries it, as any run of a file that stored it and
    failed (it said "already requested", the earlier success of that file, from before the
    pin, still counting as done, and nothing loaded the month)."""
    lake = tmp_path / "lake"
    for service in ("yellow", "green", "fhv"):
        (Path(own_mirror.root) / service / f"{service}_tripdata_2021-02.csv.gz").unlink()
    resources = pipeline_resources(own_mirror.url, lake)  # no warehouse listens
    key = f"raw/{YELLOW}"
    old = materialization_metadata(run(key, resources, instance, MONTH), key)["sha256"]
    republish(own_mirror, REPUBLISHED_ROWS, seed=7)

    def yellow_request() -> dg.RunRequest:
        tick = evaluate_sensor(instance, own_mirror, lake=lake)
        requests = [r for r in tick.run_requests or [] if r.tags["taxi/service"] == "yellow"]
        assert len(requests) == 1, tick.skip_message
        assert requests[0].partition_key == MONTH
        return requests[0]

    def run_of(request: dg.RunRequest, keys: list[str]) -> dg.ExecuteInProcessResult:
        tags = {**request.tags, "dagster/run_key": request.run_key or ""}
        return run_naming_its_assets(keys, resources, instance, MONTH, tags=tags)

    assert run_of(yellow_request(), [key]).success  # the newest file, raw only
    assert cli("pin", "yellow", MONTH, old[:10], lake=lake).returncode == 0
    assert materialization_metadata(run(key, resources, instance, MONTH), key)["sha256"] == old
    assert cli("unpin", "yellow", MONTH, lake=lake).returncode == 0

    request = yellow_request()
    failed = run_of(request, [k.to_user_string() for k in request.asset_selection or ()])
    assert not failed.success  # raw and lake stored, the warehouse step failed
    assert failed.get_asset_materialization_events()

    retry = yellow_request()
    assert retry.run_key and retry.run_key.endswith("#retry2")
