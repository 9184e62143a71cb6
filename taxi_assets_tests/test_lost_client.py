"""A statement whose client process was killed ends on the server within the check interval,
and frees the month's lock; without the check it ran on to its end.

Real servers (the session's embedded one over its Unix socket; one of the test's own on
127.0.0.1), a real client process (``taxi_assets_tests.killed_client``: a month's load on
the warehouse resource's engine) really SIGKILLed mid-statement, the backend watched in
``pg_stat_activity``. Nothing simulated but one server's refusal of the setting (below).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from taxi_assets.pg import lost_client
from taxi_assets.pg.month_swap import month_lock_key
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.emulators import free_port
from taxi_assets_tests.pipeline import REPO
from taxi_assets_tests.tcp_postgres import start_on_tcp, stopped_folder
from taxi_assets_tests.warehouse_client import MONTH, MONTHS_TABLE, SCHEMA

INTERVAL_S = 1  # the product's interval (10 s), shortened in the killed client
SLACK_S = 3
SLEEP = "SELECT pg_sleep(600)"
BLOCKER = f"{SCHEMA}.blocker"
LOCK_WAIT = f"SELECT count(*) FROM {BLOCKER}"
NO_CHECK = "-c client_connection_check_interval=0"


@pytest.fixture(scope="module")
def tcp_url() -> Iterator[str]:
    with stopped_folder() as data:
        yield start_on_tcp(data, "127.0.0.1", free_port())


def with_parameters(url: str, **parameters: str) -> str:
    query = "&".join(f"{name}={quote(value)}" for name, value in parameters.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def make_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{MONTHS_TABLE}, {BLOCKER}")
        connection.execute(
            f"CREATE TABLE {SCHEMA}.{MONTHS_TABLE} (n bigint, m date NOT NULL) "
            "PARTITION BY RANGE (m)"
        )
        connection.execute(f"CREATE TABLE {BLOCKER} (n int)")


def backend(watcher: psycopg.Connection, name: str) -> tuple[int, str | None] | None:
    """The pid and wait event of the session named ``name``, while it exists."""
    row = watcher.execute(
        "SELECT pid, wait_event FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def month_lock_free(watcher: psycopg.Connection) -> bool:
    key = month_lock_key(SCHEMA, MONTHS_TABLE, MONTH.key)
    row = watcher.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
    taken = row.fetchone() == (True,)
    if taken:
        watcher.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    return taken


def kill_mid_statement(
    url: str, statement: str, waits_on: str, options: str | None = None
) -> tuple[psycopg.Connection, str]:
    """Start a month's load whose fill runs ``statement`` in a process of its own, and
    SIGKILL the process once the server's backend waits on ``waits_on`` (a wait event):
    a watching connection and the backend's application name."""
    name = f"killed-{uuid.uuid4().hex[:8]}"
    extra = {"application_name": name} | ({"options": options} if options else {})
    client = subprocess.Popen(
        [sys.executable, "-m", "taxi_assets_tests.killed_client"]
        + [with_parameters(url, **extra), statement, f"{INTERVAL_S}s"],
        cwd=REPO,
    )
    watcher = psycopg.connect(url, autocommit=True)
    try:
        deadline = time.monotonic() + 30
        while (found := backend(watcher, name)) is None or found[1] != waits_on:
            assert client.poll() is None, "the client ended before its statement ran"
            assert time.monotonic() < deadline, f"the statement never waited: {found}"
            time.sleep(0.05)
        assert not month_lock_free(watcher), "the load does not hold the month's lock"
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    return watcher, name


def seconds_until_gone(watcher: psycopg.Connection, name: str, limit_s: float) -> float:
    killed = time.monotonic()
    while backend(watcher, name) is not None and time.monotonic() - killed < limit_s:
        time.sleep(0.05)
    return time.monotonic() - killed


