"""FHVHV from TLC's Parquet layout through raw -> lake -> warehouse: its checks and quality
signals, and bad files refused whole, naming file, row and column, with nothing partial
left in the lake or the warehouse."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    engine_for,
    lake_dataset,
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

KEYS = ["raw/fhvhv_tripdata", "lake/fhvhv_tripdata", "warehouse/fhvhv_tripdata"]
NAME = "fhvhv_tripdata_2021-01.parquet"


@pytest.fixture
def tlc_host(mirror_root: Path, tmp_path: Path) -> Iterator[FaultyMirror]:
    """A private copy of the generated files, served like TLC's host (403 when missing)."""
    root = tmp_path / "tlc_host"
    shutil.copytree(mirror_root, root)
    with FaultyMirror(root, missing_status=403) as server:
        yield server


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_tlc_month_loads_with_its_checks_and_signals(
    tlc_host: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    result = run(KEYS, pipeline_resources(tlc_host.url, lake, pg_url, "tlc"), instance, "2021-01")
    published = pq.ParquetFile(Path(tlc_host.root) / NAME).metadata.num_rows
    assert warehouse_counts(pg_url, "fhvhv_tripdata") == {"2021-01": published}
    checks = checks_of(result)
    for name in ("rows_match_raw", "schema_matches_contract", "rows_match_lake", "freshness"):
        assert checks[name].passed, name
    signals: dict[str, Any] = {k: v.value for k, v in checks["quality_signals"].metadata.items()}
    # FHVHV's own signals, counted on its own columns; no taxi-only signal.
    assert signals["rows"] == published
    assert signals["negative_trip_time_or_driver_pay"] > 0  # generated months carry a few
    assert {"pickup_before_request", "absurd_distance", "zero_distance"} <= set(signals)
    assert "null_block" not in signals and "negative_fare_or_total" not in signals
    table = lake_dataset(lake, "fhvhv_tripdata").to_table()
    negative = pc.or_(pc.less(table["trip_time"], 0), pc.less(table["driver_pay"], 0))
    assert signals["negative_trip_time_or_driver_pay"] == pc.sum(negative.cast(pa.int64())).as_py()
    meta = materialization_metadata(result, "raw/fhvhv_tripdata")
    assert meta["source"] == "tlc" and meta["source_rows"] == published
    # Columns a 2021 TLC month never fills (airport_fee typed null, no cbd_congestion_fee
    # yet, the course layouts' two): COPY leaves them to the table, which holds them null.
    empty = ["airport_fee", "cbd_congestion_fee", "sr_flag", "affiliated_base_number"]
    warehouse = materialization_metadata(result, "warehouse/fhvhv_tripdata")
    assert warehouse["null_columns"] == empty
    # One month from one file: the lineage columns are the staging table's defaults.
    assert warehouse["constant_columns"] == ["partition_month", "source_file"]
    counted = ", ".join(f"count({name})" for name in [*empty, "tips", "source_file"])
    counted += f", count(*) FILTER (WHERE source_file = '{NAME}')"
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        counts = connection.exec_driver_sql(f"SELECT {counted} FROM warehouse.fhvhv_tripdata").one()
    engine.dispose()
    assert tuple(counts) == (0, 0, 0, 0, published, published, published)


def republish(host: FaultyMirror, table: pa.Table) -> None:
    """TLC republishes the month: one row group, as TLC writes its files."""
    path = Path(host.root) / NAME
    pq.write_table(table, path, row_group_size=max(1, table.num_rows))


def assert_nothing_changed(
    lake: Path, pg_url: str, before_rows: int, before_file: bytes, lake_file: Path
) -> None:
    assert warehouse_counts(pg_url, "fhvhv_tripdata") == {"2021-01": before_rows}
    assert lake_file.read_bytes() == before_file  # the previous month, untouched
    month = lake / "lake" / "fhvhv_tripdata" / "year=2021" / "month=01"
    assert [p.name for p in month.iterdir()] == [lake_file.name]  # no partial file beside it


def lake_failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "lake__fhvhv_tripdata"
    assert failure.step_failure_data.user_failure_data is not None  # dg.Failure, no retries
    return str(failure.step_failure_data.error)


@pytest.fixture
def loaded(
    tlc_host: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> dict:
    """2021-01 loaded once: what a bad republished file must leave intact."""
    lake = tmp_path / "lake"
    resources = pipeline_resources(tlc_host.url, lake, pg_url, "tlc")
    assert run(KEYS, resources, instance, "2021-01").success
    lake_file = next((lake / "lake" / "fhvhv_tripdata").rglob("*.parquet"))
    return {
        "resources": resources,
        "lake": lake,
        "rows": warehouse_counts(pg_url, "fhvhv_tripdata")["2021-01"],
        "lake_file": lake_file,
        "lake_bytes": lake_file.read_bytes(),
        "published": pq.read_table(Path(tlc_host.root) / NAME),
    }


def test_unknown_columns_are_listed_with_the_expected_ones(
    tlc_host: FaultyMirror, loaded: dict, pg_url: str, instance: dg.DagsterInstance
) -> None:
    table: pa.Table = loaded["published"]
    renamed = [
        "ride_uuid" if n == "hvfhs_license_num" else "fare_cents" if n == "tips" else n
        for n in table.column_names
    ]
    republish(tlc_host, table.rename_columns(renamed))
    message = lake_failure(run(KEYS, loaded["resources"], instance, "2021-01", False))
    assert f"{NAME}: unknown column(s) ['ride_uuid', 'fare_cents']" in message
    assert "'hvfhs_license_num'" in message and "'base_passenger_fare'" in message  # expected
    assert_nothing_changed(
        loaded["lake"], pg_url, loaded["rows"], loaded["lake_bytes"], loaded["lake_file"]
    )


def test_a_non_numeric_fare_names_file_row_and_column(
    tlc_host: FaultyMirror, loaded: dict, pg_url: str, instance: dg.DagsterInstance
) -> None:
    table: pa.Table = loaded["published"]
    fares = pc.cast(table["base_passenger_fare"], pa.string()).to_pylist()
    fares[1776] = "n/a"  # data row 1777
    index = table.column_names.index("base_passenger_fare")
    republish(tlc_host, table.set_column(index, "base_passenger_fare", pa.array(fares)))
    message = lake_failure(run(KEYS, loaded["resources"], instance, "2021-01", False))
    assert f"{NAME}: data row 1777, column 'base_passenger_fare': invalid value 'n/a'" in message
    assert_nothing_changed(
        loaded["lake"], pg_url, loaded["rows"], loaded["lake_bytes"], loaded["lake_file"]
    )
