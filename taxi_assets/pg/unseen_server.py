"""Signs that a data folder's server runs where this process cannot see its PID.

``postmaster.pid`` names its server by PID, and a PID means nothing in another PID
namespace: a data folder shared with a server in another container (one volume mounted in
two) names a PID that is absent here, or another process's. ``postmaster`` judged such a
file stale and removed it, and PostgreSQL shuts down a server whose lock file is gone;
worse, a start from here then found no lock and could run a second server on the same
files. Before a file judged stale is removed, two signs that do not depend on PIDs are
asked, the ones libpq and PostgreSQL use:

- the socket the file names (line 5: its folder; line 4: the port) accepts a connection: a
  server listens on it. A killed server's socket file stays and refuses
  (ECONNREFUSED); a cleanly stopped server's is gone (ENOENT). pgserver puts the socket in
  the data folder when its path is short enough, so the shared volume carries it to every
  container mounting it, whatever its network namespace; the same name in this folder is
  tried too, for a volume mounted at another path there. A bare ``connect()``: no startup
  packet, so the server logs nothing (tried).
- the SysV shared memory segment the file names (line 7: its key and ID) has processes
  attached: PostgreSQL's own test before it starts over an old lock file ("pre-existing
  shared memory block is still in use"). Read from ``/proc/sysvipc/shm`` (Linux), which
  lists the segments of this IPC namespace: the containers of one Kubernetes pod share
  one, Docker's do not by default. Both key and ID must match: PostgreSQL derives the key
  from the data folder's inode.

Each is one system call or one small file read, made only when the PID check already said
"stale". A server that neither sign reaches (another IPC namespace and a socket folder
private to its container, or another machine on a network filesystem) stays invisible: a
data folder is for one server at a time, which PostgreSQL cannot guard across machines
either. A "yes" from either sign also catches the processes of a killed server that still
run here (its backends, still ending): PostgreSQL would refuse to start over them too.
"""

from __future__ import annotations

import socket
from pathlib import Path

SYSV_SHM_TABLE = Path("/proc/sysvipc/shm")
# A Unix socket answers at once; a listener that does not accept (its backlog full, the
# server stopped with SIGSTOP) is still a server.
_CONNECT_TIMEOUT_S = 1.0


class UnseenServerError(Exception):
    """A data folder's ``postmaster.pid`` names no server of the folder visible here, yet
    a server answers for it: the file is not removed and no server is started or stopped.
    The message names the folder, the PID and the signs."""


def refuse_unseen_server(folder: Path, lines: list[str]) -> None:
    """Raise ``UnseenServerError`` if a server answers for ``folder`` though its
    ``postmaster.pid`` (``lines``) names no server of it visible to this process."""
    signs = unseen_server_signs(folder, lines)
    if not signs:
        return
    pid = lines[0].strip() if lines else "?"
    raise UnseenServerError(
        f"the data folder {folder} is held by a PostgreSQL server this process cannot see: "
        f"its postmaster.pid names PID {pid}, no postgres process of the folder here, yet "
        f"{' and '.join(signs)}. A server of another container or PID namespace sharing the "
        "folder, or processes of a killed server still running: the file is left in place "
        "(without it, a live server shuts itself down) and nothing was started or stopped. "
        "Stop that server where it runs (or end those processes), then try again"
    )


def unseen_server_signs(folder: Path, lines: list[str]) -> list[str]:
    """What says that a server holds ``folder`` whatever its PID: each sign in words,
    none when nothing answers."""
    signs = [f"its socket {path} accepts connections" for path in _answering_sockets(folder, lines)]
    attached = _attached_shared_memory(lines)
    if attached is not None:
        key, shmid, count = attached
        signs.append(
            f"its shared memory segment (key {key}, ID {shmid}) is attached by {count} process(es)"
        )
    return signs


def _answering_sockets(folder: Path, lines: list[str]) -> list[Path]:
    port = lines[3].strip() if len(lines) > 3 else ""
    directory = lines[4].strip() if len(lines) > 4 else ""
    if not port.isdigit():
        return []
    name = f".s.PGSQL.{port}"
    candidates = [Path(directory) / name] if directory else []
    if folder / name not in candidates:
        candidates.append(folder / name)
    for path in candidates:
        if _accepts(path):
            return [path]
    return []


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_CONNECT_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except (TimeoutError, BlockingIOError):  # a listener that does not accept yet
            return True
        except OSError:
            # ENOENT: no socket (a clean stop removes it); ECONNREFUSED: nobody listens (a
            # killed server's file); EACCES or a path too long for a socket: nothing known.
            return False
    return True


def _attached_shared_memory(lines: list[str]) -> tuple[int, int, int] | None:
    """(key, ID, processes attached) of the SysV segment line 7 names, if it exists in this
    IPC namespace and has processes attached."""
    fields = lines[6].split() if len(lines) > 6 else []
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        return None
    key, shmid = int(fields[0]), int(fields[1])
    try:
        table = SYSV_SHM_TABLE.read_text()
    except OSError:  # not Linux, or a kernel without SysV IPC
        return None
    for row in table.splitlines()[1:]:
        columns = row.split()
        # key_t is an int: PostgreSQL writes it unsigned, /proc signed.
        if len(columns) > 6 and (int(columns[0]) - key) % 2**32 == 0 and int(columns[1]) == shmid:
            attached = int(columns[6])
            return (key, shmid, attached) if attached > 0 else None
    return None
