"""Helpers for the fault-tolerance tests: real faults, and ways to watch what they leave.

Nothing here mocks the product: it starts and stops real servers, mounts a real (tiny)
filesystem, runs the real ``dagster`` CLI and reads PostgreSQL's own views.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
import pytest
import sqlalchemy as sa

from taxi_assets_tests.slow_link import SlowLink

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


# --- waiting and errors --------------------------------------------------------------


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 60,
    every: float = 0.05,
    tolerate: tuple[type[Exception], ...] = (),
) -> None:
    """Poll ``check`` until it is true; an AssertionError naming ``what`` after ``timeout``.

    Exceptions of the ``tolerate`` types count as "not yet" (a table or instance state
    that another process has not created yet); the last one is chained to the timeout.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except tolerate as error:
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from last


def error_chain(error: dg.SerializableErrorInfo | None) -> list[dg.SerializableErrorInfo]:
    """An error and every cause / context under it, outermost first."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    return chain


def step_failure(result: dg.ExecuteInProcessResult) -> tuple[str, list[dg.SerializableErrorInfo]]:
    """(failing step key, its error chain) of the run's only step failure."""
    failures = result.get_step_failure_events()
    assert len(failures) == 1, [f.step_key for f in failures]
    failure = failures[0]
    return failure.step_key or "", error_chain(failure.step_failure_data.error)


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """The messages (no stack traces) of the step failure's error chain, one per line."""
    return "\n".join(e.message.strip() for e in step_failure(result)[1])


def is_dagster_failure_without_retries(result: dg.ExecuteInProcessResult) -> bool:
    """The step failed by raising ``dagster.Failure`` (not a crash), and was not retried."""
    _, chain = step_failure(result)
    failure = result.get_step_failure_events()[0]
    retried = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    return (
        any(e.cls_name == "Failure" for e in chain)
        and failure.step_failure_data.user_failure_data is not None
        and not retried
    )


def run_warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """User-level warnings (``context.log.warning``) recorded in the run's event log."""
    import logging

    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.level == logging.WARNING and entry.dagster_event is None
    ]


def process_group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- files -----------------------------------------------------------------------------


