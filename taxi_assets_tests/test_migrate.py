"""`python -m taxi_assets.cli warehouse migrate`: plain month tables of an earlier version
become partitioned ones, month by month, and an interrupted conversion resumes.

The old tables are built the way the previous version built them (a plain table from the
contract's Arrow schema, a btree index on partition_month, months written by COPY; the
analytics table with its primary key), with real generated months.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from taxi_assets.assets.contract_stream import warehouse_schema
from taxi_assets.contracts import CONTRACTS, open_contract_reader
from taxi_assets.devdata import write_month
from taxi_assets.pg.copy_in import copy_arrow
from taxi_assets.pg.ddl import TableLayout, driver_cursor, ensure_table
from taxi_assets.pg.migrate import (
    DISK_MARGIN,
    Pending,
    convert,
    disk_needed,
    month_constants,
    plan,
)
from taxi_assets.pg.partitions import partitions, table_columns
from taxi_assets_tests.faults_support import (
    LOGIN_PASSWORD,
    REPO,
    as_admin,
    database_name,
    failure_messages,
    wait_for,
    waiting_advisory_locks,
)
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    engine_for,
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

MONTHS = ("2021-01", "2021-02", "2021-03")
ROWS = {"2021-01": 3000, "2021-02": 2500, "2021-03": 2000}


def old_yellow_table(engine: sa.Engine, work: Path) -> None:
    """warehouse.yellow_tripdata as the previous version left it."""
    contract = CONTRACTS["yellow"]
    schema = warehouse_schema(contract)
    ensure_table(
        engine,
        "warehouse",
        "yellow_tripdata",
        schema,
        TableLayout(btree_columns=("partition_month",)),
    )
    for month in MONTHS:
        path = write_month(work, source="dtc", service="yellow", month=month, rows=ROWS[month])
        with open(path, "rb") as handle, engine.begin() as connection:
            reader = open_contract_reader(handle, file_name=path.name, contract=contract)
            first = date.fromisoformat(f"{month}-01")

            def batches(
                reader: pa.RecordBatchReader = reader, first: date = first, name: str = path.name
            ) -> Iterator[pa.RecordBatch]:
                for batch in reader:
                    n = batch.num_rows
                    yield pa.RecordBatch.from_arrays(
                        [
                            *batch.columns,
                            pa.repeat(pa.scalar(first, pa.date32()), n),
                            pa.repeat(pa.scalar(name), n),
                        ],
                        schema=schema,
                    )

            copy_arrow(
                driver_cursor(connection),
                '"warehouse"."yellow_tripdata"',
                pa.RecordBatchReader.from_batches(schema, batches()),
            )


def old_stats_table(engine: sa.Engine) -> None:
    """analytics.monthly_zone_stats as the previous version left it (a plain table)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA analytics")
        connection.exec_driver_sql(
            "CREATE TABLE analytics.monthly_zone_stats (partition_month date NOT NULL, "
            "service text NOT NULL, borough text NOT NULL, trips bigint NOT NULL, passengers "
            "bigint, revenue numeric(16,2), avg_distance_mi double precision, avg_duration_min "
            "double precision, PRIMARY KEY (partition_month, service, borough))"
        )
        connection.exec_driver_sql(
            "INSERT INTO analytics.monthly_zone_stats SELECT m, s, b, 10, 20, 30.5, 1.5, 12 "
            "FROM unnest(ARRAY[DATE '2021-01-01', DATE '2021-02-01']) AS m, "
            "unnest(ARRAY['yellow', 'fhv']) AS s, unnest(ARRAY['Bronx', 'Queens']) AS b"
        )


def fingerprint(engine: sa.Engine) -> list[tuple]:
    """Rows and exact sums per month of both tables: what the conversion must keep."""
    with engine.connect() as connection:
        trips = connection.exec_driver_sql(
            "SELECT 'trips', partition_month, count(*), sum(total_amount::numeric), "
            "sum(extract(epoch FROM pickup_datetime)), count(DISTINCT source_file) "
            "FROM warehouse.yellow_tripdata GROUP BY 2 ORDER BY 2"
        ).all()
        stats = connection.exec_driver_sql(
            "SELECT 'stats', partition_month, count(*), sum(revenue), sum(trips), 0 "
            "FROM analytics.monthly_zone_stats GROUP BY 2 ORDER BY 2"
        ).all()
    return [tuple(row) for row in [*trips, *stats]]


