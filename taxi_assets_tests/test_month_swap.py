"""The month replace (taxi_assets.pg.month_swap) against a real PostgreSQL: the partition
layout, the swap's locks and retries, its hook, and what it refuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from taxi_assets.errors import ColumnTypesDiffer, NotPartitioned, RowCountMismatch
from taxi_assets.pg.ddl import TableLayout, ensure_table
from taxi_assets.pg.lock_retry import LockWaits, LockWaitTimedOut
from taxi_assets.pg.month_swap import Fill, MonthBounds, MonthReplace, Staging, replace_months
from taxi_assets.pg.partitions import partitions, staging_tables, tree_bytes
from taxi_assets_tests.faults_support import wait_for
from taxi_assets_tests.pipeline import engine_for

SCHEMA = pa.schema(
    [
        ("trip_id", pa.int64()),
        ("pickup_datetime", pa.timestamp("us")),
        ("zone", pa.int32()),
        ("partition_month", pa.date32()),
    ]
)
LAYOUT = TableLayout(
    partition_by="partition_month", btree_columns=("zone",), brin_columns=("pickup_datetime",)
)
FAST = LockWaits(lock_timeout_ms=200, retry_for_s=30, max_backoff_s=0.5)


def month(key: str) -> MonthBounds:
    year, number = map(int, key.split("-"))
    end = date(year + number // 12, number % 12 + 1, 1)
    return MonthBounds(key, date(year, number, 1), end)


def rows_of(key: str, count: int) -> Fill:
    """A fill writing ``count`` generated trips of month ``key`` (SQL, no client data)."""
    first = month(key).start

    def fill(connection: sa.Connection, staging: Staging) -> int:
        return connection.execute(
            sa.text(
                f"INSERT INTO {staging.target} (trip_id, pickup_datetime, zone, partition_month) "
                "SELECT g, CAST(:first AS timestamp) "
                "+ g * interval '1 second', g % 265 + 1, CAST(:first AS date) "
                "FROM generate_series(1, :count) AS g"
            ),
            {"first": first, "count": count},
        ).rowcount

    return fill


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = engine_for(pg_url)
    ensure_table(engine, "warehouse", "trips", SCHEMA, LAYOUT)
    yield engine
    engine.dispose()


def load(
    engine: sa.Engine, key: str, count: int, waits: LockWaits = FAST, **options: Any
) -> MonthReplace:
    return replace_months(
        engine, "warehouse", "trips", "partition_month", [month(key)], rows_of(key, count),
        waits=waits, **options,
    )  # fmt: skip


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT to_char(partition_month, 'YYYY-MM'), count(*) FROM warehouse.trips "
            "GROUP BY 1 ORDER BY 1"
        ).all()
    return {key: int(n) for key, n in rows}


def child_stats(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """(rows inserted, dead tuples) per child, from the statistics collector."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT relname, n_tup_ins, n_dead_tup FROM pg_stat_user_tables "
            "WHERE schemaname = 'warehouse' AND relname LIKE 'trips_%%' ORDER BY 1"
        ).all()
    return {name: (int(ins), int(dead)) for name, ins, dead in rows}


def test_months_are_children_with_the_indexes_that_fit_and_reloads_leave_no_dead_rows(
    engine: sa.Engine,
) -> None:
    for key in ("2021-01", "2021-02", "2021-03"):
        load(engine, key, 5_000)
    sizes = []
    for _ in range(3):
        done = load(engine, "2021-02", 5_000)
        assert (done.rows_written, done.rows_replaced) == (5_000, 5_000)
        with engine.connect() as connection:
            sizes.append(tree_bytes(connection, "warehouse", "trips"))
    assert counts(engine) == {"2021-01": 5_000, "2021-02": 5_000, "2021-03": 5_000}
    assert len(set(sizes)) == 1 and sizes[0] > 0  # three reloads, the same size
    with engine.connect() as connection:
        assert partitions(connection, "warehouse", "trips") == [
            "trips_2021_01",
            "trips_2021_02",
            "trips_2021_03",
        ]
        kinds = connection.exec_driver_sql(
            "SELECT relkind FROM pg_class WHERE oid = 'warehouse.trips'::regclass"
        ).scalar()
        indexes = connection.exec_driver_sql(
            "SELECT i.relname, am.amname, pg_get_indexdef(i.oid) FROM pg_index AS x "
            "JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_am AS am ON am.oid = i.relam "
            "WHERE x.indrelid = 'warehouse.trips_2021_02'::regclass ORDER BY 1"
        ).all()
    assert kinds == "p"
    assert [(name, method) for name, method, _ in indexes] == [
        ("trips_2021_02_pickup_datetime_idx", "brin"),
        ("trips_2021_02_zone_idx", "btree"),
    ]
    assert not any("partition_month" in definition for *_, definition in indexes)

    # No dead tuple anywhere: the old month left with its child table. (Statistics reach
    # the collector shortly after each transaction: wait until the inserts show.)
    wait_for(
        "the statistics of every child",
        lambda: (
            all(ins > 0 for ins, _ in child_stats(engine).values())
            and len(child_stats(engine)) == 3
        ),
        timeout=30,
        every=0.2,
    )
    assert {name: dead for name, (_, dead) in child_stats(engine).items()} == {
        "trips_2021_01": 0,
        "trips_2021_02": 0,
        "trips_2021_03": 0,
    }


