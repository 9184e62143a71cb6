"""Starting the embedded server of an existing data folder: bounded, and failing clearly.

pgserver starts a server with ``pg_ctl -w start`` (killing pg_ctl after 10 s, while the
server goes on starting) and then reads ``postmaster.pid`` once a second until it says
"ready", without a limit. ``pg_ctl -w`` also returns once a server says "standby" (a data
folder holding ``standby.signal``, with ``hot_standby = off``: a restored base backup,
say), and pgserver then waited for ever, holding its start lock and the folder's (seen
for real). A server that could not start (a bad setting, a module in
``shared_preload_libraries`` that is missing, an old server's process still holding the
folder) raised a ``CalledProcessError`` naming pg_ctl's command line; why was in the
server's log.

Here an existing folder is started by pg_ctl with pgserver's options (the same socket
folder: the same URL), and the server must say "ready" within ``START_WAIT_S`` of the
start; a standby (``standby.signal``) is stopped again at once. Anything else raises
``EmbeddedStartError``, naming the folder, what happened, pg_ctl's words and the last
lines of the server's log. A new folder is still pgserver's to create (initdb, and its
system user when run as root); its start fails the same way.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taxi_assets.pg.postmaster import live_postmaster

# pg_ctl's own default. A start after a kill first replays the WAL written since the last
# checkpoint (crash recovery): usually seconds, since a month's COPY into its new table
# writes almost none (wal_level minimal).
START_WAIT_S = 60
# Enough of the log for its last start's messages: the error, its detail and hint.
LOG_LINES = 12
_LOG_TAIL_BYTES = 16_384
_READY_POLL_S = 0.05
STANDBY_SIGNAL = "standby.signal"


class EmbeddedStartError(Exception):
    """The embedded server of a data folder did not start, or not as a server the
    warehouse can use. The message names the folder, what happened and the server log's
    last lines."""


def socket_folder(folder: Path) -> Path:
    """Where the server of the data folder ``folder`` puts its Unix socket: pgserver's
    choice (the folder itself, unless its path is too long for a socket's)."""
    from pgserver import PostgresServer
    from pgserver.utils import find_suitable_socket_dir

    return Path(find_suitable_socket_dir(folder, PostgresServer.runtime_path))


def start(folder: Path, user: str | None) -> None:
    """Start the stopped server of the initialised data folder ``folder`` (as the system
    user ``user``; None: this process's), ready for connections, within ``START_WAIT_S``."""
    from pgserver.utils import ensure_prefix_permissions

    folder = folder.resolve()  # the readiness check compares the server's folder with it
    if user is not None:
        # Run as another user (root runs it as pgserver's), the server must be able to
        # reach its folder, whose parents may have been closed to others since it was
        # created (a mkdir under umask 077; pytest resets its temporary root to 0700), and
        # a socket folder outside it: opened as pgserver opens them at each of its starts.
        ensure_prefix_permissions(folder)
    socket_dir = socket_folder(folder)
    if user is not None and socket_dir != folder:
        ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    options = ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(folder / "log")]
    began = time.monotonic()
    _pg_ctl(folder, user, ["-w", "-t", str(START_WAIT_S), *options, "start"], "start")
    _wait_ready(folder, user, began)


def restart(folder: Path, user: str | None) -> None:
    """Restart the server of ``folder`` (new settings), ready within ``START_WAIT_S``."""
    # pg_ctl restart reuses the options the server was started with (postmaster.opts):
    # the same socket folder, so the URL stays valid.
    folder = folder.resolve()  # the readiness check compares the server's folder with it
    args = ["-w", "-t", str(START_WAIT_S), "restart", "-m", "fast", "-l", str(folder / "log")]
    began = time.monotonic()
    _pg_ctl(folder, user, args, "restart")
    _wait_ready(folder, user, began)


@contextmanager
def start_failures_explained(folder: Path) -> Iterator[None]:
    """pgserver's own start of a new folder (initdb, pg_ctl): a failure as an
    ``EmbeddedStartError`` with the server log's last lines."""
    try:
        yield
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise EmbeddedStartError(
            _message(folder, f"could not be created and started ({error})")
        ) from error


def _pg_ctl(folder: Path, user: str | None, args: list[str], doing: str) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(folder), *args]
    # Its output to a file, not a pipe: the server pg_ctl leaves running must not hold a
    # pipe that this process reads to its end.
    with tempfile.TemporaryFile("w+") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, user=user)
        output.seek(0)
        said = " ".join(output.read().split())
    if done.returncode != 0:
        if live_postmaster(folder) is not None:
            what = (
                f"is still starting after {START_WAIT_S} s (a start after a kill first "
                "replays the WAL since the last checkpoint): ask again later"
            )
        else:
            what = f"did not {doing}"
        raise EmbeddedStartError(_message(folder, f"{what}; pg_ctl said: {said.rstrip('.')}"))


def _wait_ready(folder: Path, user: str | None, began: float) -> None:
    """Wait, until ``START_WAIT_S`` after ``began``, for the server pg_ctl started to say
    "ready". pg_ctl returns at "standby" too: a standby's status for good, but also, with
    hot_standby off, a primary's while it ends its crash recovery (seen for real: "ready"
    a moment later)."""
    while True:
        info = live_postmaster(folder)
        if info is None:
            raise EmbeddedStartError(_message(folder, "started, then exited at once"))
        status = info.status.strip()
        if status == "ready":
            return
        if status == "standby" and (folder / STANDBY_SIGNAL).exists():
            # It accepts no writes, and no connections with hot_standby off; running, its
            # URL would be handed out as a running server's.
            _pg_ctl(folder, user, ["-w", "stop", "-m", "fast"], "stop")
            raise EmbeddedStartError(
                _message(
                    folder,
                    f"started as a standby, which accepts no writes ({folder / STANDBY_SIGNAL} "
                    "is there, with hot_standby off): stopped again. Remove standby.signal "
                    "to use the folder as the warehouse",
                )
            )
        if time.monotonic() - began > START_WAIT_S:
            raise EmbeddedStartError(
                _message(
                    folder,
                    f"says {status!r} instead of 'ready' {START_WAIT_S} s after its start "
                    "(a recovery under way?): left running; ask again later",
                )
            )
        time.sleep(_READY_POLL_S)


def _message(folder: Path, what: str) -> str:
    log = folder / "log"
    return (
        f"the embedded PostgreSQL server of {folder} {what}. "
        f"The last lines of its log ({log}):\n{log_tail(log)}"
    )


def log_tail(log: Path, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of the server's log (which grows for ever: only its end
    is read), indented; or why there are none."""
    try:
        with open(log, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _LOG_TAIL_BYTES))
            tail = handle.read().decode(errors="replace").splitlines()[-lines:]
    except OSError as error:
        return f"  (cannot read it: {error.strerror})"
    return "\n".join(f"  {line}" for line in tail) if tail else "  (empty)"