def migrate(pg_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TAXI_WAREHOUSE_URL": pg_url}
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "warehouse", "migrate", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def kinds(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT n.nspname || '.' || c.relname, c.relkind FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('warehouse', 'analytics') AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition ORDER BY 1"
        ).all()
    return {name: kind for name, kind in rows}


@pytest.mark.slow
def test_old_tables_are_refused_then_converted_month_by_month_and_resumed(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    engine = engine_for(pg_url)
    old_yellow_table(engine, tmp_path / "generated")
    old_stats_table(engine)
    before = fingerprint(engine)
    assert [row[2] for row in before[:3]] == [ROWS[m] for m in MONTHS]
    # An analyst's view over the old table (as analytics.trips is): it must not follow the
    # rename to the old rows, nor keep them from being dropped.
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE VIEW analytics.yellow_months AS SELECT partition_month, count(*) AS n "
            "FROM warehouse.yellow_tripdata GROUP BY 1"
        )
        connection.exec_driver_sql("CREATE ROLE months_reader NOLOGIN")
        connection.exec_driver_sql("GRANT SELECT ON analytics.yellow_months TO months_reader")

    # A load into the old table stops with the way out, and changes nothing.
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    refused = run(keys, resources, instance, "2021-01", raise_on_error=False)
    assert not refused.success
    assert "convert it once with `python -m taxi_assets.cli warehouse migrate`" in (
        failure_messages(refused)
    )
    assert fingerprint(engine) == before

    # The plan and the disk check, and nothing else.
    plan = migrate(pg_url, "--dry-run").stdout
    assert "warehouse.yellow_tripdata: 3 months, 7,500 rows, 0 months converted already" in plan
    assert "analytics.monthly_zone_stats: 2 months, 8 rows" in plan
    assert "free disk: " in plan and " GB needed" in plan
    assert kinds(engine) == {
        "analytics.monthly_zone_stats": "r",
        "warehouse.yellow_tripdata": "r",
    }

    # One month, then stop.
    first = migrate(pg_url, "--max-months", "1").stdout
    assert "run the same command again to go on" in first
    assert kinds(engine) == {
        "analytics.monthly_zone_stats": "r",
        "warehouse.yellow_tripdata": "p",
        "warehouse.yellow_tripdata__unpartitioned": "r",
    }
    with engine.connect() as connection:
        assert partitions(connection, "warehouse", "yellow_tripdata") == ["yellow_tripdata_2021_01"]

    # Killed while it waits for March (another session holds the month's lock): February
    # is in, March is not, the old table is whole.
    gate = engine.connect()
    lock = "warehouse.yellow_tripdata/2021-03"
    gate.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), {"k": lock})
    env = {**os.environ, "TAXI_WAREHOUSE_URL": pg_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "taxi_assets.cli", "warehouse", "migrate"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(
            "the migration to wait for March's lock",
            lambda: waiting_advisory_locks(engine, database_name(pg_url)) == 1,
            timeout=120,
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        gate.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": lock})
        gate.close()
    with engine.connect() as connection:
        assert partitions(connection, "warehouse", "yellow_tripdata") == [
            "yellow_tripdata_2021_01",
            "yellow_tripdata_2021_02",
        ]
        old = connection.exec_driver_sql(
            "SELECT count(*) FROM warehouse.yellow_tripdata__unpartitioned"
        ).scalar()
    assert old == sum(ROWS.values())

    # Run again: it goes on from March, converts the analytics table too, drops the old ones.
    last = migrate(pg_url).stdout
    assert "1 months converted already" not in last and "2 months converted already" in last
    assert "done: every table converted" in last
    assert kinds(engine) == {"analytics.monthly_zone_stats": "p", "warehouse.yellow_tripdata": "p"}
    assert fingerprint(engine) == before
    with engine.connect() as connection:
        indexes = connection.exec_driver_sql(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid IN ('warehouse.yellow_tripdata_2021_03'::regclass, "
            "'analytics.monthly_zone_stats_2021_02'::regclass) ORDER BY 1"
        ).scalars()
        assert list(indexes) == [
            "analytics.monthly_zone_stats_2021_02_pkey",
            "warehouse.yellow_tripdata_2021_03_pickup_datetime_idx",
        ]  # the project's indexes (BRIN on pickup time), none on partition_month
        # Each month's one source file is kept once for the month, as a load keeps it.
        stored_once = connection.exec_driver_sql(
            "SELECT attrelid::regclass::text, attname FROM pg_attribute WHERE atthasmissing "
            "AND attrelid::regclass::text LIKE 'warehouse.yellow_tripdata_2021_0%%' ORDER BY 1"
        ).all()
        assert [tuple(row) for row in stored_once] == [
            (f"warehouse.yellow_tripdata_{m.replace('-', '_')}", "source_file") for m in MONTHS
        ]
    assert migrate(pg_url).stdout.startswith("nothing to convert")
    assert "analytics.yellow_months now reads the partitioned warehouse.yellow_tripdata" in first
    with engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT has_table_privilege('months_reader', 'analytics.yellow_months', 'SELECT')"
        ).scalar()  # the grant made on the view came along
    with engine.connect() as connection:
        months = connection.exec_driver_sql(
            "SELECT to_char(partition_month, 'YYYY-MM'), n FROM analytics.yellow_months"
        ).all()
        definition = connection.exec_driver_sql(
            "SELECT pg_get_viewdef('analytics.yellow_months'::regclass)"
        ).scalar()
    assert dict(months) == ROWS and "unpartitioned" not in str(definition)

    # Loads work again, and replace the month.
    loaded = run(keys, resources, instance, "2021-01")
    assert loaded.success
    assert materialization_metadata(loaded, "warehouse/yellow_tripdata")["rows_replaced"] == 3000
    assert warehouse_counts(pg_url, "yellow_tripdata") == {
        "2021-01": 2000,
        **{m: ROWS[m] for m in MONTHS[1:]},
    }
    # warehouse.loads (a plain table with partition_month, by design) is not converted.
    assert kinds(engine)["warehouse.loads"] == "r"
    assert migrate(pg_url).stdout.startswith("nothing to convert")
    engine.dispose()


def test_a_month_column_counts_as_one_value_only_when_every_row_holds_exactly_it(
    pg_url: str,
) -> None:
    engine = engine_for(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TEMP TABLE t (k int, name text, scale numeric(6,2), amount double precision, "
            "flag boolean, seen timestamp, gone text, mixed_null text, same_num numeric(6,2))"
        )
        connection.exec_driver_sql(
            "INSERT INTO t VALUES "
            "(1, 'a.csv', 1.0, 0.0, true, '2021-01-05', NULL, 'x', 2.5), "
            "(1, 'a.csv', 1.00, '-0', true, '2021-01-05', NULL, NULL, 2.50), "
            "(2, 'b.csv', 7, 'NaN', false, '2021-01-06', NULL, 'x', 2.5)"
        )
        columns = table_columns(connection, "pg_temp", "t")
        first_two = month_constants(connection, "t", columns, "k = :k", {"k": 1})
        all_three = month_constants(connection, "t", columns, "k >= :k", {"k": 1})
    # numeric(6,2) stores 1.0 and 1.00 alike; -0.0 and 0.0 compare equal but differ.
    assert first_two == {
        "k": 1,
        "name": "a.csv",
        "scale": "1.00",
        "flag": True,
        "seen": datetime(2021, 1, 5),
        "gone": None,
        "same_num": "2.50",
    }
    assert all_three == {"gone": None, "same_num": "2.50"}
    engine.dispose()


def test_the_disk_check_asks_for_the_rows_still_to_move_and_a_margin() -> None:
    def pending(bytes_to_move: int) -> Pending:
        return Pending("warehouse", "t", "partition_month", {}, set(), bytes_to_move)

    assert disk_needed([pending(10**9), pending(5 * 10**8)]) == int(1.5e9 * DISK_MARGIN)
    assert disk_needed([]) == 0


def test_a_one_row_month_and_the_tables_grants_and_comments_survive_the_conversion(
    pg_url: str,
) -> None:
    """A month of one row holds one value in every column (the stats of a month with one
    service and one borough): its copy named no column, failed with a syntax error, and
    every re-run failed there, the later months invisible. A role's SELECT granted by hand
    and the table's comments were lost with the old table."""
    engine = engine_for(pg_url)
    reader = f"bi_reader_{os.getpid()}"  # roles belong to the whole server
    old_stats_table(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "DELETE FROM analytics.monthly_zone_stats WHERE partition_month = '2021-02-01' "
            "AND NOT (service = 'fhv' AND borough = 'Bronx')"
        )
        connection.exec_driver_sql(f"CREATE ROLE {reader}")
        connection.exec_driver_sql(f"GRANT SELECT ON analytics.monthly_zone_stats TO {reader}")
        connection.exec_driver_sql("COMMENT ON TABLE analytics.monthly_zone_stats IS 'per zone'")
        connection.exec_driver_sql(
            "COMMENT ON COLUMN analytics.monthly_zone_stats.trips IS 'Trips (rows) it''s'"
        )
        pending = plan(connection, "analytics", "monthly_zone_stats", "partition_month")
    assert pending.remaining == ["2021-01", "2021-02"]
    layout = TableLayout("partition_month", primary_key=("partition_month", "service", "borough"))
    convert(engine, pending, layout, log=print)
    with engine.connect() as connection:
        counts = connection.exec_driver_sql(
            "SELECT partition_month::text, count(*) FROM analytics.monthly_zone_stats "
            "GROUP BY 1 ORDER BY 1"
        ).all()
        kept = connection.exec_driver_sql(
            f"SELECT has_table_privilege('{reader}', 'analytics.monthly_zone_stats', 'SELECT'), "
            "obj_description('analytics.monthly_zone_stats'::regclass), "
            "col_description('analytics.monthly_zone_stats'::regclass, 4)"
        ).one()
        connection.exec_driver_sql(f"DROP OWNED BY {reader}")
        connection.exec_driver_sql(f"DROP ROLE {reader}")
        connection.commit()
    assert counts == [("2021-01-01", 4), ("2021-02-01", 1)]
    assert tuple(kept) == (True, "per zone", "Trips (rows) it's")
    engine.dispose()


def test_a_column_a_load_added_during_the_migration_is_null_in_the_months_moved_after(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    """The previous version's table had no cbd_congestion_fee; a load during the
    migration (allowed) adds it to the new table. The months moved after it read the
    column from the old table, which has none: every later run failed with "column does
    not exist", those months invisible for good. Now they move with the column null."""
    engine = engine_for(pg_url)
    old_yellow_table(engine, tmp_path / "generated")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE warehouse.yellow_tripdata DROP COLUMN cbd_congestion_fee"
        )
    migrate(pg_url, "--max-months", "1")
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    assert run(keys, resources, instance, "2021-02").success
    done = migrate(pg_url, check=False)
    assert done.returncode == 0, done.stderr
    counts = warehouse_counts(pg_url, "yellow_tripdata")
    assert counts["2021-01"] == ROWS["2021-01"] and counts["2021-03"] == ROWS["2021-03"]
    with engine.connect() as connection:
        filled = connection.exec_driver_sql(
            "SELECT count(cbd_congestion_fee) FROM warehouse.yellow_tripdata "
            "WHERE partition_month = DATE '2021-03-01'"
        ).scalar()
    engine.dispose()
    assert filled == 0


def test_a_role_that_may_not_convert_gets_one_line_naming_the_refusal(
    tmp_path: Path, pg_url: str, login: tuple[str, str]
) -> None:
    """Run by a role that may read the old table but not replace it (the analysts' role, by
    mistake): the server's refusal in one line, the months left as they were, and no
    traceback (it was 40 lines of SQLAlchemy's frames around the server's words)."""
    engine = engine_for(pg_url)
    old_yellow_table(engine, tmp_path / "generated")
    before = fingerprint_trips(engine)
    url, role = login
    as_admin(
        pg_url,
        f"GRANT USAGE ON SCHEMA warehouse TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA warehouse TO {role}",
    )
    done = migrate(url, "--skip-disk-check", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: the warehouse refused a statement: must be owner of index "
        "yellow_tripdata_partition_month_idx (SQLSTATE 42501)"
    ], done.stderr
    assert LOGIN_PASSWORD not in done.stdout + done.stderr
    assert fingerprint_trips(engine) == before
    assert kinds(engine) == {"warehouse.yellow_tripdata": "r"}
    engine.dispose()


def fingerprint_trips(engine: sa.Engine) -> list[tuple]:
    """Rows and exact sums per month of the trips table alone."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT partition_month, count(*), sum(total_amount::numeric) "
            "FROM warehouse.yellow_tripdata GROUP BY 1 ORDER BY 1"
        ).all()
    return [tuple(row) for row in rows]
