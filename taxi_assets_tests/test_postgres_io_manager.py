"""The generic PostgreSQL IO manager against a real server: replace, atomicity, concurrency."""

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from taxi_assets.io_managers.postgres import PostgresIOManager, TableLoad
from taxi_assets.pg.ddl import qualified
from taxi_assets.resources.postgres import PostgresResource, sqlalchemy_url
from taxi_assets_tests.pipeline import engine_for, warehouse_counts

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2021-01", fmt="%Y-%m", end_offset=0)
SCHEMA = pa.schema(
    [
        ("trip_id", pa.int64()),
        ("pickup_datetime", pa.timestamp("us")),
        ("fare", pa.float64()),
        ("flag", pa.string()),
        ("partition_month", pa.date32()),
    ]
)


def month_rows(month: str, count: int, first_id: int = 0) -> pa.Table:
    """Rows of file ``month``; the first one picks up in the previous month, as real files do."""
    start = datetime.strptime(month, "%Y-%m")
    times = [start.replace(day=1, hour=1)] * count
    times[0] = datetime(start.year - (start.month == 1), (start.month - 2) % 12 + 1, 28, 23, 0)
    return pa.table(
        {
            "trip_id": pa.array(range(first_id, first_id + count), pa.int64()),
            "pickup_datetime": pa.array(times, pa.timestamp("us")),
            "fare": pa.array([1.5] * count),
            "flag": pa.array(["N", "", None, "N/A"] * (count // 4) + ["Y"] * (count % 4)),
            "partition_month": pa.array([start.date()] * count, pa.date32()),
        },
        schema=SCHEMA,
    )


def resources(url: str) -> dict[str, Any]:
    return {"io_manager": PostgresIOManager(database=PostgresResource(url=url))}


def count_by_month(url: str) -> dict[str, int]:
    return warehouse_counts(url, "trips")


ROWS_PER_MONTH = {"2021-01": 40, "2021-02": 30, "2021-03": 20}


@dg.asset(
    key=["warehouse", "trips"],
    partitions_def=MONTHS,
    metadata={"partition_expr": "partition_month"},
)
def trips(context: dg.AssetExecutionContext) -> TableLoad:
    table = month_rows(context.partition_key, ROWS_PER_MONTH[context.partition_key])
    return TableLoad(table.to_reader(max_chunksize=7), table.num_rows)


def materialize(url: str, assets: list, partition_key: str, **kwargs) -> dg.ExecuteInProcessResult:  # noqa: ANN003
    return dg.materialize(assets, partition_key=partition_key, resources=resources(url), **kwargs)


def test_rerun_replaces_the_partition_and_leaves_neighbours(pg_url: str) -> None:
    for month in ("2021-01", "2021-02", "2021-02", "2021-02"):
        result = materialize(pg_url, [trips], month)
        assert result.success
    assert count_by_month(pg_url) == {"2021-01": 40, "2021-02": 30}
    metadata = result.asset_materializations_for_node("warehouse__trips")[0].metadata
    assert metadata["rows_written"].value == 30
    assert metadata["rows_replaced"].value == 30
    assert metadata["table"].value == "warehouse.trips"
    # Each file's out-of-month pickup survived the neighbour's reload.
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        early = connection.exec_driver_sql(
            "SELECT count(*) FROM warehouse.trips WHERE pickup_datetime < partition_month"
        ).scalar()
        flags = connection.exec_driver_sql(
            "SELECT count(*) FILTER (WHERE flag IS NULL), count(*) FILTER (WHERE flag = ''), "
            "count(*) FILTER (WHERE flag = 'N/A') FROM warehouse.trips"
        ).one()
    engine.dispose()
    assert early == 2
    assert tuple(flags) == (17, 17, 17)  # NULL, '' and 'N/A' stay distinct


def test_range_write_replaces_exactly_those_months(pg_url: str) -> None:
    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=MONTHS,
        metadata={"partition_expr": "partition_month"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def trips_range(context: dg.AssetExecutionContext) -> pa.Table:
        return pa.concat_tables(
            month_rows(key, 5, first_id=i * 100) for i, key in enumerate(context.partition_keys)
        )

    assert materialize(pg_url, [trips], "2021-01").success
    assert materialize(pg_url, [trips], "2021-03").success
    result = dg.materialize(
        [trips_range],
        resources=resources(pg_url),
        tags={
            "dagster/asset_partition_range_start": "2021-02",
            "dagster/asset_partition_range_end": "2021-03",
        },
    )
    assert result.success
    assert count_by_month(pg_url) == {"2021-01": 40, "2021-02": 5, "2021-03": 5}


def test_statements_of_the_load_commit_with_the_month(pg_url: str) -> None:
    """TableLoad.in_swap: e.g. a lineage row, written in the swap's transaction."""
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA warehouse")
        connection.exec_driver_sql("CREATE TABLE warehouse.loads (month text, rows int)")

    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=MONTHS,
        metadata={"partition_expr": "partition_month"},
    )
    def with_lineage(context: dg.AssetExecutionContext) -> TableLoad:
        month = context.partition_key
        table = month_rows(month, 12)

        def record(connection: sa.Connection) -> None:
            connection.execute(
                sa.text("INSERT INTO warehouse.loads VALUES (:month, :rows)"),
                {"month": month, "rows": table.num_rows},
            )

        return TableLoad(table.to_reader(), table.num_rows, in_swap=record)

    assert materialize(pg_url, [with_lineage], "2021-01").success
    with engine.connect() as connection:
        loads = connection.exec_driver_sql("SELECT month, rows FROM warehouse.loads").all()
    engine.dispose()
    assert [tuple(row) for row in loads] == [("2021-01", 12)]
    assert count_by_month(pg_url) == {"2021-01": 12}


def failing_stream(month: str, fail_after_batches: int) -> pa.RecordBatchReader:
    table = month_rows(month, 100)

    def batches() -> Iterator[pa.RecordBatch]:
        for index, batch in enumerate(table.to_batches(max_chunksize=10)):
            if index == fail_after_batches:
                raise RuntimeError("source died mid-stream")
            yield batch

    return pa.RecordBatchReader.from_batches(SCHEMA, batches())


def test_load_aborted_mid_stream_keeps_the_previous_month(pg_url: str) -> None:
    assert materialize(pg_url, [trips], "2021-01").success

    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=MONTHS,
        metadata={"partition_expr": "partition_month"},
    )
    def broken(context: dg.AssetExecutionContext) -> TableLoad:
        return TableLoad(failing_stream(context.partition_key, 3), 100)

    result = materialize(pg_url, [broken], "2021-01", raise_on_error=False)
    assert not result.success
    assert "source died mid-stream" in str(result.all_events)
    assert count_by_month(pg_url) == {"2021-01": 40}


def test_row_count_mismatch_rolls_back(pg_url: str) -> None:
    assert materialize(pg_url, [trips], "2021-01").success

    @dg.asset(
        key=["warehouse", "trips"],
        partitions_def=MONTHS,
        metadata={"partition_expr": "partition_month"},
    )
    def short(context: dg.AssetExecutionContext) -> TableLoad:
        return TableLoad(month_rows(context.partition_key, 10).to_reader(), expected_rows=11)

    result = materialize(pg_url, [short], "2021-01", raise_on_error=False)
    assert not result.success
    assert "loaded 10 rows but expected 11" in str(result.all_events)
    assert count_by_month(pg_url) == {"2021-01": 40}


def slow_load(month: str, delay: float) -> TableLoad:
    table = month_rows(month, ROWS_PER_MONTH[month])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches(max_chunksize=10):
            time.sleep(delay)
            yield batch

    return TableLoad(pa.RecordBatchReader.from_batches(SCHEMA, batches()), table.num_rows)


@pytest.mark.parametrize("months", [("2021-01", "2021-01", "2021-01"), ("2021-01", "2021-02")])
def test_concurrent_loads(pg_url: str, months: tuple[str, ...]) -> None:
    # Create the table first so the loads race on the data, not only on the DDL.
    assert materialize(pg_url, [trips], "2021-03").success
    outcomes: list[str] = []

    def load(month: str) -> None:
        # The IO manager itself, each thread with its own engine, as separate run processes
        # would have (several Dagster runs in threads of one process can deadlock in
        # Dagster's logging set-up; the end-to-end variant uses real processes).
        manager = PostgresIOManager(database=PostgresResource(url=pg_url))
        context = dg.build_output_context(
            asset_key=["warehouse", "trips"],
            partition_key=month,
            asset_partitions_def=MONTHS,
            definition_metadata={"partition_expr": "partition_month"},
        )
        try:
            manager.handle_output(context, slow_load(month, 0.05))
            outcomes.append("ok")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(repr(error))
        finally:
            manager.database.engine().dispose()

    threads = [threading.Thread(target=load, args=(month,), daemon=True) for month in months]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == ["ok"] * len(months)
    expected = {month: ROWS_PER_MONTH[month] for month in months} | {"2021-03": 20}
    assert count_by_month(pg_url) == expected


def test_odd_and_hostile_identifiers_stay_identifiers(pg_url: str) -> None:
    hostile_schema = 'x"; DROP TABLE warehouse.trips; --'
    odd_table = "Trips-2021 (v2) ünï"

    @dg.asset(key=["odd"], metadata={"schema": hostile_schema, "table": odd_table})
    def odd() -> pa.Table:
        return pa.table(
            {
                "Select": [1, 2],
                'we"ird col': ["a", None],
                "partition_month": pa.array([None, None], pa.date32()),
            }
        )

    assert materialize(pg_url, [trips], "2021-01").success
    assert dg.materialize([odd], resources=resources(pg_url)).success
    assert dg.materialize([odd], resources=resources(pg_url)).success
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                f'SELECT "Select", "we""ird col" FROM {qualified(hostile_schema, odd_table)} ORDER BY 1'
            )
        ).all()
    engine.dispose()
    assert rows == [(1, "a"), (2, None)]
    assert count_by_month(pg_url) == {"2021-01": 40}  # the "DROP TABLE" stayed a name


