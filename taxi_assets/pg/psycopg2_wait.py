"""Ctrl-C let through psycopg2 (Dagster's PostgreSQL storage, through dagster-postgres) at
once, also while its server answers nothing.

psycopg2 waits for the server inside libpq (``PQexec``), a C call that Python's signal
handlers run only after: Ctrl-C during a read of a stopped server waited for ever. Its
documented remedy, ``set_wait_callback(psycopg2.extras.wait_select)``, waits in Python
instead, but on ``KeyboardInterrupt`` it calls ``connection.cancel()`` (``PQcancel``, which
waits for the server to take the request, holding the GIL) and goes on waiting for the
statement's end: against a stopped server the command returned only once the server went
on, with a ``QueryCanceled`` traceback (measured: 12.6 s in the test's setting). Here the
wait lets any interruption through at once, the statement cancelled from a thread that
nothing waits for and the connection hung up, as :mod:`taxi_assets.pg.interrupts` does for
psycopg 3; psycopg2 then closes a connection whose wait raised.

Installed for the whole process, so only where nothing uses what psycopg2 refuses in this
mode (COPY, large objects): the CLI's commands that open the instance.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import sys
import threading
from functools import cache

import psycopg2
import psycopg2.extensions


def let_interruptions_through_psycopg2() -> None:
    """Make every psycopg2 connection of this process wait for its server in
    :func:`_wait`."""
    psycopg2.extensions.set_wait_callback(_wait)


def _wait(connection: psycopg2.extensions.connection) -> None:
    """psycopg2's wait callback: ``wait_select``'s loop, its handler of an interruption
    replaced (the module's docstring)."""
    try:
        while (state := connection.poll()) != psycopg2.extensions.POLL_OK:
            if state == psycopg2.extensions.POLL_READ:
                select.select([connection.fileno()], [], [])
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [connection.fileno()], [])
            else:
                raise psycopg2.OperationalError(f"bad state from poll: {state}")
    except BaseException as error:
        if not isinstance(error, Exception):  # an interruption (Ctrl-C, SystemExit)
            _cancel_in_background(connection)
            _hang_up(connection)
        raise


def _hang_up(connection: psycopg2.extensions.connection) -> None:
    """Shut the connection's socket down, so that closing it (its goodbye to the server)
    fails at once. Through a duplicate descriptor, as ``pg.interrupts.hang_up``."""
    try:
        with socket.socket(fileno=os.dup(connection.fileno())) as link:
            link.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg2.Error):
        pass  # closed already


class _Libpq:
    """The libpq functions of a cancel request, from the libpq psycopg2 itself uses
    (a wheel bundles its own: another libpq's ``PGconn`` may differ)."""

    def __init__(self) -> None:
        # dlsym through psycopg2's C module (loaded by ``import psycopg2``) searches the
        # libraries it links: its libpq.
        library = ctypes.CDLL(sys.modules["psycopg2._psycopg"].__file__)
        self.get_cancel = library.PQgetCancel
        self.get_cancel.argtypes = [ctypes.c_void_p]
        self.get_cancel.restype = ctypes.c_void_p
        self.cancel = library.PQcancel
        self.cancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.cancel.restype = ctypes.c_int
        self.free_cancel = library.PQfreeCancel
        self.free_cancel.argtypes = [ctypes.c_void_p]
        self.free_cancel.restype = None


@cache
def _libpq() -> _Libpq | None:
    try:
        return _Libpq()
    except (OSError, AttributeError, KeyError, TypeError):
        return None  # no cancel then: the hang-up alone ends the session, eventually


def _cancel_in_background(connection: psycopg2.extensions.connection) -> None:
    """Ask the server to stop the statement ``connection`` runs, from a daemon thread:
    ``PQcancel`` waits for the server's answer (for ever from a stopped server), with the
    GIL released by ctypes, where psycopg2's own ``cancel()`` holds it."""
    libpq = _libpq()
    if libpq is None or connection.closed:
        return
    request = libpq.get_cancel(connection.pgconn_ptr)
    if not request:
        return  # not connected yet: no statement to stop
    threading.Thread(
        target=_send_cancel, args=(libpq, request), name="dagster-storage-cancel", daemon=True
    ).start()


def _send_cancel(libpq: _Libpq, request: int) -> None:
    error = ctypes.create_string_buffer(256)
    try:
        libpq.cancel(request, error, len(error))
    finally:
        libpq.free_cancel(request)