def test_a_second_index_on_a_column_keeps_the_months_loading(
    engine: sa.Engine, pg_url: str
) -> None:
    """A btree a DBA adds beside the BRIN on pickup_datetime (or the layout's own second
    index on it): the month's counterparts were both named <child>_pickup_datetime_idx,
    and every load of every month failed ("relation ... already exists"); a layout asking
    for both had its btree skipped as present, or failed the table's creation."""
    load(engine, "2021-01", 1_000)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE INDEX trips_pickup_btree ON warehouse.trips (pickup_datetime)"
        )
    load(engine, "2021-01", 1_500)  # a reload
    load(engine, "2021-02", 500)  # a new month
    assert counts(engine) == {"2021-01": 1_500, "2021-02": 500}
    with engine.connect() as connection:
        methods = (
            connection.exec_driver_sql(
                "SELECT am.amname FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
                "JOIN pg_am AS am ON am.oid = i.relam JOIN pg_attribute AS a "
                "ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
                "WHERE x.indrelid = 'warehouse.trips_2021_01'::regclass "
                "AND a.attname = 'pickup_datetime' ORDER BY 1"
            )
            .scalars()
            .all()
        )
    assert methods == ["brin", "btree"]

    both = TableLayout(
        partition_by="partition_month",
        btree_columns=("pickup_datetime",),
        brin_columns=("pickup_datetime",),
    )
    other = engine_for(pg_url)
    ensure_table(other, "warehouse", "both_indexes", SCHEMA, both)
    with other.connect() as connection:
        names = (
            connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'both_indexes' ORDER BY 1"
            )
            .scalars()
            .all()
        )
    other.dispose()
    assert names == ["both_indexes_pickup_datetime_btree_idx", "both_indexes_pickup_datetime_idx"]


def test_readers_see_the_old_month_or_the_new_one_never_neither_or_both(
    engine: sa.Engine, pg_url: str
) -> None:
    load(engine, "2021-01", 1_000)
    load(engine, "2021-02", 7)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def read() -> None:
        reader = engine_for(pg_url)
        with reader.connect() as connection:
            while not stop.is_set():
                row = connection.exec_driver_sql(
                    "SELECT count(*) FILTER (WHERE partition_month = '2021-01-01'), "
                    "count(*) FILTER (WHERE partition_month = '2021-02-01') FROM warehouse.trips"
                ).one()
                connection.commit()
                seen.append((int(row[0]), int(row[1])))
        reader.dispose()

    def reader_reads_again(before: int) -> None:
        # Not a sleep: on a loaded machine the reader's thread may not run for a while, and
        # every swap must have a read before and after it.
        deadline = time.monotonic() + 60
        while len(seen) <= before and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(seen) > before, "the reader made no read within 60 s"

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    reader_reads_again(0)
    for count in (2_000, 1_000, 2_000, 1_000):  # reloads while the reader reads
        load(engine, "2021-01", count)
        reader_reads_again(len(seen))
    stop.set()
    thread.join(timeout=30)
    assert len(seen) >= 5
    # January had 1,000 or 2,000 rows at every moment: never 0 (neither), never 3,000 (both).
    assert set(seen) <= {(1_000, 7), (2_000, 7)}, set(seen)


