"""A connection the warehouse server refuses for now is tried again, for a bound.

A server at its connection limit refuses new sessions until one ends: "sorry, too many
clients already" (``max_connections``), "too many connections for role ..." or "... for
database ..." (``CONNECTION LIMIT``), "remaining connection slots are reserved ..."
(SQLSTATE 53300). So does a server that is starting, recovering from a crash of one of its
processes, or replaying WAL before it is consistent (a managed server's failover, a
restart): "the database system is starting up", "... is in recovery mode", "... is not yet
accepting connections" (57P03). Each lasts seconds to minutes. Before, such a refusal failed
the step at once, and an asset failure is not retried (``retry_on_asset_or_op_failure:
false``): every month of a backfill that started in that minute failed.

Now such a refusal is tried again, with growing pauses (0.5 s doubling to 5 s), for up to
``retry_for_s`` (``PostgresResource.connect_retry_s``, 120 s), then fails with the server's
last words, the server's name (no credentials), how long it was tried and what to change.
Every other failure to connect fails at once, as before: a refused TCP connection (no
server listening: a wrong port as much as a restart), a wrong password, a database that
does not exist, a server that does not answer (:mod:`taxi_assets.pg.connect_timeout`), and
"the database system is shutting down" or "... is not accepting connections" (a standby
without hot standby), which do not pass by themselves.

psycopg gives a failed connection no SQLSTATE, so the refusal is told by the server's
message, in English: a server whose ``lc_messages`` is another language fails at once, as
before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

T = TypeVar("T")

CONNECT_RETRY_S = 120.0
_FIRST_PAUSE_S = 0.5
_LONGEST_PAUSE_S = 5.0

_BUSY = (
    "sorry, too many clients already",
    "too many connections for role",
    "too many connections for database",
    "remaining connection slots are reserved",
)
_STARTING = (
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
)

_log = logging.getLogger(__name__)


def refused_for_now(error: BaseException) -> str | None:
    """Why the server refused this connection for now ("busy", "starting"), or None when
    ``error`` is any other failure."""
    if not isinstance(error, psycopg.OperationalError):
        return None
    said = str(error)
    if any(words in said for words in _BUSY):
        return "busy"
    if any(words in said for words in _STARTING):
        return "starting"
    return None


def connect_waiting_out_refusals(
    connect: Callable[[], T],
    where: str,
    retry_for_s: float,
    warn: Callable[[str], None] | None = None,
) -> T:
    """``connect()``, tried again while the server ``where`` refuses it for now, for up to
    ``retry_for_s`` seconds; then a ``psycopg.OperationalError`` naming the server. Each
    pause is said to ``warn`` (a run's log), else to this module's logger."""
    started = time.monotonic()
    pause = _FIRST_PAUSE_S
    while True:
        try:
            return connect()
        except psycopg.OperationalError as error:
            why = refused_for_now(error)
            waited = time.monotonic() - started
            if why is None:
                raise
            if waited + pause > retry_for_s:
                # The driver's own class, so that SQLAlchemy wraps it as every connection
                # failure (OperationalError) and callers catch it as before.
                raise psycopg.OperationalError(
                    f"{error}: {_gave_up_says(where, why, waited)}"
                ) from None
            state = "at its connection limit" if why == "busy" else "starting or recovering"
            (warn or _log.warning)(
                f"the warehouse server {where} refuses new connections for now ({state}): "
                f"trying again in {pause:.1f} s, for up to {retry_for_s:.0f} s in all"
            )
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE_S)


def _gave_up_says(where: str, why: str, waited: float) -> str:
    if why == "busy":
        advice = (
            "its connections are all taken: raise the server's max_connections (or the "
            "role's or database's CONNECTION LIMIT), or run fewer loads at once (the "
            "`warehouse` pool's limit, max_concurrent_runs in dagster.yaml)"
        )
    else:
        advice = "it is still starting or recovering: check its state and log"
    return (
        f"the warehouse server {where} still refused a new connection after {waited:.0f} s "
        f"of trying (PostgresResource.connect_retry_s): {advice}"
    )
