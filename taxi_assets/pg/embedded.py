"""The embedded PostgreSQL server used when no ``TAXI_WAREHOUSE_URL`` is set.

Why ``pgserver`` (PyPI): it ships PostgreSQL binaries in a wheel, so a fresh machine
needs only Python and pip; it runs the server as a dedicated system user when started
as root (PostgreSQL refuses to run as root); it listens on a unix socket only (no TCP
port to collide with, nothing reachable from the network); and it serialises
concurrent starts from several run processes with a file lock. The server keeps running
after the first run that needed it, so later runs connect in milliseconds;
``python -m taxi_assets.cli warehouse stop`` (``make stop``) stops it.

Starting and stopping happen under a lock per data folder, and pgserver's start under
pgserver's own lock (one per system user). A process hung while holding either (stopped
with Ctrl-Z, a start that never ends) would make every other command wait for ever: they
wait at most ``lock_wait_s()`` (``TAXI_EMBEDDED_LOCK_WAIT_S``, default 120 s) and then fail
naming the lock file and the process holding it (``taxi_assets.bounded_lock``).

pgserver creates a new folder (initdb) and starts it; an existing folder's server is
started by ``embedded_start``, which bounds the wait and names why a start failed (pgserver
waits for ever for a server that never says "ready"). Whether a server runs is read from
``postmaster.pid`` by ``postmaster``, which tells a killed server's file from a live one.

The server runs with PostgreSQL's bulk-load settings (``BULK_LOAD_SETTINGS``). Every month
is COPYed into a table created in the same transaction (``month_swap``); with
``wal_level = minimal`` PostgreSQL writes no WAL for those rows and syncs the table's files
at commit instead, which is as durable. A 20M-row FHVHV month writes 8 MB of WAL instead of
3.7 GB. The price: no streaming replicas or WAL archiving, which a local single-server
warehouse does not have; a production server (``TAXI_WAREHOUSE_URL``) keeps its own
configuration (docs/deployment.md).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shlex
import shutil
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from taxi_assets.bounded_lock import (
    LockWaitTimeout,
    ReentrantLockfLock,
    exclusive_flock,
    wait_setting,
)
from taxi_assets.pg import embedded_start

# This module's connections wait at most this: a server that does not answer (hung,
# stopped with SIGSTOP) must not keep this process, and so the settings lock some of them
# are made under, waiting for ever.
from taxi_assets.pg.connect_timeout import CONNECT_TIMEOUT_S
from taxi_assets.pg.embedded_start import EmbeddedStartError
from taxi_assets.pg.postmaster import (
    live_postmaster,
    refuse_unseen_server_of,
    remove_stale_pid_file,
)
from taxi_assets.pg.unseen_server import UnseenServerError

if TYPE_CHECKING:
    import psycopg
DEFAULT_EMBEDDED_DIR = "./data/warehouse"
# What a start or stop of the embedded server fails with, each naming the folder in one
# line for a person: another process hung mid-start or mid-stop (past the bound), a
# server that did not start (its log's last lines), another container's server holding
# the folder.
EMBEDDED_SERVER_ERRORS = (LockWaitTimeout, EmbeddedStartError, UnseenServerError)
# PostgreSQL's "Populating a Database" advice for a server without replicas; minimal WAL
# requires that no WAL sender may run.
BULK_LOAD_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0"}

# The longest a start or stop legitimately holds a lock: initdb of a new folder, a start,
# the restart with the bulk-load settings; pg_ctl gives a stop 60 s. Twice that, so that
# only a hung holder times a waiter out.
DEFAULT_LOCK_WAIT_S = 120.0
LOCK_WAIT_ENV = "TAXI_EMBEDDED_LOCK_WAIT_S"


def lock_wait_s() -> float:
    """How long to wait for another process's start or stop of an embedded server."""
    return wait_setting(LOCK_WAIT_ENV, DEFAULT_LOCK_WAIT_S)


# pgserver keeps its start lock under platformdirs' runtime folder, which warns when
# XDG_RUNTIME_DIR is unset (containers, CI, cron) and then uses /tmp/runtime-UID: the
# folder we want, so the warning is noise on every command that starts the server.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def embedded_url(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> str:
    """Start (or find) the embedded server for ``data_dir``; a ``postgresql://`` URL to it.

    A server this call starts gets the bulk-load settings (``ALTER SYSTEM``) and restarts
    at once, before anyone else has its URL. A server already running is handed out as it
    is (no query on this path, which every run takes): one started by an older version
    keeps its settings, since runs may be using it, until its next start (``make stop``).

    Raises ``LockWaitTimeout`` when another process holds the start for longer than
    ``lock_wait_s()``, ``UnseenServerError`` when a server this process cannot see (another
    container's) holds the folder."""
    folder = Path(data_dir).expanduser().resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One process at a time starts and restarts: pgserver's own lock covers only its start.
    with _locked(folder, "starting the embedded PostgreSQL server"):
        # Before the URL is out: a status read that started the server may not stop it
        # under this process (stop_if_unused).
        _hold_in_use(folder)
        running = live_postmaster(folder)
        if running is not None:
            # From postmaster.pid, not from a pgserver handle: a handle takes pgserver's
            # lock (shared by every server of this system user) now and again when this
            # process exits, so one process hung holding it would hang every run's exit.
            return str(running.get_uri())
        # Left by a killed server (its PID now a zombie or another process's): pgserver
        # would take it for a running server, and PostgreSQL refuses to start over it.
        # Unless a server of another PID namespace answers for the folder (raises).
        remove_stale_pid_file(folder)
        url = _start(folder)
        if _persist_bulk_load_settings(url):
            _restart(folder)
    return url


