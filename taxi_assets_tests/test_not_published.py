"""TLC's file host answers 403 (S3 AccessDenied), not 404, for a month it has not published.

Against a real HTTP mirror that answers 403 for a missing file, as TLC's host does: the run
fails at once naming month and URL, the new-month sensor says "not published yet", the
freshness check passes; and when the newest loaded month answers 403 too (a wrong
TAXI_TLC_URL) each of them says the source refuses access instead.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets import defs
from taxi_assets.automation.alerts import summarize_failure
from taxi_assets.resources import LakeResource, TaxiSourceResource
from taxi_assets.storage.revisions import slot_for
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import ASSETS, pipeline_resources, run
from taxi_assets_tests.test_alerts import failure_context

RAW = "raw/fhvhv_tripdata"
MISSING = "/fhvhv_tripdata_2021-02.parquet"


@pytest.fixture
def tlc_host(mirror_root: Path, tmp_path: Path) -> Iterator[FaultyMirror]:
    """The generated files (FHVHV 2021-02 not published) on a mirror answering 403 for a
    missing file, like TLC's."""
    root = tmp_path / "tlc_host"
    shutil.copytree(mirror_root, root)
    (root / MISSING.lstrip("/")).unlink()
    with FaultyMirror(root, missing_status=403) as server:
        yield server


@pytest.fixture
def loaded(tlc_host: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance) -> dict:
    """FHVHV 2021-01 loaded from the TLC source: the newest loaded month."""
    resources = pipeline_resources(tlc_host.url, tmp_path / "lake", source="tlc")
    assert run(RAW, resources, instance, "2021-01").success
    return resources


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data
    assert data.user_failure_data is not None  # a dg.Failure: its description, no traceback
    return data.user_failure_data.description or ""


def test_a_run_for_an_unpublished_month_fails_at_once(
    tlc_host: FaultyMirror, loaded: dict, instance: dg.DagsterInstance
) -> None:
    result = run(RAW, loaded, instance, "2021-02", raise_on_error=False)
    message = step_failure(result)
    url = f"{tlc_host.url}{MISSING}"
    assert message == f"fhvhv 2021-02 not published yet (TLC answers HTTP 403 at {url} until it is)"
    assert tlc_host.requests_seen(MISSING) == ["HEAD"]  # no GET, no retry
    # The newest loaded month was asked once, to tell "not published" from "refused".
    assert tlc_host.requests_seen("/fhvhv_tripdata_2021-01.parquet")[-1:] == ["HEAD"]
    summary = summarize_failure(failure_context(result, instance), None).text()
    assert "not published yet" in summary and "Traceback" not in summary


