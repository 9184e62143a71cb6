"""Fault tolerance end to end, with real faults: killed runs, a restarted server, racing
runs, a file where the lake should be, a full disk, a misbehaving source, broken input
files, bad partition keys and a contract that gains a column.

Nothing is mocked: the faults are caused for real (SIGKILL, ``pg_ctl stop``, a tiny
tmpfs, a real HTTP server injecting faults, real files on disk), and their effects are
read from PostgreSQL's own views, the filesystem and Dagster's event log.
See docs/fault_tolerance.md for the list of cases.
"""

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets.devdata import write_month
from taxi_assets.io_managers.parquet_lake import ParquetLakeIOManager
from taxi_assets.io_managers.postgres import PostgresIOManager, TableLoad
from taxi_assets.io_managers.raw_files import RawFileIOManager
from taxi_assets.pg.partitions import child_name, staging_tables
from taxi_assets.pg.server_limits import (
    disk_full_says,
    read_only_says,
    statement_timeout_says,
)
from taxi_assets.resources import LakeResource, PostgresResource, TaxiSourceResource
from taxi_assets.storage import read_retries
from taxi_assets_tests.faults_support import (
    DAGSTER,
    REPO,
    all_files,
    as_admin,
    copy_rows_received,
    database_name,
    failure_messages,
    fill_disk,
    garbled_footer,
    is_dagster_failure_without_retries,
    locks_held,
    materialize_command,
    other_backends,
    process_group_alive,
    restartable_server,
    run_warnings,
    slow_link_to,
    step_failure,
    tiny_tmpfs,
    wait_for,
    waiting_advisory_locks,
)
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.lake_stores import S3_SLOW_DOWN, S3Store
from taxi_assets_tests.pipeline import (
    cli_env,
    current_raw_file,
    engine_for,
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
    warehouse_tables,
)

MONTH = "2021-01"
YELLOW_CSV = "/yellow/yellow_tripdata_2021-01.csv.gz"
YELLOW_NAME = "yellow_tripdata_2021-01.csv.gz"
ROWS = 2000  # rows of every generated month on the shared mirror (conftest.ROWS)
YELLOW_KEYS = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
FILE_KEYS = YELLOW_KEYS[:2]


def month_summary(pg_url: str, month: str = MONTH) -> tuple[int, object]:
    """(rows, exact sum of total_amount) of one month of warehouse.yellow_tripdata."""
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT count(*), sum(total_amount::numeric) FROM warehouse.yellow_tripdata "
                "WHERE partition_month = CAST(:month AS date)"
            ),
            {"month": f"{month}-01"},
        ).one()
    engine.dispose()
    return row[0], row[1]


def staging_of(engine: sa.Engine, month: str) -> list[str]:
    """Staging tables of yellow ``month`` in the warehouse (committed, not attached)."""
    with engine.connect() as connection:
        return staging_tables(connection, "warehouse", child_name("yellow_tripdata", month))


def dead_tuples(pg_url: str) -> dict[str, int]:
    """Dead tuples of each month of warehouse.yellow_tripdata, once the statistics of the
    last writes have reached the collector (they arrive within about a second)."""
    engine = engine_for(pg_url)
    query = (
        "SELECT relname, n_tup_ins, n_dead_tup FROM pg_stat_user_tables "
        "WHERE schemaname = 'warehouse' AND relname LIKE 'yellow_tripdata_%%' ORDER BY 1"
    )
    try:
        wait_for(
            "the months' statistics",
            lambda: all(row[1] > 0 for row in engine.connect().exec_driver_sql(query).all()),
            timeout=30,
            every=0.2,
        )
        with engine.connect() as connection:
            return {name: int(dead) for name, _, dead in connection.exec_driver_sql(query).all()}
    finally:
        engine.dispose()


def without_column(name: bytes) -> Callable[[list[bytes]], list[bytes]]:
    """A CSV's lines (for :func:`rewrite_csv_gz`) without the column ``name``."""

    def edit(lines: list[bytes]) -> list[bytes]:
        at = lines[0].split(b",").index(name)
        return [b",".join(f for i, f in enumerate(line.split(b",")) if i != at) for line in lines]

    return edit


def published_yellow(mirror: FaultyMirror) -> Path:
    """The file at YELLOW_CSV on ``mirror``: yellow, MONTH, as published."""
    return Path(mirror.root) / YELLOW_CSV.lstrip("/")


