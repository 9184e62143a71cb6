"""raw -> lake with the real assets, a real HTTP mirror and a temp lake folder."""

import datetime as dt
import gzip
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_assets.devdata import write_month
from taxi_assets_tests.faults_support import add_column
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import (
    current_raw_file,
    lake_dataset,
    materializable,
    materialization_metadata,
    pipeline_resources,
    raw_manifest,
    run,
)

MONTH = "2021-01"


def published_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return len([line for line in lines if line.strip()]) - 1


def published_header(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).schema_arrow.names
    return gzip.decompress(path.read_bytes()).decode().splitlines()[0].split(",")


@pytest.mark.parametrize("source", ["dtc", "tlc"])
@pytest.mark.parametrize("service", ["yellow", "green", "fhv"])
def test_every_published_row_reaches_the_lake(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance, service: str, source: str
) -> None:
    lake = tmp_path / "lake"
    dataset = f"{service}_tripdata"
    resources = pipeline_resources(mirror.url, lake, source=source)
    result = run([f"raw/{dataset}", f"lake/{dataset}"], resources, instance, MONTH)
    assert result.success

    name = f"{dataset}_{MONTH}.{'csv.gz' if source == 'dtc' else 'parquet'}"
    upstream = Path(mirror.root) / (f"{service}/{name}" if source == "dtc" else name)
    stored = current_raw_file(lake, dataset, MONTH)
    assert stored.name == name
    assert stored.read_bytes() == upstream.read_bytes()
    raw_meta = materialization_metadata(result, f"raw/{dataset}")
    assert stored.parent.name == raw_meta["sha256"]  # content-addressed
    assert raw_meta["path"] == str(stored)
    assert raw_meta["source_rows"] == published_rows(upstream)
    # The file's own columns, each described by the contract column it feeds.
    raw_columns = raw_meta["dagster/column_schema"].columns
    assert [c.name for c in raw_columns] == published_header(upstream)
    assert all(c.description.startswith("-> ") for c in raw_columns)
    assert any(c.description.startswith("-> pickup_datetime ") for c in raw_columns)

    parquet = lake / "lake" / dataset / "year=2021" / "month=01" / f"{dataset}_{MONTH}.parquet"
    table = pq.read_table(parquet)
    assert table.num_rows == published_rows(upstream)
    # Lineage: the lake file names the raw revision it was parsed from.
    lineage = table.schema.metadata
    assert lineage[b"source_sha256"].decode() == raw_meta["sha256"]
    assert lineage[b"source_file"].decode() == name
    assert table.schema.field("pickup_datetime").type == pa.timestamp("us")
    assert pq.ParquetFile(parquet).metadata.row_group(0).column(0).compression == "ZSTD"
    lake_meta = materialization_metadata(result, f"lake/{dataset}")
    assert lake_meta["dagster/partition_row_count"] == table.num_rows
    # Generated files, like real ones, hold some pickups before and after their month.
    pickups = table.column("pickup_datetime")
    outside = pc.or_(
        pc.less(pickups, pa.scalar(dt.datetime(2021, 1, 1), pa.timestamp("us"))),
        pc.greater_equal(pickups, pa.scalar(dt.datetime(2021, 2, 1), pa.timestamp("us"))),
    )
    assert lake_meta["rows_outside_partition"] == pc.sum(outside).as_py() > 0
    assert lake_meta["contract_version"] == "1"
    assert lake_meta["source_sha256"] == raw_meta["sha256"]
    if service != "fhv":
        assert table.schema.field("passenger_count").type == pa.int32()
        assert table.column("vendor_id").null_count > 0  # the null block is kept, not dropped
    # The whole lake reads as one Hive-partitioned dataset.
    assert lake_dataset(lake, dataset).count_rows() == table.num_rows


