"""raw -> lake -> warehouse with the real assets, a real mirror and a real PostgreSQL."""

import gzip
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets import defs
from taxi_assets.pg.copy_out import read_query_arrow
from taxi_assets.pg.partitions import partitions, tree_bytes
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    lake_dataset,
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

SERVICES = ("yellow", "green", "fhv")


def trip_keys(*services: str) -> list[str]:
    return [f"{layer}/{s}_tripdata" for s in services for layer in ("raw", "lake", "warehouse")]


def test_months_load_replace_and_keep_neighbours(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(mirror.url, lake, pg_url)
    for month in ("2021-01", "2021-02", "2021-01"):
        result = run(trip_keys(*SERVICES), resources, instance, month)
        assert result.success
    for service in SERVICES:
        dataset = f"{service}_tripdata"
        lake_rows = {
            month: lake_dataset(lake, dataset)
            .filter((dg_field("year") == 2021) & (dg_field("month") == int(month[-2:])))
            .count_rows()
            for month in ("2021-01", "2021-02")
        }
        assert warehouse_counts(pg_url, dataset) == lake_rows
    meta = materialization_metadata(result, "warehouse/yellow_tripdata")
    assert meta["rows_written"] == meta["rows_replaced"] > 0
    # What the UI shows for a warehouse load, computed while COPY streams.
    lake_meta = materialization_metadata(result, "lake/yellow_tripdata")
    assert meta["rows_outside_partition"] == lake_meta["rows_outside_partition"] > 0
    assert meta["min_pickup_datetime"] < "2021-01-01" < meta["max_pickup_datetime"]
    assert meta["table_bytes"] > 0 and meta["rows_per_s"] > 0
    assert "pickup_datetime" in meta["preview"]
    declared = defs.resolve_assets_def(
        dg.AssetKey(["warehouse", "yellow_tripdata"])
    ).metadata_by_key[dg.AssetKey(["warehouse", "yellow_tripdata"])]
    assert declared["dagster/table_name"] == "warehouse.yellow_tripdata"
    columns = [c.name for c in declared["dagster/column_schema"].columns]
    assert columns[-2:] == ["partition_month", "source_file"]
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        lineage = connection.exec_driver_sql(
            "SELECT DISTINCT partition_month::text, source_file FROM warehouse.green_tripdata ORDER BY 1"
        ).all()
        types: dict[str, str] = dict(
            connection.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'warehouse' AND table_name = 'yellow_tripdata'"
            ).all()
        )
    engine.dispose()
    assert lineage == [
        ("2021-01-01", "green_tripdata_2021-01.csv.gz"),
        ("2021-02-01", "green_tripdata_2021-02.csv.gz"),
    ]
    assert types["passenger_count"] == "integer"
    assert types["pickup_datetime"] == "timestamp without time zone"
    assert types["fare_amount"] == "double precision"
    assert types["partition_month"] == "date"