def test_the_swap_neither_scans_the_month_nor_builds_an_index(
    engine: sa.Engine, pg_url: str
) -> None:
    load(engine, "2021-01", 2_000)
    notices: list[str] = []
    # Every session of this database reports PostgreSQL's DEBUG1 messages, which say
    # whether ATTACH verified the rows or built an index.
    database = sa.make_url(pg_url).database
    with engine.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" SET client_min_messages = debug1')
        connection.commit()
    engine.dispose()

    @sa.event.listens_for(engine, "connect")
    def collect(driver_connection, _record) -> None:  # noqa: ANN001
        driver_connection.add_notice_handler(lambda d: notices.append(d.message_primary or ""))

    load(engine, "2021-01", 2_000)
    attach = [n for n in notices if "trips_2021_01" in n or "partition constraint" in n]
    assert any("is implied by existing constraints" in n for n in attach), notices
    assert not any(n.startswith("verifying table") for n in notices), notices
    # Index builds happen in the staging transaction, on the staging table, never at ATTACH.
    built = [n for n in notices if n.startswith("building index")]
    assert built and all("__load_" in n for n in built), built


def test_the_hook_commits_with_the_month_or_not_at_all(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE warehouse.loads (month text, rows bigint)")
    load(engine, "2021-01", 100)

    def record(rows: int):  # noqa: ANN202
        def hook(connection: sa.Connection) -> None:
            connection.execute(
                sa.text("INSERT INTO warehouse.loads VALUES ('2021-01', :rows)"), {"rows": rows}
            )
            if rows < 0:
                raise RuntimeError("hook failed")

        return hook

    with pytest.raises(RuntimeError, match="hook failed"):
        load(engine, "2021-01", 300, in_swap=record(-1))
    load(engine, "2021-01", 200, in_swap=record(200))
    with engine.connect() as connection:
        loads = connection.exec_driver_sql("SELECT month, rows FROM warehouse.loads").all()
        left = staging_tables(connection, "warehouse", "trips_2021_01")
    assert [tuple(row) for row in loads] == [("2021-01", 200)]
    assert counts(engine) == {"2021-01": 200}
    assert left == []  # the failed attempt's staging table was dropped


def test_bad_rows_and_counts_are_refused_and_change_nothing(engine: sa.Engine) -> None:
    load(engine, "2021-01", 100)
    with pytest.raises(RowCountMismatch, match="loaded 100 rows but expected 101"):
        load(engine, "2021-01", 100, expected_rows=101)

    def february_row(connection: sa.Connection, staging: Staging) -> int:
        return connection.exec_driver_sql(
            f"INSERT INTO {staging.target} VALUES (1, '2021-02-01 08:00', 1, '2021-02-01')"
        ).rowcount

    with pytest.raises(ValueError, match="partition_month is outside the months being replaced"):
        replace_months(
            engine, "warehouse", "trips", "partition_month", [month("2021-01")], february_row
        )
    assert counts(engine) == {"2021-01": 100}
    with engine.connect() as connection:
        assert staging_tables(connection, "warehouse", "trips_2021_01") == []


def test_a_plain_table_of_an_earlier_version_is_refused_naming_the_migration(
    pg_url: str,
) -> None:
    engine = engine_for(pg_url)
    ensure_table(engine, "warehouse", "old_trips", SCHEMA)  # plain, as before
    with pytest.raises(NotPartitioned, match="python -m taxi_assets.cli warehouse migrate"):
        ensure_table(engine, "warehouse", "old_trips", SCHEMA, LAYOUT)
    with pytest.raises(NotPartitioned, match="warehouse migrate"):
        replace_months(
            engine, "warehouse", "old_trips", "partition_month", [month("2021-01")],
            rows_of("2021-01", 1),
        )  # fmt: skip
    engine.dispose()


def test_a_column_of_a_type_that_would_change_the_values_is_refused_naming_it(
    pg_url: str,
) -> None:
    """A table made by hand (or by another version): a naive New York time into
    timestamptz was stored read as UTC (5 hours off), into date or time lost half of it,
    a fare into integer or numeric
    rounded, without a word. Refused before anything is staged, as BigQuery refuses it; a
    type that only widens (integer into bigint) is not."""
    engine = engine_for(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE SCHEMA IF NOT EXISTS warehouse; "
            "CREATE TABLE warehouse.hand_made (pickup_datetime timestamptz, "
            "dropoff_datetime date, fare_amount numeric(10,0), vendor_id bigint)"
        )
    schema = pa.schema(
        [
            ("pickup_datetime", pa.timestamp("us")),
            ("dropoff_datetime", pa.timestamp("us")),
            ("fare_amount", pa.float64()),
            ("vendor_id", pa.int32()),
        ]
    )
    with pytest.raises(ColumnTypesDiffer) as raised:
        ensure_table(engine, "warehouse", "hand_made", schema)
    said = str(raised.value)
    assert said.startswith("warehouse.hand_made has columns of other types than the load: ")
    assert "pickup_datetime is timestamp with time zone, the load's is timestamp without" in said
    assert "dropoff_datetime is date, the load's is timestamp without time zone" in said
    assert "fare_amount is numeric, the load's is double precision" in said
    assert "vendor_id" not in said
    engine.dispose()


def test_a_long_reader_makes_the_swap_retry_without_stalling_other_readers(
    engine: sa.Engine, pg_url: str
) -> None:
    load(engine, "2021-01", 1_000)
    reader = engine_for(pg_url)
    holder = reader.connect()
    holder.exec_driver_sql("SELECT count(*) FROM warehouse.trips").scalar()  # ACCESS SHARE, kept
    outcome: dict[str, object] = {}

    def swap() -> None:
        try:
            outcome["done"] = load(
                engine, "2021-01", 2_000, log=lambda m: outcome.setdefault("log", m)
            )
        except Exception as error:  # noqa: BLE001 - asserted below
            outcome["error"] = error

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    wait_for("the swap to retry", lambda: "log" in outcome, timeout=30)
    # Other readers keep reading the whole time: each waits at most the lock timeout.
    latencies = []
    for _ in range(10):
        began = time.monotonic()
        with reader.connect() as other:
            other.exec_driver_sql("SELECT count(*) FROM warehouse.trips").scalar()
        latencies.append(time.monotonic() - began)
    holder.rollback()
    holder.close()
    thread.join(timeout=60)
    reader.dispose()
    assert "error" not in outcome, outcome
    done = outcome["done"]
    assert isinstance(done, MonthReplace) and done.swap_attempts > 1
    # Queued behind the swap, a reader waits at most its lock timeout (0.2 s); a reader
    # queued behind the holder would never finish, as the holder waits for the readers.
    # (The margin is for a loaded machine.)
    assert max(latencies) < FAST.lock_timeout_ms / 1000 + 1.5, latencies
    assert "waited 200 ms for its locks (pid " in str(outcome["log"])
    assert counts(engine) == {"2021-01": 2_000}


def test_a_reader_that_never_ends_times_the_swap_out_and_the_month_stays(
    engine: sa.Engine, pg_url: str
) -> None:
    load(engine, "2021-01", 1_000)
    reader = engine_for(pg_url)
    with reader.connect() as holder:
        holder.exec_driver_sql("SELECT count(*) FROM warehouse.trips_2021_01").scalar()
        with pytest.raises(LockWaitTimedOut, match=r"held the table for more than 1 s \(pid "):
            load(engine, "2021-01", 2_000, waits=LockWaits(lock_timeout_ms=100, retry_for_s=1))
        holder.rollback()
    reader.dispose()
    assert counts(engine) == {"2021-01": 1_000}
    with engine.connect() as connection:
        assert staging_tables(connection, "warehouse", "trips_2021_01") == []


def test_a_range_of_months_is_swapped_in_one_transaction(engine: sa.Engine) -> None:
    load(engine, "2021-01", 10)

    def two_months(connection: sa.Connection, staging: Staging) -> int:
        assert not staging.freeze  # rows go through the router
        return connection.exec_driver_sql(
            f"INSERT INTO {staging.target} (trip_id, pickup_datetime, zone, partition_month) "
            "SELECT g, timestamp '2021-02-01' + g * interval '1 day', "
            "1, date_trunc('month', timestamp '2021-02-01' + g * interval '1 day')::date "
            "FROM generate_series(0, 49) AS g"
        ).rowcount

    done = replace_months(
        engine,
        "warehouse",
        "trips",
        "partition_month",
        [month("2021-02"), month("2021-03")],
        two_months,
        expected_rows=50,
    )
    assert done.swap_attempts == 1
    assert counts(engine) == {"2021-01": 10, "2021-02": 28, "2021-03": 22}


PADDED = pa.schema(
    [
        ("base", pa.string()),
        ("pickup_datetime", pa.timestamp("us")),
        ("zone", pa.int32()),
        ("fare", pa.float64()),
        ("flag", pa.string()),
        ("passengers", pa.int16()),
        ("miles", pa.float64()),
        ("partition_month", pa.date32()),
    ]
)


def attribute_names(connection: sa.Connection, table: str) -> list[str]:
    return list(
        connection.exec_driver_sql(
            "SELECT attname FROM pg_attribute WHERE attrelid = %(table)s::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            {"table": f"warehouse.{table}"},
        ).scalars()
    )


def test_a_month_stores_its_columns_without_padding_and_readers_keep_the_parents_order(
    engine: sa.Engine,
) -> None:
    ensure_table(engine, "warehouse", "padded", PADDED, TableLayout(partition_by="partition_month"))
    names = "base, pickup_datetime, zone, fare, flag, passengers, miles, partition_month"

    def fill(connection: sa.Connection, staging: Staging) -> int:
        return connection.exec_driver_sql(
            f"INSERT INTO {staging.target} ({names}) SELECT 'B0' || g, "
            "timestamp '2021-01-01' + g * interval '1 minute', g, g * 1.5, 'N', 1, g * 0.25, "
            "date '2021-01-01' FROM generate_series(1, 20000) AS g"
        ).rowcount

    replace_months(engine, "warehouse", "padded", "partition_month", [month("2021-01")], fill)
    with engine.connect() as connection:
        assert attribute_names(connection, "padded_2021_01") == [
            "pickup_datetime", "fare", "miles", "zone", "partition_month", "passengers",
            "base", "flag",
        ]  # fmt: skip
        assert attribute_names(connection, "padded") == PADDED.names
        first = connection.exec_driver_sql(
            "SELECT * FROM warehouse.padded ORDER BY pickup_datetime LIMIT 1"
        ).one()
        assert tuple(first) == (
            "B01",
            datetime(2021, 1, 1, 0, 1),
            1,
            1.5,
            "N",
            1,
            0.25,
            date(2021, 1, 1),
        )
        # The same rows in the parent's order take more room: the padding it would cost.
        connection.exec_driver_sql(
            "CREATE TABLE warehouse.padded_as_declared AS SELECT * FROM warehouse.padded"
        )
        stored = connection.exec_driver_sql(
            "SELECT pg_relation_size('warehouse.padded_2021_01'), "
            "pg_relation_size('warehouse.padded_as_declared')"
        ).one()
        assert stored[0] < stored[1] * 0.9, stored
    # A reload builds its month the same way and replaces it.
    replace_months(engine, "warehouse", "padded", "partition_month", [month("2021-01")], fill)
    with engine.connect() as connection:
        total = connection.exec_driver_sql("SELECT count(*) FROM warehouse.padded").scalar()
    assert total == 20000


LINEAGE = pa.schema(
    [
        ("pickup_datetime", pa.timestamp("us")),
        ("tip", pa.float64()),
        ("source_file", pa.string()),
        ("partition_month", pa.date32()),
    ]
)


def test_a_column_with_one_value_in_every_row_is_stored_once_not_in_each_row(
    engine: sa.Engine,
) -> None:
    ensure_table(
        engine, "warehouse", "lineage", LINEAGE, TableLayout(partition_by="partition_month")
    )

    def fill(connection: sa.Connection, staging: Staging) -> int:
        # Neither the constants nor the partition column: replace_months fills them in.
        return connection.exec_driver_sql(
            f"INSERT INTO {staging.target} (pickup_datetime) "
            "SELECT timestamp '2021-01-01' + g * interval '1 minute' "
            "FROM generate_series(1, 20000) AS g"
        ).rowcount

    def load_from(source_file: str) -> None:
        constants = {"source_file": source_file, "tip": None, "partition_month": date(2021, 1, 1)}
        replace_months(
            engine, "warehouse", "lineage", "partition_month", [month("2021-01")], fill,
            constants=constants,
        )  # fmt: skip

    def read() -> tuple[Any, ...]:
        with engine.connect() as connection:
            return tuple(
                connection.exec_driver_sql(
                    "SELECT count(*), count(tip), min(source_file), max(source_file), "
                    "min(partition_month), max(partition_month) FROM warehouse.lineage"
                ).one()
            )

    load_from("yellow_tripdata_2021-01.parquet")
    january = date(2021, 1, 1)
    assert read() == (20000, 0, *["yellow_tripdata_2021-01.parquet"] * 2, january, january)
    with engine.connect() as connection:
        # Held once in the catalog, and no default left for later rows.
        missing = connection.exec_driver_sql(
            "SELECT attname FROM pg_attribute WHERE attrelid = "
            "'warehouse.lineage_2021_01'::regclass AND atthasmissing"
        ).scalars()
        assert list(missing) == ["source_file"]
        defaults = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'warehouse.lineage_2021_01'::regclass"
        ).scalar()
        assert defaults == 0
        # The same rows with the value in each row take ~32 bytes a row more.
        connection.exec_driver_sql(
            "CREATE TABLE warehouse.lineage_stored AS SELECT * FROM warehouse.lineage"
        )
        once, each = connection.exec_driver_sql(
            "SELECT pg_relation_size('warehouse.lineage_2021_01'), "
            "pg_relation_size('warehouse.lineage_stored')"
        ).one()
        assert each - once > 20000 * 24, (once, each)
        connection.commit()
    # A reload replaces the month, and its value.
    load_from("yellow_tripdata_2021-01.csv.gz")
    assert read() == (20000, 0, *["yellow_tripdata_2021-01.csv.gz"] * 2, january, january)
    with pytest.raises(ValueError, match="warehouse.lineage has no column vendor"):
        replace_months(
            engine, "warehouse", "lineage", "partition_month", [month("2021-01")], fill,
            constants={"vendor": 1},
        )  # fmt: skip


