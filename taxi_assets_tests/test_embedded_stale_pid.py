"""A ``postmaster.pid`` left by a killed server is not a running server; one written by a
server of another PID namespace is not a stale file.

Real servers (pgserver) in temporary folders, killed with SIGKILL; real processes in the
PID the file names: a zombie postmaster, a ``sleep``, another folder's server; a real
server started in a new PID namespace (``unshare``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from taxi_assets.pg.embedded import embedded_url, is_running, stop

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Starts the server and keeps it as its child. PR_SET_CHILD_SUBREAPER (36): the postmaster,
# orphaned when pg_ctl exits, is reparented to this process instead of PID 1; this process
# never waits for it, so once killed it stays a zombie, as under a container's PID 1 that
# does not reap (a Dagster process run as PID 1, without an init).
START_AND_KEEP_ORPHANS = """
import ctypes, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
from taxi_assets.pg.embedded import embedded_url
print(embedded_url(sys.argv[1]), flush=True)
sys.stdin.read()
"""


def answers(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=5) as connection:
        return connection.execute("SELECT 41 + 1").fetchone() == (42,)


def pid_in_file(folder: Path) -> int:
    return int((folder / "postmaster.pid").read_text().split()[0])


def kill_server(folder: Path) -> int:
    """SIGKILL the folder's postmaster and its children, as the OOM killer or a power cut
    would, and wait until each has died (a zombie has: it holds no shared memory); the
    postmaster's PID."""
    pid = pid_in_file(folder)
    postmaster = psutil.Process(pid)
    killed = [postmaster, *postmaster.children(recursive=True)]
    # The postmaster first: it would restart children that die before it.
    for process in killed:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:  # a backend that ended meanwhile
            pass
    deadline = time.monotonic() + 10
    while any(running(process) for process in killed):
        assert time.monotonic() < deadline, "a killed server process did not die"
        time.sleep(0.01)
    return pid


def dynamic_shared_memory(folder: Path) -> set[Path]:
    """The POSIX shared memory files (``/dev/shm/PostgreSQL.*``) the processes of the
    folder's server map: the segments a SIGKILL leaves behind."""
    postmaster = psutil.Process(pid_in_file(folder))
    found: set[Path] = set()
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        except FileNotFoundError:  # a backend that ended meanwhile
            continue
        found |= {Path(part) for part in maps.split() if part.startswith("/dev/shm/PostgreSQL.")}
    return found


def running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER")
def test_a_killed_server_left_a_zombie_is_started_again(embedded_dir: Path) -> None:
    """Its postmaster.pid names a zombie: a process exists, no server. The URL read from
    the file was handed out (connection refused), and ``stop`` waited pg_ctl's 60 s for
    it and failed. Now the server counts as stopped and starts again."""
    folder = embedded_dir.resolve()
    keeper = keeper_process([sys.executable, "-c", START_AND_KEEP_ORPHANS, str(folder)])
    try:
        assert keeper.stdout is not None
        assert keeper.stdout.readline().startswith("postgresql://")
        segments = dynamic_shared_memory(folder)
        assert segments
        killed = kill_server(folder)
        assert psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
        assert all(segment.exists() for segment in segments)

        assert not is_running(folder)
        assert not stop(folder)
        url = embedded_url(folder)
        assert answers(url)
        assert pid_in_file(folder) != killed
        assert psutil.Process(killed).status() == psutil.STATUS_ZOMBIE  # still there
        # The start removed what the killed server left in /dev/shm (PostgreSQL finds it
        # through the old SysV segment, keyed by the folder's inode, not through the
        # removed postmaster.pid): nothing for the test to clean up.
        assert not any(segment.exists() for segment in segments)
    finally:
        keeper.kill()
        keeper.wait()
        stop(folder)


def keeper_process(command: list[str]) -> subprocess.Popen[str]:
    """A Python script (``command``) that starts a server with this project's code, prints
    its URL and keeps it until its input closes."""
    return subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def another_servers_postmaster(pg_server_url: str) -> int:
    with psycopg.connect(pg_server_url) as connection:
        row = connection.execute("SHOW data_directory").fetchone()
    assert row is not None
    pid_file = Path(row[0]) / "postmaster.pid"
    if not pid_file.exists():
        pytest.skip("the test server is not on this machine (TEST_DATABASE_URL)")
    return int(pid_file.read_text().split()[0])