def test_each_month_is_a_partition_with_brin_on_pickup_time(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    for month in ("2021-01", "2021-02", "2021-02"):
        result = run(trip_keys("yellow"), resources, instance, month)
        assert result.success
    meta = materialization_metadata(result, "warehouse/yellow_tripdata")
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        children = partitions(connection, "warehouse", "yellow_tripdata")
        indexes = connection.exec_driver_sql(
            "SELECT c.relname, am.amname, a.attname FROM pg_index AS x "
            "JOIN pg_class AS c ON c.oid = x.indrelid JOIN pg_class AS i ON i.oid = x.indexrelid "
            "JOIN pg_am AS am ON am.oid = i.relam "
            "JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
            "WHERE c.relname LIKE 'yellow_tripdata%%' ORDER BY 1, 2"
        ).all()
        size = tree_bytes(connection, "warehouse", "yellow_tripdata")
    engine.dispose()
    assert children == ["yellow_tripdata_2021_01", "yellow_tripdata_2021_02"]
    assert [tuple(i) for i in indexes] == [
        (table, "brin", "pickup_datetime") for table in ["yellow_tripdata", *children]
    ]  # on the parent (a partitioned index) and every month; none on partition_month
    # The parent's own size is 0: the metadata sums its partitions.
    assert meta["table_bytes"] == size > 0
    assert meta["rows_replaced"] == meta["rows_written"] == 2000
    assert meta["swap_attempts"] == 1 and meta["swap_lock_ms"] > 0


def dg_field(name: str):  # noqa: ANN201 - a pyarrow compute expression
    import pyarrow.dataset as pads

    return pads.field(name)


def set_database_default(pg_url: str, setting: str, value: str) -> None:
    """``setting`` for every later session of the test's database (as a DBA would set it)."""
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.begin() as connection:
        database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
        connection.exec_driver_sql(f"ALTER DATABASE {database} SET {setting} TO '{value}'")
    engine.dispose()


def test_load_times_are_shown_in_utc_whatever_the_servers_time_zone(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    """A database (or role, or server) in America/New_York showed `loaded_at` at -05:00,
    beside BigQuery's UTC times for the same kind of load; the docs say UTC."""
    set_database_default(pg_url, "timezone", "America/New_York")
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    for _ in range(2):
        result = run(trip_keys("yellow"), resources, instance, "2021-01")
        assert result.success
    meta = materialization_metadata(result, "warehouse/yellow_tripdata")
    assert meta["loaded_at"].endswith("+00:00"), meta["loaded_at"]
    assert meta["previous_loaded_at"].endswith("+00:00"), meta["previous_loaded_at"]


@pytest.mark.parametrize("date_style", ["SQL, DMY", "German", "Postgres, MDY"])
def test_loads_and_reads_whatever_the_servers_date_style(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance, date_style: str
) -> None:
    """A database (or server, role, PGDATESTYLE) with another DateStyle failed every load
    ("can't parse timestamptz with DateStyle ...": psycopg parses ISO only) and every
    month read as text (``03/14/2021 02:30:00``: an invalid value)."""
    set_database_default(pg_url, "DateStyle", date_style)
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    result = run(trip_keys("green"), resources, instance, "2021-01")
    assert result.success
    lake = pq.read_table(next((tmp_path / "lake" / "lake" / "green_tripdata").rglob("*.parquet")))
    warehouse = resources["warehouse"].engine()
    month = read_query_arrow(
        warehouse,
        "warehouse",
        "green_tripdata",
        " WHERE partition_month = %(m)s",
        {"m": date(2021, 1, 1)},
    )
    assert sorted(month["pickup_datetime"].to_pylist()) == sorted(
        lake["pickup_datetime"].to_pylist()
    )


def test_zones_reach_the_warehouse_with_na_text(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    keys = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
    assert run(keys, resources, instance).success
    result = run(keys, resources, instance)
    assert result.success
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        total = connection.exec_driver_sql("SELECT count(*) FROM warehouse.taxi_zones").scalar()
        size = connection.exec_driver_sql(
            "SELECT pg_total_relation_size('warehouse.taxi_zones')"
        ).scalar_one()
        na = connection.exec_driver_sql(
            "SELECT zone, service_zone FROM warehouse.taxi_zones WHERE location_id = 265"
        ).one()
        pk = connection.exec_driver_sql(
            "SELECT count(*) FROM information_schema.table_constraints "
            "WHERE table_name = 'taxi_zones' AND constraint_type = 'PRIMARY KEY'"
        ).scalar()
    engine.dispose()
    assert (total, tuple(na), pk) == (265, ("NA", "N/A"), 1)
    # A plain table has no partition tree: its own size (the sum over its tree said 0).
    assert materialization_metadata(result, "warehouse/taxi_zones")["table_bytes"] == size > 0


# Real TLC samples served in each upstream layout: (file in shared/, path on the mirror,
# source setting, service, month, published rows).
REAL_SAMPLES = [
    ("yellow_tripdata_2021-01.head20k.csv", "yellow/yellow_tripdata_2021-01.csv.gz", "dtc", "yellow", "2021-01", 20000),
    ("yellow_tripdata_2020-01.head999.csv", "yellow/yellow_tripdata_2020-01.csv.gz", "dtc", "yellow", "2020-01", 999),
    ("green_tripdata_2019-01.head1000.csv", "green/green_tripdata_2019-01.csv.gz", "dtc", "green", "2019-01", 1000),
    ("fhvhv_tripdata_2021-06.dtc-fhv-layout.head100.csv", "fhv/fhv_tripdata_2021-06.csv.gz", "dtc", "fhv", "2021-06", 100),
    ("green_tripdata_2024-01.parquet", "green_tripdata_2024-01.parquet", "tlc", "green", "2024-01", 56551),
]  # fmt: skip


@pytest.mark.parametrize("sample", REAL_SAMPLES, ids=[s[0] for s in REAL_SAMPLES])
def test_real_samples_arrive_whole(
    sample: tuple, shared_samples: Path, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    name, mirror_path, source, service, month, rows = sample
    root = tmp_path / "real_mirror"
    target = root / mirror_path
    target.parent.mkdir(parents=True)
    if target.suffix == ".gz":
        target.write_bytes(gzip.compress((shared_samples / name).read_bytes(), mtime=0))
    else:
        shutil.copyfile(shared_samples / name, target)
    with FaultyMirror(root) as mirror:
        resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url, source=source)
        result = run(trip_keys(service), resources, instance, month)
    assert result.success
    assert materialization_metadata(result, f"raw/{service}_tripdata")["source_rows"] == rows
    assert (
        materialization_metadata(result, f"lake/{service}_tripdata")["dagster/partition_row_count"]
        == rows
    )
    assert warehouse_counts(pg_url, f"{service}_tripdata") == {month: rows}


def test_real_zone_lookup(
    shared_samples: Path, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "real_mirror"
    (root / "misc").mkdir(parents=True)
    shutil.copyfile(
        shared_samples / "taxi+_zone_lookup.csv", root / "misc" / "taxi_zone_lookup.csv"
    )
    with FaultyMirror(root) as mirror:
        resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
        assert run(
            ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"], resources, instance
        ).success
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT location_id, borough, zone, service_zone FROM warehouse.taxi_zones "
            "WHERE location_id IN (1, 264, 265) ORDER BY 1"
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "EWR", "Newark Airport", "EWR"),
        (264, "Unknown", "NV", "N/A"),
        (265, "Unknown", "NA", "N/A"),
    ]
