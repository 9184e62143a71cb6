"""The code location loads, and every asset carries what the UI needs."""

import dagster as dg
import pytest

from taxi_assets import defs
from taxi_assets.definitions import build_definitions, first_partition_month
from taxi_assets.partitions import parse_month

EXPECTED_KEYS = {
    f"{layer}/{service}_tripdata"
    for layer in ("raw", "lake", "warehouse")
    for service in ("yellow", "green", "fhv")
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


def test_monthly_job_and_partitions() -> None:
    job = defs.resolve_job_def("taxi_monthly_job")
    keys = partition_keys(job)
    assert keys[0] == "2019-01"
    assert all(parse_month(key) for key in keys)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        key for key in EXPECTED_KEYS if "tripdata" in key
    }


@pytest.mark.parametrize("service", ["yellow", "green", "fhv"])
def test_one_job_per_service(service: str) -> None:
    job = defs.resolve_job_def(f"taxi_{service}_job")
    assert partition_keys(job) == partition_keys(defs.resolve_job_def("taxi_monthly_job"))
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")
    }


def test_first_month_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2015-01")
    assert first_partition_month() == "2015-01"
    job = build_definitions(first_partition_month()).resolve_job_def("taxi_monthly_job")
    assert partition_keys(job)[0] == "2015-01"


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