def all_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included, as sorted relative paths."""
    if not root.exists():
        return []
    if root.is_file():
        return [root.name]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@contextmanager
def tiny_tmpfs(folder: Path, size: str = "256k", read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted on ``folder`` (needs root and CAP_SYS_ADMIN),
    read-only if asked (``chmod`` does not stop root from writing: a read-only mount does).

    Skips the test, with the reason, where mounting is not permitted (containers without
    the capability, non-root users).
    """
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("a tiny tmpfs needs root and the mount command; cannot fill a disk for real")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"{'ro,' if read_only else ''}size={size},mode=0755"]
        + ["tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill_disk(folder: Path, leave_bytes: int) -> Path:
    """Write a filler file until only about ``leave_bytes`` are free on ``folder``'s disk."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as out:
        try:
            out.write(b"\0" * max(free - leave_bytes, 0))
        except OSError:
            pass
    return filler


def add_column(path: Path, name: str, value: str) -> None:
    """Publish the CSV.gz at ``path`` again with one more column, ``name``, holding ``value``
    in every row (a column the contract does not know)."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines = [f"{lines[0]},{name}"] + [f"{line},{value}" for line in lines[1:]]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


# --- PostgreSQL --------------------------------------------------------------------------


def database_name(url: str) -> str:
    return sa.make_url(url).database or ""


# The password of the ``login`` fixture's role: tests check it is shown nowhere.
LOGIN_PASSWORD = "s3cret-never-shown"


def as_admin(pg_url: str, *statements: str) -> None:
    """Run ``statements`` on ``pg_url`` (a superuser's), each committed on its own: what an
    operator does to a server (roles, database settings) before a test's load meets it."""
    from taxi_assets.resources.postgres import sqlalchemy_url

    admin = sa.create_engine(sqlalchemy_url(pg_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        admin.dispose()


def other_backends(engine: sa.Engine, database: str) -> list[tuple[int, str, str]]:
    """(pid, state, query) of every client backend on ``database`` but the caller's own."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT pid, coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            ),
            {"db": database},
        ).all()
    return [tuple(row) for row in rows]


def copy_in_progress(engine: sa.Engine, database: str) -> bool:
    return any(
        state == "active" and query.lstrip().upper().startswith("COPY")
        for _, state, query in other_backends(engine, database)
    )


def copy_progress(engine: sa.Engine, database: str, command: str = "COPY FROM") -> dict[int, int]:
    """Rows each backend's ``command`` (``COPY FROM`` / ``COPY TO``) on ``database`` has
    moved so far, by the backend's pid."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT pid, tuples_processed FROM pg_stat_progress_copy "
                "WHERE datname = :db AND command = :command"
            ),
            {"db": database, "command": command},
        ).all()
    return {pid: moved for pid, moved in rows}


def copy_rows_received(engine: sa.Engine, database: str) -> int | None:
    """Rows a ``COPY ... FROM STDIN`` on ``database`` has received so far (None: no COPY)."""
    return max(copy_progress(engine, database).values(), default=None)


def locks_held(engine: sa.Engine, database: str) -> list[tuple[str, str, bool]]:
    """(lock type, mode, granted) of every lock on ``database`` held by another backend."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT l.locktype, l.mode, l.granted FROM pg_locks AS l "
                "JOIN pg_database AS d ON d.oid = l.database "
                "WHERE d.datname = :db AND l.pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).all()
    return [tuple(row) for row in rows]


def waiting_advisory_locks(engine: sa.Engine, database: str) -> int:
    return sum(
        1 for kind, _, granted in locks_held(engine, database) if kind == "advisory" and not granted
    )


@contextmanager
def restartable_server(folder: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A private embedded PostgreSQL in ``folder``, started as the product starts one
    (:func:`embedded_url`: its bulk-load settings included): its URL and a ``restart()``.

    ``restart()`` stops the server as an operator would (``pg_ctl -w stop -m fast`` as the
    data folder's owner, :func:`taxi_assets.pg.embedded.stop`) and starts it again with
    :func:`embedded_url`, which must hand out the same URL (same data folder and socket).
    """
    from taxi_assets.pg.embedded import embedded_url, stop

    data = folder / "pgdata"
    url = embedded_url(data)

    def restart() -> None:
        assert stop(data), "the private server was not running"
        assert not (data / "postmaster.pid").exists()
        assert embedded_url(data) == url

    try:
        yield url, restart
    finally:
        stop(data)


@contextmanager
def slow_link_to(pg_url: str, folder: Path, bytes_per_s: float) -> Iterator[str]:
    """A URL of ``pg_url``'s database reached through a :class:`SlowLink` carrying
    ``bytes_per_s`` from the client: a Unix socket in ``folder`` (keep its path short) for
    a server on a Unix socket, as the embedded one is, else a port of 127.0.0.1."""
    url = sa.make_url(pg_url)
    socket_folder = url.query.get("host")
    if url.host is None and isinstance(socket_folder, str):
        name = f".s.PGSQL.{url.port or 5432}"  # where libpq looks in a socket folder
        upstream = str(Path(socket_folder) / name)
        with SlowLink(upstream, bytes_per_s, listen=str(folder / name)):
            yield url.update_query_dict({"host": str(folder)}).render_as_string(False)
    else:
        with SlowLink((url.host or "127.0.0.1", url.port or 5432), bytes_per_s) as link:
            assert isinstance(link.address, tuple)
            host, port = link.address
            yield url.set(host=host, port=port).render_as_string(False)


# --- the dagster CLI ----------------------------------------------------------------------


@contextmanager
def process_group(
    command: list[str], env: dict, stop: signal.Signals = signal.SIGKILL
) -> Iterator[subprocess.Popen]:
    """``command`` (output discarded) in a process group of its own, run from the
    repository; at the end the group gets ``stop`` if it still runs, then SIGKILL after
    30 s."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, stop)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def materialize_command(selection: str, partition: str) -> list[str]:
    return [
        *(DAGSTER, "asset", "materialize", "-m", "taxi_assets"),
        *("--select", selection, "--partition", partition),
    ]


def server_processes(data: Path) -> list[psutil.Process]:
    """The embedded server of ``data``: its postmaster first, then every process it forked
    (backends, checkpointer, writers)."""
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data)
    assert info is not None and info.pid is not None
    postmaster = psutil.Process(info.pid)
    return [postmaster, *postmaster.children(recursive=True)]


def garbled_footer(data: bytes) -> bytes:
    """``data`` (a Parquet file) with 50 bytes inside its footer overwritten: pyarrow
    raises a plain OSError ("Couldn't deserialize thrift"), not ArrowInvalid."""
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length + 5
    return data[:start] + b"\xff" * 50 + data[start + 50 :]