def test_downstream_reads_two_partitions_as_arrow_and_pandas(pg_url: str) -> None:
    for month in ("2021-01", "2021-02", "2021-03"):
        assert materialize(pg_url, [trips], month).success
    seen: dict[str, Any] = {}

    @dg.asset(
        partitions_def=MONTHS,
        ins={
            "window": dg.AssetIn(
                key=["warehouse", "trips"],
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1),
            )
        },
        io_manager_key="mem",
    )
    def two_months(window: pa.Table) -> None:
        seen["arrow"] = window

    @dg.asset(ins={"everything": dg.AssetIn(key=["warehouse", "trips"])}, io_manager_key="mem")
    def all_months(everything: pd.DataFrame) -> None:
        seen["pandas"] = everything

    res = resources(pg_url) | {"mem": dg.InMemoryIOManager()}
    assert dg.materialize(
        [trips, two_months], partition_key="2021-03", resources=res, selection=[two_months]
    ).success
    arrow = seen["arrow"]
    assert isinstance(arrow, pa.Table)
    assert arrow.num_rows == 50  # 2021-02 and 2021-03
    assert arrow.schema.field("pickup_datetime").type == pa.timestamp("us")
    assert dg.materialize([trips, all_months], resources=res, selection=[all_months]).success
    frame = seen["pandas"]
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 90
    assert set(frame["flag"].dropna()) == {"N", "", "N/A", "Y"}
    assert frame["flag"].isna().sum() == 22  # NULL stays NULL, "" stays "" through COPY TO