def test_rematerializing_replaces_the_month_and_skips_unchanged_files(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata"]
    first = run(keys, resources, instance, MONTH)
    assert materialization_metadata(first, "raw/yellow_tripdata")["download"] == "downloaded"

    again = run(keys, resources, instance, MONTH)
    raw_meta = materialization_metadata(again, "raw/yellow_tripdata")
    assert raw_meta["download"] == "skipped: upstream unchanged"
    first_schema = materialization_metadata(first, "raw/yellow_tripdata")["dagster/column_schema"]
    assert raw_meta["dagster/column_schema"] == first_schema  # carried over, not lost
    assert own_mirror.requests_seen("/yellow/yellow_tripdata_2021-01.csv.gz").count("GET") == 1
    record = instance.get_latest_materialization_event(dg.AssetKey(["raw", "yellow_tripdata"]))
    assert record is not None

    # TLC republishes the month: a new ETag means a new download and a replaced lake file.
    write_month(
        Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=1234, seed=7
    )
    third = run(keys, resources, instance, MONTH)
    assert materialization_metadata(third, "raw/yellow_tripdata")["download"] == "downloaded"
    month_dir = lake / "lake" / "yellow_tripdata" / "year=2021" / "month=01"
    assert [p.name for p in month_dir.iterdir()] == ["yellow_tripdata_2021-01.parquet"]
    assert pq.read_table(month_dir / "yellow_tripdata_2021-01.parquet").num_rows == 1234
    versions = {
        materialization_metadata(r, "raw/yellow_tripdata")["sha256"] for r in (first, again, third)
    }
    assert len(versions) == 2


def test_switching_source_keeps_both_files_as_revisions(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    assert run("raw/green_tripdata", pipeline_resources(mirror.url, lake), instance, MONTH).success
    assert run(
        "raw/green_tripdata", pipeline_resources(mirror.url, lake, source="tlc"), instance, MONTH
    ).success
    manifest = raw_manifest(lake, "green_tripdata", MONTH)
    assert [r["name"] for r in manifest["revisions"]] == [
        "green_tripdata_2021-01.csv.gz",
        "green_tripdata_2021-01.parquet",
    ]
    assert current_raw_file(lake, "green_tripdata", MONTH).name == "green_tripdata_2021-01.parquet"


def test_404_fails_clearly_without_retries(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    result = run(
        "raw/yellow_tripdata", pipeline_resources(mirror.url, lake), instance, "2019-03", False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "yellow_tripdata_2019-03.csv.gz is not published at http://127.0.0.1" in str(failure)
    assert not (lake / "raw" / "yellow_tripdata").exists() or not any(
        (lake / "raw" / "yellow_tripdata").iterdir()
    )


def test_truncated_gzip_leaves_nothing_in_the_lake(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    target = Path(own_mirror.root) / "yellow" / "yellow_tripdata_2021-01.csv.gz"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    lake = tmp_path / "lake"
    result = run(
        ["raw/yellow_tripdata", "lake/yellow_tripdata"],
        pipeline_resources(own_mirror.url, lake),
        instance,
        MONTH,
        raise_on_error=False,
    )
    assert not result.success
    assert "not a complete gzip stream" in str(
        result.get_step_failure_events()[0].step_failure_data.error
    )
    leftovers = [p for p in lake.rglob("*") if p.is_file()] if lake.exists() else []
    assert leftovers == []


def test_retries_after_injected_server_errors(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    path = "/fhv/fhv_tripdata_2021-02.csv.gz"
    mirror.inject(path, Fault.status(500), Fault.status(502), methods=["GET"])
    result = run(
        "raw/fhv_tripdata", pipeline_resources(mirror.url, tmp_path / "lake"), instance, "2021-02"
    )
    assert result.success
    assert mirror.requests_seen(path).count("GET") == 3


def test_unknown_column_is_rejected_and_nothing_reaches_the_lake(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    target = Path(own_mirror.root) / "green" / "green_tripdata_2021-01.csv.gz"
    add_column(target, "mystery_fee", "1.5")
    error = green_lake_step_error(own_mirror, tmp_path, instance)
    assert "mystery_fee" in error and "green_tripdata_2021-01.csv.gz" in error


def green_lake_step_error(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> str:
    """Runs raw and lake of green 2021-01, which must fail writing nothing to the lake;
    the failure's message."""
    lake = tmp_path / "lake"
    result = run(
        ["raw/green_tripdata", "lake/green_tripdata"],
        pipeline_resources(own_mirror.url, lake),
        instance,
        MONTH,
        raise_on_error=False,
    )
    assert not result.success
    assert not (lake / "lake").exists() or not [
        p for p in (lake / "lake").rglob("*") if p.is_file()
    ]
    return str(result.get_step_failure_events()[0].step_failure_data.error)


def test_quoted_line_break_is_rejected_naming_its_line(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # The reader parses the value; the download counted lines: the counts disagree, and
    # the message says why (TLC files hold one row per line).
    target = Path(own_mirror.root) / "green" / "green_tripdata_2021-01.csv.gz"
    lines = gzip.decompress(target.read_bytes()).decode().splitlines()
    fields = lines[5].split(",")
    fields[3] = f'"{fields[3]}\nY"'  # store_and_fwd_flag
    lines[5] = ",".join(fields)
    target.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    error = green_lake_step_error(own_mirror, tmp_path, instance)
    assert "green_tripdata_2021-01.csv.gz: parsed" in error, error
    assert "a quoted value opened on line 6 holds a line break" in error


def test_zones_keep_na_text(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    assert run(
        ["raw/taxi_zone_lookup", "lake/taxi_zones"], pipeline_resources(mirror.url, lake), instance
    ).success
    zones = pq.read_table(lake / "lake" / "taxi_zones.parquet").to_pylist()
    assert len(zones) == 265
    by_id = {row["location_id"]: row for row in zones}
    assert (by_id[264]["zone"], by_id[264]["service_zone"]) == ("NV", "N/A")
    assert (by_id[265]["zone"], by_id[265]["service_zone"]) == ("NA", "N/A")


def test_months_before_a_service_existed_are_not_its_partitions(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Each service's partitions start at its first month: green's at 2014-01 even when
    TAXI_FIRST_MONTH is earlier. A month before it is refused before anything is fetched."""
    from taxi_assets.definitions import build_definitions

    history = build_definitions("2013-01")
    green = history.resolve_assets_def(dg.AssetKey(["raw", "green_tripdata"]))
    assert green.partitions_def is not None
    assert green.partitions_def.get_first_partition_key() == "2014-01"
    yellow = history.resolve_assets_def(dg.AssetKey(["raw", "yellow_tripdata"]))
    assert yellow.partitions_def is not None
    assert yellow.partitions_def.get_first_partition_key() == "2013-01"
    lake = tmp_path / "lake"
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2013-05"):
        dg.materialize(
            materializable(history),
            selection=[
                dg.AssetKey(["raw", "green_tripdata"]),
                dg.AssetKey(["lake", "green_tripdata"]),
            ],
            partition_key="2013-05",
            resources=pipeline_resources(mirror.url, lake),
            instance=instance,
        )
    assert mirror.requests_seen("/green/green_tripdata_2013-05.csv.gz") == []
    assert not lake.exists() or not [p for p in lake.rglob("*") if p.is_file()]
