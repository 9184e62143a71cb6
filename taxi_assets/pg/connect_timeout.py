"""A bound on connecting to the warehouse server, and a clear error when it is reached.

A server that accepts the connection but does not answer (its postmaster stopped with
SIGSTOP, a host that is swapping or frozen, a proxy whose backend hangs) held every run's
first connection, and ``months status``, for psycopg's default of 130 s, then failed with
"connection timeout expired" naming neither the server nor the setting. Connections of an
engine given to :func:`bound_connects` wait ``CONNECT_TIMEOUT_S`` unless the URL sets
``connect_timeout`` itself, and the error names the server (without credentials), the
bound and how to change it.

A server that hangs after the connection is made is not bounded here: it enforces its
own ``statement_timeout``, and a stopped process's kernel still answers TCP keepalives
(a Unix socket has none). Run monitoring's ``max_runtime_seconds`` (``dagster.yaml``)
ends such a run, and :mod:`taxi_assets.pg.interrupts` lets its process exit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taxi_assets.pg.refused_for_now import CONNECT_RETRY_S, connect_waiting_out_refusals

# A healthy server answers a connection in milliseconds, a far or busy one (TLS, a new
# backend forked under load) in a second or two; libpq's documentation advises no less
# than 2 s. Ten seconds leaves room for that and fails a hung server's runs quickly.
CONNECT_TIMEOUT_S = 10


def bound_connects(
    engine: sa.Engine,
    where: str,
    retry_for_s: float = CONNECT_RETRY_S,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Make the connections ``engine`` opens wait for the server at most
    ``CONNECT_TIMEOUT_S`` (or the URL's own ``connect_timeout``); a timeout is a
    ``psycopg.errors.ConnectionTimeout`` naming ``where`` (the server, no credentials).
    A connection the server refuses for now (at its connection limit, starting up) is
    tried again for up to ``retry_for_s`` (:mod:`taxi_assets.pg.refused_for_now`), each
    pause said to ``warn``."""
    import psycopg

    @sa.event.listens_for(engine, "do_connect")
    def connect(
        dialect: sa.Dialect, record: object, cargs: list[Any], cparams: dict[str, Any]
    ) -> object:
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        try:
            return connect_waiting_out_refusals(
                lambda: dialect.loaded_dbapi.connect(*cargs, **cparams), where, retry_for_s, warn
            )
        except psycopg.errors.ConnectionTimeout as error:
            # Raised as the driver's own error, so that SQLAlchemy wraps it as it wraps
            # every connection failure (OperationalError) and callers catch it as before.
            raise psycopg.errors.ConnectionTimeout(
                f"{error}: the warehouse server {where} did not answer within "
                f"{cparams['connect_timeout']} s (connect_timeout; another bound: "
                "?connect_timeout=SECONDS in the warehouse URL)"
            ) from None