def with_fares(table: pa.Table, fares: list[float | None]) -> pa.Table:
    return table.set_column(
        table.schema.get_field_index("fare"), "fare", pa.array(fares, pa.float64())
    )


def test_constant_columns_are_left_to_the_table_and_another_value_fails_the_load(
    pg_url: str,
) -> None:
    assert materialize(pg_url, [trips], "2021-01").success
    first_of_january = date(2021, 1, 1)

    def load_with(
        fares: list[float | None], month: date = first_of_january
    ) -> dg.ExecuteInProcessResult:
        @dg.asset(
            key=["warehouse", "trips"],
            partitions_def=MONTHS,
            metadata={"partition_expr": "partition_month"},
        )
        def hinted(context: dg.AssetExecutionContext) -> TableLoad:
            table = with_fares(month_rows(context.partition_key, 25), fares)
            constants = {"fare": None, "partition_month": month}
            return TableLoad(table.to_reader(max_chunksize=10), 25, constant_columns=constants)

        return materialize(pg_url, [hinted], "2021-01", raise_on_error=False)

    # A fare in row 23 (the third batch): the hint was wrong, and the month stays as it was.
    none: list[float | None] = [None]
    wrong = load_with(none * 22 + [9.5, None, None])
    assert not wrong.success
    assert "column fare was to hold None in every row but row 23 " in str(wrong.all_events)
    assert count_by_month(pg_url) == {"2021-01": 40}
    # Every row's partition_month is 2021-01-01, not the 2nd: row 1 already differs.
    wrong_month = load_with(none * 25, date(2021, 1, 2))
    assert not wrong_month.success
    assert (
        "column partition_month was to hold datetime.date(2021, 1, 2) in every row but row 1 "
        in str(wrong_month.all_events)
    )
    assert count_by_month(pg_url) == {"2021-01": 40}

    right = load_with(none * 25)
    assert right.success
    metadata = right.asset_materializations_for_node("warehouse__trips")[0].metadata
    assert metadata["null_columns"].value == ["fare"]
    assert metadata["constant_columns"].value == ["partition_month"]
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT count(*), count(fare), count(flag), min(partition_month), "
            "max(partition_month) FROM warehouse.trips"
        ).one()
        # The default served the COPY only: the month's child keeps none.
        defaults = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'warehouse.trips_2021_01'::regclass"
        ).scalar()
    engine.dispose()
    # Every row, no fare, the month from the default, the other columns as sent.
    assert tuple(stored) == (25, 0, 19, first_of_january, first_of_january)
    assert defaults == 0
