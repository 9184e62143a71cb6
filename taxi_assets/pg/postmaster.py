"""A data folder's ``postmaster.pid``: the folder's live server, or a file left behind.

PostgreSQL writes ``postmaster.pid`` at start and removes it at a clean stop; a server
killed with SIGKILL, or the machine's reboot, leaves it. pgserver counted the file as a
running server whenever a process with its PID existed, and so did this project: the URL
read from it led nowhere ("connection refused"), a start was skipped, and ``stop`` had
``pg_ctl`` signal that PID. Three cases fooled it (each tried for real):

- the killed postmaster is a zombie that nobody reaps (a container whose PID 1 does not
  reap orphans): a process exists, but no server;
- after a reboot or a container restart the PID belongs to another process (a ``sleep``);
- or to a postgres server, but of another data folder.

Here a server runs only if the PID is a live (not zombie) ``postgres`` process whose
working directory is the folder: a postmaster ``chdir``s to its data directory (where that
cannot be read, an absolute ``-D`` resolving elsewhere; in doubt, a live server). Removing
a file that names no such process is what PostgreSQL does itself when the PID is gone;
where the PID is a zombie or another process of its user, PostgreSQL refuses to start
instead ("Is another postmaster (PID ...) running?", tried) and leaves it to a person.

A PID means nothing in another PID namespace: a folder shared with a server in another
container names a PID that is no server here. Before a file is removed, a server that
answers on the file's socket, or holds its shared memory, stops it (``unseen_server``:
``UnseenServerError``, the file left in place); so do an old server's children that
survived their postmaster (PostgreSQL refuses to start over them too: "pre-existing shared
memory block is still in use", tried).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taxi_assets.pg.unseen_server import refuse_unseen_server

if TYPE_CHECKING:
    from pgserver.utils import PostmasterInfo

PID_FILE = "postmaster.pid"


def live_postmaster(folder: Path) -> PostmasterInfo | None:
    """What ``folder``'s ``postmaster.pid`` says, if it names the folder's live server;
    None without the file or with a stale one. ``folder`` is resolved."""
    from pgserver.utils import PostmasterInfo

    lines = _pid_file_lines(folder)
    if not lines or not is_server_of(_pid(lines), folder):
        return None
    return PostmasterInfo(lines)


def is_server_of(pid: int | None, folder: Path) -> bool:
    """Whether process ``pid`` is a running postgres server process of data folder ``folder``."""
    import psutil

    if pid is None or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            command = process.cmdline()
            if not command or Path(command[0]).name != "postgres":
                return False
            try:
                return Path(process.cwd()) == folder
            except psutil.AccessDenied:
                # Another user's process, without the right to see its directory (root
                # without CAP_SYS_PTRACE, a container's default, running the server as
                # pgserver's user): its command line's -D. Only an absolute -D that is
                # another folder tells it apart; a live server misjudged here would lose
                # its postmaster.pid, and PostgreSQL then shuts it down.
                return not _names_another_folder(command, folder)
    except psutil.NoSuchProcess:  # also a zombie's cmdline
        return False
    except psutil.AccessDenied:
        # Not even its command line is visible (/proc mounted with hidepid): a process
        # exists, which is all that can be known.
        return True


def remove_stale_pid_file(folder: Path) -> bool:
    """Remove ``folder``'s ``postmaster.pid`` unless it names the folder's live server,
    with the socket's lock file the same server left (it names the same PID); True if a
    file was removed. Call it under the folder's start lock, before a start. Raises
    ``UnseenServerError`` (nothing removed) when a server this process cannot see answers
    for the folder."""
    lines = _pid_file_lines(folder)
    if lines is None:
        return False
    pid = _pid(lines)
    if is_server_of(pid, folder):
        return False
    refuse_unseen_server(folder, lines)
    # Lines 4 and 5: the port and the socket's folder (a file cut short by a kill may
    # lack them). PostgreSQL refuses a socket whose lock file names a live process, as it
    # refuses the data folder's.
    if pid is not None and len(lines) >= 5 and lines[3].strip() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        held_by = _pid(_lines(socket_lock) or [])
        if held_by == pid:
            socket_lock.unlink(missing_ok=True)
    (folder / PID_FILE).unlink(missing_ok=True)
    return True


def refuse_unseen_server_of(folder: Path) -> None:
    """For a folder whose ``postmaster.pid`` names no live server here: raise
    ``UnseenServerError`` if a server answers for it nonetheless (nothing to stop here)."""
    lines = _pid_file_lines(folder)
    if lines:
        refuse_unseen_server(folder, lines)


def _names_another_folder(command: list[str], folder: Path) -> bool:
    """Whether a postgres command line's ``-D`` is certainly not ``folder``: an absolute
    path resolving elsewhere. Another spelling (a symlink) is the same folder; a relative
    one, or none (PGDATA in the environment), cannot be told apart."""
    value = _data_dir_argument(command)
    if value is None or not Path(value).is_absolute():
        return False
    return Path(value).resolve() != folder


def _data_dir_argument(command: list[str]) -> str | None:
    for flag, value in zip(command, command[1:], strict=False):
        if flag == "-D":
            return value
    return None


def _pid_file_lines(folder: Path) -> list[str] | None:
    return _lines(folder / PID_FILE) if folder.exists() else None


def _lines(path: Path) -> list[str] | None:
    try:
        return path.read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _pid(lines: list[str]) -> int | None:
    """The PID on a lock file's first line; None where there is none (a file cut short)."""
    first = lines[0].strip() if lines else ""
    return int(first) if first.isdigit() else None
