"""The warehouse in BigQuery: the real assets, a real HTTP mirror, and bqemulator.

What the emulator stands in for: BigQuery's REST API (datasets, tables, load jobs,
queries, multi-statement transactions) over DuckDB. What it cannot show is listed in
docs/deployment.md ("What the tests prove"): partition decorators, external tables, and
BigQuery's own reading of gs:// objects.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from google.cloud import bigquery

from taxi_assets.assets.analytics.trips_view import VIEW_COLUMNS, trip_stream_schema
from taxi_assets.checks import logged_months
from taxi_assets.services import SERVICES
from taxi_assets_tests.bq_emulator import BigQueryEmulator, EmulatedProject
from taxi_assets_tests.faults_support import run_warnings
from taxi_assets_tests.googlesql_lexical import decode_string_literal
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    bigquery_resources,
    engine_for,
    lake_dataset,
    materialization_metadata,
    pipeline_resources,
    run,
)

ZONES = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
STATS = "analytics/monthly_zone_stats"


def trip_keys(*services: str) -> list[str]:
    return [f"{layer}/{s}_tripdata" for s in services for layer in ("raw", "lake", "warehouse")]


def lake_month(lake: Path | str, dataset: str, month: str) -> pads.Dataset:
    data = lake_dataset(Path(lake), dataset)
    return data.filter(
        (pads.field("year") == int(month[:4])) & (pads.field("month") == int(month[-2:]))
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_months_load_replace_and_keep_neighbours(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = bigquery_resources(mirror.url, lake, bq_project.url)
    for month in ("2021-01", "2021-02", "2021-01"):  # a month, another, the first again
        result = run(trip_keys("yellow", "green"), resources, instance, month)
        assert result.success
    for dataset in ("yellow_tripdata", "green_tripdata"):
        expected = {m: lake_month(lake, dataset, m).count_rows() for m in ("2021-01", "2021-02")}
        assert bq_project.month_counts(dataset) == expected

    # What the UI shows for the load, and the checks that ran with it.
    january = lake_month(lake, "yellow_tripdata", "2021-01")
    meta = materialization_metadata(result, "warehouse/yellow_tripdata")
    assert meta["rows_written"] == meta["rows_replaced"] == january.count_rows()
    assert meta["dagster/partition_row_count"] == january.count_rows()
    assert (meta["month_replace"], meta["loaded_from"]) == ("transaction", "upload")
    assert meta["table"] == "warehouse.yellow_tripdata"
    # Counted by BigQuery's own SQL: the same as the lake's count of the same file.
    lake_meta = materialization_metadata(result, "lake/yellow_tripdata")
    assert meta["rows_outside_partition"] == lake_meta["rows_outside_partition"] > 0
    assert meta["min_pickup_datetime"] < "2021-01-01" < meta["max_pickup_datetime"]
    assert "pickup_datetime" in meta["preview"]
    checks = check_results(result)
    assert checks[("warehouse/yellow_tripdata", "rows_match_lake")] is True
    assert checks[("warehouse/yellow_tripdata", "freshness")] is True
    # What freshness reads when Dagster's records know no load: BigQuery's load log.
    assert logged_months(resources["warehouse"], "yellow_tripdata") == ["2021-01", "2021-02"]

    # The table: MONTH partitions on partition_month, clustered on the pickup zone, naive
    # New York times as DATETIME, every staging table gone.
    table = bq_project.table("warehouse.yellow_tripdata")
    partitioning = table.time_partitioning
    assert (partitioning.type_, partitioning.field) == ("MONTH", "partition_month")
    assert table.clustering_fields == ["pu_location_id"]
    types = {field.name: field.field_type for field in table.schema}
    assert types["pickup_datetime"] == "DATETIME"
    assert types["partition_month"] == "DATE"
    assert types["passenger_count"] in ("INT64", "INTEGER")
    assert types["fare_amount"] in ("FLOAT64", "FLOAT")
    assert [name for name in bq_project.tables("warehouse") if name.startswith("_")] == []
    # Each column described by its contract (as PostgreSQL's column comments), and no
    # description mistaken for a default value expression (SQL, which BigQuery would parse).
    contract = trip_stream_schema("yellow")
    assert {f.name: (f.description, f.default_value_expression) for f in table.schema} == {
        f.name: ((f.metadata or {})[b"description"].decode(), None) for f in contract
    }

    # Values arrive exactly: the lake's extremes and sums, and the lineage columns.
    lake_table = january.to_table(columns=["pickup_datetime", "total_amount"])
    row = bq_project.rows(
        "SELECT MIN(pickup_datetime) AS low, MAX(pickup_datetime) AS high, "
        "SUM(total_amount) AS total FROM `{project}.warehouse.yellow_tripdata` "
        "WHERE partition_month = DATE '2021-01-01'"
    )[0]
    assert row["low"] == pc.min(lake_table["pickup_datetime"]).as_py()
    assert row["high"] == pc.max(lake_table["pickup_datetime"]).as_py()
    assert row["total"] == pytest.approx(pc.sum(lake_table["total_amount"]).as_py())
    lineage = bq_project.rows(
        "SELECT DISTINCT partition_month, source_file FROM `{project}.warehouse.green_tripdata` "
        "ORDER BY 1"
    )
    assert [(r["partition_month"], r["source_file"]) for r in lineage] == [
        (date(2021, 1, 1), "green_tripdata_2021-01.csv.gz"),
        (date(2021, 2, 1), "green_tripdata_2021-02.csv.gz"),
    ]
    # warehouse.loads: one row per table and month (January loaded twice), naming the raw
    # revision the month was built from; the reload's metadata shows the previous one.
    loads = bq_project.rows(
        "SELECT table_name, partition_month, source_sha256, row_count, run_id "
        "FROM `{project}.warehouse.loads` ORDER BY 1, 2"
    )
    raw = materialization_metadata(result, "raw/yellow_tripdata")
    assert [(r["table_name"], f"{r['partition_month']:%Y-%m}") for r in loads] == [
        ("warehouse.green_tripdata", "2021-01"),
        ("warehouse.green_tripdata", "2021-02"),
        ("warehouse.yellow_tripdata", "2021-01"),
        ("warehouse.yellow_tripdata", "2021-02"),
    ]
    january_load = loads[2]
    assert january_load["source_sha256"] == raw["sha256"]
    assert (january_load["row_count"], january_load["run_id"]) == (
        january.count_rows(),
        result.run_id,
    )
    assert meta["previous_source_sha256"] == raw["sha256"] and meta["revision_changed"] is False
    assert meta["row_count_change"] == 0


def test_zones_reach_bigquery_with_na_text(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url)
    assert run(ZONES, resources, instance).success
    assert run(ZONES, resources, instance).success  # replaced, not appended
    rows = bq_project.rows(
        "SELECT COUNT(*) AS n, COUNTIF(location_id = 265 AND zone = 'NA' "
        "AND service_zone = 'N/A') AS na FROM `{project}.warehouse.taxi_zones`"
    )
    assert (rows[0]["n"], rows[0]["na"]) == (265, 1)
    assert bq_project.table("warehouse.taxi_zones").time_partitioning is None


def test_a_tlc_parquet_month_arrives_whole(
    shared_samples: Path, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    """TLC's real green 2024-01 file (56,551 rows), served in TLC's layout."""
    root = tmp_path / "real_mirror"
    root.mkdir()
    shutil.copyfile(
        shared_samples / "green_tripdata_2024-01.parquet", root / "green_tripdata_2024-01.parquet"
    )
    with FaultyMirror(root) as mirror:
        resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url, source="tlc")
        result = run(trip_keys("green"), resources, instance, "2024-01")
    assert result.success
    assert bq_project.month_counts("green_tripdata") == {"2024-01": 56551}
    published = pq.read_table(
        root / "green_tripdata_2024-01.parquet", columns=["lpep_pickup_datetime", "fare_amount"]
    )
    row = bq_project.rows(
        "SELECT MAX(pickup_datetime) AS high, SUM(fare_amount) AS fares "
        "FROM `{project}.warehouse.green_tripdata`"
    )[0]
    assert row["high"] == pc.max(published["lpep_pickup_datetime"]).as_py()
    assert row["fares"] == pytest.approx(pc.sum(published["fare_amount"]).as_py())


def test_a_gcs_lake_is_loaded_from_gs_uris(
    mirror: FaultyMirror,
    bq_project: EmulatedProject,
    bq_emulator: BigQueryEmulator,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the lake on GCS the warehouse asset hands BigQuery the month's ``gs://`` URI
    (``load_table_from_uri``) and uploads nothing.

    Here the lake is written through gcsfs to a GCS emulator that keeps its objects as
    files, in the folder from which the BigQuery emulator reads ``gs://`` URIs: what the
    lake wrote is what BigQuery loaded. Real BigQuery reads the object from GCS itself;
    its access to the bucket (IAM) is not tested here.
    """
    from taxi_assets_tests.gcs_emulator import emulated_gcs

    shutil.rmtree(bq_emulator.gcs_data_dir, ignore_errors=True)
    try:
        with emulated_gcs(monkeypatch, data_dir=bq_emulator.gcs_data_dir) as gcs:
            resources = bigquery_resources(mirror.url, "gs://taxi-lake/nyc", bq_project.url)
            result = run(trip_keys("yellow"), resources, instance, "2021-01")
            assert result.success
            name = "nyc/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
            stored = gcs.objects(prefix=name)[name]
    finally:
        shutil.rmtree(bq_emulator.gcs_data_dir, ignore_errors=True)
    meta = materialization_metadata(result, "warehouse/yellow_tripdata")
    assert meta["loaded_from"] == f"gs://taxi-lake/{name}"
    rows = pq.ParquetFile(pa_buffer(stored)).metadata.num_rows
    assert bq_project.month_counts("yellow_tripdata") == {"2021-01": rows}
    assert check_results(result)[("warehouse/yellow_tripdata", "rows_match_lake")] is True


