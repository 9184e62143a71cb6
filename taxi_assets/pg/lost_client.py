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
read-only; untested here, no such server). A client whose host dies or is cut off sends no
FIN, so its socket looks open until the server's own TCP keepalives find the peer gone
(the kernel's 2 hours and more by default): each session also sets them to the client's
values (``SERVER_KEEPALIVES``, unless set elsewhere), so the check ends such a session
about 2 minutes after its client's host went silent (measured with 1 + 1 x 2 s and a
1 s check, the client's address deleted: the month's next load had the lock 4 s after).
A session in a ``COPY FROM`` reads its socket: the keepalives alone end it (3 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taxi_assets.pg import keepalives

log = logging.getLogger(__name__)

# A dead client's statement ends within this of the kill, its month's lock freed. A
# killed run's retry starts later than that (the run worker's death is noticed, the run
# marked failed, a new run launched), so it finds the lock free. The cost is one poll of
# the socket and a timer re-armed every 10 s of a running statement: nothing measurable,
# and nothing at all for an idle session. (PostgreSQL's hackers proposed 10 s as the
# default on platforms that support the check, 2023.)
CHECK_INTERVAL = "10s"
PARAMETER = "client_connection_check_interval"
# The server's TCP keepalives, as the client's (``keepalives.KEEPALIVES``): a client whose
# host died is found dead after 60 + 10 * 6 s of silence, then the check ends its
# statement. Ignored on a Unix socket (they read 0 there).
SERVER_KEEPALIVES = ("keepalives_idle", "keepalives_interval", "keepalives_count")

# set_config for the settings the server has (14+ for the check) that nobody set.
_SET_UNLESS_SET = (
    "SELECT set_config(name, wanted.value, false) FROM pg_settings "
    "JOIN unnest(%s::text[], %s::text[]) AS wanted(name, value) USING (name) "
    "WHERE source = 'default'"
)


def session_settings() -> list[dict[str, str]]:
    """What each session sets when it connects, in groups set one statement each: a
    server refusing one group (the check, on Windows) still takes the other."""
    return [
        {PARAMETER: CHECK_INTERVAL},
        {f"tcp_{name}": str(keepalives.KEEPALIVES[name]) for name in SERVER_KEEPALIVES},
    ]


# What a session goes without when the server refuses a group of session_settings().
_WITHOUT = {
    PARAMETER: "a statement of a run killed meanwhile runs on to its end, holding its month's lock",
    "tcp_keepalives_idle": "a session whose client's host died is found only by the server's "
    "own TCP keepalives (2 hours by default), holding its month's lock until then",
}


def check_for_lost_client(
    engine: sa.Engine,
    where: str = "",
    warn: Callable[[str], None] | None = None,
) -> None:
    """Make the sessions ``engine`` opens end a running statement within
    ``CHECK_INTERVAL`` of their client's death, or of the server's keepalives finding
    the client's host gone (see the module's docstring). A setting the server refuses is
    said to ``warn`` (the run's log) once per engine, and to this module's log each time."""
    import psycopg

    said: set[str] = set()

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
        for group in session_settings():
            try:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute(_SET_UNLESS_SET, (list(group), list(group.values())))
            except refusals as error:
                # Refusing the connection for it would stop every run where nothing
                # stopped before; the session goes on as every session did before.
                dbapi_connection.rollback()
                names = ", ".join(group)
                # Said once to the run's log (below); each connection's refusal only at
                # debug then, or the run's log would repeat it.
                say = log.warning if warn is None else log.debug
                say("%s not set, the server refused it: %s", names, error)
                if warn is not None and names not in said:
                    said.add(names)
                    first = next(iter(group))
                    warn(
                        f"the warehouse server {where} refused {names} ({str(error).strip()}): "
                        "without it, "
                        f"{_WITHOUT.get(first, 'this safeguard is off')}. Said once per run; "
                        "the session goes on as before."
                    )
                continue
            # Committed: a session setting made in a transaction rolled back is undone.
            dbapi_connection.commit()
