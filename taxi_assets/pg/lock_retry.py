"""DDL that must not make everyone queue behind it: ``lock_timeout`` and retries.

A statement waiting for a lock that a long query holds makes every later query of that
table wait behind it, however short. Schema changes (a month's swap, a new column) run
here under ``SET LOCAL lock_timeout``: when the table is busy they give up after the
timeout, which is then the longest anyone waited because of them, back off and try again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import sqlalchemy as sa

from taxi_assets.pg.ddl import qualified

T = TypeVar("T")


@dataclass(frozen=True)
class LockWaits:
    """How long one attempt may wait for its locks, and how long to keep trying."""

    lock_timeout_ms: int = 1000
    retry_for_s: float = 600.0
    max_backoff_s: float = 5.0


class LockWaitTimedOut(Exception):
    """Other sessions held the table for longer than ``LockWaits.retry_for_s``."""


def lock_wait_error(error: BaseException) -> bool:
    """True for a lock timeout or a deadlock: the transaction can simply be tried again."""
    cause = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    return isinstance(cause, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected)


def with_lock_retries(
    connection: sa.Connection,
    work: Callable[[sa.Connection], T],
    *,
    waits: LockWaits,
    what: str,
    table: tuple[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[T, float, int]:
    """Run ``work`` in a transaction of its own with ``lock_timeout`` set, again after a
    lock timeout; (its result, the successful transaction's ms, attempts).
    ``table`` (schema, name): whose lock holders the log names while waiting."""
    deadline = time.monotonic() + waits.retry_for_s
    backoff = 0.2
    attempt = 0
    while True:
        attempt += 1
        began = time.monotonic()
        try:
            with connection.begin():
                connection.exec_driver_sql(
                    f"SET LOCAL lock_timeout = '{int(waits.lock_timeout_ms)}ms'"
                )
                result = work(connection)
            return result, (time.monotonic() - began) * 1000, attempt
        except (sa.exc.DBAPIError, psycopg.Error) as error:
            if not lock_wait_error(error):
                raise
            holders = lock_holders(connection, *table) if table else ""
            if time.monotonic() + backoff > deadline:
                raise LockWaitTimedOut(
                    f"{what}: other sessions held the table for more than "
                    f"{waits.retry_for_s:.0f} s ({holders or 'none seen'}); nothing was "
                    "changed, try again later"
                ) from error
            log(
                f"{what} waited {waits.lock_timeout_ms} ms for its locks "
                f"({holders or 'held by other sessions'}); trying again in {backoff:.1f} s "
                f"(attempt {attempt})"
            )
            time.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, waits.max_backoff_s)


def lock_holders(connection: sa.Connection, schema: str, table: str) -> str:
    """Sessions holding locks on the table or its partitions, for a log line, e.g.
    ``pid 42 (idle in transaction for 35 s: SELECT ...)``."""
    if connection.in_transaction():
        connection.rollback()
    with connection.begin():
        rows = connection.execute(
            sa.text(
                "SELECT a.pid, coalesce(a.state, '?'), "
                "  round(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))), "
                "  left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80) "
                "FROM pg_stat_activity AS a WHERE a.pid <> pg_backend_pid() AND a.pid IN ("
                "  SELECT l.pid FROM pg_locks AS l WHERE l.granted AND l.relation IN ("
                "    SELECT relid FROM pg_partition_tree(to_regclass(:table)))) "
                "ORDER BY 1 LIMIT 3"
            ),
            {"table": qualified(schema, table)},
        ).all()
    return ", ".join(
        f"pid {pid} ({state} for {age or 0:.0f} s: {query})" for pid, state, age, query in rows
    )