def pa_buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


def stats_rows_postgres(pg_url: str) -> list[dict[str, Any]]:
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT * FROM analytics.monthly_zone_stats "
                "WHERE partition_month = DATE '2021-01-01' ORDER BY borough, service"
            )
        ).mappings()
        result = [dict(row) for row in rows]
    engine.dispose()
    return result


def test_analytics_month_is_the_same_in_bigquery_and_postgresql(
    mirror: FaultyMirror,
    tmp_path: Path,
    bq_project: EmulatedProject,
    pg_url: str,
    instance: dg.DagsterInstance,
) -> None:
    """The same lake loaded into both engines gives the same statistics: the two SQL
    dialects, generated from the same per-service measures, agree row for row."""
    lake = tmp_path / "lake"
    in_bigquery = bigquery_resources(mirror.url, lake, bq_project.url)
    assert run(ZONES, in_bigquery, instance).success
    services = ("yellow", "green", "fhv")
    assert run(trip_keys(*services), in_bigquery, instance, "2021-01").success
    first = run(STATS, in_bigquery, instance, "2021-01")
    result = run(STATS, in_bigquery, instance, "2021-01")  # replaces the month
    assert first.success and result.success

    in_postgres = pipeline_resources(mirror.url, lake, pg_url)
    assert run("warehouse/taxi_zones", in_postgres, instance).success
    warehouse = [f"warehouse/{s}_tripdata" for s in services]
    assert run(warehouse, in_postgres, instance, "2021-01").success
    assert run(STATS, in_postgres, instance, "2021-01").success

    expected = stats_rows_postgres(pg_url)
    got = bq_project.rows(
        "SELECT * FROM `{project}.analytics.monthly_zone_stats` ORDER BY borough, service"
    )
    assert len(got) == len(expected) > 3
    for bq_row, pg_row in zip(got, expected, strict=True):
        for column in ("partition_month", "service", "borough", "trips", "passengers"):
            assert bq_row[column] == pg_row[column], column
        for column in ("avg_distance_mi", "avg_duration_min"):
            if pg_row[column] is None:  # FHV publishes no distances: null in both
                assert bq_row[column] is None, column
            else:
                assert bq_row[column] == pytest.approx(pg_row[column], rel=1e-9), column
        revenue = bq_row["revenue"]
        assert revenue == pg_row["revenue"] and (revenue is None or isinstance(revenue, Decimal))
    assert {row["service"] for row in got} == set(services)
    trips = sum(lake_month(lake, f"{s}_tripdata", "2021-01").count_rows() for s in services)
    assert sum(row["trips"] for row in got) == trips

    meta = materialization_metadata(result, STATS)
    assert meta["trips"] == trips
    assert meta["rows_replaced"] == meta["dagster/partition_row_count"] == len(got)
    assert meta["table"] == "analytics.monthly_zone_stats"
    assert "yellow" in meta["trips_per_day"] and Path(meta["chart_path"]).exists()
    assert meta["rows_outside_partition"] > 0
    table = bq_project.table("analytics.monthly_zone_stats")
    assert table.time_partitioning.field == "partition_month"
    assert {f.name: f.mode for f in table.schema}["trips"] == "REQUIRED"
    assert [name for name in bq_project.tables("analytics") if name.startswith("_")] == []


