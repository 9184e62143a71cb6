"""A load's log records (``warehouse.loads``) commit with the month, on both engines.

The IO managers on their own (PostgreSQL, and BigQuery on the emulator), with the
project's ``warehouse.loads`` records (assets/load_records.py): one row per table and
month, replaced on reload; the previous one read in the transaction (PostgreSQL) or just
before it (BigQuery) for the metadata; a load that fails, before or inside the
publishing transaction, leaves the month and its loads row as they were.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from taxi_assets.assets.load_records import LakeLineage, month_loads
from taxi_assets.io_managers.load_log import LoadLog
from taxi_assets.io_managers.postgres import TableLoad
from taxi_assets.io_managers.table_load import ParquetTableLoad
from taxi_assets.partitions import parse_month
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets_tests import test_bigquery_io_manager as bq
from taxi_assets_tests import test_postgres_io_manager as pg
from taxi_assets_tests.bq_emulator import EmulatedProject
from taxi_assets_tests.pipeline import materialization_metadata

SHA_A, SHA_B = "a" * 64, "b" * 64
Records = Callable[[str, int], LoadLog]


def loads_of(sha256: str) -> Records:
    """The month's records as the warehouse asset makes them: one revision, its rows."""
    return lambda month, rows: month_loads(
        "warehouse",
        "trips",
        {parse_month(month): LakeLineage(f"trips_{month}.parquet", sha256, rows)},
        run_id=f"run-{sha256[0]}",
    )


def unstorable(log: LoadLog) -> LoadLog:
    """The same records with a row count the column cannot hold: the database refuses the
    INSERT, after the record's DELETE, inside the transaction that publishes the month."""
    return replace(log, records=tuple({**r, "row_count": "many"} for r in log.records))


# PostgreSQL --------------------------------------------------------------------------


def pg_load(records: Records, rows: int, expected: int | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=pg.MONTHS,
        metadata={"partition_expr": "partition_month"},
    )
    def trips(context: dg.AssetExecutionContext) -> TableLoad:
        month = context.partition_key
        table = pg.month_rows(month, rows)
        load = records(month, rows)
        return TableLoad(table.to_reader(), expected or rows, log=load)

    return trips


def pg_loads(url: str) -> dict[str, tuple[Any, ...]]:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT table_name, partition_month, source_sha256, row_count, run_id "
                "FROM warehouse.loads ORDER BY partition_month"
            ).all()
    finally:
        engine.dispose()
    return {f"{r[1]:%Y-%m}": (r[0], r[2], r[3], r[4]) for r in rows}


def test_postgres_one_row_per_month_replaced_on_reload(pg_url: str) -> None:
    first = pg.materialize(pg_url, [pg_load(loads_of(SHA_A), 10)], "2021-01")
    assert first.success
    assert pg.materialize(pg_url, [pg_load(loads_of(SHA_A), 7)], "2021-02").success
    assert pg_loads(pg_url) == {
        "2021-01": ("warehouse.trips", SHA_A, 10, "run-a"),
        "2021-02": ("warehouse.trips", SHA_A, 7, "run-a"),
    }
    shown = materialization_metadata(first, "warehouse/trips")
    assert shown["previous_source_sha256"] == "none" and shown["revision_changed"] is True

    again = pg.materialize(pg_url, [pg_load(loads_of(SHA_B), 12)], "2021-01")
    assert pg_loads(pg_url)["2021-01"] == ("warehouse.trips", SHA_B, 12, "run-b")
    shown = materialization_metadata(again, "warehouse/trips")
    assert (shown["source_sha256"], shown["previous_source_sha256"]) == (SHA_B, SHA_A)
    assert (shown["previous_row_count"], shown["row_count_change"]) == (10, 2)
    assert shown["loads_table"] == "warehouse.loads" and shown["previous_run_id"] == "run-a"