def test_a_wrong_tlc_url_says_the_source_refuses_access(
    tlc_host: FaultyMirror, loaded: dict, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    wrong = f"{tlc_host.url}/wrong-prefix"
    resources = pipeline_resources(tlc_host.url, tmp_path / "lake", source="tlc")
    resources["source"] = TaxiSourceResource(source="tlc", tlc_url=wrong, attempts=3)
    result = run(RAW, resources, instance, "2021-02", raise_on_error=False)
    message = step_failure(result)
    assert message.startswith("fhvhv 2021-02: the source refuses access (check TAXI_TLC_URL)")
    assert f"{wrong}/fhvhv_tripdata_2021-01.parquet for the newest loaded month 2021-01" in message


def test_a_wrong_tlc_url_refuses_a_rerun_of_the_only_loaded_month(
    tlc_host: FaultyMirror, loaded: dict, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """With no other month to ask, the month itself was published once: it said "not
    published yet" (a sensor-only deployment holds one month a service at first)."""
    wrong = f"{tlc_host.url}/wrong-prefix"
    resources = {**loaded, "source": TaxiSourceResource(source="tlc", tlc_url=wrong)}
    result = run(RAW, resources, instance, "2021-01", raise_on_error=False)
    message = step_failure(result)
    assert message == (
        "fhvhv 2021-01: the source refuses access (check TAXI_TLC_URL): HTTP 403 at "
        f"{wrong}/fhvhv_tripdata_2021-01.parquet, for a month already loaded"
    )


def test_a_403_from_the_course_mirror_is_a_refusal(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The course mirror answers 404 for a missing file: a 403 there is no "not published"."""
    path = "/yellow/yellow_tripdata_2021-01.csv.gz"
    own_mirror.inject(path, Fault.status(403))
    resources = pipeline_resources(own_mirror.url, tmp_path / "lake", source="dtc")
    result = run("raw/yellow_tripdata", resources, instance, "2021-01", raise_on_error=False)
    message = step_failure(result)
    assert message.startswith("yellow 2021-01: the source refuses access (check TAXI_DTC_URL)")
    assert own_mirror.requests_seen(path) == ["HEAD"]


def sensor_skip_message(instance: dg.DagsterInstance, tlc_url: str) -> str:
    """One tick of the new-month sensor that requests nothing; what it says."""
    sensor = defs.resolve_sensor_def("taxi_new_month_sensor")
    # The download policy (5 attempts, 2 s backoff) must not apply to the sensor's HEADs.
    source = TaxiSourceResource(
        source="tlc", tlc_url=tlc_url, attempts=5, backoff_seconds=2.0, probe_timeout_seconds=1.0
    )
    # No month is pinned: an empty lake beside the instance.
    lake = LakeResource(url=str(Path(instance.root_directory) / "lake"))
    context = dg.build_sensor_context(
        instance=instance,
        resources={"source": source, "lake": lake},
        repository_def=defs.get_repository_def(),
    )
    result = sensor.evaluate_tick(context)
    assert result.run_requests == []
    return result.skip_message or ""


def test_the_sensor_says_not_published_for_a_403(
    tlc_host: FaultyMirror, loaded: dict, instance: dg.DagsterInstance
) -> None:
    newest = "/fhvhv_tripdata_2021-01.parquet"
    before = len(tlc_host.requests_seen(newest))
    message = sensor_skip_message(instance, tlc_host.url)
    assert "fhvhv 2021-01: loaded, upstream unchanged" in message
    assert "fhvhv 2021-02 not published yet (TLC answers HTTP 403" in message
    assert tlc_host.requests_seen(MISSING) == ["HEAD"]
    # The newest loaded month, which answered in this tick, is not asked again.
    assert tlc_host.requests_seen(newest)[before:] == ["HEAD"]


def test_the_sensor_says_the_source_refuses_access_for_a_wrong_url(
    tlc_host: FaultyMirror, loaded: dict, instance: dg.DagsterInstance
) -> None:
    message = sensor_skip_message(instance, f"{tlc_host.url}/wrong-prefix")
    assert "fhvhv 2021-01: the source refuses access (check TAXI_TLC_URL)" in message
    assert "not published" not in message.split("fhvhv", 1)[1]


def test_one_service_whose_check_fails_does_not_hold_back_the_others(
    tlc_host: FaultyMirror, loaded: dict, instance: dg.DagsterInstance
) -> None:
    """FHVHV's check raises (its month's revision manifest is a folder); green's new month
    is requested all the same, and the tick fails only when nothing else runs. A redirect
    loop is the source unreachable, not a crashed tick (requests' TooManyRedirects)."""
    assert run("raw/green_tripdata", loaded, instance, "2021-01").success
    lake: LakeResource = loaded["lake"]
    manifest = slot_for(lake.root(), ["raw", "fhvhv_tripdata"], "2021-01").manifest_path
    manifest.unlink()
    manifest.mkdir()
    sensor = defs.resolve_sensor_def("taxi_new_month_sensor")
    source = TaxiSourceResource(source="tlc", tlc_url=tlc_host.url, probe_timeout_seconds=1.0)

    def tick() -> list[tuple[str | None, str | None]]:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"source": source, "lake": lake},
            repository_def=defs.get_repository_def(),
        )
        requests = sensor.evaluate_tick(context).run_requests or []
        return [(r.job_name, r.partition_key) for r in requests]

    assert tick() == [("taxi_green_job", "2021-02")]
    green_next = "/green_tripdata_2021-02.parquet"
    loop = Fault.status(302, headers={"Location": f"{tlc_host.url}{green_next}"})
    tlc_host.inject(green_next, *[loop] * 31)
    with pytest.raises(Exception, match=r"fhvhv: the check failed \(IsADirectoryError") as error:
        tick()
    assert "green 2021-02: source unreachable" in str(error.value)
    assert "more than 30 redirects" in str(error.value)


def test_the_sensor_makes_one_short_attempt_per_head(
    tlc_host: FaultyMirror, loaded: dict, instance: dg.DagsterInstance
) -> None:
    """A 503 is not retried, and a slow answer times out after the probe timeout (1 s)."""
    tlc_host.inject(MISSING, Fault.status(503))
    message = sensor_skip_message(instance, tlc_host.url)
    assert "fhvhv 2021-02: source unreachable" in message
    assert tlc_host.requests_seen(MISSING) == ["HEAD"]
    tlc_host.inject(MISSING, Fault.delay(5))
    started = time.monotonic()
    message = sensor_skip_message(instance, tlc_host.url)
    assert time.monotonic() - started < 4
    assert "fhvhv 2021-02: source unreachable" in message


def test_freshness_reads_403_as_not_published_or_refused(
    tlc_host: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = pipeline_resources(tlc_host.url, tmp_path / "lake", pg_url, source="tlc")
    keys = [f"{layer}/fhvhv_tripdata" for layer in ("raw", "lake", "warehouse")]
    result = run(keys, resources, instance, "2021-01")
    (freshness,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "freshness"]
    assert freshness.passed
    assert freshness.metadata["probed"].value == "2021-05"  # 403 at the mirror: not published
    assert freshness.metadata["published"].value == "no"

    # The same check with a wrong TLC URL: the newest loaded month answers 403 too.
    check = dg.AssetCheckKey(dg.AssetKey(["warehouse", "fhvhv_tripdata"]), "freshness")
    job = dg.define_asset_job("freshness_only", selection=dg.AssetSelection.checks(check))
    wrong = {**resources, "source": TaxiSourceResource(source="tlc", tlc_url=f"{tlc_host.url}/x")}
    definitions = dg.Definitions(assets=ASSETS, jobs=[job], resources=wrong)
    checked = definitions.resolve_job_def("freshness_only").execute_in_process(
        tags={"dagster/partition": "2021-01"}, instance=instance, raise_on_error=False
    )
    (evaluation,) = checked.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "the source refuses access (check TAXI_TLC_URL)" in (evaluation.description or "")


def test_a_wrong_tlc_url_is_said_where_auto_moves_from_the_course_mirror_to_tlc(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """``auto``: green 2021-07 loaded from the course's mirror, 2021-08 read from TLC at a
    wrong URL. The newest loaded month had answered at the mirror's URL in the same tick,
    which was taken for TLC's answer: "not published yet". TLC's URL is asked now."""
    from taxi_assets.devdata import generate_mirror

    root = tmp_path / "host"
    generate_mirror(root, months=["2021-07"], services=["green"], rows=200)
    with FaultyMirror(root, missing_status=403) as host:
        lake = tmp_path / "lake"
        resources = pipeline_resources(host.url, lake, source="auto")
        assert run("raw/green_tripdata", resources, instance, "2021-07").success
        wrong = f"{host.url}/wrong-prefix"
        source = TaxiSourceResource(
            source="auto", dtc_url=host.url, tlc_url=wrong, probe_timeout_seconds=1.0
        )
        context = dg.build_sensor_context(
            instance=instance,
            resources={"source": source, "lake": LakeResource(url=str(lake))},
            repository_def=defs.get_repository_def(),
        )
        message = defs.resolve_sensor_def("taxi_new_month_sensor").evaluate_tick(context)
    said = [part for part in (message.skip_message or "").split("; ") if part.startswith("green")]
    assert any(
        part.startswith("green 2021-08: the source refuses access (check TAXI_TLC_URL)")
        and f"{wrong}/green_tripdata_2021-07.parquet for the newest loaded month" in part
        for part in said
    ), said