def test_an_infinite_nan_or_huge_amount_counts_as_unknown_in_bigquery(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    """As test_analytics.py's PostgreSQL case, on the emulator: FLOAT64 holds inf and NaN
    (the contract keeps them) and 1e15; the month's stats leave them out instead of failing
    on CAST(inf AS NUMERIC) or overflow, or averaging NaN. The emulator's DuckDB orders NaN
    above every number and equal to itself, BigQuery makes every NaN comparison false: the
    measures' abs(x) < 1e9 is false for NaN and inf in both."""
    resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url)
    assert run(ZONES, resources, instance).success
    assert run(trip_keys("yellow"), resources, instance, "2021-01").success
    trips = "`{project}.warehouse.yellow_tripdata`"
    picked = bq_project.rows(
        f"SELECT pu_location_id AS zone, pickup_datetime AS pickup FROM {trips} "
        # In the busiest zone: its cell's sums keep their other trips.
        f"WHERE pu_location_id = (SELECT pu_location_id FROM {trips} "
        "GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1) "
        "GROUP BY 1, 2 HAVING COUNT(*) = 1 ORDER BY 2 LIMIT 3"
    )
    assert len(picked) == 3
    values = [("+inf", "-inf"), ("nan", "nan"), ("1e15", "1e12")]
    with bq_project.client() as client:
        for row, (amount, distance) in zip(picked, values, strict=True):
            client.query(
                f"UPDATE {trips.format(project=bq_project.project)} "
                "SET total_amount = CAST(@a AS FLOAT64), trip_distance = CAST(@d AS FLOAT64) "
                "WHERE pu_location_id = @zone AND pickup_datetime = @pickup",
                job_config=bigquery.QueryJobConfig(
                    query_parameters=[
                        bigquery.ScalarQueryParameter("a", "STRING", amount),
                        bigquery.ScalarQueryParameter("d", "STRING", distance),
                        bigquery.ScalarQueryParameter("zone", "INT64", row["zone"]),
                        bigquery.ScalarQueryParameter("pickup", "DATETIME", row["pickup"]),
                    ]
                ),
            ).result()
    odd = bq_project.rows(
        f"SELECT COUNTIF(IS_INF(total_amount)) AS inf, COUNTIF(IS_NAN(total_amount)) AS nan "
        f"FROM {trips}"
    )[0]
    assert (odd["inf"], odd["nan"]) == (1, 1)
    # IS_NAN / IS_INF and bounds other than the measures' own 1e9.
    expected = bq_project.rows(
        "SELECT z.borough, "
        "ROUND(CAST(SUM(IF(IS_NAN(t.total_amount) OR IS_INF(t.total_amount) "
        "OR ABS(t.total_amount) >= 1e14, NULL, t.total_amount)) AS NUMERIC), 2) AS revenue, "
        "AVG(IF(IS_NAN(t.trip_distance) OR IS_INF(t.trip_distance) "
        "OR t.trip_distance < 0 OR t.trip_distance >= 1e11, NULL, t.trip_distance)) AS distance "
        f"FROM {trips} AS t JOIN `{{project}}.warehouse.taxi_zones` AS z "
        "ON z.location_id = t.pu_location_id GROUP BY 1"
    )
    assert run(STATS, resources, instance, "2021-01").success
    got = {
        row["borough"]: row
        for row in bq_project.rows(
            "SELECT borough, trips, revenue, avg_distance_mi "
            "FROM `{project}.analytics.monthly_zone_stats`"
        )
    }
    for row in expected:
        stats = got[row["borough"]]
        assert stats["revenue"] == row["revenue"], row["borough"]
        assert stats["avg_distance_mi"] == pytest.approx(row["distance"], rel=1e-9)
    assert (
        sum(row["trips"] for row in got.values())
        == bq_project.month_counts("yellow_tripdata")["2021-01"]
    )


