"""The code location loads, and every asset carries what the UI needs."""

import dagster as dg
import pytest

from taxi_assets import defs
from taxi_assets.definitions import (
    build_definitions,
    first_partition_month,
    sensor_interval_seconds,
)
from taxi_assets.partitions import parse_month

SERVICES = ("yellow", "green", "fhv", "fhvhv")
EXPECTED_KEYS = {
    f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse") for service in SERVICES
} | {
    "raw/taxi_zone_lookup",
    "lake/taxi_zones",
    "warehouse/taxi_zones",
    "analytics/monthly_zone_stats",
}


def partition_keys(job: dg.JobDefinition) -> list[str]:
    assert job.partitions_def is not None, job.name
    return list(job.partitions_def.get_partition_keys())


def test_asset_graph() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == EXPECTED_KEYS
    warehouse = graph.get(dg.AssetKey(["warehouse", "yellow_tripdata"]))
    assert warehouse.parent_keys == {dg.AssetKey(["lake", "yellow_tripdata"])}


def test_every_asset_is_described_grouped_and_versioned() -> None:
    for spec in defs.resolve_all_asset_specs():
        assert spec.description, spec.key
        assert spec.group_name == spec.key.path[0], spec.key  # raw, lake, warehouse, analytics
        assert spec.code_version, spec.key
        assert spec.kinds, spec.key
        assert spec.owners, spec.key


def first_key(key: str, definitions: dg.Definitions = defs) -> str:
    partitions = definitions.resolve_assets_def(dg.AssetKey.from_user_string(key)).partitions_def
    assert partitions is not None, key
    return partitions.get_first_partition_key() or ""


@pytest.mark.parametrize("service", SERVICES)
def test_one_job_per_service(service: str) -> None:
    job = defs.resolve_job_def(f"taxi_{service}_job")
    keys = partition_keys(job)
    assert all(parse_month(key) for key in keys)
    assert keys[0] == first_key(f"raw/{service}_tripdata")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")
    }


def test_no_job_mixes_services() -> None:
    """Each service has its own partitions: no job may span two of them."""
    names = {job.name for job in defs.jobs or []}
    assert names == {f"taxi_{service}_job" for service in SERVICES}


def test_each_service_starts_at_its_first_month() -> None:
    """Default TAXI_FIRST_MONTH (2019-01) bounds every service but FHVHV (2019-02)."""
    assert {s: first_key(f"raw/{s}_tripdata") for s in SERVICES} == {
        "yellow": "2019-01",
        "green": "2019-01",
        "fhv": "2019-01",
        "fhvhv": "2019-02",
    }
    for layer in ("lake", "warehouse"):
        assert first_key(f"{layer}/fhvhv_tripdata") == "2019-02"
    assert first_key("analytics/monthly_zone_stats") == "2019-01"


def test_first_month_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2009-01")
    assert first_partition_month() == "2009-01"
    definitions = build_definitions(first_partition_month())
    assert {s: first_key(f"raw/{s}_tripdata", definitions) for s in SERVICES} == {
        "yellow": "2009-01",
        "green": "2014-01",
        "fhv": "2015-01",
        "fhvhv": "2019-02",
    }
    assert first_key("analytics/monthly_zone_stats", definitions) == "2009-01"
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2020-07")
    definitions = build_definitions(first_partition_month())
    assert {first_key(f"lake/{s}_tripdata", definitions) for s in SERVICES} == {"2020-07"}
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2020-7")
    with pytest.raises(ValueError, match="YYYY-MM"):
        first_partition_month()


def test_sensor_interval_is_a_load_time_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    sensor = defs.resolve_sensor_def("taxi_new_month_sensor")
    assert sensor.minimum_interval_seconds == sensor_interval_seconds() == 300
    monkeypatch.setenv("TAXI_SENSOR_INTERVAL_SECONDS", "45")
    definitions = build_definitions(first_partition_month(), sensor_interval_seconds())
    assert definitions.resolve_sensor_def("taxi_new_month_sensor").minimum_interval_seconds == 45
    # Only this sensor: the automation and alert sensors keep their own intervals.
    assert definitions.resolve_sensor_def("taxi_automation_sensor").minimum_interval_seconds == 30
    monkeypatch.setenv("TAXI_SENSOR_INTERVAL_SECONDS", "5m")
    with pytest.raises(ValueError, match="TAXI_SENSOR_INTERVAL_SECONDS"):
        sensor_interval_seconds()


@pytest.mark.parametrize(
    "bad", ["2021-13", "2021-1", "21-01", "2021-01; DROP TABLE x", "../../etc"]
)
def test_partition_keys_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="not a month in YYYY-MM form"):
        parse_month(bad)


def test_loading_the_definitions_freezes_what_imports_built() -> None:
    """A fresh interpreter: after loading the definitions, the objects the imports created are
    in the permanent generation (the final collection at exit skips them)."""
    import subprocess
    import sys

    code = "import gc, taxi_assets.definitions; print(gc.get_freeze_count())"
    frozen = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert int(frozen.stdout.strip()) > 100_000