@pytest.mark.parametrize("failure", ["row count", "inside the swap"])
def test_postgres_a_failed_load_leaves_the_previous_loads_row(pg_url: str, failure: str) -> None:
    assert pg.materialize(pg_url, [pg_load(loads_of(SHA_A), 10)], "2021-01").success
    if failure == "row count":  # refused before the swap
        broken = pg_load(loads_of(SHA_B), 12, expected=13)
    else:  # the month swapped in, then the loads row refused: all rolled back
        broken = pg_load(lambda month, rows: unstorable(loads_of(SHA_B)(month, rows)), 12)
    result = pg.materialize(pg_url, [broken], "2021-01", raise_on_error=False)
    assert not result.success
    refused = "expected 13" if failure == "row count" else 'for type bigint: "many"'
    assert refused in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert pg_loads(pg_url) == {"2021-01": ("warehouse.trips", SHA_A, 10, "run-a")}
    assert pg.count_by_month(pg_url) == {"2021-01": 10}


def test_postgres_a_range_of_months_logs_each_month_in_the_one_swap(pg_url: str) -> None:
    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=pg.MONTHS,
        metadata={"partition_expr": "partition_month"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def trips(context: dg.AssetExecutionContext) -> TableLoad:
        months = context.partition_keys
        tables = [pg.month_rows(m, 5 + i) for i, m in enumerate(months)]
        lineage = {
            parse_month(m): LakeLineage(f"{m}.parquet", SHA_A, t.num_rows)
            for m, t in zip(months, tables, strict=True)
        }
        rows = sum(t.num_rows for t in tables)
        reader = pa.concat_tables(tables).to_reader()
        return TableLoad(reader, rows, log=month_loads("warehouse", "trips", lineage, "range"))

    result = dg.materialize(
        [trips],
        resources=pg.resources(pg_url),
        tags={
            "dagster/asset_partition_range_start": "2021-01",
            "dagster/asset_partition_range_end": "2021-02",
        },
    )
    assert result.success
    assert pg_loads(pg_url) == {
        "2021-01": ("warehouse.trips", SHA_A, 5, "range"),
        "2021-02": ("warehouse.trips", SHA_A, 6, "range"),
    }
    table = materialization_metadata(result, "warehouse/trips")["loads"]
    assert "| 2021-01 | aaaaaaaaaaaa | none | 5 | new |" in table


# BigQuery (emulator) ------------------------------------------------------------------


def bq_load(folder: Path, records: Records, rows: int, expected: int | None = None) -> bq.Load:
    def load(month: str) -> ParquetTableLoad:
        plain = bq.parquet_load(
            bq.month_file(
                folder, month, rows, records(month, rows).records[0]["source_sha256"][:4]
            ),
            month,
            expected or rows,
            bq.BASE,
        )
        return replace(plain, log=records(month, rows))

    return load


def bq_loads(project: EmulatedProject) -> dict[str, tuple[Any, ...]]:
    rows = project.rows(
        "SELECT table_name, partition_month, source_sha256, row_count, run_id, loaded_at "
        "FROM `{project}.warehouse.loads` ORDER BY partition_month"
    )
    assert all(r["loaded_at"] is not None for r in rows)
    return {
        f"{r['partition_month']:%Y-%m}": (
            r["table_name"],
            r["source_sha256"],
            r["row_count"],
            r["run_id"],
        )
        for r in rows
    }


def test_bigquery_one_row_per_month_replaced_in_the_months_transaction(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    assert bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_A), 10), "2021-01").success
    assert bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_A), 7), "2021-02").success
    again = bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_B), 12), "2021-01")
    assert again.success
    assert bq_loads(bq_project) == {
        "2021-01": ("warehouse.trips", SHA_B, 12, "run-b"),
        "2021-02": ("warehouse.trips", SHA_A, 7, "run-a"),
    }
    shown = materialization_metadata(again, "warehouse/trips")
    assert (shown["source_sha256"], shown["previous_source_sha256"]) == (SHA_B, SHA_A)
    assert (shown["previous_row_count"], shown["row_count_change"]) == (10, 2)
    assert bq.versions(bq_project) == {"2021-01": {"bbbb": 12}, "2021-02": {"aaaa": 7}}