def test_each_session_checks_for_a_lost_client_unless_told_otherwise(pg_url: str) -> None:
    def interval(url: str, setting: str = "client_connection_check_interval") -> str:
        engine = PostgresResource(url=url).engine()
        try:
            with engine.connect() as connection:
                # Set for the session: a first transaction rolled back does not undo it.
                connection.exec_driver_sql("SELECT 1")
                connection.rollback()
                return str(connection.exec_driver_sql(f"SHOW {setting}").scalar_one())
        finally:
            engine.dispose()

    assert interval(pg_url) == "10s"
    # The URL's options (other settings beside) win, and so does the database's setting.
    assert interval(with_parameters(pg_url, options=NO_CHECK)) == "0"
    both = with_parameters(pg_url, options=f"{NO_CHECK} -c work_mem=5MB")
    assert (interval(both), interval(both, "work_mem")) == ("0", "5MB")
    database = sa.make_url(pg_url).database
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET client_connection_check_interval = 3000')
    assert interval(pg_url) == "3s"


def test_a_server_refusing_the_interval_is_used_without_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Stands in for a server whose platform cannot check (Windows refuses any value but 0
    # with the same SQLSTATE, 22023): out of range, the value is refused for real.
    monkeypatch.setattr(lost_client, "CHECK_INTERVAL", "-1")
    engine = PostgresResource(url=pg_url).engine()
    try:
        with engine.connect() as connection:
            shown = connection.exec_driver_sql("SHOW client_connection_check_interval")
            assert shown.scalar_one() == "0"
            # The connection is usable, outside any transaction the check left open.
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
    said = [r.getMessage() for r in caplog.records if r.name == lost_client.__name__]
    assert said and "client_connection_check_interval not set" in said[0], said


def test_a_refused_interval_is_said_once_in_the_runs_log(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal above reached only the process's stderr (the run's captured output):
    the run's own log, where the UI shows it, now says it once, with what goes without."""
    monkeypatch.setattr(lost_client, "CHECK_INTERVAL", "-1")

    @dg.asset
    def connects_three_times(warehouse: PostgresResource) -> None:
        engine = warehouse.engine()
        for _ in range(3):
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            engine.dispose()  # the next connect is a new session

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [connects_three_times],
        resources={"warehouse": PostgresResource(url=pg_url)},
        instance=instance,
    )
    assert result.success
    said = [e.user_message for e in instance.all_logs(result.run_id)]
    refused = [m for m in said if "refused client_connection_check_interval" in m]
    assert len(refused) == 1, said
    assert "holding its month's lock" in refused[0]


@pytest.mark.parametrize(
    ("where", "statement", "waits_on"),
    [("unix", SLEEP, "PgSleep"), ("unix", LOCK_WAIT, "relation"), ("tcp", SLEEP, "PgSleep")],
    ids=["unix-socket-running", "unix-socket-lock-wait", "tcp-running"],
)
def test_a_killed_clients_statement_ends_and_frees_the_months_lock(
    where: str, statement: str, waits_on: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url" if where == "unix" else "tcp_url")
    make_tables(url)
    with psycopg.connect(url) as holder:
        holder.execute(f"LOCK TABLE {BLOCKER} IN ACCESS EXCLUSIVE MODE")
        watcher, name = kill_mid_statement(url, statement, waits_on)
        with watcher:
            lived_on = seconds_until_gone(watcher, name, INTERVAL_S + SLACK_S)
            assert lived_on < INTERVAL_S + SLACK_S, f"the backend still runs {statement}"
            assert month_lock_free(watcher)


def test_without_the_check_a_killed_clients_statement_runs_on(pg_url: str) -> None:
    """The fault is real: with the check turned off (in the URL), the backend of the
    killed client still runs its statement, and holds the month's lock, after the time the
    check takes."""
    make_tables(pg_url)
    watcher, name = kill_mid_statement(pg_url, SLEEP, "PgSleep", options=NO_CHECK)
    with watcher:
        try:
            lived_on = seconds_until_gone(watcher, name, INTERVAL_S + SLACK_S)
            assert lived_on >= INTERVAL_S + SLACK_S
            assert not month_lock_free(watcher)
        finally:
            watcher.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
