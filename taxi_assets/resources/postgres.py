"""A PostgreSQL database: an external server from configuration, or the embedded one."""

import os
from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from taxi_assets.pg.connect_timeout import bound_connects
from taxi_assets.pg.embedded import DEFAULT_EMBEDDED_DIR, embedded_url
from taxi_assets.pg.interrupts import cancel_interrupted_statements
from taxi_assets.pg.iso_dates import iso_dates
from taxi_assets.pg.keepalives import with_keepalives
from taxi_assets.pg.lock_retry import LockWaits
from taxi_assets.pg.lost_client import check_for_lost_client
from taxi_assets.pg.lost_server import name_lost_server
from taxi_assets.pg.refused_for_now import CONNECT_RETRY_S
from taxi_assets.pg.server_limits import name_server_limits
from taxi_assets.pg.silent_peer import watch_silent_peers
from taxi_assets.production import require_setting
from taxi_assets.run_watch import RunWatchLease, watch_run
from taxi_assets.settings import resolve_setting


def _at_signs_before_query(url: str) -> int:
    """The '@'s before the URL's parameters: those start at the first '?' after the
    database's '/' (an '@' in a parameter's value, application_name=taxi@prod, is the
    URL's own; a '?' before that '/' may be a password's, "pw?x@host/db"). A URL without
    a '/' after its host has no such start: every '@' counts."""
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    query = rest.find("?", slash) if slash >= 0 else -1
    return (rest if query < 0 else rest[:query]).count("@")


def sqlalchemy_url(url: str) -> sa.URL:
    """``postgresql://`` URLs as SQLAlchemy URLs on the psycopg 3 driver (used for COPY)."""
    parsed = sa.make_url(url) if _at_signs_before_query(url) <= 1 else None
    if parsed is None or (parsed.host and "@" in parsed.host):
        # A password holding "@" unescaped: the URL is split at its first "@", and the rest
        # of the password is taken for the host name ("Pw@Tail-Of-Secret@host"), or for
        # the host and the database ("Pw@Tail/Secret@host": the lookup of host "Tail"
        # then went out to DNS, and "Tail/Secret@host" into errors and the run's log).
        raise ValueError(
            "the warehouse URL holds more than one '@' before its parameters: write an '@' "
            "in the user name or password as %40 (the URL is not shown: it holds the "
            "password)"
        )
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL (scheme {parsed.drivername!r})")
    return parsed.set(drivername="postgresql+psycopg")


class PostgresResource(dg.ConfigurableResource):
    """Connection to the warehouse.

    ``url`` (or ``$TAXI_WAREHOUSE_URL``) names an existing server; it holds the password,
    so it is read only through the environment and never logged. Unset: the embedded
    server in ``embedded_dir`` is started on first use.
    """

    url: str | None = None
    embedded_dir: str = DEFAULT_EMBEDDED_DIR
    # How long a schema change (a month's swap, a new column) may make the table's other
    # readers wait for it, and how long it keeps trying while long queries hold the table.
    lock_timeout_ms: int = 1000
    lock_retry_s: float = 600.0
    # How long a connection the server refuses for now (at its connection limit, starting
    # up or recovering) is tried again before the step fails (pg.refused_for_now); 0: never.
    connect_retry_s: float = CONNECT_RETRY_S
    _engine: sa.Engine | None = PrivateAttr(default=None)
    _url: str | None = PrivateAttr(default=None)
    _run_watch: RunWatchLease | None = PrivateAttr(default=None)
    # The run's log, for what a connection waits on (outside a run: pg modules' loggers).
    _warn: Callable[[str], None] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        require_setting(
            self.url,
            "TAXI_WAREHOUSE_URL",
            "postgresql://USER:PASSWORD@HOST:PORT/DB or bigquery://PROJECT",
        )
        # A run ended by someone else (max_runtime, Terminate) stops waiting on the server
        # and loads nothing more, whoever started it (run_watch).
        self._run_watch = watch_run(context)
        if context.log is not None:
            self._warn = context.log.warning

    @property
    def _resolved_url(self) -> str:
        if self._url is None:
            self._url = resolve_setting(self.url, "TAXI_WAREHOUSE_URL", None) or embedded_url(
                self.embedded_dir
            )
        return self._url

    def engine(self) -> sa.Engine:
        if self._engine is None:
            # A server that dies or is cut off mid-statement fails it in minutes, not hours.
            url = with_keepalives(sqlalchemy_url(self._resolved_url))
            engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
            # Times are exchanged in ISO form, whatever DateStyle the server, database or
            # role sets: psycopg parses no other.
            iso_dates(engine)
            # A hung server fails a run's connection in seconds, naming the server.
            # A server at its connection limit, or starting, is waited for a while.
            bound_connects(engine, self.describe(), self.connect_retry_s, self._warn)
            # A statement interrupted (Ctrl-C in the CLI, a run terminated) outside the
            # blocks of pg.interrupts is cancelled too, not left running on the server.
            cancel_interrupted_statements(engine)
            # A killed run's statement ends on the server in seconds, not at its end,
            # and frees the month's lock.
            check_for_lost_client(engine, self.describe(), self._warn)
            # A connection lost mid-statement names the server it was to.
            name_lost_server(engine, self.describe())
            # A statement ended at a limit of the server (a full disk, its statement_timeout)
            # names it, and says the rolled-back write is gone.
            name_server_limits(engine, self.describe())
            # A server whose host died while data was on its way to it (a load's COPY) is
            # given up in minutes, where keepalives do not probe.
            watch_silent_peers(engine, self.describe())
            self._engine = engine
        return self._engine

    def lock_waits(self) -> LockWaits:
        return LockWaits(lock_timeout_ms=self.lock_timeout_ms, retry_for_s=self.lock_retry_s)

    def describe(self) -> str:
        """Where the data goes, without credentials (for logs and metadata)."""
        url = sqlalchemy_url(self._resolved_url)
        # libpq fills in what the URL leaves out from PGHOST and PGPORT: the server named
        # is the one connected to.
        host = url.host or url.query.get("host") or os.environ.get("PGHOST") or "unix socket"
        port = url.port or url.query.get("port") or os.environ.get("PGPORT")
        return f"postgresql://{host}{f':{port}' if port else ''}/{url.database}"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_watch is not None:
            self._run_watch.release()
        if self._engine is not None:
            self._engine.dispose()
