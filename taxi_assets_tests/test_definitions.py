"""The code location loads, and every asset carries what the UI needs."""

from pathlib import Path

import dagster as dg
import pytest

import taxi_assets
from taxi_assets import defs
from taxi_assets.definitions import (
    automation_interval_seconds,
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
    "analytics/trips",
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


def test_every_asset_points_at_the_code_that_computes_it() -> None:
    package = Path(taxi_assets.__file__).parent
    for spec in defs.resolve_all_asset_specs():
        references = spec.metadata["dagster/code_references"].code_references
        assert len(references) == 1, spec.key
        path = Path(references[0].file_path)
        assert path.is_relative_to(package), (spec.key, path)
        decorator = path.read_text().splitlines()[references[0].line_number - 1].strip()
        assert decorator.startswith("@") and "asset" in decorator, (spec.key, decorator)


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
    """Each service has its own partitions: no job may span two of them (the freshness
    job runs checks alone, of the asset and not of a month, so it has no partitions)."""
    names = {job.name for job in defs.jobs or []}
    assert names == {f"taxi_{service}_job" for service in SERVICES} | {"taxi_freshness_job"}
    assert defs.resolve_job_def("taxi_freshness_job").partitions_def is None


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


def test_a_first_month_in_the_future_or_not_a_month_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2099-01")
    with pytest.raises(ValueError, match=r"TAXI_FIRST_MONTH=2099-01 is after the last complete"):
        first_partition_month()
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2021-13")
    with pytest.raises(ValueError, match=r"TAXI_FIRST_MONTH='2021-13' is not a month in YYYY-MM"):
        first_partition_month()


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
    definitions = build_definitions(
        first_partition_month(), sensor_interval=sensor_interval_seconds()
    )
    assert definitions.resolve_sensor_def("taxi_new_month_sensor").minimum_interval_seconds == 45
    # Only this sensor: the automation and alert sensors keep their own intervals.
    assert definitions.resolve_sensor_def("taxi_automation_sensor").minimum_interval_seconds == 30
    monkeypatch.setenv("TAXI_SENSOR_INTERVAL_SECONDS", "5m")
    with pytest.raises(ValueError, match="TAXI_SENSOR_INTERVAL_SECONDS"):
        sensor_interval_seconds()


def test_the_automation_sensor_emits_backfills_at_its_load_time_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sensor = defs.resolve_sensor_def("taxi_automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.emit_backfills
    assert sensor.minimum_interval_seconds == automation_interval_seconds() == 30
    monkeypatch.setenv("TAXI_AUTOMATION_INTERVAL_SECONDS", "5")
    definitions = build_definitions(
        first_partition_month(), automation_interval=automation_interval_seconds()
    )
    assert definitions.resolve_sensor_def("taxi_automation_sensor").minimum_interval_seconds == 5
    monkeypatch.setenv("TAXI_AUTOMATION_INTERVAL_SECONDS", "0")
    with pytest.raises(ValueError, match="TAXI_AUTOMATION_INTERVAL_SECONDS"):
        automation_interval_seconds()


def condition_names(condition: dg.AutomationCondition) -> set[str]:
    return {condition.name} | {n for c in condition.children for n in condition_names(c)}


def test_automation_follows_data_versions_never_code_versions() -> None:
    """A contract bump marks months stale in the UI; it must not rebuild the history by
    itself: `code_version_changed` is in no condition, `data_version_changed` in each."""
    graph = defs.resolve_asset_graph()
    followers: dict[str, dg.AutomationCondition] = {}
    for key in graph.get_all_asset_keys():
        condition = graph.get(key).automation_condition
        if condition is not None:
            followers[key.to_user_string()] = condition
    # Raw files come from the schedules and the sensor, the zone lookup by its own
    # condition (fetched when missing, then monthly); the view of every service's trips
    # is materialized once (new months appear in it by themselves).
    fetched = followers.pop("raw/taxi_zone_lookup")
    assert {
        "missing",
        "execution_failed",
        "cron_tick_passed(cron_schedule=0 6 5 * *, cron_timezone=America/New_York)",
    } <= condition_names(fetched)
    assert set(followers) == {
        k for k in EXPECTED_KEYS if not k.startswith("raw/") and k != "analytics/trips"
    }
    for name, condition in followers.items():
        names = condition_names(condition)
        assert "data_version_changed" in names, name
        assert not {"code_version_changed", "newly_missing", "any_deps_updated"} & names, name


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


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        (None, "postgres"),
        ("postgresql://taxi:secret@db:5432/taxi", "postgres"),
        ("postgresql+psycopg://taxi@db/taxi", "postgres"),
        ("bigquery://nyc-taxi-prod?location=EU", "bigquery"),
    ],
)
def test_the_warehouse_engine_is_the_urls_scheme(
    url: str | None, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taxi_assets.definitions import warehouse_engine

    if url:
        monkeypatch.setenv("TAXI_WAREHOUSE_URL", url)
    assert warehouse_engine().name == engine


def test_an_unknown_warehouse_scheme_is_refused_without_quoting_the_url() -> None:
    from taxi_assets.warehouse_engine import UnknownWarehouseEngine, engine_for_url

    with pytest.raises(UnknownWarehouseEngine, match="scheme 'mysql'") as raised:
        engine_for_url("mysql://taxi:s3cret@db/taxi")
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:/taxi:s3cret@db:5432/taxi",  # one slash short
        "taxi:s3cret@db/taxi",  # no scheme at all
        "postgresql//taxi:s3cret@db/taxi",
    ],
)
def test_a_warehouse_url_without_a_scheme_is_refused_without_quoting_it(url: str) -> None:
    """Everything before "://" was quoted as the scheme: for these, the password."""
    from taxi_assets.warehouse_engine import UnknownWarehouseEngine, engine_for_url

    with pytest.raises(UnknownWarehouseEngine, match="does not start with SCHEME://") as raised:
        engine_for_url(url)
    assert "s3cret" not in str(raised.value).lower()