def test_a_cell_whose_revenue_overflows_the_stats_fails_naming_the_month_in_bigquery(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    """As test_analytics.py's PostgreSQL case: 200,000 more trips in the busiest zone, each
    at 9e8 USD (under HUGE_NUMBER), sum to 1.8e14 in one cell, beyond NUMERIC(16,2). The
    run fails saying which month and why, and the stats table keeps its previous month."""
    resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url)
    assert run(ZONES, resources, instance).success
    assert run(trip_keys("yellow"), resources, instance, "2021-01").success
    assert run(STATS, resources, instance, "2021-01").success
    before = bq_project.rows("SELECT * FROM `{project}.analytics.monthly_zone_stats`")
    trips = "`{project}.warehouse.yellow_tripdata`"
    busiest = f"(SELECT pu_location_id FROM {trips} GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1)"
    bq_project.rows(
        f"INSERT INTO {trips} SELECT t.* FROM (SELECT * FROM {trips} "
        f"WHERE pu_location_id = {busiest} LIMIT 1) AS t, UNNEST(GENERATE_ARRAY(1, 200000))"
    )
    bq_project.rows(f"UPDATE {trips} SET total_amount = 9e8 WHERE pu_location_id = {busiest}")
    result = run(STATS, resources, instance, "2021-01", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "analytics/monthly_zone_stats 2021-01" in failure.message, failure.message
    assert "numeric(16,2)" in failure.message and "huge_number" in failure.message
    after = bq_project.rows("SELECT * FROM `{project}.analytics.monthly_zone_stats`")
    key = lambda row: (row["service"], row["borough"])  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)
    assert [name for name in bq_project.tables("analytics") if name.startswith("_")] == []


