"""A connection to the warehouse lost mid-statement names the server.

libpq says what broke ("consuming input failed: could not receive data from server:
Connection timed out", "server closed the connection unexpectedly") but not which server,
nor what it means for the run. Errors of a lost connection get that said beside libpq's
own text: the server (host, port and database: :meth:`PostgresResource.describe`, no
credentials), and what to do. SQLAlchemy's statements through :func:`name_lost_server`
(an engine's ``handle_error``: the error's detail, shown first in its message); the
driver's own calls (a load's COPY, a read's COPY TO) inside :func:`naming_lost_server` (a
note on the error, which Dagster's error display and tracebacks show). The error itself,
its class and its libpq text are unchanged: code that catches it still does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

# SQLSTATE classes of a connection that is gone: 08 (connection exception) and 57
# (operator intervention: the server shut down, the session terminated). libpq's own
# failures (a timeout, a reset, an EOF) carry none. Class 57 also holds query_canceled
# (a statement_timeout, a cancel request, Ctrl-C's cancel), after which the session
# goes on: not lost.
_LOST_CLASSES = ("08", "57")
_NOT_LOST = frozenset({psycopg.errors.QueryCanceled.sqlstate})


def lost_server_says(where: str) -> str:
    return (
        f"the connection to the warehouse server {where} was lost: the server stopped, "
        "restarted or closed the session, or it or the network stopped answering (a server "
        "gone silent is given up after about 2 minutes, or 5 while a load sends to it). "
        "Check that it runs and can be reached, then run again"
    )


def name_lost_server(engine: sa.Engine, where: str) -> None:
    """Make ``engine``'s errors of a lost connection (SQLAlchemy's ``is_disconnect``) name
    the server ``where``."""

    def handle_error(context: sa.engine.ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        if context.is_disconnect and isinstance(error, sa.exc.StatementError):
            error.add_detail(lost_server_says(where))

    sa.event.listen(engine, "handle_error", handle_error)


def is_lost_connection(error: BaseException) -> bool:
    """``error`` (SQLAlchemy's or psycopg's) says an established connection is gone."""
    if isinstance(error, sa.exc.DBAPIError):
        orig = error.orig
        return bool(error.connection_invalidated) or (orig is not None and is_lost_connection(orig))
    if not isinstance(error, psycopg.OperationalError) or _never_connected(error):
        return False
    state = error.sqlstate
    return state is None or (state[:2] in _LOST_CLASSES and state not in _NOT_LOST)


def _never_connected(error: psycopg.OperationalError) -> bool:
    # Connecting failed: not a lost connection (pg.connect_timeout names the server of a
    # connect that timed out).
    return isinstance(error, psycopg.errors.ConnectionTimeout) or str(error).startswith(
        "connection failed"
    )


@contextmanager
def naming_lost_server(where: str) -> Iterator[None]:
    """An error of a lost connection leaving the block carries a note naming ``where``
    (once: an error already named by :func:`name_lost_server` gets none)."""
    try:
        yield
    except Exception as error:
        said = lost_server_says(where)
        named = said in getattr(error, "detail", ()) or said in getattr(error, "__notes__", ())
        if is_lost_connection(error) and not named:
            error.add_note(said)
        raise