def _start(folder: Path) -> str:
    """Initialise (first time) and start the server of ``folder``; its URL. Raises
    ``EmbeddedStartError`` naming the reason when the server does not start."""
    import pgserver

    # Taken here, with a bound, before the handle exists: pgserver's constructor registers
    # its exit hook, then takes this lock; a wait failing there would leave a hook that
    # waits as long again when the process exits. Also around a start without pgserver:
    # processes of earlier versions start with pgserver only.
    with _bounded_pgserver_lock():
        if exists(folder):
            # Not pgserver's start: it waits for ever for a server that never says
            # "ready" (embedded_start).
            embedded_start.start(folder, _server_user(folder))
            info = live_postmaster(folder)
            assert info is not None  # started and ready: checked
            return str(info.get_uri())
        with embedded_start.start_failures_explained(folder):
            server = pgserver.get_server(folder, cleanup_mode=None)
        # With cleanup_mode=None the hook only takes this process's pid off the handle
        # list, under pgserver's lock, at exit: done now, so that a process hung holding
        # that lock cannot hang this one's exit.
        atexit.unregister(server._cleanup)
        server.global_process_id_list.get_and_remove(os.getpid())
        # A handle this process cached before a stop is returned as is, not started.
        server.ensure_postgres_running()
    return str(server.get_uri())


# One replacement of pgserver's lock per process, also when threads start servers at once.
_INSTALLING = threading.Lock()


def _bounded_pgserver_lock() -> ReentrantLockfLock:
    """pgserver's start lock (one ``lockf`` file per system user, taken without a time
    limit by every handle's creation), made to wait at most ``lock_wait_s()`` and then fail
    naming the holder, reentrant (held across the handle's creation, which takes it too)
    and held by one thread at a time. pgserver has no setting for it: its class-level
    lock object, which it only uses in ``with``, is replaced by one on the same file."""
    from pgserver import PostgresServer

    with _INSTALLING:
        lock = PostgresServer._lock
        if not isinstance(lock, ReentrantLockfLock):
            lock = ReentrantLockfLock(
                Path(PostgresServer.lock_path),
                lock_wait_s,
                "starting an embedded server",
                LOCK_WAIT_ENV,
            )
            PostgresServer._lock = lock
    return lock


def psql_command(url: str) -> str:
    """A psql command line for the embedded server at ``url`` (its socket folder, user and
    database): psql on the PATH, else the one in pgserver's wheel."""
    from pgserver._commands import POSTGRES_BIN_PATH  # not in pgserver.__all__

    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    psql = "psql" if shutil.which("psql") else str(POSTGRES_BIN_PATH / "psql")
    database = parts.path.lstrip("/") or "postgres"
    return shlex.join([psql, "-h", socket_dir, "-U", parts.username or "postgres", database])


@contextmanager
def _connected(url: str, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A psycopg connection to the server at ``url``, waiting at most ``CONNECT_TIMEOUT_S``
    for it, given up when an interruption leaves the block (Ctrl-C, in the CLI or not):
    hung up, its statement cancelled, closed. Else leaving the block mid-query would send
    a ROLLBACK ("another command is already in progress", logged by psycopg) and a
    statement waiting on the server (for a lock) would go on, its client gone; and Ctrl-C
    outside the CLI would wait 10 s for a stopped server first (pg.interrupts)."""
    import psycopg

    from taxi_assets.pg.interrupts import closed_if_interrupted

    # closed_if_interrupted inside: the connection is closed before psycopg's exit sees it.
    with (
        psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S) as driver,
        closed_if_interrupted(driver),
    ):
        yield driver


def pending_bulk_load_settings(url: str) -> dict[str, str]:
    """The bulk-load settings the server at ``url`` does not run with yet (name -> value)."""
    with _connected(url) as connection:
        return _pending(connection)


def bulk_load_settings_in_use(url: str) -> dict[str, str]:
    """What the server at ``url`` runs with, for each bulk-load setting's name."""
    with _connected(url) as connection:
        return _in_use(connection)


def _in_use(connection: psycopg.Connection) -> dict[str, str]:
    rows = connection.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(BULK_LOAD_SETTINGS),)
    ).fetchall()
    return dict(rows)


def _pending(connection: psycopg.Connection) -> dict[str, str]:
    running = _in_use(connection)
    return {name: value for name, value in BULK_LOAD_SETTINGS.items() if running[name] != value}


