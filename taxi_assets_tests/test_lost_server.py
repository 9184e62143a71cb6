"""A connection to the warehouse lost mid-statement names the server (pg/lost_server.py).

Real servers: the session's embedded PostgreSQL, whose backend running the test's
statement is really terminated (``pg_terminate_backend``, as an operator or a failover
ends a session); a server cut off by the network is in test_warehouse_keepalives.py.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.pg.lost_server import is_lost_connection, lost_server_says, naming_lost_server
from taxi_assets.resources.postgres import PostgresResource

SLEEP = "SELECT pg_sleep(60)"


def terminate_when_sleeping(url: str, name: str) -> threading.Thread:
    """Ends the session named ``name`` once it runs ``SLEEP``, from a thread."""

    def terminate() -> None:
        with psycopg.connect(url, autocommit=True) as killer:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = killer.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s AND query = %s",
                    (name, SLEEP),
                ).fetchone()
                if row and row[0]:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=terminate, daemon=True)
    thread.start()
    return thread


def driver_of(connection: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection, whose calls (as a load's COPY) SQLAlchemy does not see."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def named_url(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def test_a_statement_whose_session_is_ended_names_the_server(pg_url: str) -> None:
    resource = PostgresResource(url=named_url(pg_url, "lost-statement"))
    engine = resource.engine()
    try:
        killer = terminate_when_sleeping(pg_url, "lost-statement")
        with engine.connect() as connection, pytest.raises(sa.exc.OperationalError) as raised:
            connection.exec_driver_sql(SLEEP)
        killer.join()
    finally:
        engine.dispose()
    said = str(raised.value)
    assert lost_server_says(resource.describe()) in said, said
    assert "terminating connection due to administrator command" in said  # libpq's text kept
    assert raised.value.connection_invalidated


def test_a_driver_call_whose_session_is_ended_names_the_server(pg_url: str) -> None:
    """The driver's own calls (a load's COPY) are psycopg's errors, not SQLAlchemy's: they
    get a note, which Dagster's error display (the exception's formatted lines) shows."""
    resource = PostgresResource(url=named_url(pg_url, "lost-copy"))
    engine = resource.engine()
    try:
        killer = terminate_when_sleeping(pg_url, "lost-copy")
        with (
            engine.connect() as connection,
            pytest.raises(psycopg.OperationalError) as raised,
            naming_lost_server(resource.describe()),
        ):
            driver_of(connection).execute(SLEEP)
        killer.join()
    finally:
        engine.dispose()
    shown = "".join(traceback.format_exception_only(raised.value))
    assert lost_server_says(resource.describe()) in shown, shown
    assert shown.count("was lost") == 1


def test_a_server_that_refuses_the_connection_is_not_said_to_be_lost() -> None:
    where = "postgresql://127.0.0.1:9/none"
    with (
        pytest.raises(sa.exc.OperationalError) as raised,
        naming_lost_server(where),
    ):
        with PostgresResource(url="postgresql://reader:s3cret@127.0.0.1:9/none").engine().connect():
            pass
    shown = "".join(traceback.format_exception_only(raised.value))
    assert "was lost" not in shown and "s3cret" not in shown, shown


def test_a_driver_call_lost_inside_a_transaction_keeps_libpqs_error(pg_url: str) -> None:
    """As a load's fill runs its COPY: psycopg's call inside SQLAlchemy's transaction and
    ``dropped_if_interrupted``. Leaving the transaction must not send a ROLLBACK on the
    lost connection, whose own error would replace the one that says what happened."""
    resource = PostgresResource(url=named_url(pg_url, "lost-in-transaction"))
    engine = resource.engine()
    try:
        killer = terminate_when_sleeping(pg_url, "lost-in-transaction")
        with (
            pytest.raises(Exception) as raised,
            naming_lost_server(resource.describe()),
            engine.connect() as connection,
            connection.begin(),
            dropped_if_interrupted(connection),
        ):
            driver_of(connection).execute(SLEEP)
        killer.join()
    finally:
        engine.dispose()
    shown = "".join(traceback.format_exception(raised.value))
    assert isinstance(raised.value, psycopg.OperationalError), shown
    assert "terminating connection due to administrator command" in str(raised.value), shown
    assert lost_server_says(resource.describe()) in shown, shown


def test_a_statement_timeout_is_not_said_to_be_lost(pg_url: str) -> None:
    """SQLSTATE 57014 (query_canceled) is in class 57 with the ended sessions, but the
    session goes on: its error keeps its own text, and the connection serves again."""
    resource = PostgresResource(url=pg_url)
    engine = resource.engine()
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET statement_timeout = '100ms'")
            with pytest.raises(sa.exc.OperationalError) as raised:
                connection.exec_driver_sql(SLEEP)
            connection.rollback()
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
            driver = driver_of(connection)
            driver.execute("SET statement_timeout = '100ms'")  # the rollback undid the first
            with (
                pytest.raises(psycopg.errors.QueryCanceled) as raised_by_driver,
                naming_lost_server(resource.describe()),
            ):
                driver.execute(SLEEP)
    finally:
        engine.dispose()
    for error in (raised.value, raised_by_driver.value):
        shown = "".join(traceback.format_exception_only(error))
        assert "canceling statement due to statement timeout" in shown, shown
        assert "was lost" not in shown, shown
    assert not raised.value.connection_invalidated


def test_a_host_name_that_does_not_resolve_is_not_said_to_be_lost() -> None:
    """A typo in the host name was "the connection ... was lost: the server stopped,
    restarted or closed the session". The error is built with psycopg's own text: a real
    failed lookup needs a DNS resolver, which the tests do not reach."""
    error = psycopg.OperationalError(
        "failed to resolve host 'warehouse-typo.invalid': [Errno -2] Name or service not known"
    )
    assert not is_lost_connection(error)
    assert is_lost_connection(psycopg.OperationalError("server closed the connection"))


def test_the_server_named_is_the_one_libpq_connects_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL without host or port takes libpq's PGHOST and PGPORT: messages named
    "unix socket" while the connection went to the host in PGHOST."""
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "9")
    resource = PostgresResource(url="postgresql:///taxi")
    assert resource.describe() == "postgresql://127.0.0.1:9/taxi"
    with pytest.raises(sa.exc.OperationalError) as raised, resource.engine().connect():
        pass
    assert 'server at "127.0.0.1", port 9 failed' in str(raised.value)
    assert PostgresResource(url="postgresql://db.example:6543/taxi").describe() == (
        "postgresql://db.example:6543/taxi"
    )
