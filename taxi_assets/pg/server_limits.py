"""A statement the warehouse server ends at one of its limits: the error names the server,
what became of the write, and what to change.

Three limits end a load's statement with the server's words only, which name neither the
server nor the fate of the month:

- a full disk: "could not extend file "pg_tblspc/16385/PG_16_202307071/16384/16407": No
  space left on device" (SQLSTATE 53100), a path inside the server;
- ``statement_timeout``, set for the role, the database or the whole server (managed
  services often set one): "canceling statement due to statement timeout" (57014, which a
  cancel request also raises, with other words);
- a server that takes no writes: "cannot execute CREATE TABLE in a read-only transaction"
  (25006), from a standby (the URL names a replica, or the server is still in recovery
  after a failover or a restart) or from ``default_transaction_read_only`` (which some
  managed services turn on when the storage is nearly full).

Every write of the product runs in one transaction (a month's load, its swap and its log
row; a table's creation; an analytics month), so the server rolls it back: the table keeps
what it had, and the files the write had grown are removed, their space free again (both
checked for real: ``test_fault_tolerance.py``, fault rows 4e, 2g and 2h). Such errors get that
said beside the server's own text, as :mod:`taxi_assets.pg.lost_server` does for a lost
connection: SQLAlchemy's statements through :func:`name_server_limits` (an engine's
``handle_error``), the driver's own calls (a load's COPY) inside
:func:`naming_server_limits`. The error itself is unchanged. The statement timeout is told
by the server's English words (a server with another ``lc_messages`` gets no note).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

_ROLLED_BACK = (
    "the transaction was rolled back, so nothing it wrote is kept (a month being loaded "
    "keeps its previous rows)"
)


def disk_full_says(where: str) -> str:
    """What an error of a full disk on the warehouse server ``where`` says."""
    return (
        f"the warehouse server {where} is out of disk space: {_ROLLED_BACK} and the space "
        "it took is free again. Free space on the server's disk (its data folder, a "
        "tablespace, or its temporary files), then run again"
    )


def statement_timeout_says(where: str) -> str:
    """What an error of the statement timeout of the warehouse server ``where`` says."""
    return (
        f"the warehouse server {where} ended the statement at its statement_timeout, set "
        f"for this role, this database or the server: {_ROLLED_BACK}. A month's load can "
        "take minutes: lift the bound for the role that loads (ALTER ROLE ... SET "
        "statement_timeout = 0) or in the warehouse URL (?options=-c%20statement_timeout%3D0)"
    )


def read_only_says(where: str) -> str:
    """What an error of a write refused by a read-only warehouse server ``where`` says."""
    return (
        f"the warehouse server {where} takes no writes: it is a standby (a replica, or a "
        "server still recovering after a failover or a restart) or its "
        "default_transaction_read_only is on (some managed services turn it on when the "
        f"storage is nearly full): {_ROLLED_BACK}. Point the warehouse URL at the primary, "
        "or make the server writable, then run again"
    )


def server_limit_says(error: BaseException, where: str) -> str | None:
    """What ``error`` (SQLAlchemy's or psycopg's) says of a limit of the server ``where``
    it reached, or None when it is no such error."""
    if isinstance(error, sa.exc.DBAPIError):
        return None if error.orig is None else server_limit_says(error.orig, where)
    if isinstance(error, psycopg.errors.DiskFull):
        return disk_full_says(where)
    if isinstance(error, psycopg.errors.QueryCanceled) and "statement timeout" in str(error):
        return statement_timeout_says(where)
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return read_only_says(where)
    return None


def _said(error: BaseException, says: str) -> bool:
    texts = [*getattr(error, "detail", ()), *getattr(error, "__notes__", ())]
    return says in texts


def name_server_limits(engine: sa.Engine, where: str) -> None:
    """Make ``engine``'s errors of a server limit name the server ``where``."""

    def handle_error(context: sa.engine.ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        says = server_limit_says(context.original_exception, where)
        if isinstance(error, sa.exc.StatementError) and says is not None:
            error.add_detail(says)

    sa.event.listen(engine, "handle_error", handle_error)


@contextmanager
def naming_server_limits(where: str) -> Iterator[None]:
    """An error of a server limit leaving the block carries a note naming ``where`` (once:
    an error already named by :func:`name_server_limits` gets none)."""
    try:
        yield
    except Exception as error:
        says = server_limit_says(error, where)
        if says is not None and not _said(error, says):
            error.add_note(says)
        raise
