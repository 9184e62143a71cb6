"""A read or a load interrupted while the warehouse server answers nothing: the
interruption comes out at once, as itself, and nothing of the month is left. Likewise a
CLI command's plain query (``months status``, ``warehouse migrate``'s plan) and
``month_counts``.

Dagster ends a run (run monitoring's max runtime, Terminate) by sending its process SIGINT,
which Dagster's handler raises as ``DagsterExecutionInterruptedError`` in the main thread
(``raise_execution_interrupts``: it wraps every step's and IO manager's code); Ctrl-C
outside Dagster (a CLI command, a script) is Python's ``KeyboardInterrupt``, which
psycopg's own handler catches first. Here, all for real: a server of this module's own
whose every process (the postmaster too, so a cancel request waits as well) is stopped
with SIGSTOP while a COPY is under way, or while a read or a load waits for a lock before
it, a SIGINT to this process (or to a process of its own), and the handler Dagster
installs or Python's. The server goes on again after ``RESUME_AFTER_S`` whatever happens,
so that a client which waited for it returns then and the test fails on its time instead
of hanging. Last, the same interruptions against a server that answers: the statement
must not run on after its client is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
import pyarrow as pa
import pytest
import sqlalchemy as sa
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts

from taxi_assets.assets.load_records import LOADS_TABLE
from taxi_assets.io_managers.postgres import PostgresIOManager
from taxi_assets.pg.copy_in import copy_arrow
from taxi_assets.pg.ddl import driver_cursor, relation_kind
from taxi_assets.pg.inspect import month_counts
from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.pg.lock_retry import LockWaits
from taxi_assets.pg.month_swap import month_lock_key
from taxi_assets.pg.partitions import STAGING_MARK, child_name, staging_tables
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.faults_support import (
    REPO,
    copy_in_progress,
    copy_progress,
    database_name,
    other_backends,
    server_processes,
    step_failure,
    wait_for,
)
from taxi_assets_tests.pipeline import engine_for
from taxi_assets_tests.warehouse_client import (
    MONTH,
    MONTHS_TABLE,
    READ_TABLE,
    SCHEMA,
    create_tables,
    load_month,
    month_rows,
    read,
)

# Longer than psycopg's own waits on an interruption (a cancel request, then the query's
# end: 5 s + 5 s), so that a client returning only once the server goes on, or after
# psycopg's waits, is told from one that returned at once.
RESUME_AFTER_S = 12
# Time from the SIGINT to the interruption leaving the COPY, the server still stopped.
BOUND_S = 2


def copy_moved(engine: sa.Engine, command: str, rows: int) -> bool:
    """A ``command`` (``COPY TO`` / ``COPY FROM``) on ``engine``'s database has moved more
    than ``rows`` rows."""
    return max(copy_progress(engine, engine.url.database or "", command).values(), default=0) > rows


def copy_started(engine: sa.Engine) -> bool:
    """A COPY runs on ``engine``'s database (whether or not it has produced a row)."""
    return copy_in_progress(engine, engine.url.database or "")


@dataclass
class Fault:
    """When the server was stopped and this process interrupted, and when it went on."""

    interrupted_at: float | None = None
    resumed_at: float | None = None
    returned: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@contextlib.contextmanager