def test_months_status_reads_the_bigquery_load_log(
    tmp_path: Path, bq_project: EmulatedProject
) -> None:
    from taxi_assets.month_status import Layer, bigquery_loads

    with bq_project.client() as client:
        assert bigquery_loads(client) == {}  # no load log yet
    assert bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_A), 10), "2021-01").success
    assert bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_B), 7), "2021-02").success
    with bq_project.client() as client:
        assert bigquery_loads(client) == {
            ("trips", "2021-01"): Layer(SHA_A, 10),
            ("trips", "2021-02"): Layer(SHA_B, 7),
        }


@pytest.mark.parametrize("failure", ["row count", "inside the transaction", "at the copy"])
def test_bigquery_a_failed_load_leaves_the_previous_loads_row(
    tmp_path: Path, bq_project: EmulatedProject, failure: str
) -> None:
    assert bq.materialize(bq_project, bq_load(tmp_path, loads_of(SHA_A), 10), "2021-01").success
    options: dict[str, Any] = {}
    if failure == "row count":  # refused before anything is published
        broken = bq_load(tmp_path, loads_of(SHA_B), 12, expected=13)
    elif failure == "inside the transaction":  # the month's DELETE and INSERT ran first
        broken = bq_load(tmp_path, lambda m, r: unstorable(loads_of(SHA_B)(m, r)), 12)
    else:
        # The copy job (refused by the emulator, which has no partition decorators) comes
        # before the loads row is written: the row stays the previous load's.
        broken = bq_load(tmp_path, loads_of(SHA_B), 12)
        options["month_replace"] = "partition-copy"
    result = bq.materialize(bq_project, broken, "2021-01", **options)
    refused = {"row count": "expected 13", "inside the transaction": "'many'"}
    assert refused.get(failure, "trips$202101") in bq.failure_message(result)
    assert bq_loads(bq_project) == {"2021-01": ("warehouse.trips", SHA_A, 10, "run-a")}
    assert bq.versions(bq_project) == {"2021-01": {"aaaa": 10}}


def test_bigquery_loads_statements_are_literals() -> None:
    from taxi_assets.bq.load_log import replace_statements
    from taxi_assets.bq.names import TableName

    log = loads_of("c0ffee")("2021-01", 3)
    delete, insert = replace_statements(TableName("p1", "warehouse", "loads"), log)
    assert delete == (
        "DELETE FROM `p1.warehouse.loads` WHERE `table_name` = 'warehouse.trips' "
        "AND `partition_month` = DATE '2021-01-01'"
    )
    assert insert.endswith(
        "VALUES ('warehouse.trips', DATE '2021-01-01', 'trips_2021-01.parquet', 'c0ffee', 3, "
        "CURRENT_TIMESTAMP(), 'run-c')"
    )
    assert log.records[0]["partition_month"] == date(2021, 1, 1)


def test_bigquery_a_loads_row_that_fails_after_the_copy_job_says_so(
    bq_project: EmulatedProject,
) -> None:
    """The partition-copy path writes the row after the copy job (which the emulator
    refuses, so the step after it runs alone here): a failure there is reported as the
    row being behind the month, naming what to do."""
    from taxi_assets.bq.names import TableName
    from taxi_assets.bq.replace import Window, write_log_after_copy
    from taxi_assets.errors import LoadLogBehind

    name = TableName(bq_project.project, "warehouse", "trips")
    window = Window("partition_month", date(2021, 1, 1), date(2021, 2, 1))
    with bq_project.client() as client:
        missing = f"DELETE FROM `{bq_project.project}.warehouse.no_such_table` WHERE TRUE"
        with pytest.raises(LoadLogBehind, match="the copy job replaced 2021-01, but the load log"):
            write_log_after_copy(client, name, window, [missing])
        write_log_after_copy(client, name, window, [])  # nothing to write: no query
