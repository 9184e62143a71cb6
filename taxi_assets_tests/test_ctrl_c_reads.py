"""Ctrl-C to the warehouse reads outside Dagster's runs and the CLI's SQLAlchemy queries:
the embedded server's own checks (its settings, read by ``warehouse start``; the sessions
on it, counted by ``months status`` before it stops a server it started) and the demo's
summary (``python -m taxi_assets.demo``). Each, waiting on a stopped server, lets the
``KeyboardInterrupt`` out at once, says nothing more (psycopg's "error ignored in rollback"
when the connection is left mid-query), and on a server that answers does not leave its
statement running.

All real, as in ``test_copy_interrupts`` (whose helpers these are): a server of this
module's own, a session of the test holding what the read needs (a lock), every server
process stopped with SIGSTOP, a SIGINT to this process under Python's own handler (or, for
the CLI, the handler its ``main`` installs).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from taxi_assets.assets.analytics.stats_columns import ANALYTICS_SCHEMA, STATS_TABLE
from taxi_assets.demo import analytics_totals, warehouse_counts
from taxi_assets.pg import embedded
from taxi_assets.pg.ctrl_c import ctrl_c_let_through_psycopg
from taxi_assets.services import SERVICES
from taxi_assets_tests.faults_support import (
    other_backends,
)
from taxi_assets_tests.pipeline import engine_for
from taxi_assets_tests.test_copy_interrupts import (
    ctrl_c_to_a_process,
    held,
    interrupted_at_once,
    wait_until_only,
    waits_for_a_lock,
)


def psycopg_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]


# The embedded server's reads of its settings (pg_settings): warehouse start's, before it
# restarts a server it started without them, and the two the tests and an operator use.
SETTINGS_READS: dict[str, Callable[[str], object]] = {
    "warehouse start's": embedded._persist_bulk_load_settings,
    "pending": embedded.pending_bulk_load_settings,
    "in use": embedded.bulk_load_settings_in_use,
}


@pytest.mark.parametrize("state", ["stopped", "answering"])
@pytest.mark.parametrize("read", list(SETTINGS_READS))
def test_ctrl_c_to_a_read_of_the_embedded_servers_settings(
    stoppable_database: tuple[str, Path], read: str, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A read of the server's settings waiting for them (a lock on ``pg_settings`` held
    by the test), Ctrl-C under the CLI's handler: the ``KeyboardInterrupt`` comes out within
    ``BOUND_S``, and psycopg logs nothing (before: "error ignored in rollback ... another
    command is already in progress", its ROLLBACK sent on a connection still in its
    query). On a server that answers the read's session ends within ``CANCELLED_WITHIN_S``
    though the lock is still held (before: it waited on, its client gone)."""
    url, data = stoppable_database
    engine = engine_for(url)

    def read_under_the_cli() -> None:
        with ctrl_c_let_through_psycopg():
            SETTINGS_READS[read](url)

    try:
        with held(url, "LOCK TABLE pg_catalog.pg_settings IN ACCESS EXCLUSIVE MODE") as holder:
            interrupted_at_once(
                url,
                data,
                lambda e: waits_for_a_lock(e, "pg_settings"),
                "ctrl-c",
                read_under_the_cli,
                stop=state == "stopped",
            )
            if state == "answering":
                wait_until_only(holder, engine, url, "the interrupted read's session")
    finally:
        engine.dispose()
    assert psycopg_warnings(caplog) == []


def counts_sessions(engine: sa.Engine) -> bool:
    """``stop_if_unused``'s count of the other sessions is connected (to the server's
    ``postgres`` database, from ``postmaster.pid``)."""
    return any(
        query.startswith("SELECT count(*) FROM pg_stat_activity")
        for _, _, query in other_backends(engine, "postgres")
    )