def test_bigquery_definitions_name_their_engine() -> None:
    """With TAXI_WAREHOUSE_URL=bigquery://...: the same asset graph, with BigQuery in the
    warehouse assets' kinds, descriptions and column types, BigQuery resources, and the
    optional external tables over the lake (in no job)."""
    from taxi_assets.io_managers.bigquery import BigQueryIOManager
    from taxi_assets.resources.bigquery import BigQueryWarehouse
    from taxi_assets.warehouse_engine import BIGQUERY

    bigquery = build_definitions("2019-01", BIGQUERY)
    external = {f"lake_external/{s}_tripdata" for s in ("yellow", "green", "fhv", "fhvhv")}
    specs = {spec.key.to_user_string(): spec for spec in bigquery.resolve_all_asset_specs()}
    assert set(specs) == EXPECTED_KEYS | external
    for key, spec in specs.items():
        assert spec.description and spec.code_version and spec.owners, key
        assert spec.group_name == spec.key.path[0], key
        if key.startswith(("warehouse/", "analytics/", "lake_external/")):
            assert "bigquery" in spec.kinds and "postgres" not in spec.kinds, key
            assert "BigQuery" in spec.description and "PostgreSQL" not in spec.description, key
    columns = {
        column.name: column.type
        for column in specs["warehouse/yellow_tripdata"].metadata["dagster/column_schema"].columns
    }
    assert (columns["pickup_datetime"], columns["partition_month"]) == ("DATETIME", "DATE")
    assert columns["passenger_count"] == "INT64"
    zones = specs["warehouse/taxi_zones"].metadata["dagster/column_schema"].columns
    assert {c.name: c.type for c in zones}["location_id"] == "INT64"  # was Arrow's int32
    stats = specs["analytics/monthly_zone_stats"].metadata["dagster/column_schema"].columns
    assert {c.name: c.type for c in stats}["revenue"] == "NUMERIC(16,2)"
    resources = bigquery.resources or {}
    assert isinstance(resources["warehouse"], BigQueryWarehouse)
    assert isinstance(resources["warehouse_io_manager"], BigQueryIOManager)
    for service in ("yellow", "green", "fhv", "fhvhv"):
        job = bigquery.resolve_job_def(f"taxi_{service}_job")
        assert not {k.path[0] for k in job.asset_layer.selected_asset_keys} & {"lake_external"}
    # The README's selections of one service's month (and `raw pin`'s hint) take its three
    # layers only: with the external tables they failed on any lake not on GCS.
    graph = bigquery.resolve_asset_graph()
    for selection, expected in (
        ("tag:service=yellow", {"raw", "lake", "warehouse"}),
        ("kind:bigquery and tag:service=yellow", {"warehouse"}),
    ):
        keys = dg.AssetSelection.from_string(selection).resolve(graph)
        assert {key.path[0] for key in keys} == expected, selection


def test_the_engine_is_read_when_the_code_location_loads() -> None:
    """A fresh interpreter, as a code server: only the URL's scheme decides."""
    import os
    import subprocess
    import sys

    code = (
        "import dagster as dg; from taxi_assets import defs; "
        "key = dg.AssetKey(['warehouse', 'yellow_tripdata']); "
        "print(sorted(defs.resolve_assets_def(key).specs_by_key[key].kinds))"
    )
    env = {**os.environ, "TAXI_WAREHOUSE_URL": "bigquery://nyc-taxi-prod"}
    loaded = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "['bigquery']"


def test_external_tables_read_the_hive_partitioned_lake_in_place() -> None:
    """The table resource the external-table asset creates (the emulator cannot create
    external tables: it makes an empty native table instead)."""
    from taxi_assets.assets.lake_external import external_table
    from taxi_assets.bq.names import TableName

    name = TableName("nyc-taxi-prod", "lake_external", "yellow_tripdata")
    table = external_table(name, "gs://taxi-lake/nyc/", "yellow_tripdata")
    assert table.to_api_repr()["externalDataConfiguration"] == {
        "sourceFormat": "PARQUET",
        "sourceUris": ["gs://taxi-lake/nyc/lake/yellow_tripdata/*"],
        "hivePartitioningOptions": {
            "mode": "CUSTOM",
            "sourceUriPrefix": "gs://taxi-lake/nyc/lake/yellow_tripdata/{year:INTEGER}/{month:INTEGER}",
            "requirePartitionFilter": False,
        },
    }
    assert table.table_id == "yellow_tripdata" and table.dataset_id == "lake_external"


def test_external_tables_need_a_gcs_lake(tmp_path: Path) -> None:
    from taxi_assets.assets.lake_external import build_external_table_assets
    from taxi_assets.resources import LakeResource
    from taxi_assets.resources.bigquery import BigQueryWarehouse

    external = build_external_table_assets()[0]
    result = dg.materialize(
        [external],
        resources={
            "warehouse": BigQueryWarehouse(url="bigquery://nyc-taxi-prod"),
            "lake": LakeResource(url=str(tmp_path)),
        },
        raise_on_error=False,
    )
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "set TAXI_LAKE_URL to gs://BUCKET/PREFIX" in failure.message
