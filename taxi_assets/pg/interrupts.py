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
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa


def hang_up(driver: psycopg.Connection[Any]) -> None:
    """Shut ``driver``'s socket down so that any thread's send or wait on it fails now.
    Through a duplicate descriptor: libpq's own stays open (and its number taken) until
    libpq closes it, so no file opened meanwhile can be mistaken for the connection."""
    try:
        with socket.socket(fileno=os.dup(driver.pgconn.socket)) as link:
            link.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed already: nothing can wait on it


def is_interruption(error: BaseException) -> bool:
    """An interruption (SIGINT: Ctrl-C, Dagster terminating the run; SystemExit), not an
    error of the work."""
    return not isinstance(error, Exception)


@contextmanager
def dropped_if_interrupted(connection: sa.Connection) -> Iterator[None]:
    """Hang up and invalidate ``connection`` when an interruption leaves the block, so that
    leaving its transaction does not wait for the server and the interruption stays the
    error raised (a ROLLBACK on the hung-up connection would replace it)."""
    try:
        yield
    except BaseException as error:
        if is_interruption(error):
            driver = connection.connection.driver_connection
            if isinstance(driver, psycopg.Connection):
                hang_up(driver)
            connection.invalidate()
        raise


@contextmanager
def closed_if_interrupted(driver: psycopg.Connection[Any]) -> Iterator[None]:
    """Hang up and close ``driver`` when an interruption leaves the block: the body of a
    psycopg ``COPY ... TO STDOUT`` block, whose clean-up on an error sends the server a
    cancel request (5 s to a stopped server) and then reads the rest of the COPY's data
    (for ever). On a closed connection it does neither."""
    try:
        yield
    except BaseException as error:
        if is_interruption(error):
            hang_up(driver)  # first, so that closing's goodbye to the server fails at once
            driver.close()
        raise