# "nobody": the PID is free (PostgreSQL itself removes such a file; it always worked).
@pytest.mark.parametrize("holder", ["nobody", "a sleep", "another folder's server"])
def test_a_pid_file_naming_another_process_is_no_server(
    embedded_dir: Path, holder: str, sleeper: int, pg_server_url: str
) -> None:
    """After a reboot (or a container's restart) the PID in a killed server's
    postmaster.pid may be another process's. It counted as the server: its URL was handed
    out and led nowhere, a start was skipped, and ``stop`` had pg_ctl send its stop
    signal to that process (here it runs as root, the server as pgserver's user: refused). Now only a postgres process working in this folder counts."""
    folder = embedded_dir.resolve()
    embedded_url(folder)
    old_pid = pid_in_file(folder)
    pid_file = (folder / "postmaster.pid").read_text()
    lines = pid_file.splitlines()  # line 4: the port, 5: the socket's folder
    socket_lock = Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock"
    socket_lock_text = socket_lock.read_text()
    assert stop(folder)
    # The files a SIGKILL leaves, their PID now the other process's.
    if holder == "nobody":
        gone = subprocess.Popen(["true"])
        gone.wait()
        other = gone.pid
    else:
        other = sleeper if holder == "a sleep" else another_servers_postmaster(pg_server_url)
    (folder / "postmaster.pid").write_text(pid_file.replace(str(old_pid), str(other), 1))
    socket_lock.write_text(socket_lock_text.replace(str(old_pid), str(other), 1))

    assert not is_running(folder)
    assert not stop(folder)  # nothing signalled
    url = embedded_url(folder)
    assert answers(url)
    assert pid_in_file(folder) != other
    if holder != "nobody":
        assert psutil.Process(other).status() != psutil.STATUS_ZOMBIE  # not signalled
    assert answers(pg_server_url)
    assert stop(folder)