def _persist_bulk_load_settings(url: str) -> bool:
    """Write the settings the server lacks to its configuration; True if there were any."""
    with _connected(url, autocommit=True) as connection:
        missing = _pending(connection)
        for name, value in missing.items():
            # ALTER SYSTEM takes no parameters; names and values are constants here.
            connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    return bool(missing)


def _restart(folder: Path) -> None:
    embedded_start.restart(folder, _server_user(folder))


def _settings_lock(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.settings.lock"


# Every process that got an embedded server's URL holds a shared lock on this file until
# it exits (a run's process, a CLI command): "the server is in use". Held by the open
# descriptor, so a killed process releases it.
_IN_USE: dict[Path, int] = {}


def _in_use_lock(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.in-use.lock"


def _hold_in_use(folder: Path) -> None:
    if folder in _IN_USE:
        return
    descriptor = os.open(_in_use_lock(folder), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    _IN_USE[folder] = descriptor


def _release_in_use(folder: Path) -> None:
    descriptor = _IN_USE.pop(folder, None)
    if descriptor is not None:
        os.close(descriptor)


@contextmanager
def _locked(folder: Path, doing: str) -> Iterator[None]:
    """The folder's settings lock, waited for at most ``lock_wait_s()``."""
    with exclusive_flock(
        _settings_lock(folder), lock_wait_s(), f"{doing} of {folder}", LOCK_WAIT_ENV
    ):
        yield


def is_running(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Whether the embedded server of ``data_dir`` runs (nothing is started); a server
    this process cannot see (another container's) does not. Waits for a start under way
    in another process (its ``postmaster.pid`` is written line by line), at most
    ``lock_wait_s()`` (then ``LockWaitTimeout``)."""
    folder = Path(data_dir).expanduser().resolve()
    if not folder.exists():
        return False
    with _locked(folder, "checking whether the embedded PostgreSQL server runs"):
        return _running(folder)


def exists(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Whether ``data_dir`` holds an embedded server's database (nothing is created)."""
    return (Path(data_dir).expanduser().resolve() / "PG_VERSION").is_file()


def _running(folder: Path) -> bool:
    # Not pgserver's PostmasterInfo.is_running: any process with the file's PID passed.
    return live_postmaster(folder) is not None


def stop(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Stop the embedded server of ``data_dir`` if one runs; True if it was running.
    Waits for a start or stop under way at most ``lock_wait_s()`` (then ``LockWaitTimeout``).
    A server this process cannot see (another container's) is not stopped from here:
    ``UnseenServerError``, rather than "not running"."""
    # pgserver builds its command wrappers at import time: mypy cannot see them.
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    folder = Path(data_dir).expanduser().resolve()
    if not folder.exists():
        return False
    with _locked(folder, "stopping the embedded PostgreSQL server"):
        if not _running(folder):
            refuse_unseen_server_of(folder)
            return False
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=folder, user=_server_user(folder))
    return True


def in_use(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Whether a process that got ``data_dir``'s URL still runs (a run, a command, a
    notebook): stopping the server now would fail what it is doing. For a process that
    has not got the URL itself (``warehouse stop``): its own use would count."""
    folder = Path(data_dir).expanduser().resolve()
    if not folder.exists():
        return False
    descriptor = os.open(_in_use_lock(folder), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing also releases the lock if it was taken
    return False


# How long a session that just closed may still be listed by pg_stat_activity.
SESSION_EXIT_WAIT_S = 2.0


def stop_if_unused(data_dir: str | Path = DEFAULT_EMBEDDED_DIR) -> bool:
    """Stop the embedded server of ``data_dir`` unless another process uses it: one that
    got its URL and still runs (a run, another command), or any other session connected
    to it (``psql``). True if stopped. For a command that started the server only to read
    it: a run that began meanwhile keeps its server."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    folder = Path(data_dir).expanduser().resolve()
    if not folder.exists():
        return False
    with _locked(folder, "stopping the embedded PostgreSQL server if unused"):
        _release_in_use(folder)  # this process's own use is over
        if not _running(folder):
            return False
        descriptor = os.open(_in_use_lock(folder), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a process that got the URL still runs
            if _other_sessions(folder):
                return False
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=folder, user=_server_user(folder))
            return True
        finally:
            os.close(descriptor)


def _other_sessions(folder: Path) -> bool:
    """Whether a client other than this check is connected (sessions this process just
    closed may be listed for a moment: waited for)."""
    import time

    info = live_postmaster(folder)
    assert info is not None  # running: checked under the settings lock
    deadline = time.monotonic() + SESSION_EXIT_WAIT_S
    with _connected(str(info.get_uri()), autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
            if not row or not row[0]:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.05)


def _server_user(folder: Path) -> str | None:
    """The system user to run pg_ctl as: the data folder's owner, if that is not us."""
    owner = folder.owner()
    return owner if owner != _current_user() else None


def _current_user() -> str:
    import getpass

    return getpass.getuser()