def stopped_and_interrupted(
    url: str,
    data: Path,
    ready: Callable[[sa.Engine], bool],
    pid: int | None = None,
    stop: bool = True,
) -> Iterator[Fault]:
    """In a thread: once ``ready`` says so, stop every server process (unless not to
    ``stop``), give the client a moment to block on it, send process ``pid`` (default:
    this one) SIGINT; let the server go on once the block reports ``returned`` or after
    ``RESUME_AFTER_S``, and at the end."""
    fault = Fault()
    stopped: list[psutil.Process] = []

    def resume() -> None:
        for process in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()

    def make() -> None:
        try:
            watcher = engine_for(url)
            try:
                wait_for("the client to wait on the server", lambda: ready(watcher), 30)
            finally:
                watcher.dispose()  # its connection would be stopped with the server
            stopped.extend(server_processes(data) if stop else [])
            for process in stopped:
                # The watcher's backend may be exiting still (its connection just closed).
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.suspend()
            time.sleep(0.5)  # the client drains what was sent and blocks
            if fault.returned.is_set():
                return  # over before the fault (the test then fails on it): no SIGINT
            fault.interrupted_at = time.monotonic()
            os.kill(os.getpid() if pid is None else pid, signal.SIGINT)
            fault.returned.wait(RESUME_AFTER_S)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            fault.error = error
        finally:
            fault.resumed_at = time.monotonic()
            resume()
        if fault.error is not None and fault.interrupted_at is None:
            # No interruption was sent, and the client may wait for ever on a lock the test
            # holds until the client returns: end the sessions on its database, so that the
            # test fails on the error at once instead of at pytest's timeout.
            with contextlib.suppress(Exception):
                end_sessions(url)

    maker = threading.Thread(target=make, name="stop-and-interrupt", daemon=True)
    sigterm = signal.getsignal(signal.SIGTERM)  # Dagster's handler maps SIGTERM as well
    maker.start()
    try:
        yield fault
    finally:
        fault.returned.set()
        maker.join(RESUME_AFTER_S + 40)
        resume()
        signal.signal(signal.SIGTERM, sigterm)
        # Here, not after: the fault's own failure is the one to report, also when it made
        # the client fail (end_sessions).
        if fault.error is not None:
            raise AssertionError(f"stopping and interrupting failed: {fault.error!r}")