# Root without CAP_SYS_PTRACE (a container's default): another user's /proc/PID/cwd is
# unreadable, its command line is not. setpriv drops the capability for real.
JUDGE_WITHOUT_PTRACE = """
import sys
from pathlib import Path
from taxi_assets.pg.postmaster import remove_stale_pid_file
print(remove_stale_pid_file(Path(sys.argv[1])))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="root, with setpriv to drop CAP_SYS_PTRACE",
)
def test_a_live_server_started_through_a_symlink_is_not_stale_without_ptrace(
    embedded_dir: Path,
) -> None:
    """A live server whose working directory cannot be read (root in a container runs it
    as pgserver's user) was judged by its ``-D`` text alone: started through another
    spelling of the folder (a symlink), it counted as stale and its postmaster.pid was
    removed, which makes PostgreSQL shut that live server down within a minute."""
    from taxi_assets.pg import embedded, embedded_start

    folder = embedded_dir.resolve()
    embedded_url(folder)
    assert stop(folder)
    link = folder.parent / "warehouse-link"
    link.symlink_to(folder)
    try:
        # pg_ctl -D names the link (embedded_start's own wait reads the resolved folder).
        options = ["-w", "-o", '-h ""', "-o", f"-k {folder}", "-l", str(folder / "log")]
        embedded_start._pg_ctl(link, embedded._server_user(folder), [*options, "start"], "start")
        pid = pid_in_file(folder)
        if psutil.Process(pid).username() == "root":
            pytest.skip("the server runs as root: its working directory is readable")
        judged = subprocess.run(
            ["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace"]
            + [sys.executable, "-c", JUDGE_WITHOUT_PTRACE, str(folder)],
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert judged.stdout.strip() == "False", judged.stderr
        assert pid_in_file(folder) == pid
    finally:
        stop(folder)
        for process in psutil.process_iter(["cmdline"]):  # left running without its file
            if str(link) in (process.info["cmdline"] or []):
                process.kill()


# The embedded server of a folder started by PID 1 of a new PID namespace, which prints its
# URL, waits for a line on stdin (or its end: pytest killed) and stops the server: at its
# exit the kernel SIGKILLs what is left in the namespace, which would leave the server's
# shared memory behind.
START_AND_WAIT = """
import sys
from taxi_assets.pg.embedded import embedded_url, stop
print(embedded_url(sys.argv[1]), flush=True)
sys.stdin.readline()
stop(sys.argv[1])
"""
# Another container: its own PID and IPC namespaces (Docker's default), and its own mount
# namespace, which /proc needs; the data folder (and the socket in it) shared.
ANOTHER_CONTAINER = ["--pid", "--ipc", "--mount-proc"]
# A container of the same Kubernetes pod: its own PID namespace, the pod's IPC namespace.
SAME_POD = ["--pid", "--mount-proc"]


def unshare_works(flags: list[str]) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", *flags, "--fork", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces")
@pytest.mark.parametrize(
    ("namespaces", "sign"),
    [(ANOTHER_CONTAINER, "socket"), (SAME_POD, "shared memory")],
    ids=["another-container", "same-pod-socket-out-of-sight"],
)
def test_a_server_of_another_pid_namespace_keeps_its_pid_file(
    embedded_dir: Path, namespaces: list[str], sign: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data folder shared with a server of another PID namespace (another container
    mounting the same volume; here a real server started under ``unshare``): its
    postmaster.pid names a PID that is no server here, so the file was judged stale and
    removed by the next start, which makes PostgreSQL shut that live server down; from
    another container the start then ran a second server on the same folder beside it
    (seen), in the same pod it failed ("pre-existing shared memory block is still in
    use"). Now a server answering on the file's socket, or attached to its shared memory,
    is "running, not ours": the start and ``stop`` fail naming the folder, the file stays.

    Each sign alone: a separate IPC namespace hides the shared memory (the socket, in the
    shared folder, answers); in the same-pod case the socket file is unlinked after the
    start, standing for a socket folder private to the other container (pgserver puts it
    outside the data folder when the folder's path is too long for a socket): that one
    part is simulated."""
    from taxi_assets import cli
    from taxi_assets.pg.unseen_server import UnseenServerError

    if os.geteuid() != 0 or not unshare_works(namespaces):
        pytest.skip(f"unshare {' '.join(namespaces)} needs root (CAP_SYS_ADMIN)")
    folder = embedded_dir.resolve()
    keeper = keeper_process(
        ["unshare", *namespaces, "--fork", sys.executable, "-c", START_AND_WAIT, str(folder)]
    )
    try:
        assert keeper.stdout is not None
        url = keeper.stdout.readline().strip()
        assert url.startswith("postgresql://"), url
        pid_file = (folder / "postmaster.pid").read_text()
        socket_file = folder / f".s.PGSQL.{pid_file.splitlines()[3]}"
        if sign == "shared memory":
            socket_file.unlink()
        # Its PID means nothing here: the PID check alone takes the file for stale.
        assert not is_running(folder)

        with pytest.raises(UnseenServerError) as raised:
            embedded_url(folder)
        said = str(raised.value)
        assert f"the data folder {folder} is held by a PostgreSQL server this process " in said
        assert f"names PID {pid_file.split()[0]}, " in said
        assert sign in said and ({"socket", "shared memory"} - {sign}).pop() not in said
        assert (folder / "postmaster.pid").read_text() == pid_file
        with pytest.raises(UnseenServerError):
            stop(folder)
        assert cli.main(["warehouse", "start", str(folder)]) == 1
        printed = capsys.readouterr().err
        assert printed.startswith(f"error: the data folder {folder} is held by ")
        assert printed.count("\n") == 1

        assert (folder / "postmaster.pid").read_text() == pid_file
        if sign == "socket":
            assert answers(url)  # from outside the namespace, through the shared folder
    finally:
        stop_unshared_servers(keeper, folder)


def stop_unshared_servers(keeper: subprocess.Popen[str], folder: Path) -> None:
    """Stop (fast shutdown: SIGINT) every server of ``folder``: one started from here
    (which a test failing as before its fix made: two servers on one folder) and the one
    started in the namespace, then let the namespace's PID 1 exit."""
    if is_running(folder):
        stop(folder)
    postmasters = []
    in_namespace = (
        psutil.Process(keeper.pid).children(recursive=True) if keeper.poll() is None else []
    )
    for process in in_namespace:
        try:
            if "-D" in process.cmdline():
                process.send_signal(signal.SIGINT)
                postmasters.append(process)
        except psutil.NoSuchProcess:  # pg_ctl, or a backend, that ended meanwhile
            pass
    # Its parent, the namespace's PID 1, does not reap it: done once it is a zombie.
    deadline = time.monotonic() + 30
    while any(running(process) for process in postmasters):
        assert time.monotonic() < deadline, "the namespace's server did not stop"
        time.sleep(0.05)
    keeper.communicate("done\n", timeout=30)
