"""The BigQuery IO manager on its own: atomic month replace, failures, schema evolution.

Against bqemulator (the ``transaction`` path end to end). The ``partition-copy`` path
needs partition decorators, which the emulator refuses: its copy job is checked as
built, and run on the emulator up to the copy, which must leave the table unchanged.
"""

import dataclasses
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery

from taxi_assets.assets.load_records import LakeLineage, month_loads
from taxi_assets.bq import client as client_module
from taxi_assets.bq.names import TableName
from taxi_assets.bq.replace import Staged, partition_copy_job, shaped_select
from taxi_assets.bq.types import bigquery_type
from taxi_assets.io_managers.bigquery import BigQueryIOManager
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.table_load import ParquetPart, ParquetTableLoad, lake_parts
from taxi_assets.partitions import monthly_partitions, parse_month
from taxi_assets.resources.bigquery import BigQueryWarehouse, parse_bigquery_url
from taxi_assets.storage import silent_peers
from taxi_assets_tests.bq_emulator import EmulatedProject
from taxi_assets_tests.fault_proxy import FaultProxy
from taxi_assets_tests.http_faults import Fault
from taxi_assets_tests.slow_link import SlowLink

MONTHLY = monthly_partitions("2021-01")
BASE = pa.schema(
    [
        ("pickup", pa.timestamp("us")),
        ("zone", pa.int32()),
        ("fare", pa.float64()),
        ("version", pa.string()),
    ]
)
LINEAGE = [("partition_month", pa.date32()), ("source_file", pa.string())]
Load = Callable[[str], ParquetTableLoad]


def month_file(folder: Path, month: str, rows: int, version: str, schema: pa.Schema = BASE) -> Path:
    """A lake-like Parquet file: ``rows`` trips of ``month``, tagged with ``version``."""
    start = datetime.combine(parse_month(month), datetime.min.time())
    columns: dict[str, pa.Array] = {
        "pickup": pa.array(
            [start.replace(hour=i % 24, microsecond=i) for i in range(rows)], pa.timestamp("us")
        ),
        "zone": pa.array([i % 7 + 1 for i in range(rows)], pa.int32()),
        "fare": pa.array([float(i) for i in range(rows)]),
        "version": pa.array([version] * rows),
        "tip": pa.array([0.5] * rows),
        "fare_text": pa.array(["not a number"] * rows),
    }
    table = pa.table({field.name: columns[field.name] for field in schema})
    path = folder / f"{month}-{version}.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def parquet_load(
    path: Path, month: str, expected: int | None, target: pa.Schema
) -> ParquetTableLoad:
    """The load as the warehouse asset builds it: the file plus lineage constants."""
    part = ParquetPart(
        str(path),
        pafs.LocalFileSystem(),
        {"partition_month": parse_month(month), "source_file": path.name},
    )
    schema = target
    for name, arrow_type in LINEAGE:
        schema = schema.append(pa.field(name, arrow_type))
    # The stream is never read by this IO manager (it loads the files): an empty one.
    reader = pa.RecordBatchReader.from_batches(schema, iter(()))
    return ParquetTableLoad(reader, expected, parts=lambda: (part,))


def materialize(
    bq_project: EmulatedProject, load: Load, month: str, **warehouse: Any
) -> dg.ExecuteInProcessResult:
    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=MONTHLY,
        metadata={
            "partition_expr": "partition_month",
            "cluster_by": ["zone"],
            "time_column": "pickup",
        },
    )
    def trips(context: dg.AssetExecutionContext) -> ParquetTableLoad:
        return load(context.partition_key)

    manager = BigQueryIOManager(warehouse=BigQueryWarehouse(url=bq_project.url, **warehouse))
    return dg.materialize(
        [trips], partition_key=month, resources={"io_manager": manager}, raise_on_error=False
    )


