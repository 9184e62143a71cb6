"""A run being terminated while the warehouse server answers nothing: the process must
still exit.

Dagster terminates a run (``dagster/max_runtime``, run monitoring's
``max_runtime_seconds``, a click on Terminate) by sending its process SIGINT, which raises
``DagsterExecutionInterruptedError`` in the main thread. When that happens inside a
SQLAlchemy call, SQLAlchemy drops the connection and nothing waits for the server. When it
happens while psycopg or our own code holds the connection (a COPY, its sending thread),
the way out would talk to the server: the sending thread's blocked write, the transaction's
ROLLBACK, psycopg's clean-up of a COPY TO (a cancel request, then reading the rest of the
COPY's data). A server whose processes are stopped, or a host that froze, answers none of
them (its kernel keeps the connection up), so the process waited for ever, its run long
marked failed. Here the connection is hung up first: every wait on it fails at once, and the
transaction goes as a killed run's does (the server rolls back a session whose client is
gone), leaving the month as it was.

A server that still answers would notice the hang-up only when the statement next talks
to the client: a lock wait, a sort or an index build would go on to its end, holding its
locks (the month's lock among them). So the statement is also cancelled, by a cancel
request sent from a thread that nothing waits for (a stopped server never answers it).

Ctrl-C (Python's own SIGINT handler: a CLI command such as ``warehouse migrate``, a read
from a script or notebook) raises ``KeyboardInterrupt``, which psycopg's ``Connection.wait``
catches while it waits for the server: it sends a cancel request and waits for the query
to end, 5 s each against a stopped server, before letting the interruption through (10 s,
measured). Inside these blocks Ctrl-C raises a private interruption instead, which psycopg
lets through at once as it does Dagster's (``DagsterExecutionInterruptedError``), and the
block raises ``KeyboardInterrupt`` in its place once the connection is hung up
(:mod:`taxi_assets.pg.ctrl_c`). The CLI runs each command in that mechanism alone
(psycopg's wait in any of its queries, not only in these blocks), and the resource's
engines cancel a statement that SQLAlchemy runs when it is interrupted
(:func:`cancel_interrupted_statements`), as psycopg's handler did.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq

from taxi_assets.pg.ctrl_c import ctrl_c_let_through_psycopg
from taxi_assets.pg.lost_server import is_lost_connection

# How long the thread sending a cancel request on an interruption waits for the server to
# take it; nothing waits for the thread.
CANCEL_WAIT_S = 5.0


def hang_up(driver: psycopg.Connection[Any]) -> None:
    """Shut ``driver``'s socket down so that any thread's send or wait on it fails now.
    Through a duplicate descriptor: libpq's own stays open (and its number taken) until
    libpq closes it, so no file opened meanwhile can be mistaken for the connection."""
    try:
        with socket.socket(fileno=os.dup(driver.pgconn.socket)) as link:
            link.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed already: nothing can wait on it


def cancel_in_background(driver: psycopg.Connection[Any]) -> None:
    """Ask the server to stop the statement ``driver`` runs, if it runs one, from a daemon
    thread: the caller goes on at once (the request is a connection of its own to the
    server, which a stopped server accepts and never answers)."""
    try:
        if driver.closed or driver.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
            return
        request = driver.pgconn.cancel_conn()
        request.start()
    except psycopg.Error:
        return  # the connection is broken already: its server has nothing to stop
    threading.Thread(
        target=_send_cancel, args=(request,), name="warehouse-cancel", daemon=True
    ).start()


def _send_cancel(request: pq.abc.PGcancelConn) -> None:
    deadline = time.monotonic() + CANCEL_WAIT_S
    try:
        while (left := deadline - time.monotonic()) > 0:
            status = request.poll()
            if status == pq.PollingStatus.READING:
                select.select([request.socket], [], [], left)
            elif status == pq.PollingStatus.WRITING:
                select.select([], [request.socket], [], left)
            else:
                return  # taken (OK), or impossible (FAILED): the hang-up ends the session
    except (psycopg.Error, OSError):
        return
    finally:
        request.finish()


def _abandon(driver: psycopg.Connection[Any]) -> None:
    """Give up the statement ``driver`` runs: cancelled on the server, hung up here."""
    cancel_in_background(driver)
    hang_up(driver)  # first, so that closing's goodbye to the server fails at once


def _driver_of(connection: sa.Connection) -> psycopg.Connection[Any] | None:
    """The psycopg connection under ``connection``; None once SQLAlchemy dropped or closed
    it (SQLAlchemy drops a connection that an interruption left mid-statement): asking for
    it then would connect again."""
    if connection.invalidated or connection.closed:
        return None
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, psycopg.Connection) else None


def _cancel_interrupted_statement(context: sa.engine.ExceptionContext) -> None:
    """``handle_error`` listener: a statement that SQLAlchemy runs, interrupted, is
    cancelled before SQLAlchemy drops its connection (which it does for an interruption,
    without a cancel)."""
    if is_interruption(context.original_exception) and context.connection is not None:
        if (driver := _driver_of(context.connection)) is not None:
            cancel_in_background(driver)


def cancel_interrupted_statements(engine: sa.Engine) -> None:
    """Make ``engine`` cancel a statement that SQLAlchemy runs, interrupted, on the server
    (which would otherwise go on with it, its client gone: a scan, a lock wait)."""
    if not sa.event.contains(engine, "handle_error", _cancel_interrupted_statement):
        sa.event.listen(engine, "handle_error", _cancel_interrupted_statement)


def is_interruption(error: BaseException) -> bool:
    """An interruption (SIGINT: Ctrl-C, Dagster terminating the run; SystemExit), not an
    error of the work."""
    return not isinstance(error, Exception)


@contextmanager
def dropped_if_interrupted(connection: sa.Connection) -> Iterator[None]:
    """Hang up and invalidate ``connection`` when an interruption leaves the block, so that
    leaving its transaction does not wait for the server and the interruption stays the
    error raised (a ROLLBACK on the hung-up connection would replace it). Ctrl-C comes out
    at once too, and the statement interrupted is cancelled (the module's docstring).

    A connection that the driver's own call (a COPY, which SQLAlchemy does not see) found
    lost is invalidated too, for the same reason: the ROLLBACK's "the connection is lost"
    would replace libpq's error, which says why (the session terminated, a timeout)."""
    cancel_interrupted_statements(connection.engine)
    with ctrl_c_let_through_psycopg():
        try:
            yield
        except BaseException as error:
            if is_interruption(error) and (driver := _driver_of(connection)) is not None:
                _abandon(driver)
                connection.invalidate()
            elif is_lost_connection(error) and not connection.invalidated:
                connection.invalidate()
            raise


@contextmanager
def closed_if_interrupted(driver: psycopg.Connection[Any]) -> Iterator[None]:
    """Hang up and close ``driver`` when an interruption leaves the block: the body of a
    psycopg ``COPY ... TO STDOUT`` block, whose clean-up on an error sends the server a
    cancel request (5 s to a stopped server) and then reads the rest of the COPY's data
    (for ever). On a closed connection it does neither. Ctrl-C comes out at once too, and
    the COPY is cancelled (the module's docstring)."""
    with ctrl_c_let_through_psycopg():
        try:
            yield
        except BaseException as error:
            if is_interruption(error):
                _abandon(driver)
                driver.close()
            raise