def test_a_reloaded_month_keeps_its_owner_and_grants(engine: sa.Engine, pg_url: str) -> None:
    """Tables owned by a group role whose members load: the swap gave the reloaded month's
    table to the member who loaded it, and dropped its grants, so the next load by another
    member failed on it ("permission denied for table trips_2021_01") and a reader granted
    the month lost it."""
    import uuid

    from taxi_assets_tests.faults_support import as_admin

    load(engine, "2021-01", 100)
    tag = uuid.uuid4().hex[:8]
    owner, first, second, reader = (f"{name}_{tag}" for name in ("wh", "ld_a", "ld_b", "rd"))
    as_admin(
        pg_url,
        f"CREATE ROLE {owner} NOLOGIN",
        f"CREATE ROLE {first} LOGIN PASSWORD 'pw-a' IN ROLE {owner}",
        f"CREATE ROLE {second} LOGIN PASSWORD 'pw-b' IN ROLE {owner}",
        f"CREATE ROLE {reader} NOLOGIN",
        f"GRANT USAGE, CREATE ON SCHEMA warehouse TO {owner}",
        f"ALTER TABLE warehouse.trips OWNER TO {owner}",
        f"ALTER TABLE warehouse.trips_2021_01 OWNER TO {owner}",
        f"GRANT SELECT ON warehouse.trips_2021_01 TO {reader}",
    )
    loaders = [
        engine_for(sa.make_url(pg_url).set(username=role, password=pw).render_as_string(False))
        for role, pw in ((first, "pw-a"), (second, "pw-b"))
    ]
    try:
        for loader, rows in zip(loaders, (200, 300), strict=True):
            load(loader, "2021-01", rows)
            load(loader, "2021-02", rows)  # a month new to the table: the parent's owner
        with engine.connect() as connection:
            owners = connection.exec_driver_sql(
                "SELECT relname, pg_get_userbyid(relowner) FROM pg_class "
                "WHERE relname IN ('trips_2021_01', 'trips_2021_02') ORDER BY 1"
            ).all()
            granted = connection.exec_driver_sql(
                f"SELECT has_table_privilege('{reader}', 'warehouse.trips_2021_01', 'SELECT')"
            ).scalar()
        assert counts(engine) == {"2021-01": 300, "2021-02": 300}
        assert [tuple(row) for row in owners] == [
            ("trips_2021_01", owner),
            ("trips_2021_02", owner),
        ]
        assert granted is True
    finally:
        for loader in loaders:
            loader.dispose()
        as_admin(
            pg_url,
            f"ALTER TABLE warehouse.trips OWNER TO {sa.make_url(pg_url).username}",
            f"REASSIGN OWNED BY {owner}, {first}, {second} TO {sa.make_url(pg_url).username}",
            *(f"DROP OWNED BY {role}" for role in (owner, first, second, reader)),
            *(f"DROP ROLE {role}" for role in (first, second, reader, owner)),
        )