def rewrite_csv_gz(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Replace a published CSV.gz by an edited copy (lines without their newlines)."""
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    edited = edit(lines)
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in edited), mtime=0))


def set_field(line: bytes, index: int, value: bytes) -> bytes:
    fields = line.split(b",")
    fields[index] = value
    return b",".join(fields)


# --- 1. a run killed with SIGKILL in the middle of a month's COPY ----------------------


@pytest.mark.slow
def test_sigkill_mid_copy_keeps_the_previous_month_and_the_next_run_succeeds(
    own_mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake, pg_url)
    for month in (MONTH, "2021-02"):
        assert run(YELLOW_KEYS, resources, instance, month).success
    before = month_summary(pg_url)
    assert before[0] == ROWS

    # TLC republishes the month, bigger: the lake has it, the warehouse not yet.
    big = 200_000
    write_month(Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=big)
    assert run(FILE_KEYS, resources, instance, MONTH).success

    log = tmp_path / "killed_run.log"
    database = database_name(pg_url)
    watcher = engine_for(pg_url)
    # The run reaches PostgreSQL over a link of 2 MB/s: the month's COPY (~37 MB) takes
    # ~18 s, so the kill lands in its middle whatever the machine's speed.
    with (
        tempfile.TemporaryDirectory(prefix="slow-pg-") as link_folder,  # socket paths: <108 B
        slow_link_to(pg_url, Path(link_folder), 2_000_000) as slow_url,
    ):
        env = cli_env(tmp_path, own_mirror.url, lake, slow_url)
        with open(log, "wb") as output:
            process = subprocess.Popen(
                materialize_command("warehouse/yellow_tripdata", MONTH),
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the run and its step processes: one process group
            )
        received: list[int] = []
        try:

            def copying() -> bool:
                assert process.poll() is None, f"the run ended early:\n{log.read_text()[-3000:]}"
                received.append(copy_rows_received(watcher, database) or 0)
                return received[-1] > 0

            # Rows are flowing into the table inside the run's open transaction.
            wait_for("the run's COPY to be receiving rows", copying, timeout=180)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert 0 < received[-1] < big, received  # killed in the middle of the COPY
    wait_for("every process of the run to be gone", lambda: not process_group_alive(process.pid))

    # The server notices the dead client, rolls back and ends the backend: nothing lingers,
    # not even the staging table (created in the COPY's own transaction).
    wait_for("the killed run's backend to go", lambda: not other_backends(watcher, database))
    assert locks_held(watcher, database) == []
    assert staging_of(watcher, MONTH) == []
    watcher.dispose()
    assert month_summary(pg_url) == before
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: ROWS, "2021-02": ROWS}

    # The next run loads the month whole, and the reload leaves no dead tuple in any month.
    result = run("warehouse/yellow_tripdata", resources, instance, MONTH)
    assert result.success
    assert materialization_metadata(result, "warehouse/yellow_tripdata")["rows_replaced"] == ROWS
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: big, "2021-02": ROWS}
    assert dead_tuples(pg_url) == {"yellow_tripdata_2021_01": 0, "yellow_tripdata_2021_02": 0}


# --- 2. PostgreSQL restarted between two runs -------------------------------------------


def test_postgres_restart_between_runs(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # A private server, never the session one: it is stopped in the middle of the test.
    # Not under pytest's basetemp, which a concurrent pytest session may prune.
    folder = Path(tempfile.mkdtemp(prefix="taxi-test-pg-restart-"))
    try:
        with restartable_server(folder) as (url, restart):
            resources = pipeline_resources(mirror.url, tmp_path / "lake", url)
            assert run(YELLOW_KEYS, resources, instance, MONTH).success

            # A long-lived engine as the warehouse resource builds it, with a pooled
            # connection, and a plain engine without pre-ping to prove the restart is real.
            database = PostgresResource(url=url)
            pinged, plain = database.engine(), engine_for(url)
            for engine in (pinged, plain):
                with engine.connect() as connection:
                    connection.exec_driver_sql("SELECT 1")
            with plain.connect() as connection:
                old_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()

            restart()

            with pytest.raises(sa.exc.OperationalError), plain.connect() as connection:
                connection.exec_driver_sql("SELECT 1")  # its pooled connection died
            with pinged.connect() as connection:  # pool_pre_ping replaces it silently
                assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != old_pid
            pinged.dispose()
            plain.dispose()

            for month in (MONTH, "2021-02"):
                assert run(YELLOW_KEYS, resources, instance, month).success
            assert warehouse_counts(url, "yellow_tripdata") == {MONTH: ROWS, "2021-02": ROWS}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- 3. two runs of the same month at once ------------------------------------------------


@pytest.mark.slow
def test_two_runs_of_one_month_at_once_leave_one_copy(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    lake = tmp_path / "lake"
    env = cli_env(tmp_path, mirror.url, lake, pg_url)
    load = subprocess.run(
        materialize_command(",".join(FILE_KEYS), MONTH), cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert load.returncode == 0, load.stderr[-3000:]

    # Hold the month's lock from outside (the key the IO manager locks on), so both run
    # processes are surely inside their load at the same time, then let them go.
    gate_engine = engine_for(pg_url)
    gate = gate_engine.connect()
    lock = "warehouse.yellow_tripdata/2021-01"
    gate.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), {"k": lock})
    probe = engine_for(pg_url)
    command = materialize_command("warehouse/yellow_tripdata", MONTH)
    runs = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        wait_for(
            "both runs to wait for the month's lock",
            lambda: waiting_advisory_locks(probe, database_name(pg_url)) == 2,
            timeout=180,
        )
    finally:
        gate.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": lock})
        gate.close()
        gate_engine.dispose()
        probe.dispose()
        outputs = [process.communicate(timeout=300) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: ROWS}  # one copy, not two


# --- 3b. a long reader during a swap; a run killed in its swap --------------------------


@pytest.mark.slow
def test_a_reader_holding_the_table_delays_the_swap_not_the_other_readers(
    own_mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake, pg_url)
    for month in (MONTH, "2021-02"):
        assert run(YELLOW_KEYS, resources, instance, month).success
    before = month_summary(pg_url)
    bigger = 50_000  # republished: the lake has it, the warehouse not yet
    write_month(Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=bigger)
    # Two Dagster instances for the CLI runs: the killed run's pool slot stays claimed in
    # its instance (until run monitoring declares it dead), which would hold back the others.
    envs = []
    for name in ("killed", "after"):
        (tmp_path / name).mkdir()
        env = cli_env(tmp_path / name, own_mirror.url, lake, pg_url)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as cli_instance:
            assert run(FILE_KEYS, resources, cli_instance, MONTH).success  # the checks read it
        envs.append(env)
    command = materialize_command("warehouse/yellow_tripdata", MONTH)
    watcher = engine_for(pg_url)

    # An analyst's long transaction has read the table: ACCESS SHARE on it, held.
    holder = watcher.connect()
    holder.exec_driver_sql("SELECT count(*) FROM warehouse.yellow_tripdata").scalar()
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as output:
        first = subprocess.Popen(
            command, cwd=REPO, env=envs[0], stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            "the run's swap to wait for the reader",
            lambda: "waited 1000 ms for its locks (pid " in first_log.read_text(errors="replace"),
            timeout=180,
        )
        # Meanwhile other queries of the table wait at most the swap's lock timeout (1 s).
        latencies = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            began = time.monotonic()
            with watcher.connect() as other:
                other.exec_driver_sql(
                    "SELECT count(*) FROM warehouse.yellow_tripdata WHERE partition_month = '2021-02-01'"
                ).scalar()
            latencies.append(time.monotonic() - began)
        assert first.poll() is None  # still retrying
        # Killed in its swap: its staging table (committed, filled) is left behind.
        leftover = staging_of(watcher, MONTH)
        assert len(leftover) == 1, leftover
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    # At most the lock timeout (1 s) each, plus a margin for a loaded machine; the reader
    # held the table for all of it (a query queued behind it would wait until it ends).
    assert max(latencies) < 2.5, latencies
    assert month_summary(pg_url) == before

    # The next run takes the month's lock, drops the leftover, stages its own month and
    # waits in its swap. A third run of the month waits for the lock and leaves the
    # second run's staging table alone.
    logs = [tmp_path / "second.log", tmp_path / "third.log"]
    runs = []
    for path in logs:
        with open(path, "wb") as output:
            runs.append(
                subprocess.Popen(
                    command, cwd=REPO, env=envs[1], stdout=output, stderr=subprocess.STDOUT
                )
            )
    try:
        wait_for(
            "a second run to stage its own month",
            lambda: (tables := staging_of(watcher, MONTH)) != leftover and len(tables) == 1,
            timeout=180,
        )
        staged = staging_of(watcher, MONTH)
        wait_for(
            "the other run to wait for the month's lock",
            lambda: waiting_advisory_locks(watcher, database_name(pg_url)) == 1,
            timeout=180,
        )
        time.sleep(1)
        assert staging_of(watcher, MONTH) == staged
    finally:
        holder.rollback()  # the reader ends
        holder.close()
        for process in runs:
            process.wait(timeout=300)
    outputs = [path.read_text(errors="replace") for path in logs]
    assert [process.returncode for process in runs] == [0, 0], [o[-3000:] for o in outputs]
    dropped = f"Dropped warehouse.{leftover[0]}, left by an interrupted load of {MONTH}"
    assert sum(dropped in output for output in outputs) == 1
    assert staging_of(watcher, MONTH) == []
    watcher.dispose()
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: bigger, "2021-02": ROWS}


# --- 4. lake storage errors ------------------------------------------------------------------


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temp folder (download staging): to check nothing is left there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_lake_root_that_is_a_file_fails_naming_the_path(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance, private_tempdir: Path
) -> None:
    lake = tmp_path / "lake"
    lake.write_text("not a folder\n")
    result = run(
        "raw/yellow_tripdata", pipeline_resources(mirror.url, lake), instance, MONTH, False
    )
    assert not result.success
    step, chain = step_failure(result)
    assert step == "raw__yellow_tripdata"
    assert {"NotADirectoryError", "FileExistsError"} & {e.cls_name for e in chain}
    assert str(lake) in failure_messages(result)
    assert lake.read_text() == "not a folder\n"
    assert all_files(private_tempdir) == []  # the downloaded copy was cleaned up


def test_unusable_lake_url_fails_clearly_and_drops_the_download(
    mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance, private_tempdir: Path
) -> None:
    # A configuration fault: no bucket can have this name (checked before any request).
    url = "gs://Not_A_Bucket/lake"
    resources = pipeline_resources(mirror.url, url)
    result = run("raw/yellow_tripdata", resources, instance, MONTH, False)
    assert not result.success
    assert step_failure(result)[0] == "raw__yellow_tripdata"
    assert f"'{url}': 'Not_A_Bucket' is not a valid bucket name" in failure_messages(result)
    # The month was downloaded before the IO manager failed: its staging copy is gone.
    assert all_files(private_tempdir) == []


@pytest.mark.parametrize(
    ("layer", "fault"),
    [("raw", "full"), ("lake", "full"), ("raw", "read-only"), ("lake", "read-only")],
)
def test_full_or_read_only_disk_fails_naming_the_path_and_leaves_nothing(
    layer: str,
    fault: str,
    mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    private_tempdir: Path,
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(mirror.url, lake)
    if layer == "lake":  # the raw file lands first, on a disk with room
        assert run("raw/yellow_tripdata", resources, instance, MONTH).success
    read_only = fault == "read-only"
    with tiny_tmpfs(tmp_path / "disk", size="256k", read_only=read_only) as disk:
        # Full: room for a few KB, less than any month file (the raw file is ~40 KB).
        kept = [] if read_only else [fill_disk(disk, leave_bytes=8 * 1024).name]
        # The lake moves to the small disk after the raw file has landed.
        resources = pipeline_resources(mirror.url, disk)
        if layer == "lake":
            resources["raw_io_manager"] = RawFileIOManager(lake=LakeResource(url=str(lake)))
        result = run(f"{layer}/yellow_tripdata", resources, instance, MONTH, False)
        assert not result.success
        assert step_failure(result)[0] == f"{layer}__yellow_tripdata"
        messages = failure_messages(result)
        assert ("Read-only file system" if read_only else "No space left on device") in messages
        assert str(disk) in messages, messages
        assert all_files(disk) == kept  # no partial file, no hidden .tmp
    assert all_files(private_tempdir) == []


def alter_database(pg_url: str, setting: str) -> None:
    """``ALTER DATABASE <pg_url's database> SET <setting>``: for its new sessions."""
    as_admin(pg_url, f"ALTER DATABASE {database_name(pg_url)} SET {setting}")


def assert_month_kept(pg_url: str, loaded: tuple[int, object]) -> None:
    """The yellow month holds the rows of its last load (``loaded``: ``month_summary``),
    and no staging table of a failed load stays."""
    assert month_summary(pg_url) == loaded
    engine = engine_for(pg_url)
    try:
        assert staging_of(engine, MONTH) == []
    finally:
        engine.dispose()


@pytest.fixture
def warehouse_on_a_small_disk(pg_url: str) -> Iterator[tuple[str, Path]]:
    """(URL of ``pg_url``'s database, whose new tables go to a tablespace on a real 4 MiB
    tmpfs; that disk's folder). The server's own folder, its WAL and catalogues stay on
    the machine's disk: only the tables' files can fill the small one."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("a tablespace on a small disk needs the test's own server on this machine")
    admin = engine_for(pg_url)
    try:
        with admin.connect() as connection:
            owner = os.stat(connection.exec_driver_sql("SHOW data_directory").scalar_one()).st_uid
    finally:
        admin.dispose()
    space = f"small_{database_name(pg_url)}"
    with (
        # Outside pytest's basetemp, whose folders the server's user cannot enter.
        tempfile.TemporaryDirectory(prefix="taxi-test-tablespace-") as folder,
        tiny_tmpfs(Path(folder), size="4m") as disk,
    ):
        os.chown(disk, owner, owner)
        as_admin(pg_url, f"CREATE TABLESPACE {space} LOCATION '{disk}'")
        alter_database(pg_url, f"default_tablespace = {space}")
        try:
            yield pg_url, disk
        finally:
            as_admin(pg_url, "DROP SCHEMA IF EXISTS warehouse CASCADE", f"DROP TABLESPACE {space}")


def test_a_warehouse_out_of_disk_space_keeps_the_month_and_says_so(
    warehouse_on_a_small_disk: tuple[str, Path],
    mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
) -> None:
    """The server's disk fills while a month is loaded again: the load fails saying so and
    naming the server; the month keeps its rows, no staging table stays, and the space the
    load took is free again (PostgreSQL removes an aborted transaction's new files)."""
    pg_url, disk = warehouse_on_a_small_disk
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    assert run(YELLOW_KEYS, resources, instance, MONTH).success
    loaded = month_summary(pg_url)
    # Room for about 64 KiB of the ~400 KiB a month's table takes.
    filler = fill_disk(disk, leave_bytes=64 * 1024)
    free = shutil.disk_usage(disk).free
    result = run("warehouse/yellow_tripdata", resources, instance, MONTH, False)
    assert not result.success
    assert step_failure(result)[0] == "warehouse__yellow_tripdata"
    messages = failure_messages(result)
    assert "No space left on device" in messages, messages  # the server's own words
    assert disk_full_says(resources["warehouse"].describe()) in messages, messages
    assert_month_kept(pg_url, loaded)
    assert shutil.disk_usage(disk).free >= free - 8 * 1024  # the load's files are gone
    filler.unlink()
    assert run("warehouse/yellow_tripdata", resources, instance, MONTH).success
    assert month_summary(pg_url) == loaded


def test_a_statement_out_of_disk_space_names_the_server(
    warehouse_on_a_small_disk: tuple[str, Path],
) -> None:
    """A statement through the resource's engine (an index build, an analytics month, the
    CLI): SQLAlchemy's error carries the same words."""
    pg_url, disk = warehouse_on_a_small_disk
    resource = PostgresResource(url=pg_url)
    engine = resource.engine()
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE SCHEMA warehouse")
            connection.commit()
        fill_disk(disk, leave_bytes=64 * 1024)
        with engine.connect() as connection, pytest.raises(sa.exc.OperationalError) as raised:
            connection.exec_driver_sql(
                "CREATE TABLE warehouse.filled AS SELECT g FROM generate_series(1, 100000) g"
            )
    finally:
        engine.dispose()
    said = str(raised.value)
    assert "No space left on device" in said, said
    assert said.count(disk_full_says(resource.describe())) == 1, said


def test_a_load_past_the_servers_statement_timeout_keeps_the_month_and_says_so(
    pg_url: str, mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The database's ``statement_timeout`` (1 s) is shorter than a month's COPY (held to
    ~4 s by a 100 kB/s link): the load fails naming the server and the setting to change;
    the month keeps the rows of its previous load."""
    lake = tmp_path / "lake"
    assert run(YELLOW_KEYS, pipeline_resources(mirror.url, lake, pg_url), instance, MONTH).success
    loaded = month_summary(pg_url)
    alter_database(pg_url, "statement_timeout = '1s'")
    with (
        tempfile.TemporaryDirectory(prefix="slow-pg-") as link_folder,  # socket paths: <108 B
        slow_link_to(pg_url, Path(link_folder), 100_000) as slow_url,
    ):
        resources = pipeline_resources(mirror.url, lake, slow_url)
        result = run("warehouse/yellow_tripdata", resources, instance, MONTH, False)
    assert not result.success
    messages = failure_messages(result)
    assert "canceling statement due to statement timeout" in messages, messages
    assert statement_timeout_says(resources["warehouse"].describe()) in messages, messages
    assert_month_kept(pg_url, loaded)


def test_a_load_into_a_read_only_server_keeps_the_month_and_says_so(
    pg_url: str, mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The database turned read-only (``default_transaction_read_only``, as a managed
    service does on a nearly full disk; a standby answers the same): the load fails naming
    the server and what to do; the month keeps the rows of its previous load."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    assert run(YELLOW_KEYS, resources, instance, MONTH).success
    loaded = month_summary(pg_url)
    alter_database(pg_url, "default_transaction_read_only = on")
    result = run("warehouse/yellow_tripdata", resources, instance, MONTH, False)
    assert not result.success
    messages = failure_messages(result)
    assert "in a read-only transaction" in messages, messages
    assert messages.count(read_only_says(resources["warehouse"].describe())) == 1, messages
    assert_month_kept(pg_url, loaded)


# --- 5. source faults at the asset level ------------------------------------------------------


def fast_source(mirror: FaultyMirror, source: str = "dtc") -> TaxiSourceResource:
    return TaxiSourceResource(
        source=source,
        dtc_url=mirror.url,
        tlc_url=mirror.url,
        attempts=3,
        backoff_seconds=0.01,
        read_timeout_seconds=0.5,
    )


TRANSIENT = {
    "500-then-success": Fault.status(500),
    "reset-mid-body": Fault.reset_after(1000),
    "timeout": Fault.delay(1.5),
    "short-body": Fault.truncate(1000),
}


@pytest.mark.parametrize("fault", list(TRANSIENT.values()), ids=list(TRANSIENT))
def test_transient_source_faults_are_retried_and_the_asset_succeeds(
    fault: Fault,
    mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    private_tempdir: Path,
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(mirror.url, lake) | {"source": fast_source(mirror)}
    mirror.inject(YELLOW_CSV, fault, methods=["GET"])
    result = run("raw/yellow_tripdata", resources, instance, MONTH)
    assert result.success
    assert mirror.requests_seen(YELLOW_CSV).count("GET") == 2
    stored = current_raw_file(lake, "yellow_tripdata", MONTH)
    assert stored.read_bytes() == published_yellow(mirror).read_bytes()
    # The UI says the download took two requests, and that nothing came twice: a cut
    # answer's bytes are kept and the rest asked for (5a').
    metadata = materialization_metadata(result, "raw/yellow_tripdata")
    assert metadata["download_attempts"] == 2
    assert metadata["bytes_received"] == stored.stat().st_size
    month = f"raw/yellow_tripdata/{MONTH}"
    revision = f"{month}/{stored.parent.name}/{YELLOW_NAME}"
    assert all_files(lake) == [revision, f"{month}/revisions.json"]  # no partial or hidden file
    assert all_files(private_tempdir) == []


# Each cause breaks the source for real and says: (path on the mirror, the problem the
# error must name, GET requests expected: one, never a retry; none after a 404 HEAD).
def _corrupt_gzip(mirror: FaultyMirror) -> tuple[str, str, int]:
    mirror.inject(YELLOW_CSV, Fault.corrupt(), methods=["GET"])  # bits flipped mid-file
    return YELLOW_CSV, "is not a complete gzip stream", 1


def _parquet_without_footer(mirror: FaultyMirror) -> tuple[str, str, int]:
    path = Path(mirror.root) / "yellow_tripdata_2021-01.parquet"
    path.write_bytes(path.read_bytes()[:-200])  # footer and magic bytes cut off
    return "/yellow_tripdata_2021-01.parquet", "has no readable Parquet footer", 1


def _not_published(mirror: FaultyMirror) -> tuple[str, str, int]:
    published_yellow(mirror).unlink()
    return YELLOW_CSV, "is not published at", 0


def _html_page(mirror: FaultyMirror) -> tuple[str, str, int]:
    mirror.inject(YELLOW_CSV, Fault.html_200(), methods=["GET"])
    return YELLOW_CSV, "answered HTTP 200 with an HTML page", 1


PERMANENT = {
    "corrupt-gzip": _corrupt_gzip,
    "parquet-without-footer": _parquet_without_footer,
    "404": _not_published,
    "html-200": _html_page,
}


@pytest.mark.parametrize("cause", list(PERMANENT.values()), ids=list(PERMANENT))
def test_bad_source_files_fail_clearly_without_retries_and_leave_nothing(
    cause: Callable[[FaultyMirror], tuple[str, str, int]],
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    private_tempdir: Path,
) -> None:
    path, problem, gets = cause(own_mirror)
    source = "tlc" if path.endswith(".parquet") else "dtc"
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake, source=source) | {
        "source": fast_source(own_mirror, source)
    }
    result = run(FILE_KEYS, resources, instance, MONTH, raise_on_error=False)
    assert not result.success
    assert step_failure(result)[0] == "raw__yellow_tripdata"
    messages = failure_messages(result)
    assert f"{own_mirror.url}{path}" in messages and problem in messages, messages
    assert is_dagster_failure_without_retries(result)
    assert own_mirror.requests_seen(path).count("GET") == gets  # not retried
    assert all_files(lake) == []
    assert all_files(private_tempdir) == []


# --- 6. input faults: broken published files through raw -> lake -----------------------------


def _lake_month(lake: Path) -> Path:
    return lake / "lake" / "yellow_tripdata" / "year=2021" / "month=01"


def run_file_keys(  # noqa: ANN201
    mirror: FaultyMirror, lake: Path, instance: dg.DagsterInstance, **lake_config: bool
):
    """Raw and lake of MONTH; ``lake_config``: the lake asset's (``accept_empty=True``)."""
    run_config = (
        {"ops": {"lake__yellow_tripdata": {"config": lake_config}}} if lake_config else None
    )
    return run(FILE_KEYS, pipeline_resources(mirror.url, lake), instance, MONTH, False, run_config)


def lake_step_rejection(
    result: dg.ExecuteInProcessResult, lake: Path, kept: list[str] | None = None
) -> str:
    """Asserts the lake step refused the file (a ``dagster.Failure``, not retried) and
    left the files under lake/ as they were (``kept``; none by default); returns the
    failure's messages."""
    assert not result.success and step_failure(result)[0] == "lake__yellow_tripdata"
    assert is_dagster_failure_without_retries(result)
    assert all_files(lake / "lake") == (kept or [])
    # Each error's text without its class ("dagster._core...Failure: ...").
    said = [error.message.strip().split(": ", 1)[-1] for error in step_failure(result)[1]]
    assert len(set(said)) == len(said), f"a message shown twice: {said}"
    return failure_messages(result)


def test_unknown_header_lists_unknown_and_expected_columns(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    header = b"trip_uuid,started,ended,fare_cents"
    rewrite_csv_gz(published_yellow(own_mirror), lambda ls: [header, *ls[1:]])
    result = run_file_keys(own_mirror, tmp_path / "lake", instance)
    messages = lake_step_rejection(result, tmp_path / "lake")
    assert YELLOW_NAME in messages
    assert "['trip_uuid', 'started', 'ended', 'fare_cents']" in messages  # found, unknown
    assert "'vendor_id'" in messages and "'total_amount'" in messages  # expected


def test_row_with_too_many_fields_names_its_line(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    def extra_field(lines: list[bytes]) -> list[bytes]:
        lines[10] += b",42"  # data row 10, line 11 of the file
        return lines

    rewrite_csv_gz(published_yellow(own_mirror), extra_field)
    result = run_file_keys(own_mirror, tmp_path / "lake", instance)
    messages = lake_step_rejection(result, tmp_path / "lake")
    assert f"{YELLOW_NAME}: malformed data row 10:" in messages, messages
    assert "expected 18 fields, got 19" in messages


def test_two_trailing_empty_fields_are_accepted_and_the_row_kept(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    def trailing(lines: list[bytes]) -> list[bytes]:
        lines[100] += b",,"
        return lines

    rewrite_csv_gz(published_yellow(own_mirror), trailing)
    lake = tmp_path / "lake"
    result = run_file_keys(own_mirror, lake, instance)
    assert result.success
    assert pq.read_table(_lake_month(lake)).num_rows == ROWS
    assert (
        materialization_metadata(result, "lake/yellow_tripdata")["dagster/partition_row_count"]
        == ROWS
    )


def test_non_utf8_bytes_are_read_as_latin1_with_a_warning(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    def latin1(lines: list[bytes]) -> list[bytes]:
        lines[1500] = set_field(lines[1500], 6, "é".encode("latin-1"))  # store_and_fwd_flag
        return lines

    rewrite_csv_gz(published_yellow(own_mirror), latin1)
    lake = tmp_path / "lake"
    result = run_file_keys(own_mirror, lake, instance)
    assert result.success
    table = pq.read_table(_lake_month(lake))
    assert table.num_rows == ROWS
    assert "é" in table.column("store_and_fwd_flag").to_pylist()
    warnings = run_warnings(instance, result.run_id)
    assert any(f"{YELLOW_NAME}: not valid UTF-8; decoding as Latin-1" in w for w in warnings)


@pytest.mark.parametrize("content", [b"", b"header"], ids=["empty", "header-only"])
def test_empty_file_gives_zero_rows_a_warning_and_success(
    content: bytes, own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    rewrite_csv_gz(published_yellow(own_mirror), lambda lines: lines[:1] if content else [])
    lake = tmp_path / "lake"
    result = run_file_keys(own_mirror, lake, instance)
    assert result.success
    assert materialization_metadata(result, "raw/yellow_tripdata")["source_rows"] == 0
    assert pq.read_table(_lake_month(lake)).num_rows == 0
    expected = "header only, no data rows" if content else "file is empty"
    assert any(expected in w for w in run_warnings(instance, result.run_id))


def test_an_empty_file_does_not_replace_a_loaded_month_unless_accepted(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    assert run_file_keys(own_mirror, lake, instance).success
    before = all_files(lake / "lake")
    # TLC republishes the month as a header without rows.
    rewrite_csv_gz(published_yellow(own_mirror), lambda lines: lines[:1])
    said = lake_step_rejection(run_file_keys(own_mirror, lake, instance), lake, before)
    assert (
        f"{YELLOW_NAME} holds no data rows, and the lake's 2021-01 holds {ROWS:,}: an empty "
        "file does not replace a loaded month (nothing was written)"
    ) in said
    assert pq.read_table(_lake_month(lake)).num_rows == ROWS

    # Dagster's instance may forget the loads (runs deleted, a new DAGSTER_HOME): the lake
    # file's own footer still says the month holds rows.
    for record in instance.get_run_records():
        instance.delete_run(record.dagster_run.run_id)
    again = run_file_keys(own_mirror, lake, instance)
    assert not again.success
    assert f"the lake's 2021-01 holds {ROWS:,}" in failure_messages(again)
    assert pq.read_table(_lake_month(lake)).num_rows == ROWS

    assert run_file_keys(own_mirror, lake, instance, accept_empty=True).success
    assert pq.read_table(_lake_month(lake)).num_rows == 0


def test_a_republished_file_missing_a_column_does_not_null_the_months_values(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """TLC republishes the month without ``tip_amount``: the contract reads a missing
    column as nulls, so the run replaced the month's tips with nulls, every check passing.
    Refused now, naming the column; the lake keeps the month; accepted by config."""
    lake = tmp_path / "lake"
    assert run_file_keys(own_mirror, lake, instance).success
    before = all_files(lake / "lake")
    tips = pq.read_table(_lake_month(lake), columns=["tip_amount"])["tip_amount"]
    assert tips.null_count < len(tips)

    rewrite_csv_gz(published_yellow(own_mirror), without_column(b"tip_amount"))
    said = lake_step_rejection(run_file_keys(own_mirror, lake, instance), lake, before)
    assert (
        f"{YELLOW_NAME} has no value in any row for tip_amount (missing from the file, or "
        "empty), and the lake's 2021-01 has values in them"
    ) in said

    assert run_file_keys(own_mirror, lake, instance, accept_missing_columns=True).success
    assert pq.read_table(_lake_month(lake))["tip_amount"].null_count == ROWS


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], garbled_footer],
    ids=["cut-in-half", "garbled-footer"],
)
def test_a_damaged_lake_month_is_still_repaired_by_loading_it_again(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    damage: Callable[[bytes], bytes],
) -> None:
    """The missing-columns guard reads the lake file it replaces: a damaged one (cut in
    half, or its footer garbled) failed the reload that is its repair (6k), naming no
    file. It is replaced, with a warning."""
    lake = tmp_path / "lake"
    assert run_file_keys(own_mirror, lake, instance).success
    (month_file,) = _lake_month(lake).glob("*.parquet")
    month_file.write_bytes(damage(month_file.read_bytes()))
    again = run_file_keys(own_mirror, lake, instance)
    assert again.success
    assert pq.read_table(_lake_month(lake)).num_rows == ROWS
    assert any(
        "the lake file being replaced cannot be read" in w
        for w in run_warnings(instance, again.run_id)
    )


def test_a_store_throttling_the_months_reads_does_not_switch_the_column_guard_off(
    own_mirror: FaultyMirror,
    instance: dg.DagsterInstance,
    s3_store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 answers every read of the lake month being replaced with 503 SlowDown (moto
    behind the fault proxy) while a file without `tip_amount` is republished: the guard
    took the read's failure for a damaged file and let the month's tips become nulls."""
    resources = pipeline_resources(own_mirror.url, s3_store.url)
    assert run(FILE_KEYS, resources, instance, MONTH).success

    rewrite_csv_gz(published_yellow(own_mirror), without_column(b"tip_amount"))
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)  # a short test
    pattern = r"yellow_tripdata_2021-01\.parquet"
    assert s3_store.proxy is not None
    s3_store.proxy.inject(pattern, *[Fault.status(503, body=S3_SLOW_DOWN)] * 40, methods=("GET",))
    result = run(FILE_KEYS, resources, instance, MONTH, raise_on_error=False)
    s3_store.proxy.clear()
    assert not result.success
    key = "nyc/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
    month = pq.read_table(io.BytesIO(s3_store.objects("nyc/lake/")[key]))
    assert month["tip_amount"].null_count == 0


def test_the_empty_file_guard_reads_the_lake_in_the_deployments_hive_format(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """With no record of the month in Dagster, the guard reads the lake file's footer where
    the lake IO manager keeps it: in a ``hive_format`` of the deployment's too (it looked
    in the default ``year=/month=`` folders only, so the empty file replaced the month)."""
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    resources["lake_io_manager"] = ParquetLakeIOManager(lake=resources["lake"], hive_format="%Y/%m")
    assert run(FILE_KEYS, resources, instance, MONTH).success
    month_file = (
        lake / "lake" / "yellow_tripdata" / "2021" / "01" / "yellow_tripdata_2021-01.parquet"
    )
    assert pq.read_metadata(month_file).num_rows == ROWS
    for record in instance.get_run_records():
        instance.delete_run(record.dagster_run.run_id)
    rewrite_csv_gz(published_yellow(own_mirror), lambda lines: lines[:1])
    result = run(FILE_KEYS, resources, instance, MONTH, False)
    assert not result.success and step_failure(result)[0] == "lake__yellow_tripdata"
    assert f"the lake's 2021-01 holds {ROWS:,}" in failure_messages(result)
    assert pq.read_metadata(month_file).num_rows == ROWS


def test_non_integral_value_names_file_row_and_column(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    def fraction(lines: list[bytes]) -> list[bytes]:
        lines[777] = set_field(lines[777], 3, b"1.5")  # passenger_count of data row 777
        return lines

    rewrite_csv_gz(published_yellow(own_mirror), fraction)
    result = run_file_keys(own_mirror, tmp_path / "lake", instance)
    messages = lake_step_rejection(result, tmp_path / "lake")
    assert f"{YELLOW_NAME}: data row 777, column 'passenger_count': invalid value 1.5" in messages


# --- 7. partition keys from the CLI ---------------------------------------------------------


def job_execute_command(key: str, service: str = "yellow") -> list[str]:
    tags = json.dumps({"dagster/partition": key})
    return [
        DAGSTER,
        "job",
        "execute",
        "-m",
        "taxi_assets",
        "-j",
        f"taxi_{service}_job",
        "--tags",
        tags,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "key", "expected"),
    [
        ("asset", "2021-13", "partition key `2021-13`"),
        ("asset", "1999-01", "partition key `1999-01`"),
        # Dagster parses the run's tag into a time window before any step (our code) runs.
        ("job", "2021-13", "time data '2021-13' does not match format '%Y-%m"),
    ],
    ids=["not-a-month", "before-2019-01", "job-not-a-month"],
)
def test_cli_rejects_a_bad_partition_key_and_creates_nothing(
    command: str, key: str, expected: str, mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    lake = tmp_path / "lake"
    done = subprocess.run(
        materialize_command(",".join(YELLOW_KEYS), key)
        if command == "asset"
        else job_execute_command(key),
        cwd=REPO,
        env=cli_env(tmp_path, mirror.url, lake, pg_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    assert expected in last_line, done.stderr[-3000:]
    for service in ("yellow", "green", "fhv"):
        assert mirror.requests_seen(f"/{service}/{service}_tripdata_{key}.csv.gz") == []
    assert not lake.exists()
    assert warehouse_tables(pg_url) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "key", "first"), [("yellow", "2018-12", "2019-01"), ("fhvhv", "2019-01", "2019-02")]
)
def test_job_run_for_a_month_outside_the_partitions_is_refused(
    service: str, key: str, first: str, own_mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    # `dagster job execute --tags '{"dagster/partition": ...}'` does not check the key
    # against the service's partitions (yellow from 2019-01, FHVHV from 2019-02): the assets
    # must. Upstream has the month, so without that check the run would load a month no
    # partition stands for.
    write_month(Path(own_mirror.root), source="dtc", service=service, month=key, rows=50)
    lake = tmp_path / "lake"
    scratch = tmp_path / "tmp"  # the run's temp folder (download staging)
    scratch.mkdir()
    done = subprocess.run(
        job_execute_command(key, service),
        cwd=REPO,
        env=cli_env(tmp_path, own_mirror.url, lake, pg_url) | {"TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    expected = f"partition {key} is outside the partitions of raw/{service}_tripdata ({first} to "
    assert expected in output, output[-3000:]
    assert own_mirror.requests_seen(f"/{service}/{service}_tripdata_{key}.csv.gz") == []
    assert all_files(lake) == []
    assert all_files(scratch) == []
    assert warehouse_tables(pg_url) == []


# --- 8. a contract that gains a column --------------------------------------------------------

EVOLVING_MONTHS = dg.MonthlyPartitionsDefinition(start_date="2021-01", fmt="%Y-%m", end_offset=0)


def evolving_asset(with_tip: bool) -> dg.AssetsDefinition:
    """``warehouse.evolving`` written by contract v1 (no tip) or v2 (adds ``tip_amount``)."""

    @dg.asset(
        key=["warehouse", "evolving"],
        partitions_def=EVOLVING_MONTHS,
        metadata={"partition_expr": "partition_month"},
    )
    def evolving(context: dg.AssetExecutionContext) -> TableLoad:
        month = EVOLVING_MONTHS.time_window_for_partition_key(context.partition_key).start.date()
        columns = {
            "trip_id": pa.array([1, 2, 3], pa.int64()),
            "fare_amount": pa.array([10.0, 12.5, None]),
        }
        if with_tip:
            columns["tip_amount"] = pa.array([1.0, None, 2.5])
        columns["partition_month"] = pa.array([month] * 3, pa.date32())
        table = pa.table(columns)
        return TableLoad(table.to_reader(), table.num_rows)

    return evolving


def test_table_gains_a_column_and_old_months_read_null(
    pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = {"io_manager": PostgresIOManager(database=PostgresResource(url=pg_url))}

    def load(with_tip: bool, month: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [evolving_asset(with_tip)], partition_key=month, resources=resources, instance=instance
        )

    assert load(False, "2021-01").success
    migrated = load(True, "2021-02")
    assert migrated.success
    logs = [e.user_message for e in instance.all_logs(migrated.run_id)]
    assert any("added column tip_amount (old rows: null)" in m for m in logs)
    assert load(False, "2021-03").success  # code still on v1 writes into the wider table

    engine = engine_for(pg_url)
    with engine.connect() as connection:
        columns = connection.exec_driver_sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'warehouse' AND table_name = 'evolving' ORDER BY ordinal_position"
        ).all()
        tips = connection.exec_driver_sql(
            "SELECT to_char(partition_month, 'YYYY-MM'), count(*), count(tip_amount), "
            "sum(tip_amount) FROM warehouse.evolving GROUP BY 1 ORDER BY 1"
        ).all()
    engine.dispose()
    assert [tuple(c) for c in columns] == [
        ("trip_id", "bigint"),
        ("fare_amount", "double precision"),
        ("partition_month", "date"),
        ("tip_amount", "double precision"),
    ]
    assert [tuple(t) for t in tips] == [
        ("2021-01", 3, 0, None),
        ("2021-02", 3, 2, 3.5),
        ("2021-03", 3, 0, None),
    ]
