"""A statement whose client died ends on the server within seconds, its locks with it.

A run worker SIGKILLed or killed for memory leaves its connection closed by its kernel,
but the server notices that only when it next reads from or writes to the socket: a
statement it is executing (an index build, ``ANALYZE``, a query waiting behind another
session's lock) ran on to its end, holding its session's locks meanwhile: the month's
advisory lock (:mod:`taxi_assets.pg.month_swap`), on which the month's next load waits.
Measured (PostgreSQL 16, SIGKILLed client, Unix socket and TCP alike): ``pg_sleep(20)``
ran on 19 s, a btree build 5 s, ``ANALYZE`` 12 s, a join 49 s, a lock wait until the
lock was released. A ``COPY FROM`` (the month's fill) is not affected: the server reads
there, and sees the closed socket at once.

PostgreSQL 14 and later (14 on Linux; 15 also on macOS, illumos and the BSDs) check the
socket every ``client_connection_check_interval`` while a statement runs, lock waits
included, and end the session ("connection to client lost") when the kernel reports it
closed. Sessions of an engine given to :func:`check_for_lost_client` set it to
``CHECK_INTERVAL`` when connecting, unless it was set elsewhere (the URL's ``options``,
``PGOPTIONS``, ``ALTER ROLE``/``ALTER DATABASE``, the server's configuration): that
value wins. Measured with it (1 s): each of the statements above ended within the
interval of the kill.

Set on a connection rather than in the URL's ``options`` (as keepalives are): a server
older than 14 refuses a connection whose startup options name a parameter it does not
know ("unrecognized configuration parameter"): every connection to PostgreSQL 13 or
older would fail, and the project names no lowest version (README counts on 11 for one
feature). Here an older server has no such setting, and nothing is set. A server that
refuses the value goes on without the check, as every session did before: one on a
platform whose kernel cannot report a closed socket (Windows) refuses any value but 0,
and a managed service may lock the parameter (Azure's flexible server lists it
read-only; untested here, no such server). Not covered: a client whose host dies or is
cut off sends no FIN, so its socket looks open; the server's own TCP keepalives
(``tcp_keepalives_idle``, the kernel's 2 hours by default) find that peer.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

# A dead client's statement ends within this of the kill, its month's lock freed. A
# killed run's retry starts later than that (the run worker's death is noticed, the run
# marked failed, a new run launched), so it finds the lock free. The cost is one poll of
# the socket and a timer re-armed every 10 s of a running statement: nothing measurable,
# and nothing at all for an idle session. (PostgreSQL's hackers proposed 10 s as the
# default on platforms that support the check, 2023.)
CHECK_INTERVAL = "10s"
PARAMETER = "client_connection_check_interval"

# set_config only where the server has the setting (14+) and nobody set it.
_SET_UNLESS_SET = (
    "SELECT set_config(name, %s, false) FROM pg_settings "
    f"WHERE name = '{PARAMETER}' AND source = 'default'"
)


def check_for_lost_client(engine: sa.Engine) -> None:
    """Make the sessions ``engine`` opens end a running statement within
    ``CHECK_INTERVAL`` of their client's death (see the module's docstring)."""
    import psycopg

    # PostgreSQL's own ways of refusing a setting: a value its platform cannot use
    # (Windows: any but 0), no right to set it, not now. A managed service that locks the
    # parameter does it with a hook of its own, in one of these, presumably: undocumented.
    refusals = (
        psycopg.errors.InvalidParameterValue,
        psycopg.errors.InsufficientPrivilege,
        psycopg.errors.CantChangeRuntimeParam,
    )

    @sa.event.listens_for(engine, "connect")
    def set_interval(dbapi_connection: Any, record: object) -> None:
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(_SET_UNLESS_SET, (CHECK_INTERVAL,))
        except refusals as error:
            # Refusing the connection for it would stop every run where nothing stopped
            # before; the session goes on as every session did before the check.
            dbapi_connection.rollback()
            log.warning("%s not set, the server refused it: %s", PARAMETER, error)
            return
        # Committed: a session setting made in a transaction rolled back would be undone.
        dbapi_connection.commit()