def test_ctrl_c_to_the_check_for_other_sessions_of_a_stopped_server(
    stoppable_database: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``months status``'s stop of a server it started (``stop_if_unused``) counting the
    sessions still connected (one of the test's, which keeps it counting) when the server
    stops; Ctrl-C under the CLI's handler: the ``KeyboardInterrupt`` comes out within
    ``BOUND_S``, psycopg logs nothing (before: "error ignored in rollback"), and the server
    is not stopped. (On a server that answers the count takes milliseconds: nothing to
    cancel.)"""
    url, data = stoppable_database
    # The count waits this long for the other session to leave: for as long as the test
    # needs, not 2 s.
    monkeypatch.setattr(embedded, "SESSION_EXIT_WAIT_S", 60.0)

    def stop_under_the_cli() -> None:
        with ctrl_c_let_through_psycopg():
            embedded.stop_if_unused(data)

    with held(url, "SELECT 1"):
        interrupted_at_once(url, data, counts_sessions, "ctrl-c", stop_under_the_cli)
    assert psycopg_warnings(caplog) == []
    assert embedded.is_running(data)


def create_demo_tables(url: str) -> None:
    """Empty tables where the demo's summary reads them."""
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA warehouse")
        for service in SERVICES.values():
            connection.exec_driver_sql(
                f"CREATE TABLE warehouse.{service.dataset} (partition_month date)"
            )
        connection.exec_driver_sql("CREATE TABLE warehouse.taxi_zones (n int)")
        connection.exec_driver_sql(f"CREATE SCHEMA {ANALYTICS_SCHEMA}")
        connection.exec_driver_sql(
            f"CREATE TABLE {ANALYTICS_SCHEMA}.{STATS_TABLE} "
            "(partition_month date, service text, trips bigint, revenue numeric)"
        )
    engine.dispose()


# The demo's summary: (its read, the table it waits for).
DEMO_READS: dict[str, tuple[Callable[[], object], str]] = {
    # After the services' month counts (month_counts, at once already).
    "zone count": (warehouse_counts, "warehouse.taxi_zones"),
    "analytics totals": (analytics_totals, f"{ANALYTICS_SCHEMA}.{STATS_TABLE}"),
}


@pytest.mark.parametrize("read", list(DEMO_READS))
def test_ctrl_c_to_the_demos_summary_waiting_on_a_stopped_server(
    stoppable_database: tuple[str, Path], read: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's summary (``warehouse_counts``' zone count, ``analytics_totals``), called
    in a script or notebook (Python's own handler), Ctrl-C while it waits for a stopped
    server: the ``KeyboardInterrupt`` comes out within ``BOUND_S``. Before, psycopg's
    handler sent a cancel request and waited for the query's end first (5 s + 5 s)."""
    url, data = stoppable_database
    create_demo_tables(url)
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", url)
    client, table = DEMO_READS[read]
    with held(url, f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"):
        interrupted_at_once(
            url, data, lambda e: waits_for_a_lock(e, table.split(".")[1]), "ctrl-c", client
        )


def test_ctrl_c_ends_the_demo_in_one_line(
    stoppable_database: tuple[str, Path], tmp_path: Path
) -> None:
    """``python -m taxi_assets.demo --summary-only`` (the summary of what the warehouse
    holds, no runs), Ctrl-C while its zone count waits for a stopped server: it ends within
    ``BOUND_S``, by SIGINT, saying so in one line as the CLI does, no traceback. Before,
    psycopg's handler waited 10 s, and a traceback followed."""
    url, data = stoppable_database
    create_demo_tables(url)
    env = {
        **os.environ,
        "TAXI_WAREHOUSE_URL": url,
        "TAXI_LAKE_URL": str(tmp_path / "lake"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    with held(url, "LOCK TABLE warehouse.taxi_zones IN ACCESS EXCLUSIVE MODE"):
        ended = ctrl_c_to_a_process(
            url,
            data,
            ["-m", "taxi_assets.demo", "--summary-only", "--data-dir", str(tmp_path)],
            lambda e: waits_for_a_lock(e, "taxi_zones"),
            env=env,
        )
    assert ended.returncode == -signal.SIGINT, ended.stderr
    assert ended.stderr == "interrupted\n", ended.stderr
