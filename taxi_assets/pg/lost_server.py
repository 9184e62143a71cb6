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

import threading
import time
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


def lost_server_says(where: str, why: str | None = None) -> str:
    """What an error of a lost connection to ``where`` says; ``why``: what this process
    itself found (:func:`note_giving_up`), instead of the possible causes."""
    causes = why or (
        "the server stopped, restarted or closed the session, or it or the network stopped "
        "answering (a server gone silent is given up after about 2 minutes, or 5 while a "
        "load sends to it)"
    )
    return (
        f"the connection to the warehouse server {where} was lost: {causes}. Check that it "
        "runs and can be reached, then run again"
    )


# Why this process gave up its connection to a server (pg.silent_peer hangs it up; libpq
# then says only "server closed the connection unexpectedly"), until an error says so:
# (when, why). What waited on that connection fails at once; an older note is stale.
_given_up: dict[str, tuple[float, str]] = {}
_given_up_lock = threading.Lock()
_GIVEN_UP_FRESH_S = 60.0


def note_giving_up(where: str, why: str) -> None:
    """This process gave up its connection to ``where`` for ``why``: the next error of a
    lost connection to it (within a minute) says so."""
    with _given_up_lock:
        _given_up[where] = (time.monotonic(), why)


def _saying(where: str) -> str:
    with _given_up_lock:
        noted = _given_up.pop(where, None)
    fresh = noted is not None and time.monotonic() - noted[0] < _GIVEN_UP_FRESH_S
    return lost_server_says(where, noted[1] if noted is not None and fresh else None)


def _named(error: BaseException, where: str) -> bool:
    """``error`` names ``where`` already (a detail or a note of ours)."""
    said = f"the connection to the warehouse server {where} was lost: "
    texts = [*getattr(error, "detail", ()), *getattr(error, "__notes__", ())]
    return any(said in text for text in texts)


def name_lost_server(engine: sa.Engine, where: str) -> None:
    """Make ``engine``'s errors of a lost connection (SQLAlchemy's ``is_disconnect``) name
    the server ``where``."""

    def handle_error(context: sa.engine.ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        if context.is_disconnect and isinstance(error, sa.exc.StatementError):
            error.add_detail(_saying(where))

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
    # connect that timed out). psycopg resolves the host name itself, before libpq.
    return isinstance(error, psycopg.errors.ConnectionTimeout) or str(error).startswith(
        ("connection failed", "failed to resolve host")
    )


@contextmanager
def naming_lost_server(where: str) -> Iterator[None]:
    """An error of a lost connection leaving the block carries a note naming ``where``
    (once: an error already named by :func:`name_lost_server` gets none)."""
    try:
        yield
    except Exception as error:
        if is_lost_connection(error) and not _named(error, where):
            error.add_note(_saying(where))
        raise
