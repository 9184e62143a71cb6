"""The embedded warehouse server runs with PostgreSQL's bulk-load settings.

Real servers (pgserver) in temporary folders: one started by ``embedded_url`` and one
started the way an older version of the project did, still running when this version
arrives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from taxi_assets.pg.embedded import (
    BULK_LOAD_SETTINGS,
    embedded_url,
    pending_bulk_load_settings,
    stop,
)
from taxi_assets.pg.embedded import bulk_load_settings_in_use as running


@pytest.fixture
def tmp_path(embedded_dir: Path) -> Path:
    """This module's servers run in folders outside pytest's basetemp (see ``embedded_dir``
    in conftest.py): a pytest session starting meanwhile closes basetemp's parent to the
    servers' user."""
    return embedded_dir.parent


def wal_bytes_of_a_month_load(url: str) -> int:
    """WAL written by a month-style load: a table created and COPYed in one transaction."""
    with psycopg.connect(url) as connection:
        before = connection.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        with connection.transaction():
            connection.execute("CREATE TABLE month_load (id bigint, note text)")
            with connection.cursor().copy("COPY month_load FROM STDIN (FREEZE)") as copy:
                for row in range(200_000):
                    copy.write_row((row, "a trip of some length"))
        assert before is not None
        written = connection.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before[0],)
        ).fetchone()
    assert written is not None
    return int(written[0])


def test_a_new_embedded_server_writes_no_wal_for_a_month_load(tmp_path: Path) -> None:
    folder = tmp_path / "warehouse"
    url = embedded_url(folder)
    try:
        assert running(url) == BULK_LOAD_SETTINGS
        assert pending_bulk_load_settings(url) == {}
        # ~9 MB of rows; with wal_level=replica the same load writes more than that in WAL.
        assert wal_bytes_of_a_month_load(url) < 1_000_000
        with psycopg.connect(url) as connection:
            started = connection.execute("SELECT pg_postmaster_start_time()").fetchone()
        # A second caller finds the server as it is: no restart.
        assert embedded_url(folder) == url
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT pg_postmaster_start_time()").fetchone() == started
    finally:
        assert stop(folder)


def test_a_running_server_without_the_settings_is_not_restarted_under_its_users(
    tmp_path: Path,
) -> None:
    import pgserver

    folder = (tmp_path / "warehouse").resolve()
    # Started as the project's earlier versions did: pgserver's defaults (wal_level replica).
    old_url = pgserver.get_server(folder, cleanup_mode=None).get_uri()
    try:
        with psycopg.connect(old_url) as in_use:
            assert running(old_url) != BULK_LOAD_SETTINGS
            url = embedded_url(folder)
            # The connection a run holds survives; the settings wait for the next start.
            assert in_use.execute("SELECT 1").fetchone() == (1,)
            # PostgreSQL's defaults (replica, 10 senders) until the next start.
            assert pending_bulk_load_settings(url) == BULK_LOAD_SETTINGS
        assert wal_bytes_of_a_month_load(url) > 5_000_000
        assert stop(folder)
        url = embedded_url(folder)
        assert running(url) == BULK_LOAD_SETTINGS
    finally:
        stop(folder)


def test_is_running_while_another_process_starts_the_server(tmp_path: Path) -> None:
    """``months status`` asks whether the server runs while a run's process may be starting
    it: PostgreSQL writes ``postmaster.pid`` line by line, and pgserver's reader raised an
    AssertionError on a file not yet whole. The answer waits for the start instead."""
    import subprocess
    import sys

    from taxi_assets.pg.embedded import is_running

    folder = (tmp_path / "warehouse").resolve()
    embedded_url(folder)  # created once (initdb), then stopped: the next start is quicker
    assert stop(folder)
    start = (
        "import sys; from taxi_assets.pg.embedded import embedded_url; embedded_url(sys.argv[1])"
    )
    starter = subprocess.Popen([sys.executable, "-c", start, str(folder)])
    try:
        answers = set()
        while starter.poll() is None:
            answers.add(is_running(folder))
        assert starter.returncode == 0
        assert is_running(folder)
        assert True in answers
    finally:
        starter.kill()
        starter.wait()
        stop(folder)


# Hung processes, for real: each command below runs as its own process (the code of this
# checkout: PYTHONPATH), with a 1 s bound on lock waits so that a timeout is quick.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_THE_SERVER = (
    "import sys; from taxi_assets.pg.embedded import embedded_url; print(embedded_url(sys.argv[1]))"
)
# A run's use of the server: its URL, one query, then the process exits.
A_RUN = """
import sys
import psycopg
from taxi_assets.pg.embedded import embedded_url
with psycopg.connect(embedded_url(sys.argv[1]), autocommit=True) as connection:
    print(connection.execute("SELECT 41 + 1").fetchone()[0], flush=True)
"""
# pgserver's start lock as pgserver (fasteners) takes it, held by a process that stops.
HOLD_PGSERVERS_LOCK_AND_STOP = """
import fcntl, os, signal, sys
handle = open(sys.argv[1], "a")
fcntl.lockf(handle, fcntl.LOCK_EX)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def command_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "TAXI_WAREHOUSE_URL"}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), "TAXI_EMBEDDED_LOCK_WAIT_S": "1", **extra}


def run_command(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A command of the project's CLI (or ``-c`` code) as a process; a hang fails the test."""
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30
    )