def test_first_loads_of_two_tables_into_a_new_schema_both_create_their_table(
    pg_url: str,
) -> None:
    """Each first load creates the schema if missing, under its own table's lock: the one
    whose transaction committed second failed on pg_namespace's unique index ("Key
    (nspname)=(fresh) already exists"). Yellow's commit is held up by its log line (a run's
    event write), green's starts meanwhile."""
    engine = engine_for(pg_url)
    failures: list[str] = []

    def first(table: str, log: Any) -> None:
        try:
            ensure_table(engine, "fresh", table, SCHEMA, LAYOUT, log=log)
        except sa.exc.DBAPIError as error:  # the failure is the assertion's subject
            failures.append(f"{table}: {error}")

    slow = threading.Thread(target=first, args=("yellow", lambda _: time.sleep(1)))
    fast = threading.Thread(target=first, args=("green", lambda _: None))
    slow.start()
    time.sleep(0.3)
    fast.start()
    slow.join()
    fast.join()
    with engine.connect() as connection:
        tables = (
            connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'fresh' ORDER BY 1"
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert failures == []
    assert tables == ["green", "yellow"]


@pytest.mark.parametrize("setup", ["create_on_the_schema_to_the_member", "member_without_set"])
def test_a_month_that_cannot_go_back_to_its_owner_is_swapped_all_the_same(
    engine: sa.Engine, pg_url: str, setup: str
) -> None:
    """Group-owned tables where the owner may not take the month back: CREATE on the
    schema granted to the loading member, not to the owner, or a membership without SET
    (PostgreSQL 16). Giving the month back to its owner failed every load that worked
    before; the month is swapped, owned by the loader, said in the log."""
    import uuid

    from taxi_assets_tests.faults_support import as_admin

    load(engine, "2021-01", 100)
    tag = uuid.uuid4().hex[:8]
    owner, member = f"wh_{tag}", f"ld_{tag}"
    admin = sa.make_url(pg_url).username
    with engine.connect() as connection:
        server = connection.exec_driver_sql("SHOW server_version_num").scalar()
    if setup == "member_without_set" and int(str(server)) < 160000:
        pytest.skip("GRANT ... WITH SET FALSE is PostgreSQL 16's")
    schema_to = member if setup == "create_on_the_schema_to_the_member" else f"{owner}, {member}"
    membership = "" if setup == "create_on_the_schema_to_the_member" else " WITH SET FALSE"
    as_admin(
        pg_url,
        f"CREATE ROLE {owner} NOLOGIN",
        f"CREATE ROLE {member} LOGIN PASSWORD 'pw'",
        f"GRANT {owner} TO {member}{membership}",
        f"GRANT USAGE, CREATE ON SCHEMA warehouse TO {schema_to}",
        f"ALTER TABLE warehouse.trips OWNER TO {owner}",
        f"ALTER TABLE warehouse.trips_2021_01 OWNER TO {owner}",
    )
    loader = engine_for(
        sa.make_url(pg_url).set(username=member, password="pw").render_as_string(False)
    )
    said: list[str] = []
    try:
        for key in ("2021-01", "2021-02"):
            replace_months(
                loader, "warehouse", "trips", "partition_month", [month(key)],
                rows_of(key, 200), waits=FAST, log=said.append,
            )  # fmt: skip
        assert counts(engine) == {"2021-01": 200, "2021-02": 200}
        assert any("stays owned by the loading role, not " + owner in line for line in said)
    finally:
        loader.dispose()
        as_admin(
            pg_url,
            f"ALTER TABLE warehouse.trips OWNER TO {admin}",
            f"REASSIGN OWNED BY {owner}, {member} TO {admin}",
            *(f"DROP OWNED BY {role}" for role in (owner, member)),
            f"DROP ROLE {member}",
            f"DROP ROLE {owner}",
        )
