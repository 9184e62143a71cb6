"""A warehouse server out of disk space: the error names the server and what became of
the write.

PostgreSQL says only "could not extend file "pg_tblspc/16385/PG_16_202307071/16384/16407":
No space left on device" (SQLSTATE 53100): a path inside the server, no server name, and
nothing on whether the month was half written. Every write of the product runs in one
transaction (a month's load, its swap and its log row; a table's creation; an analytics
month), so the server rolls it back: the table keeps what it had, and the files the write
had grown are removed, their space free again (both checked for real on a full tablespace:
``test_fault_tolerance.py::test_a_warehouse_out_of_disk_space_keeps_the_month_and_says_so``).
Errors of a full disk get that said beside the server's own text, as
:mod:`taxi_assets.pg.lost_server` does for a lost connection: SQLAlchemy's statements
through :func:`name_disk_full` (an engine's ``handle_error``), the driver's own calls (a
load's COPY) inside :func:`naming_disk_full`. The error itself is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa


def disk_full_says(where: str) -> str:
    """What an error of a full disk on the warehouse server ``where`` says."""
    return (
        f"the warehouse server {where} is out of disk space: the transaction was rolled "
        "back, so nothing it wrote is kept (a month being loaded keeps its previous rows) "
        "and the space it took is free again. "
        "Free space on the server's disk (its data folder, a tablespace, or its temporary "
        "files), then run again"
    )


def is_disk_full(error: BaseException) -> bool:
    """``error`` (SQLAlchemy's or psycopg's) is the server's "no space left on device"."""
    if isinstance(error, sa.exc.DBAPIError):
        return error.orig is not None and is_disk_full(error.orig)
    return isinstance(error, psycopg.errors.DiskFull)


def _named(error: BaseException, where: str) -> bool:
    said = disk_full_says(where)
    texts = [*getattr(error, "detail", ()), *getattr(error, "__notes__", ())]
    return said in texts


def name_disk_full(engine: sa.Engine, where: str) -> None:
    """Make ``engine``'s errors of a full disk name the server ``where``."""

    def handle_error(context: sa.engine.ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        if isinstance(error, sa.exc.StatementError) and is_disk_full(context.original_exception):
            error.add_detail(disk_full_says(where))

    sa.event.listen(engine, "handle_error", handle_error)


@contextmanager
def naming_disk_full(where: str) -> Iterator[None]:
    """An error of a full disk leaving the block carries a note naming ``where`` (once: an
    error already named by :func:`name_disk_full` gets none)."""
    try:
        yield
    except Exception as error:
        if is_disk_full(error) and not _named(error, where):
            error.add_note(disk_full_says(where))
        raise