def wait_until_stopped(pid: int) -> None:
    import psutil

    deadline = time.monotonic() + 30
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.01)


def test_a_start_hung_midway_times_the_other_commands_out_naming_it(tmp_path: Path) -> None:
    """A process stopped (SIGSTOP, as Ctrl-Z does) in the middle of starting the server
    holds the folder's settings lock. ``warehouse stop``, ``warehouse start`` (what a run
    does) and ``months status`` waited for it for ever; they give up after the bound, naming
    the lock file and the stopped process. Let go on, the start finishes and the server
    runs as usual."""
    import psutil

    from taxi_assets.pg.embedded import is_running

    folder = (tmp_path / "data" / "warehouse").resolve()
    embedded_url(folder)  # created once (initdb), then stopped: the next start is a start
    assert stop(folder)
    env = command_env()
    starter = subprocess.Popen(
        [sys.executable, "-c", START_THE_SERVER, str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Mid-start: pgserver runs pg_ctl, under the settings lock.
        deadline = time.monotonic() + 60
        while not psutil.Process(starter.pid).children(recursive=True):
            assert starter.poll() is None and time.monotonic() < deadline, "no start seen"
            time.sleep(0.002)
        os.kill(starter.pid, signal.SIGSTOP)
        wait_until_stopped(starter.pid)

        lock = folder.parent / ".warehouse.settings.lock"
        commands = {
            "warehouse stop": (["-m", "taxi_assets.cli", "warehouse", "stop", str(folder)], None),
            "warehouse start": (["-m", "taxi_assets.cli", "warehouse", "start", str(folder)], None),
            "months status": (
                ["-m", "taxi_assets.cli", "months", "status", "--lake", str(tmp_path / "lake")],
                tmp_path,  # the default warehouse folder, ./data/warehouse
            ),
        }
        for name, (args, cwd) in commands.items():
            began = time.monotonic()
            done = run_command(args, env, cwd)
            assert done.returncode == 1, (name, done.stdout, done.stderr)
            said = done.stderr
            assert said.startswith("error: "), (name, said)
            assert f"gave up after waiting 1 s for the lock {lock}" in said, (name, said)
            assert f"held by process {starter.pid} (stopped: " in said, (name, said)
            assert "Traceback" not in said, (name, said)
            assert time.monotonic() - began < 20, name

        os.kill(starter.pid, signal.SIGCONT)
        out, _ = starter.communicate(timeout=60)
        assert starter.returncode == 0 and out.startswith("postgresql://")
        assert is_running(folder)
    finally:
        starter.kill()
        starter.wait()
        stop(folder)


def test_a_process_hung_holding_pgservers_lock_holds_up_no_run(tmp_path: Path) -> None:
    """pgserver's start lock is one file for every server of the system user, and every
    process that took a server's URL took that lock, and again when it exited. One process
    stopped while holding it (SIGSTOP) made every run hang, at its start or at its exit.
    Now a run of a running server does not touch it, stopping needs no such lock, and
    starting a stopped server gives up after the bound, naming the file and the holder."""
    import shutil
    import tempfile

    # pgserver's lock under a runtime folder of this test's own: other processes on this
    # machine keep theirs.
    runtime = Path(tempfile.mkdtemp(prefix="pgrt", dir="/tmp"))
    env = command_env(XDG_RUNTIME_DIR=str(runtime))
    folder = (tmp_path / "data" / "warehouse").resolve()
    cli = ["-m", "taxi_assets.cli", "warehouse"]
    holder: subprocess.Popen[bytes] | None = None
    try:
        assert run_command([*cli, "start", str(folder)], env).returncode == 0
        pgserver_lock = runtime / "python_PostgresServer" / ".lockfile"
        assert pgserver_lock.exists()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_PGSERVERS_LOCK_AND_STOP, str(pgserver_lock)], env=env
        )
        wait_until_stopped(holder.pid)

        # platformdirs warns on stderr about a runtime folder not private to its user, and a
        # start as root opens it to the server's user when the socket goes there (pgserver
        # does so when the data folder's path is too long for a socket: seen in CI).
        runtime.chmod(0o700)
        run = run_command(["-c", A_RUN, str(folder)], env)
        assert (run.returncode, run.stdout, run.stderr) == (0, "42\n", "")
        assert run_command([*cli, "stop", str(folder)], env).stdout == "stopped\n"

        began = time.monotonic()
        start = run_command([*cli, "start", str(folder)], env)
        assert start.returncode == 1 and time.monotonic() - began < 20
        assert start.stderr.startswith("error: starting an embedded server: gave up after ")
        assert f"for the lock {pgserver_lock}, held by process {holder.pid} (stopped: " in (
            start.stderr
        )
        assert "Traceback" not in start.stderr  # no exit hook waiting again

        holder.kill()  # a holder that ends releases the lock
        holder.wait()
        start = run_command([*cli, "start", str(folder)], env)
        assert start.returncode == 0, start.stderr
        run = run_command(["-c", A_RUN, str(folder)], env)
        assert (run.returncode, run.stdout) == (0, "42\n")
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        stop(folder)
        shutil.rmtree(runtime, ignore_errors=True)


