"""A COPY interrupted while the warehouse server answers nothing: the interruption comes out
at once, as itself.

Dagster ends a run (run monitoring's max runtime, Terminate) by sending its process SIGINT,
which Dagster's handler raises as ``DagsterExecutionInterruptedError`` in the main thread
(``raise_execution_interrupts``: it wraps every step's and IO manager's code). Here, all
for real: a server of this module's own whose every process (the postmaster too, so a
cancel request waits as well) is stopped with SIGSTOP while a COPY is under way, a SIGINT
to this process, and the handler Dagster installs. The server goes on again after
``RESUME_AFTER_S`` whatever happens, so that a COPY which waited for it returns then and
the test fails on its time instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
import sqlalchemy as sa
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts

from taxi_assets.pg.copy_in import copy_arrow
from taxi_assets.pg.copy_out import read_query_arrow
from taxi_assets.pg.ddl import driver_cursor
from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.pg.scratch import fresh_database
from taxi_assets_tests.faults_support import (
    copy_in_progress,
    copy_progress,
    database_name,
    other_backends,
    restartable_server,
    server_processes,
    wait_for,
)
from taxi_assets_tests.pipeline import engine_for

# Longer than psycopg's own waits on an interruption (a cancel request: 5 s), so that
# a COPY returning only once the server goes on is told from one that returned at once.
RESUME_AFTER_S = 12
# Time from the SIGINT to the interruption leaving the COPY, the server still stopped.
BOUND_S = 2


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Path]]:
    """(URL, data folder) of a private server, outside pytest's basetemp (which a
    concurrent pytest session may prune)."""
    with (
        tempfile.TemporaryDirectory(prefix="taxi-test-pg-stop-") as folder,
        restartable_server(Path(folder)) as (url, _),
    ):
        yield url, Path(folder) / "pgdata"


@pytest.fixture
def database(server: tuple[str, Path]) -> Iterator[tuple[str, Path]]:
    """(URL of an empty database of the test's own, the server's data folder): what a test
    leaves on the server (a backend still sleeping in its query) goes with the database."""
    url, data = server
    with fresh_database(url) as own:
        yield own, data


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
    url: str, data: Path, ready: Callable[[sa.Engine], bool]
) -> Iterator[Fault]:
    """In a thread: once ``ready`` says so, stop every server process, give the
    client a moment to block on it, send this process SIGINT; let the server go on once
    the block reports ``returned`` or after ``RESUME_AFTER_S``, and at the end."""
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
                wait_for("the COPY to be under way", lambda: ready(watcher), 30)
            finally:
                watcher.dispose()  # its connection would be stopped with the server
            stopped.extend(server_processes(data))
            for process in stopped:
                process.suspend()
            time.sleep(0.5)  # the client drains what was sent and blocks
            if fault.returned.is_set():
                return  # over before the fault (the test then fails on it): no SIGINT
            fault.interrupted_at = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)
            fault.returned.wait(RESUME_AFTER_S)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            fault.error = error
        finally:
            fault.resumed_at = time.monotonic()
            resume()

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
    assert fault.error is None, fault.error


def assert_returned_at_once(fault: Fault, returned_at: float) -> None:
    assert fault.interrupted_at is not None, "no interruption was sent"
    took = returned_at - fault.interrupted_at
    assert fault.resumed_at is None or returned_at < fault.resumed_at, (
        f"the COPY returned {took:.1f}s after the SIGINT, only once the server went on"
    )
    assert took < BOUND_S, f"the COPY returned {took:.1f}s after the SIGINT"


# Where the read of an input is when the server stops: waiting for the COPY's first rows
# (the first row sleeps: a scan that finds its first match late), or between rows (the
# first 20,000 rows, ~0.9 MB, flow at once and fill the socket; then each row sleeps 1 ms:
# a long scan).
SLOW_COPIES = {
    "before-its-first-rows": (" WHERE n > 1 OR pg_sleep(5) IS NOT NULL", copy_started),
    "between-rows": (
        " WHERE n <= 20000 OR pg_sleep(0.001) IS NOT NULL",
        lambda engine: copy_moved(engine, "COPY TO", 20_000),
    ),
}


@pytest.mark.parametrize("where", list(SLOW_COPIES))
def test_an_interrupted_copy_to_raises_the_interruption_at_once_from_a_stopped_server(
    database: tuple[str, Path], where: str
) -> None:
    """The IO manager's read of an input (``read_query_arrow``, COPY TO) interrupted while
    it waits for a stopped server. Between rows, psycopg's clean-up of the COPY on an error
    would send a cancel request (the stopped postmaster lets it wait 5 s) and then read
    the rest of the COPY's data, which never comes. Before the first rows, leaving the
    connection would send a ROLLBACK while the COPY is still running, and the error of that
    ("another command is already in progress") would replace the interruption."""
    url, data = database
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS public.slow_rows"))
        connection.execute(
            sa.text(
                "CREATE TABLE public.slow_rows AS SELECT n::bigint AS n, "
                "md5(n::text) AS payload FROM generate_series(1, 100000) AS n"
            )
        )
    condition, ready = SLOW_COPIES[where]
    returned_at = None
    with (
        stopped_and_interrupted(url, data, ready) as fault,
        pytest.raises(DagsterExecutionInterruptedError) as raised,
        raise_execution_interrupts(),
    ):
        try:
            read_query_arrow(engine, "public", "slow_rows", condition, {})
        finally:
            returned_at = time.monotonic()
            fault.returned.set()
    assert type(raised.value) is DagsterExecutionInterruptedError
    assert returned_at is not None
    assert_returned_at_once(fault, returned_at)
    engine.dispose()


def endless_rows(limit_batches: int = 200) -> pa.RecordBatchReader:
    """Batches of 16,384 rows (~0.5 MB in binary COPY) until ``limit_batches``: far more
    than the test lets through before the server stops."""
    rows = 16_384
    batch = pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array([f"{i:010d}" for i in range(rows)])],
        names=["n", "payload"],
    )
    return pa.RecordBatchReader.from_batches(batch.schema, (batch for _ in range(limit_batches)))


@pytest.mark.parametrize(
    "interruption",
    [DagsterExecutionInterruptedError, KeyboardInterrupt],
    ids=["dagster-handler", "ctrl-c"],
)
def test_an_interrupted_copy_from_raises_the_interruption_at_once_from_a_stopped_server(
    database: tuple[str, Path], interruption: type[BaseException]
) -> None:
    """The IO manager's load (``copy_arrow`` in ``dropped_if_interrupted``, as its ``fill``
    does) interrupted while the sending thread is blocked on the socket of a stopped server:
    the interruption itself leaves, not the connection error that psycopg's COPY clean-up
    and the transaction's end meet on the hung-up connection (``Copy.finish`` logs those,
    and the invalidated connection sends no ROLLBACK)."""
    url, data = database
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS public.loaded_rows"))
        connection.execute(sa.text("CREATE TABLE public.loaded_rows (n bigint, payload text)"))
    returned_at = None
    handler = raise_execution_interrupts() if interruption is not KeyboardInterrupt else None
    with (
        stopped_and_interrupted(url, data, lambda e: copy_moved(e, "COPY FROM", 0)) as fault,
        pytest.raises(interruption) as raised,
        handler or contextlib.nullcontext(),
    ):
        try:
            with engine.begin() as connection, dropped_if_interrupted(connection):
                copy_arrow(driver_cursor(connection), "public.loaded_rows", endless_rows())
        finally:
            returned_at = time.monotonic()
            fault.returned.set()
    assert type(raised.value) is interruption
    assert returned_at is not None
    assert_returned_at_once(fault, returned_at)
    # The server, going on, rolls the load back: it saw its client hang up.
    database_of = database_name(url)
    wait_for("the load's session to end", lambda: not other_backends(engine, database_of), 30)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM loaded_rows")).scalar_one() == 0
    engine.dispose()