def end_sessions(url: str) -> None:
    """Terminate every other session on ``url``'s database."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        engine.dispose()


def assert_returned_at_once(fault: Fault, returned_at: float) -> None:
    assert fault.interrupted_at is not None, "no interruption was sent"
    took = returned_at - fault.interrupted_at
    assert fault.resumed_at is None or returned_at < fault.resumed_at, (
        f"the client returned {took:.1f}s after the SIGINT, only once the server went on"
    )
    assert took < BOUND_S, f"the client returned {took:.1f}s after the SIGINT"


def waits_for_a_lock(engine: sa.Engine, statement: str) -> bool:
    """A backend on ``engine``'s database waits for a lock in a statement containing
    ``statement``."""
    with engine.connect() as connection:
        waiting = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state = 'active' AND wait_event_type = 'Lock' "
                "AND strpos(query, :statement) > 0"
            ),
            {"statement": statement},
        ).scalar_one()
    return bool(waiting)


@contextlib.contextmanager
def held(url: str, statement: str | None) -> Iterator[int | None]:
    """A session of its own (its backend's pid) holding what ``statement`` takes (a lock)
    until the block ends: after the server went on, as the blocks of
    :func:`stopped_and_interrupted` end first."""
    if statement is None:
        yield None
        return
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
            yield connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    finally:
        engine.dispose()


INTERRUPTIONS = {
    # A run terminated (Dagster's handler, as in every step and IO manager call).
    "dagster-handler": DagsterExecutionInterruptedError,
    # Ctrl-C outside Dagster (Python's own handler): psycopg's handler catches it first.
    "ctrl-c": KeyboardInterrupt,
}


@contextlib.contextmanager
def interruption_raised(interruption: type[BaseException]) -> Iterator[None]:
    """SIGINT raised in the block as ``interruption``, by its real handler."""
    if interruption is DagsterExecutionInterruptedError:
        with raise_execution_interrupts():
            yield
    else:
        yield


def interrupted_at_once(
    url: str,
    data: Path,
    ready: Callable[[sa.Engine], bool],
    interruption: str,
    client: Callable[[], object],
    stop: bool = True,
) -> None:
    """Run ``client`` in this process and, once ``ready``, stop the server (unless not to
    ``stop``) and interrupt it (``interruption``, raised by its real handler): the
    interruption must come out of ``client`` as itself, within ``BOUND_S``."""
    expected = INTERRUPTIONS[interruption]
    returned_at = None
    with (
        stopped_and_interrupted(url, data, ready, stop=stop) as fault,
        pytest.raises(expected) as raised,
        interruption_raised(expected),
    ):
        try:
            client()
        finally:
            returned_at = time.monotonic()
            fault.returned.set()
    assert type(raised.value) is expected
    assert returned_at is not None
    assert_returned_at_once(fault, returned_at)


# Where the read of an input is when the server stops: waiting for the COPY to start
# (behind a lock on the table: a swap's or a migration's), waiting for its first rows (the
# first row sleeps: a scan that finds its first match late), or between rows (the first
# 20,000 rows, ~0.9 MB, flow at once and fill the socket; then each row sleeps 1 ms: a
# long scan). (WHERE, what holds the table meanwhile, when the client is waiting.)
SLOW_COPIES: dict[str, tuple[str, str | None, Callable[[sa.Engine], bool]]] = {
    "behind-a-lock": (
        "",
        f"LOCK TABLE public.{READ_TABLE} IN ACCESS EXCLUSIVE MODE",
        lambda engine: waits_for_a_lock(engine, "COPY"),
    ),
    "before-its-first-rows": (" WHERE n > 1 OR pg_sleep(5) IS NOT NULL", None, copy_started),
    "between-rows": (
        " WHERE n <= 20000 OR pg_sleep(0.001) IS NOT NULL",
        None,
        lambda engine: copy_moved(engine, "COPY TO", 20_000),
    ),
}


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
@pytest.mark.parametrize("where", list(SLOW_COPIES))
def test_an_interrupted_copy_to_raises_the_interruption_at_once_from_a_stopped_server(
    stoppable_database: tuple[str, Path], where: str, interruption: str
) -> None:
    """The IO manager's read of an input (``read_query_arrow``, COPY TO) interrupted while
    it waits for a stopped server. Between rows, psycopg's clean-up of the COPY on an error
    would send a cancel request (the stopped postmaster lets it wait 5 s) and then read
    the rest of the COPY's data, which never comes. Before the first rows, leaving the
    connection would send a ROLLBACK while the COPY is still running, and the error of that
    ("another command is already in progress") would replace the interruption. Ctrl-C,
    anywhere, would meet psycopg's handler first, which sends a cancel request and waits
    for the query to end (5 s + 5 s) before letting it through."""
    url, data = stoppable_database
    create_tables(url)
    condition, holder, ready = SLOW_COPIES[where]
    with held(url, holder):
        interrupted_at_once(url, data, ready, interruption, lambda: read(url, condition))


def endless_rows(limit_batches: int = 200) -> pa.RecordBatchReader:
    """Batches of 16,384 rows (~0.5 MB in binary COPY) until ``limit_batches``: far more
    than the test lets through before the server stops."""
    rows = 16_384
    batch = pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array([f"{i:010d}" for i in range(rows)])],
        names=["n", "payload"],
    )
    return pa.RecordBatchReader.from_batches(batch.schema, (batch for _ in range(limit_batches)))


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_an_interrupted_copy_from_raises_the_interruption_at_once_from_a_stopped_server(
    stoppable_database: tuple[str, Path], interruption: str
) -> None:
    """The IO manager's load (``copy_arrow`` in ``dropped_if_interrupted``, as its ``fill``
    does) interrupted while the sending thread is blocked on the socket of a stopped server:
    the interruption itself leaves, not the connection error that psycopg's COPY clean-up
    and the transaction's end meet on the hung-up connection (``Copy.finish`` logs those,
    and the invalidated connection sends no ROLLBACK)."""
    url, data = stoppable_database
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS public.loaded_rows"))
        connection.execute(sa.text("CREATE TABLE public.loaded_rows (n bigint, payload text)"))

    def load() -> None:
        with engine.begin() as connection, dropped_if_interrupted(connection):
            copy_arrow(driver_cursor(connection), "public.loaded_rows", endless_rows())

    interrupted_at_once(url, data, lambda e: copy_moved(e, "COPY FROM", 0), interruption, load)
    # The server, going on, rolls the load back: it saw its client hang up.
    database_of = database_name(url)
    wait_for("the load's session to end", lambda: not other_backends(engine, database_of), 30)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM loaded_rows")).scalar_one() == 0
    engine.dispose()


def endless_month(limit_batches: int = 200) -> pa.RecordBatchReader:
    """Rows of ``MONTH`` in batches of 16,384 until ``limit_batches``: far more than the
    test lets through before the server stops."""
    rows = 16_384
    batch = pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array([MONTH.start] * rows)], names=["n", "m"]
    )
    return pa.RecordBatchReader.from_batches(batch.schema, (batch for _ in range(limit_batches)))


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_a_month_interrupted_in_its_copy_raises_the_interruption_not_a_rollbacks_error(
    stoppable_database: tuple[str, Path], interruption: str
) -> None:
    """A month's load (``replace_months``, as the IO manager and ``warehouse migrate`` run
    it) interrupted in its COPY while the server answers nothing: the COPY is psycopg's,
    which SQLAlchemy does not see interrupted, so leaving the staging transaction would send
    a ROLLBACK on the hung-up connection, and its error ("the connection is lost") would
    replace the interruption (a daemon run's step then failed with
    ``DagsterExecutionHandleOutputError``). Once the server goes on, nothing of the month."""
    url, data = stoppable_database
    create_tables(url)
    interrupted_at_once(
        url,
        data,
        lambda e: copy_moved(e, "COPY FROM", 0),
        interruption,
        lambda: load_month(url, rows=endless_month()),
    )
    engine = engine_for(url)
    wait_for(
        "the load's session to end", lambda: not other_backends(engine, database_name(url)), 30
    )
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT count(*) FROM {SCHEMA}.{MONTHS_TABLE}")
        assert rows.scalar_one() == 0
    engine.dispose()


# The lock the staging table's creation waits for (STAGING_WAITS), held by the test.
STAGING_LOCK = 4040
# An event trigger that holds up the creation of a staging table, in the load's
# transaction, the table created: a load between its first statement and its COPY.
STAGING_WAITS = [
    f"""CREATE FUNCTION public.staging_waits() RETURNS event_trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
                   WHERE strpos(object_identity, '{STAGING_MARK}') > 0) THEN
            PERFORM pg_advisory_xact_lock({STAGING_LOCK});
        END IF;
    END $$""",
    "CREATE EVENT TRIGGER staging_waits ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
    "EXECUTE FUNCTION public.staging_waits()",
]
# Where the load is when the server stops, before its COPY: (what holds it up there, when
# it waits there).
BEFORE_THE_COPY: dict[str, tuple[str, Callable[[sa.Engine], bool]]] = {
    # Its first statement: the month's lock, which another load of the month holds.
    "at-the-month-lock": (
        "SELECT pg_advisory_lock(hashtextextended("
        f"'{month_lock_key(SCHEMA, MONTHS_TABLE, MONTH.key)}', 0))",
        lambda engine: waits_for_a_lock(engine, "pg_advisory_lock"),
    ),
    # Its staging table created, not yet filled (STAGING_WAITS).
    "creating-the-staging-table": (
        f"SELECT pg_advisory_lock({STAGING_LOCK})",
        lambda engine: waits_for_a_lock(engine, "CREATE TABLE"),
    ),
}


MONTHS = dg.MonthlyPartitionsDefinition(start_date=MONTH.key, fmt="%Y-%m", end_offset=0)


@dg.asset(key=[SCHEMA, MONTHS_TABLE], partitions_def=MONTHS, metadata={"partition_expr": "m"})
def month_table() -> pa.Table:
    return month_rows()


def load_in_a_run(url: str) -> dg.ExecuteInProcessResult:
    """The month written by the Postgres IO manager in a run of its own (Dagster's SIGINT
    handler raising the interruption in it)."""
    return dg.materialize(
        [month_table],
        partition_key=MONTH.key,
        resources={"io_manager": PostgresIOManager(database=PostgresResource(url=url))},
        raise_on_error=False,
    )


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
@pytest.mark.parametrize("where", list(BEFORE_THE_COPY))
def test_a_load_interrupted_before_its_copy_ends_at_once_and_leaves_nothing_of_the_month(
    stoppable_database: tuple[str, Path], where: str, interruption: str
) -> None:
    """A load of a new month interrupted while it waits for a stopped server before its
    COPY began: at its first statement (the month's lock) or once its staging table is
    created. Dagster's interruption: a run of the IO manager, which fails its step with it.
    Ctrl-C: ``replace_months`` called as ``warehouse migrate`` calls it, outside Dagster,
    where psycopg's handler of ``KeyboardInterrupt`` would send a cancel request and wait
    for the statement to end (5 s + 5 s) first. Either way the interruption comes out
    within ``BOUND_S``, and once the server goes on its session ends with its locks and
    nothing of the month is left: no child table, no staging table, no row."""
    url, data = stoppable_database
    create_tables(url)
    engine = engine_for(url)
    with engine.begin() as connection:
        for statement in STAGING_WAITS:
            connection.exec_driver_sql(statement)
    holder, ready = BEFORE_THE_COPY[where]
    returned_at = None
    with held(url, holder), stopped_and_interrupted(url, data, ready) as fault:
        try:
            if interruption == "ctrl-c":
                with pytest.raises(KeyboardInterrupt) as raised:
                    load_month(url)
                errors = [type(raised.value).__name__]
            else:
                result = load_in_a_run(url)
                errors = [e.cls_name for e in step_failure(result)[1]]
        finally:
            returned_at = time.monotonic()
            fault.returned.set()
    assert errors[0] == INTERRUPTIONS[interruption].__name__, errors
    assert_returned_at_once(fault, returned_at)
    database_of = database_name(url)
    wait_for("the load's session to end", lambda: not other_backends(engine, database_of), 30)
    child = child_name(MONTHS_TABLE, MONTH.key)
    with engine.connect() as connection:
        assert relation_kind(connection, SCHEMA, child) is None
        assert staging_tables(connection, SCHEMA, child) == []
        rows = connection.exec_driver_sql(f"SELECT count(*) FROM {SCHEMA}.{MONTHS_TABLE}")
        assert rows.scalar_one() == 0
        locks = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
        assert locks.scalar_one() == 0
    engine.dispose()


# A process of its own, whose SIGINT handler is Python's own (what Ctrl-C in a terminal
# reaches): (its command, what holds it up, when it waits on the server).
OWN_PROCESS: dict[str, tuple[list[str], str | None, Callable[[sa.Engine], bool]]] = {
    "reading": (["read", SLOW_COPIES["before-its-first-rows"][0]], None, copy_started),
    "loading": (["load"], *BEFORE_THE_COPY["at-the-month-lock"]),
}


@dataclass
class Ended:
    """How a process interrupted by :func:`ctrl_c_to_a_process` ended."""

    returncode: int
    stderr: str


def ctrl_c_to_a_process(
    url: str,
    data: Path,
    command: list[str],
    ready: Callable[[sa.Engine], bool],
    env: dict[str, str] | None = None,
    stop: bool = True,
) -> Ended:
    """Run ``command`` (Python arguments) as a process of its own and, once ``ready``, stop
    the server (unless not to ``stop``) and send the process SIGINT: it must end within
    ``BOUND_S``."""
    returned_at = None
    client = subprocess.Popen(
        [sys.executable, *command], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with stopped_and_interrupted(url, data, ready, pid=client.pid, stop=stop) as fault:
            try:
                client.wait(RESUME_AFTER_S + 10)
            finally:
                returned_at = time.monotonic()
                fault.returned.set()
    finally:
        if client.poll() is None:
            client.kill()
        _, stderr = client.communicate()
    assert returned_at is not None
    try:
        assert_returned_at_once(fault, returned_at)
    except AssertionError as error:
        raise AssertionError(f"{error}; its stderr:\n{stderr}") from None
    return Ended(client.returncode, stderr)


@pytest.mark.parametrize("what", list(OWN_PROCESS))
def test_ctrl_c_ends_a_process_waiting_on_a_stopped_server_at_once(
    stoppable_database: tuple[str, Path], what: str
) -> None:
    """Ctrl-C to a process reading an input or loading a month (``warehouse_client``) while
    it waits for a stopped server: the process ends within ``BOUND_S``, of the
    ``KeyboardInterrupt`` (exit by SIGINT, its traceback's last line), nothing at its exit
    waiting for the server either. Before, psycopg's handler waited 10 s first."""
    url, data = stoppable_database
    create_tables(url)
    command, holder, ready = OWN_PROCESS[what]
    with held(url, holder):
        ended = ctrl_c_to_a_process(
            url,
            data,
            ["-m", "taxi_assets_tests.warehouse_client", command[0], url, *command[1:]],
            ready,
        )
    assert ended.returncode == -signal.SIGINT, ended.stderr
    assert ended.stderr.rstrip().endswith("KeyboardInterrupt"), ended.stderr


# A CLI command held up in a plain query (not a load's): (its arguments, the table it reads,
# created plain and locked by the test, when it waits for the table).
CLI_QUERIES: dict[str, tuple[list[str], str, Callable[[sa.Engine], bool]]] = {
    # Its read of the warehouse's load log.
    "months status": (
        ["months", "status"],
        f"warehouse.{LOADS_TABLE} (table_name text, partition_month date, "
        "source_sha256 text, row_count bigint)",
        lambda engine: waits_for_a_lock(engine, f"warehouse.{LOADS_TABLE}"),
    ),
    # Its plan: the rows per month of a plain month table of an earlier version.
    "warehouse migrate": (
        ["warehouse", "migrate", "--dry-run"],
        "warehouse.yellow_tripdata (partition_month date, n bigint)",
        lambda engine: waits_for_a_lock(engine, "count(*)"),
    ),
}


@pytest.mark.parametrize("state", ["stopped", "answering"])
@pytest.mark.parametrize("command", list(CLI_QUERIES))
def test_ctrl_c_ends_a_cli_command_waiting_on_the_server_at_once(
    stoppable_database: tuple[str, Path], command: str, state: str, tmp_path: Path
) -> None:
    """Ctrl-C to ``python -m taxi_assets.cli months status`` or ``warehouse migrate`` while
    its query waits for the server: the command ends within ``BOUND_S``, by SIGINT (as a
    shell expects of an interrupted command), saying so in one line, no traceback. Before,
    against a stopped server, psycopg's handler of ``KeyboardInterrupt`` sent a cancel
    request and waited for the query to end (5 s + 5 s) first. A server that answers still
    gets the query cancelled (as psycopg's handler did): its session ends within
    ``CANCELLED_WITHIN_S``, though what it waits for (a lock) is still held; a session whose
    client hung up would wait on until the lock is let go."""
    url, data = stoppable_database
    arguments, table, ready = CLI_QUERIES[command]
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA warehouse")
        connection.exec_driver_sql(f"CREATE TABLE {table}")
    env = {**os.environ, "TAXI_WAREHOUSE_URL": url, "TAXI_LAKE_URL": str(tmp_path / "lake")}
    name = table.split(" ")[0]
    with held(url, f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE") as holder:
        ended = ctrl_c_to_a_process(
            url,
            data,
            ["-m", "taxi_assets.cli", *arguments],
            ready,
            env=env,
            stop=state == "stopped",
        )
        if state == "answering":
            wait_until_only(holder, engine, url, "the interrupted query's session")
    engine.dispose()
    assert ended.returncode == -signal.SIGINT, ended.stderr
    assert ended.stderr == "interrupted\n", ended.stderr


# From the interruption to the end of the interrupted statement's session, the server
# going on: the cancel request's round trip, the session's end.
CANCELLED_WITHIN_S = 3


def wait_until_only(holder: int | None, engine: sa.Engine, url: str, ending: str) -> None:
    """Until the session ``holder`` (of the test's, holding what the interrupted statement
    waited for) is the only other one on ``url``'s database: ``ending`` has ended, within
    ``CANCELLED_WITHIN_S``."""
    wait_for(
        f"{ending} to end",
        lambda: [pid for pid, *_ in other_backends(engine, database_name(url))] == [holder],
        CANCELLED_WITHIN_S,
    )


# A statement the server would go on with though its client hung up, until the statement
# next talks to the client: (what holds it up, the read's WHERE or None: the load's, when
# it waits). The read's first row comes after 30 s; the month's lock is let go at the end.
LIVE_STATEMENTS: dict[str, tuple[str | None, str | None, Callable[[sa.Engine], bool]]] = {
    "reading": (None, " WHERE n > 1 OR pg_sleep(30) IS NOT NULL", copy_started),
    "loading": (
        BEFORE_THE_COPY["at-the-month-lock"][0],
        None,
        BEFORE_THE_COPY["at-the-month-lock"][1],
    ),
}


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
@pytest.mark.parametrize("what", list(LIVE_STATEMENTS))
def test_an_interrupted_statement_stops_at_once_on_a_server_that_answers(
    stoppable_database: tuple[str, Path], what: str, interruption: str
) -> None:
    """Interrupted, a read (``read_query_arrow``'s COPY TO, psycopg's) or a load (its
    month's lock, a statement SQLAlchemy runs) hangs up; a server that answers still would
    go on with the statement (a sleep, a lock wait; in production a scan, an index build,
    holding the month's lock) until it next talks to the client. The statement is
    cancelled: its session ends within ``CANCELLED_WITHIN_S``. (psycopg's handler of
    Ctrl-C sent a cancel request and waited for it; Dagster's interruption sent none.)"""
    url, data = stoppable_database
    create_tables(url)
    holder, where, ready = LIVE_STATEMENTS[what]
    engine = engine_for(url)
    database_of = database_name(url)
    with held(url, holder) as holder_pid:
        interrupted_at_once(
            url,
            data,
            ready,
            interruption,
            lambda: load_month(url) if where is None else read(url, where),
            stop=False,
        )
        wait_for(
            "the interrupted statement's session to end",
            lambda: [pid for pid, *_ in other_backends(engine, database_of)] in ([holder_pid], []),
            CANCELLED_WITHIN_S,
        )
    engine.dispose()


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_a_load_interrupted_in_its_swap_ends_at_once_and_the_next_load_tidies_up(
    stoppable_database: tuple[str, Path], interruption: str
) -> None:
    """A load interrupted in its swap (its ATTACH waiting for a reader's lock) while the
    server answers nothing: the interruption comes out within ``BOUND_S``. Its filled
    staging table is committed and stays (the month's next load drops it); the month stays
    as it was, empty. Before, the way out tried to drop the staging table on a connection
    SQLAlchemy had dropped, which connected again: ``connect_timeout`` (10 s) first."""
    url, data = stoppable_database
    create_tables(url)
    engine = engine_for(url)
    # The swap waits for the reader's lock for as long as the test needs, not 1 s at a
    # time: the server is stopped while the ATTACH waits, not between its attempts.
    long_waits = LockWaits(lock_timeout_ms=60_000)
    reader = f"LOCK TABLE {SCHEMA}.{MONTHS_TABLE} IN SHARE UPDATE EXCLUSIVE MODE"
    with held(url, reader):
        interrupted_at_once(
            url,
            data,
            lambda e: waits_for_a_lock(e, "ATTACH"),
            interruption,
            lambda: load_month(url, long_waits),
        )
    wait_for(
        "the load's session to end", lambda: not other_backends(engine, database_name(url)), 30
    )
    child = child_name(MONTHS_TABLE, MONTH.key)
    with engine.connect() as connection:
        assert relation_kind(connection, SCHEMA, child) is None
        assert len(staging_tables(connection, SCHEMA, child)) == 1
        rows = connection.exec_driver_sql(f"SELECT count(*) FROM {SCHEMA}.{MONTHS_TABLE}")
        assert rows.scalar_one() == 0
    load_month(url)
    with engine.connect() as connection:
        assert staging_tables(connection, SCHEMA, child) == []
        rows = connection.exec_driver_sql(f"SELECT count(*) FROM {SCHEMA}.{MONTHS_TABLE}")
        assert rows.scalar_one() == month_rows().num_rows
    engine.dispose()


def test_ctrl_c_ends_month_counts_waiting_on_a_stopped_server_at_once(
    stoppable_database: tuple[str, Path],
) -> None:
    """Ctrl-C (Python's own handler, in this process) while ``month_counts`` (the demo's
    summary, the tests' and benchmarks' reads of a table) waits for a stopped server: the
    ``KeyboardInterrupt`` comes out within ``BOUND_S``. Before, psycopg's handler waited
    for a cancel request and the query's end first (5 s + 5 s)."""
    url, data = stoppable_database
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {SCHEMA}.counted (partition_month date)")
    try:
        with held(url, f"LOCK TABLE {SCHEMA}.counted IN ACCESS EXCLUSIVE MODE"):
            interrupted_at_once(
                url,
                data,
                lambda e: waits_for_a_lock(e, "count(*)"),
                "ctrl-c",
                lambda: month_counts(engine, SCHEMA, "counted"),
            )
    finally:
        engine.dispose()