def versions(bq_project: EmulatedProject) -> dict[str, dict[str, int]]:
    """Rows per month and version: which load each month's rows came from."""
    rows = bq_project.rows(
        "SELECT FORMAT_DATE('%Y-%m', partition_month) AS month, version, COUNT(*) AS n "
        "FROM `{project}.warehouse.trips` GROUP BY 1, 2 ORDER BY 1, 2"
    )
    result: dict[str, dict[str, int]] = {}
    for row in rows:
        result.setdefault(row["month"], {})[row["version"]] = row["n"]
    return result


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    return error.message + "".join(cause.message for cause in [error.cause] if cause is not None)


def staging_tables(bq_project: EmulatedProject) -> list[str]:
    return [name for name in bq_project.tables("warehouse") if name.startswith("_")]


def test_a_month_is_replaced_and_its_neighbours_kept(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    def load(version: str, rows: int) -> Load:
        return lambda month: parquet_load(
            month_file(tmp_path, month, rows, version), month, rows, BASE
        )

    assert materialize(bq_project, load("v1", 10), "2021-01").success
    assert materialize(bq_project, load("v1", 7), "2021-02").success
    assert materialize(bq_project, load("v2", 12), "2021-01").success
    assert versions(bq_project) == {"2021-01": {"v2": 12}, "2021-02": {"v1": 7}}
    table = bq_project.table("warehouse.trips")
    assert table.clustering_fields == ["zone"]
    assert {f.name: f.field_type for f in table.schema}["pickup"] == "DATETIME"
    row = bq_project.rows(
        "SELECT MAX(pickup) AS high, ANY_VALUE(source_file) AS file FROM `{project}.warehouse.trips` "
        "WHERE partition_month = DATE '2021-01-01'"
    )[0]
    assert row["high"] == datetime(2021, 1, 1, 11, 0, 0, 11)  # microseconds kept
    assert row["file"] == "2021-01-v2.parquet"
    assert staging_tables(bq_project) == []


def test_hostile_source_file_text_reaches_the_table_and_the_load_log_intact(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    """The lineage constant and the load log's record are literals inside the month's
    transaction script: quotes, backslashes, newlines, a statement separator and non-ASCII
    text arrive as written (twice: the reload's DELETE of the log record matches too)."""
    hostile = "Zürich's \"fïle\" \\ 🚕\n'; DELETE FROM trips; --.csv.gz"

    def load(month: str) -> ParquetTableLoad:
        path = month_file(tmp_path, month, 5, "v1")
        part = ParquetPart(
            str(path),
            pafs.LocalFileSystem(),
            {"partition_month": parse_month(month), "source_file": hostile},
        )
        loaded = parquet_load(path, month, 5, BASE)
        log = month_loads(
            "warehouse", "trips", {parse_month(month): LakeLineage(hostile, "ab'c", 5)}, "r\\n"
        )
        return dataclasses.replace(loaded, parts=lambda: (part,), log=log)

    for _ in range(2):
        assert materialize(bq_project, load, "2021-01").success
    files = bq_project.rows("SELECT DISTINCT source_file FROM `{project}.warehouse.trips`")
    assert [row["source_file"] for row in files] == [hostile]
    loads = bq_project.rows(
        "SELECT source_file, source_sha256, run_id FROM `{project}.warehouse.loads`"
    )
    assert [tuple(row.values()) for row in loads] == [(hostile, "ab'c", "r\\n")]


def test_a_row_count_mismatch_leaves_the_previous_month(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    good = lambda month: parquet_load(month_file(tmp_path, month, 10, "good"), month, 10, BASE)  # noqa: E731
    assert materialize(bq_project, good, "2021-01").success
    # Injected: the load claims 11 rows where the file holds 10.
    short = lambda month: parquet_load(month_file(tmp_path, month, 10, "bad"), month, 11, BASE)  # noqa: E731
    result = materialize(bq_project, short, "2021-01")
    message = failure_message(result)
    assert "staged 10 rows but expected 11" in message and "intact" in message
    assert versions(bq_project) == {"2021-01": {"good": 10}}
    assert staging_tables(bq_project) == []


def test_a_lake_file_replaced_after_it_was_listed_is_not_loaded(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    """The rows expected and the lineage come from the footer read when the lake month
    was listed; the month materialized again before the load job read the file (same
    rows, other values) must fail the load, not replace the month with the new file
    under the old file's lineage."""
    good = lambda month: parquet_load(month_file(tmp_path, month, 10, "good"), month, 10, BASE)  # noqa: E731
    assert materialize(bq_project, good, "2021-01").success

    def replaced_after_listing(month: str) -> ParquetTableLoad:
        path = month_file(tmp_path / "lake", month, 10, "old")
        data = LakeFiles.at(pafs.LocalFileSystem(), str(path))
        planned = parquet_load(path, month, data.count_rows(), BASE)
        lineage = planned.parts()[0].constants
        parts = lake_parts(data, lambda _files, _path: lineage)
        path.write_bytes(month_file(tmp_path / "new", month, 10, "newer").read_bytes())
        return dataclasses.replace(planned, parts=lambda: parts)

    message = failure_message(materialize(bq_project, replaced_after_listing, "2021-01"))
    assert "2021-01-old.parquet was replaced while this run read it" in message, message
    assert versions(bq_project) == {"2021-01": {"good": 10}}
    assert staging_tables(bq_project) == []


def test_a_statement_failing_inside_the_transaction_rolls_the_delete_back(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    """The second file's ``fare`` is text that is no number: the INSERT fails after the
    DELETE ran, inside the transaction, and the month's previous rows stay."""
    good = lambda month: parquet_load(month_file(tmp_path, month, 10, "good"), month, 10, BASE)  # noqa: E731
    assert materialize(bq_project, good, "2021-01").success
    text_fares = pa.schema(
        [
            ("pickup", pa.timestamp("us")),
            ("zone", pa.int32()),
            ("fare_text", pa.string()),
            ("version", pa.string()),
        ]
    )

    def bad(month: str) -> ParquetTableLoad:
        path = month_file(tmp_path, month, 10, "bad", text_fares)
        renamed = pq.read_table(path).rename_columns(["pickup", "zone", "fare", "version"])
        pq.write_table(renamed, path)
        return parquet_load(path, month, 10, BASE)

    result = materialize(bq_project, bad, "2021-01")
    assert "'not a number'" in failure_message(result)  # the failing cast, reported
    assert versions(bq_project) == {"2021-01": {"good": 10}}
    assert staging_tables(bq_project) == []


def test_a_new_contract_column_is_added_and_older_files_still_load(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    old = lambda month: parquet_load(month_file(tmp_path, month, 5, "old"), month, 5, BASE)  # noqa: E731
    assert materialize(bq_project, old, "2021-01").success
    with_tip = BASE.append(pa.field("tip", pa.float64()))
    new = lambda month: parquet_load(  # noqa: E731
        month_file(tmp_path, month, 4, "new", with_tip), month, 4, with_tip
    )
    assert materialize(bq_project, new, "2021-02").success
    columns = [f.name for f in bq_project.table("warehouse.trips").schema]
    assert "tip" in columns
    # A month re-loaded from a file written before the contract gained `tip`: nulls.
    old_again = lambda month: parquet_load(  # noqa: E731
        month_file(tmp_path, month, 6, "old"), month, 6, with_tip
    )
    assert materialize(bq_project, old_again, "2021-03").success
    tips = bq_project.rows(
        "SELECT FORMAT_DATE('%Y-%m', partition_month) AS month, COUNT(tip) AS tips, "
        "COUNT(*) AS n FROM `{project}.warehouse.trips` GROUP BY 1 ORDER BY 1"
    )
    assert [(r["month"], r["tips"], r["n"]) for r in tips] == [
        ("2021-01", 0, 5),
        ("2021-02", 4, 4),
        ("2021-03", 0, 6),
    ]


def test_the_partition_copy_path_on_the_emulator_stops_at_the_copy(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    """The emulator runs every step of the partition-copy path (stage, count, shape) and
    then refuses the copy into ``trips$202101``: the month must be unchanged and every
    staging table dropped, as after any failure."""
    good = lambda month: parquet_load(month_file(tmp_path, month, 10, "good"), month, 10, BASE)  # noqa: E731
    assert materialize(bq_project, good, "2021-01").success
    again = lambda month: parquet_load(month_file(tmp_path, month, 3, "copy"), month, 3, BASE)  # noqa: E731
    result = materialize(bq_project, again, "2021-01", month_replace="partition-copy")
    assert "trips$202101" in failure_message(result)
    assert versions(bq_project) == {"2021-01": {"good": 10}}
    assert staging_tables(bq_project) == []


def made_by_hand(
    bq_project: EmulatedProject, types: dict[str, str], partitioning: str | None
) -> None:
    """``warehouse.trips`` created by someone else, with these column types and layout."""
    client = bq_project.client()
    client.create_dataset(f"{bq_project.project}.warehouse")
    table = bigquery.Table(
        f"{bq_project.project}.warehouse.trips",
        schema=[bigquery.SchemaField(name, kind) for name, kind in types.items()],
    )
    if partitioning is not None:
        table.time_partitioning = bigquery.TimePartitioning(type_=partitioning, field="pickup")
    client.create_table(table)
    client.close()


AS_CREATED = {
    "pickup": "DATETIME",
    "zone": "INT64",
    "fare": "FLOAT64",
    "version": "STRING",
    "partition_month": "DATE",
    "source_file": "STRING",
}


@pytest.mark.parametrize("partitioning", [None, "DAY"])
def test_a_table_of_another_layout_is_replaced_in_a_transaction(
    tmp_path: Path, bq_project: EmulatedProject, partitioning: str | None
) -> None:
    """A copy into ``trips$202101`` needs a table partitioned by month on the month's
    column: BigQuery refuses the decorator on an unpartitioned or a daily table (the
    emulator refuses every decorator, so there the copy would fail)."""
    made_by_hand(bq_project, AS_CREATED, partitioning)
    load = lambda month: parquet_load(month_file(tmp_path, month, 6, "v1"), month, 6, BASE)  # noqa: E731
    result = materialize(bq_project, load, "2021-01", month_replace="partition-copy")
    assert result.success
    assert versions(bq_project) == {"2021-01": {"v1": 6}}
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["month_replace"].value == "transaction"


def test_a_table_with_columns_of_other_types_is_refused(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    """The load's SELECT cast into them: naive New York times became UTC instants, fares
    were rounded to integers, and the load succeeded."""
    made_by_hand(bq_project, {**AS_CREATED, "pickup": "TIMESTAMP", "fare": "INTEGER"}, None)
    load = lambda month: parquet_load(month_file(tmp_path, month, 6, "v1"), month, 6, BASE)  # noqa: E731
    message = failure_message(materialize(bq_project, load, "2021-01"))
    assert "warehouse.trips has columns of other types than the load" in message
    assert "pickup is TIMESTAMP, the load's is DATETIME" in message
    assert "fare is INT64, the load's is FLOAT64" in message
    assert versions(bq_project) == {}
    assert staging_tables(bq_project) == []


def test_the_partition_copy_job_replaces_exactly_one_partition() -> None:
    """What runs on BigQuery (the emulator refuses partition decorators)."""
    name = TableName("nyc-taxi-prod", "warehouse", "yellow_tripdata")
    shaped = name.sibling("_stage_yellow_tripdata_202101_abcd1234_shaped")
    source, destination, config = partition_copy_job(shaped, name, date(2021, 1, 1))
    assert source == "nyc-taxi-prod.warehouse._stage_yellow_tripdata_202101_abcd1234_shaped"
    assert destination == "nyc-taxi-prod.warehouse.yellow_tripdata$202101"
    assert config.to_api_repr() == {
        "copy": {"writeDisposition": "WRITE_TRUNCATE", "createDisposition": "CREATE_NEVER"}
    }


def test_the_replace_path_is_chosen_by_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    assert BigQueryWarehouse(url="bigquery://p1").replace_strategy() == "partition-copy"
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050")
    assert BigQueryWarehouse(url="bigquery://p1").replace_strategy() == "transaction"
    forced = BigQueryWarehouse(url="bigquery://p1", month_replace="partition-copy")
    assert forced.replace_strategy() == "partition-copy"


def test_lineage_and_missing_columns_are_added_in_sql() -> None:
    target = [
        bigquery.SchemaField("pickup", "DATETIME"),
        bigquery.SchemaField("zone", "INT64"),
        bigquery.SchemaField("tip", "FLOAT64"),
        bigquery.SchemaField("partition_month", "DATE"),
        bigquery.SchemaField("source_file", "STRING"),
    ]
    staged = Staged(
        table=TableName("p1", "warehouse", "_stage_trips_202101_x_0"),
        columns={"zone": "STRING", "pickup": "DATETIME"},
        constants={"partition_month": date(2021, 1, 1), "source_file": "it's.csv.gz"},
        rows=1,
        source="upload",
    )
    assert shaped_select(target, [staged]) == (
        "SELECT `pickup`, CAST(`zone` AS INT64) AS `zone`, CAST(NULL AS FLOAT64) AS `tip`, "
        "CAST(DATE '2021-01-01' AS DATE) AS `partition_month`, "
        "CAST('it\\'s.csv.gz' AS STRING) AS `source_file` "
        "FROM `p1.warehouse._stage_trips_202101_x_0`"
    )


def test_arrow_types_map_to_bigquery_types() -> None:
    assert bigquery_type(pa.timestamp("us")) == "DATETIME"  # TLC's naive New York times
    assert bigquery_type(pa.timestamp("us", tz="UTC")) == "TIMESTAMP"
    assert bigquery_type(pa.int32()) == "INT64"
    assert bigquery_type(pa.date32()) == "DATE"
    assert bigquery_type(pa.large_string()) == "STRING"
    assert bigquery_type(pa.decimal128(16, 2)) == "NUMERIC"


@pytest.mark.parametrize(
    ("url", "project", "location"),
    [
        ("bigquery://nyc-taxi-prod", "nyc-taxi-prod", None),
        ("bigquery://test?location=EU", "test", "EU"),
    ],
)
def test_bigquery_urls(url: str, project: str, location: str | None) -> None:
    target = parse_bigquery_url(url)
    assert (target.project, target.location) == (project, location)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h/db",
        "bigquery://",
        "bigquery://Bad_Project",
        "bigquery://p1/dataset",
        "bigquery://p1?region=EU",
        "bigquery://u:secret@p1",
    ],
)
def test_bad_bigquery_urls_are_refused_without_quoting_them(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_bigquery_url(url)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("method", "pattern"),
    [("GET", r"/tables/"), ("PUT", r"upload_id="), ("POST", r"/jobs\?")],
    ids=["api-call", "upload-chunk", "job-insert"],
)
def test_a_request_that_goes_unanswered_is_given_up_and_retried(
    tmp_path: Path,
    bq_project: EmulatedProject,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    pattern: str,
) -> None:
    """The emulator behind a proxy that holds one request unanswered for 60 s, as a dropped
    connection or a partition leaves it: an API call, an upload's chunk, a job's insert.
    google-cloud-bigquery sends them with no timeout: the load sat out the whole 60 s (for
    ever, had the answer never come). With ``REQUEST_TIMEOUT_S`` (shortened here to 2 s
    of silence) the request is given up and retried, and the month loads in seconds."""
    monkeypatch.setattr(client_module, "REQUEST_TIMEOUT_S", (5.0, 2.0))
    with FaultProxy(bq_project.emulator.url) as proxy:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
        proxy.inject(pattern, Fault.delay(60), methods=(method,))
        path = month_file(tmp_path, "2021-01", 10, "v1")
        started = time.monotonic()
        result = materialize(bq_project, lambda m: parquet_load(path, m, 10, BASE), "2021-01")
        took = time.monotonic() - started
        held = proxy.arrivals(method, pattern)
    assert result.success, failure_message(result)
    assert versions(bq_project) == {"2021-01": {"v1": 10}}
    assert held >= 2, held  # the held request was sent again
    # Not waited out: the load alone takes ~3 s here.
    assert took < 30, took


def test_an_upload_slower_than_the_connect_bound_still_loads(
    tmp_path: Path, bq_project: EmulatedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3 sends a request's body under the *connect* timeout, in one ``sendall`` that
    the timeout bounds as a whole (requests#5263): with ``REQUEST_TIMEOUT_S``'s 30 s an
    upload chunk (google-cloud-bigquery's: 100 MB) had to go at 3.3 MB/s or more, or fail
    at every try. Here the emulator is reached through a link carrying 1 MB/s
    (:class:`SlowLink`, the client-to-server direction), the connect bound shortened to
    1 s, and the month's file of a few MB: it must load, its sending only bounded by a
    peer that stops taking it (``TCP_USER_TIMEOUT``)."""
    monkeypatch.setattr(client_module, "REQUEST_TIMEOUT_S", (1.0, 30.0))
    rows = 500_000
    path = month_file(tmp_path, "2021-01", rows, "v1")
    size = path.stat().st_size
    assert size > 4_000_000, size  # four times what the bound lets through at this speed
    host, port = bq_project.emulator.url.removeprefix("http://").split(":")
    # A small receiving buffer: the client's sending waits on the link, not on loopback's
    # megabytes of buffers.
    with SlowLink((host, int(port)), bytes_per_s=1_000_000, receive_buffer=64 * 1024) as link:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://127.0.0.1:{link.address[1]}")
        started = time.monotonic()
        result = materialize(bq_project, lambda m: parquet_load(path, m, rows, BASE), "2021-01")
        took = time.monotonic() - started
    assert result.success, failure_message(result)
    assert versions(bq_project) == {"2021-01": {"v1": rows}}
    assert took > size / 1_000_000, took  # the link's speed held


def test_an_upload_chunk_the_server_stops_taking_is_given_up_and_sent_again(
    tmp_path: Path, bq_project: EmulatedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy in front of the emulator reads the first MiB of a resumable upload's chunk,
    then nothing more, holding the connection open (a stalled server: its kernel answers
    the window probes, so TCP itself never gives up). No timeout can end that send: the
    chunk's request has none for connecting and sending (see the test above), and its read
    bound starts only once it is sent. ``TCP_USER_TIMEOUT`` on the session's sockets
    (300 s, shortened to 2 s here) ends the connection, and the chunk is sent again. The
    bounds of connecting and reading are 60 s here, so neither could end it sooner."""
    monkeypatch.setattr(client_module, "REQUEST_TIMEOUT_S", (60.0, 60.0))
    monkeypatch.setattr(silent_peers, "SILENCE_S", 2.0)
    rows = 1_500_000
    # Distinct times and fares: a file about 24 MB.
    start = datetime(2021, 1, 1)
    micros = np.arange(rows, dtype=np.int64) * 1_000_000 + int(start.timestamp() * 1e6)
    table = pa.table(
        {
            "pickup": pa.array(micros, pa.timestamp("us")),
            "zone": pa.array(np.arange(rows, dtype=np.int32) % 7 + 1),
            "fare": pa.array(np.random.default_rng(7).random(rows) * 100),
            "version": pa.array(["v1"] * rows),
        },
        schema=BASE,
    )
    path = tmp_path / "2021-01-v1.parquet"
    pq.write_table(table, path)
    # A resumable upload (5 MB and more), and more than loopback's buffers hold.
    assert path.stat().st_size > 16_000_000, path.stat().st_size
    with FaultProxy(bq_project.emulator.url) as proxy:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
        proxy.inject(r"upload_id=", Fault.stall_after(1024 * 1024), methods=("PUT",))
        try:
            started = time.monotonic()
            result = materialize(bq_project, lambda m: parquet_load(path, m, rows, BASE), "2021-01")
            took = time.monotonic() - started
            sent = proxy.arrivals("PUT", r"upload_id=")
        finally:
            proxy.clear()  # lets the stalled request's handler go
    assert result.success, failure_message(result)
    assert versions(bq_project) == {"2021-01": {"v1": rows}}
    assert sent >= 2, sent  # the stalled chunk was sent again
    assert took < 45, took
