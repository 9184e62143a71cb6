"""TAXI_PRODUCTION=1: a run without its lake or warehouse settings fails at its start,
naming the variable, instead of writing to a local default inside its container."""

from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.definitions import build_resources
from taxi_assets.production import ProductionConfigurationError, require_object_store_lake
from taxi_assets.resources import TaxiSourceResource
from taxi_assets_tests.gcs_emulator import GcsEmulator
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import run

YELLOW = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]


def production_resources(mirror: FaultyMirror) -> dict:
    """As deployed: only the source is set here; lake and warehouse from the environment."""
    return build_resources(
        source=TaxiSourceResource(
            source="dtc", dtc_url=mirror.url, tlc_url=mirror.url, attempts=1, backoff_seconds=0.01
        )
    )


def run_failure(result: dg.ExecuteInProcessResult) -> str:
    """Every error message the failed run recorded."""
    assert not result.success
    messages = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return "\n".join(messages)


def test_a_missing_warehouse_url_fails_the_run_at_its_start(
    mirror: FaultyMirror,
    gcs: GcsEmulator,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_PRODUCTION", "1")
    monkeypatch.setenv("TAXI_LAKE_URL", "gs://taxi-lake/nyc")
    result = run(YELLOW, production_resources(mirror), instance, "2021-01", raise_on_error=False)
    message = run_failure(result)
    assert "TAXI_WAREHOUSE_URL is not set, and TAXI_PRODUCTION is" in message
    # At its start: nothing was downloaded, nothing written to the lake.
    assert mirror.requests_seen("/yellow/yellow_tripdata_2021-01.csv.gz") == []
    assert gcs.objects(prefix="nyc/") == {}


@pytest.mark.parametrize(
    ("lake_url", "expected"),
    [
        (None, "TAXI_LAKE_URL is not set, and TAXI_PRODUCTION is"),
        ("/tmp/lake", "TAXI_LAKE_URL is a local path"),
        ("file:///tmp/lake", "TAXI_LAKE_URL is a local path"),
    ],
)
def test_a_missing_or_local_lake_fails_the_run_at_its_start(
    lake_url: str | None,
    expected: str,
    mirror: FaultyMirror,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_PRODUCTION", "1")
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", "postgresql://taxi@127.0.0.1:9/taxi")
    if lake_url:
        monkeypatch.setenv("TAXI_LAKE_URL", lake_url)
    result = run(YELLOW[0], production_resources(mirror), instance, "2021-01", raise_on_error=False)
    assert expected in run_failure(result)
    assert mirror.requests_seen("/yellow/yellow_tripdata_2021-01.csv.gz") == []


def test_local_development_keeps_its_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_object_store_lake(None, "TAXI_LAKE_URL")  # unset: ./data/lake, as before
    require_object_store_lake(str(tmp_path), "TAXI_LAKE_URL")
    monkeypatch.setenv("TAXI_PRODUCTION", "0")
    require_object_store_lake(str(tmp_path), "TAXI_LAKE_URL")
    monkeypatch.setenv("TAXI_PRODUCTION", "true")
    with pytest.raises(ProductionConfigurationError, match="TAXI_LAKE_URL"):
        require_object_store_lake(str(tmp_path), "TAXI_LAKE_URL")
    require_object_store_lake("gs://taxi-lake/nyc", "TAXI_LAKE_URL")
