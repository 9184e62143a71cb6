"""Ctrl-C let through psycopg at once, for a process waiting on a server that answers nothing.

psycopg's ``Connection.wait`` catches ``KeyboardInterrupt`` (Ctrl-C under Python's own
SIGINT handler) while it waits for the server: it sends a cancel request and waits for
the query to end, 5 s each against a stopped server, before letting the interruption
through (10 s, measured). Other interruptions (Dagster's
``DagsterExecutionInterruptedError``) it lets through at once. Inside :func:`ctrl_c_let_through_psycopg`, Ctrl-C is raised as
such another interruption, and comes out of the block as ``KeyboardInterrupt``.

Imports nothing but the standard library: the CLI runs every command in it, and a
command that never reaches the warehouse should not import psycopg (~0.2 s).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class _CtrlC(BaseException):
    """Ctrl-C inside :func:`ctrl_c_let_through_psycopg`: not a ``KeyboardInterrupt``, so
    that psycopg's handler of those does not wait for the server before letting it through."""


@contextmanager
def ctrl_c_let_through_psycopg() -> Iterator[None]:
    """Raise Ctrl-C as :class:`_CtrlC` inside the block, as ``KeyboardInterrupt`` out of it.
    Only where Python's own handler is in place, in the main thread (the only one that
    receives signals or may set handlers): another handler (Dagster's, which raises its
    own interruption or defers it) is left alone, and so is an enclosing block's.

    A statement that SQLAlchemy runs, interrupted so, is dropped with its connection
    (SQLAlchemy drops one for any interruption); psycopg's own code that the interruption
    leaves (a COPY, a transaction's end) needs ``dropped_if_interrupted`` or
    ``closed_if_interrupted`` (:mod:`taxi_assets.pg.interrupts`) around it."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def raise_ctrl_c(_signal: int, _frame: FrameType | None) -> None:
        raise _CtrlC

    previous = signal.signal(signal.SIGINT, raise_ctrl_c)
    try:
        yield
    except _CtrlC as error:
        raise KeyboardInterrupt().with_traceback(error.__traceback__) from None
    finally:
        signal.signal(signal.SIGINT, previous)