def test_analytics_waits_for_every_warehouse_table(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url)
    assert run(trip_keys("yellow"), resources, instance, "2021-01").success
    result = run(STATS, resources, instance, "2021-01", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "warehouse.green_tripdata" in failure.message
    assert "warehouse.taxi_zones" in failure.message


def test_the_trips_view_reads_every_service_and_services_loaded_later(
    mirror: FaultyMirror, tmp_path: Path, bq_project: EmulatedProject, instance: dg.DagsterInstance
) -> None:
    """As in PostgreSQL (test_analytics.py): one materialization; green and FHV get empty
    tables; green loaded afterwards shows in the view by itself."""
    resources = bigquery_resources(mirror.url, tmp_path / "lake", bq_project.url)
    for service in ("yellow", "fhvhv"):  # one run each: their partitions differ
        assert run(trip_keys(service), resources, instance, "2021-01").success
    result = run("analytics/trips", resources, instance)
    meta = materialization_metadata(result, "analytics/trips")
    assert meta["tables_created_empty"] == "green, fhv"
    view = bq_project.table("analytics.trips")
    assert view.table_type == "VIEW"
    # The statement names each column with its description, in the SELECT's order (the
    # column list renames by position). The emulator takes the column list and ignores its
    # OPTIONS (its views have no descriptions), so the text is checked by GoogleSQL's rules.
    assert [field.name for field in view.schema] == [c.name for c in VIEW_COLUMNS]
    definition = meta["definition"]
    for column in VIEW_COLUMNS:
        found = re.search(
            rf"`{column.name}` OPTIONS\(description=('(?:[^'\\]|\\.)*')\)", definition
        )
        assert found is not None, column.name
        assert decode_string_literal(found.group(1)) == column.description

    def in_view() -> dict[str, int]:
        rows = bq_project.rows(
            "SELECT service, COUNT(*) AS n FROM `{project}.analytics.trips` "
            "WHERE partition_month = DATE '2021-01-01' GROUP BY 1"
        )
        return {row["service"]: row["n"] for row in rows}

    counts = {s: bq_project.month_counts(f"{s}_tripdata").get("2021-01") for s in SERVICES}
    assert in_view() == {"yellow": counts["yellow"], "fhvhv": counts["fhvhv"]}
    assert counts["green"] is None and counts["fhv"] is None  # empty tables
    # ... which the monthly stats leave out, as missing ones (they count rows).
    from taxi_assets.assets.analytics.stats_table_bigquery import loaded_services

    with bq_project.client() as client:
        assert loaded_services(client, client.project)[0] == ["yellow", "fhvhv"]
    assert run(trip_keys("green"), resources, instance, "2021-01").success
    assert in_view()["green"] == bq_project.month_counts("green_tripdata")["2021-01"]


def test_a_temporary_table_that_cannot_be_dropped_is_a_warning_not_a_failure(
    mirror: FaultyMirror,
    tmp_path: Path,
    bq_project: EmulatedProject,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A role without bigquery.tables.delete: the month was published, then the staging
    table's drop failed the step, with no materialization recorded (the analytics cells
    table too). A mock, for a fault the emulator cannot cause: it has no IAM, so
    ``delete_table`` is made to answer 403 for the temporary tables only."""
    from google.api_core.exceptions import Forbidden

    delete_table = bigquery.Client.delete_table

    def refused(self: bigquery.Client, table: Any, *args: Any, **kwargs: Any) -> None:
        if "._stage_" in str(table) or "._cells_" in str(table):
            raise Forbidden("Access Denied: the caller lacks bigquery.tables.delete")
        delete_table(self, table, *args, **kwargs)

    monkeypatch.setattr(bigquery.Client, "delete_table", refused)
    lake = tmp_path / "lake"
    resources = bigquery_resources(mirror.url, lake, bq_project.url)
    assert run(ZONES, resources, instance).success
    result = run(trip_keys("yellow"), resources, instance, "2021-01")
    assert result.success
    rows = lake_month(lake, "yellow_tripdata", "2021-01").count_rows()
    assert bq_project.month_counts("yellow_tripdata") == {"2021-01": rows}
    assert materialization_metadata(result, "warehouse/yellow_tripdata")["rows_written"] == rows
    stats = run(STATS, resources, instance, "2021-01")
    assert stats.success
    said = [
        line
        for outcome in (result, stats)
        for line in run_warnings(instance, outcome.run_id)
        if "could not drop this temporary table" in line
    ]
    assert any("_stage_yellow_tripdata_202101_" in line for line in said), said
    assert any("_cells_monthly_zone_stats_202101_" in line for line in said), said
    assert all("it expires by itself within 1 day" in line for line in said)