TRY_LOCKF = """
import fcntl, sys
with open(sys.argv[1], "a") as handle:
    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
"""


def test_pgservers_start_lock_admits_one_thread_of_a_process_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounded replacement of pgserver's start lock counted its holds per process: a
    second thread found the count above 0, took itself for the holder and went in while
    the first was starting a server (``lockf`` locks belong to the process, so the file
    did not stop it either). No path of the project takes it from two threads today (a
    run's steps run one after another in one thread; sensors do not start the
    warehouse); it is now held by one thread at a time, re-entrant in that thread, and a
    thread waits for it with the same bound as a process."""
    import threading

    import fasteners  # type: ignore[import-untyped]
    from pgserver import PostgresServer

    from taxi_assets.bounded_lock import LockWaitTimeout
    from taxi_assets.pg.embedded import _bounded_pgserver_lock

    # pgserver's lock on a file of this test's own: other processes keep theirs.
    lock_file = tmp_path / ".lockfile"
    monkeypatch.setattr(PostgresServer, "lock_path", lock_file)
    monkeypatch.setattr(PostgresServer, "_lock", fasteners.InterProcessLock(lock_file))
    monkeypatch.setenv("TAXI_EMBEDDED_LOCK_WAIT_S", "10")
    first_in, let_go, second_in = threading.Event(), threading.Event(), threading.Event()
    failures: list[LockWaitTimeout] = []

    def first() -> None:
        with _bounded_pgserver_lock(), _bounded_pgserver_lock():  # re-entered, as in a start
            first_in.set()
            let_go.wait(30)

    def second() -> None:
        try:
            with _bounded_pgserver_lock():
                second_in.set()
        except LockWaitTimeout as error:
            failures.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_in.wait(10)
    threads[1].start()
    try:
        assert not second_in.wait(0.5), "a second thread went in while the first held it"
    finally:
        let_go.set()
        for thread in threads:
            thread.join(30)
    assert second_in.is_set() and not failures
    # Released by both: another process takes it at once.
    assert run_command(["-c", TRY_LOCKF, str(lock_file)], command_env()).returncode == 0

    # A thread waits at most the bound, and the error says who holds the lock.
    for event in (first_in, let_go, second_in):
        event.clear()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_in.wait(10)
    monkeypatch.setenv("TAXI_EMBEDDED_LOCK_WAIT_S", "0.2")
    threads[1].start()
    threads[1].join(10)
    let_go.set()
    threads[0].join(30)
    assert not second_in.is_set()
    assert len(failures) == 1
    said = str(failures[0])
    assert said.startswith("starting an embedded server: gave up after waiting 0.2 s for "), said
    assert f"the lock {lock_file}, held by another thread of this process ({os.getpid()}: " in said


def test_a_hung_server_does_not_keep_a_status_read_holding_the_lock(tmp_path: Path) -> None:
    """A status read that started the server asks it, under the settings lock, who else is
    connected before stopping it. A server that does not answer (its postmaster stopped
    with SIGSTOP) kept that read, and so the lock, waiting for ever; the connection now
    gives up after ``CONNECT_TIMEOUT_S`` (10 s) and the read fails saying so."""
    from pgserver.utils import PostmasterInfo

    from taxi_assets.pg.embedded import is_running

    folder = (tmp_path / "data" / "warehouse").resolve()
    env = command_env()
    # Started by a process that then exits: nobody holds the server's in-use lock.
    assert (
        run_command(["-m", "taxi_assets.cli", "warehouse", "start", str(folder)], env).returncode
        == 0
    )
    info = PostmasterInfo.read_from_pgdata(folder)
    assert info is not None
    os.kill(info.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        read = run_command(
            [
                "-c",
                "import sys; from taxi_assets.pg.embedded import stop_if_unused; "
                "stop_if_unused(sys.argv[1])",
                str(folder),
            ],
            env,
        )
        assert read.returncode == 1
        assert "psycopg.errors.ConnectionTimeout: connection timeout expired" in read.stderr
        assert time.monotonic() - began < 25  # CONNECT_TIMEOUT_S (10 s), and the start-up
    finally:
        os.kill(info.pid, signal.SIGCONT)
        stop(folder)
    assert not is_running(folder)


def test_the_wait_bound_must_be_a_number_of_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from taxi_assets.pg.embedded import DEFAULT_LOCK_WAIT_S, LOCK_WAIT_ENV, lock_wait_s

    monkeypatch.delenv(LOCK_WAIT_ENV, raising=False)
    assert lock_wait_s() == DEFAULT_LOCK_WAIT_S
    monkeypatch.setenv(LOCK_WAIT_ENV, "2.5")
    assert lock_wait_s() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(LOCK_WAIT_ENV, bad)
        with pytest.raises(ValueError, match=f"TAXI_EMBEDDED_LOCK_WAIT_S='{bad}': not a number"):
            lock_wait_s()
