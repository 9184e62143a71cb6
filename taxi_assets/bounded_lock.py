"""Waiting for a file lock that another process holds, for a bounded time.

The embedded server's locks are held by whichever process starts or stops the server, a
raw month's folder lock by whichever run or command changes its revisions
(:mod:`taxi_assets.storage.slot_lock`). One that hangs there (stopped with Ctrl-Z or
SIGSTOP, blocked on a disk, a start that never ends) made every later command wait for
ever, silently. A wait here ends after its bound with ``LockWaitTimeout``, naming the lock
file and, where the system says who holds it (Linux's ``/proc/locks``), that process, and
the setting that sets the bound.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Retry delays: short first (a start's lock is usually free within milliseconds), then
# capped so a long wait costs few wake-ups.
_FIRST_DELAY_S = 0.01
_MAX_DELAY_S = 0.2


class LockWaitTimeout(Exception):
    """Another process (or thread) held a lock past the wait's bound. The message names
    the lock file, the holder (when known) and what to do."""


def wait_setting(name: str, default: float) -> float:
    """A wait's bound in seconds from the environment variable ``name`` (unset or blank:
    ``default``); anything but a number of seconds, 0 or more, is a ``ValueError``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ValueError(f"{name}={raw!r}: not a number of seconds (0 or more)")
    return value


def wait_for(
    try_lock: Callable[[], bool],
    path: Path,
    wait_s: float,
    purpose: str,
    setting: str,
    began: float | None = None,
) -> None:
    """Call ``try_lock`` (non-blocking; True once the lock is taken) until it succeeds, or
    raise ``LockWaitTimeout`` ``wait_s`` seconds after ``began`` (a ``time.monotonic()``;
    default: now). ``setting`` names the bound's environment variable, for the message."""
    deadline = (time.monotonic() if began is None else began) + wait_s
    delay = _FIRST_DELAY_S
    while not try_lock():
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockWaitTimeout(timeout_message(path, wait_s, purpose, setting))
        time.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_DELAY_S)


def flock_within(descriptor: int, path: Path, wait_s: float, purpose: str, setting: str) -> None:
    """Take an exclusive ``flock`` on the open ``descriptor`` (of ``path``: a file or a
    folder), waiting at most ``wait_s`` seconds for it. Released when the descriptor is
    closed (or the process ends)."""

    def try_lock() -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    wait_for(try_lock, path, wait_s, purpose, setting)


@contextmanager
def exclusive_flock(path: Path, wait_s: float, purpose: str, setting: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block, waiting
    at most ``wait_s`` seconds for it."""
    with open(path, "a") as handle:
        flock_within(handle.fileno(), path, wait_s, purpose, setting)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ReentrantLockfLock:
    """An exclusive ``lockf`` lock on ``path`` (a POSIX record lock, the kind fasteners'
    ``InterProcessLock`` takes), held in a ``with`` block: waited for at most ``wait_s()``
    seconds (read at each wait), then ``LockWaitTimeout``; re-entrant in the thread that
    holds it, and held by one thread at a time. ``lockf`` locks belong to the process, so
    the file alone lets every thread of the holding process in; a count of holds shared by
    the threads let a second thread take itself for the holder."""

    def __init__(self, path: Path, wait_s: Callable[[], float], purpose: str, setting: str) -> None:
        self.path = path
        self._wait_s = wait_s
        self._purpose = purpose
        self._setting = setting
        self._thread_lock = threading.RLock()
        # The owning thread's holds: changed only by the thread holding _thread_lock.
        self._depth = 0
        self._handle: IO[str] | None = None

    def __enter__(self) -> ReentrantLockfLock:
        wait_s = self._wait_s()
        began = time.monotonic()
        if not self._thread_lock.acquire(timeout=wait_s):
            raise LockWaitTimeout(self._held_by_a_thread_message(wait_s))
        try:
            if self._depth == 0:
                self._handle = self._take(wait_s, began)
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._handle is not None:
                handle, self._handle = self._handle, None
                handle.close()  # releases the lock (and every lockf lock of ours on it)
        finally:
            self._thread_lock.release()

    def _take(self, wait_s: float, began: float) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # as fasteners does
        # Open until the outermost hold ends (__exit__), not for this call.
        handle = open(self.path, "a")  # noqa: SIM115

        def try_lock() -> bool:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EACCES, errno.EAGAIN):  # held: either, by POSIX
                    return False
                raise
            return True

        try:
            wait_for(try_lock, self.path, wait_s, self._purpose, self._setting, began)
        except BaseException:
            handle.close()
            raise
        return handle

    def _held_by_a_thread_message(self, wait_s: float) -> str:
        pid = os.getpid()
        return (
            f"{self._purpose}: gave up after waiting {wait_s:g} s for the lock {self.path}, "
            f"held by another thread of this process ({pid}: {describe_process(pid)}). "
            f"{self._setting} sets how long to wait (seconds)."
        )


def timeout_message(path: Path, wait_s: float, purpose: str, setting: str) -> str:
    holders = lock_holders(path)
    if holders:
        who = ", ".join(f"process {pid} ({describe_process(pid)})" for pid in holders)
        pids = " ".join(str(pid) for pid in holders)
        advice = (
            f"If it is stuck, let it go on (kill -CONT {pids} if it was stopped with Ctrl-Z "
            f"or SIGSTOP) or end it (kill {pids}): a process that ends releases the lock."
        )
    else:
        who = "another process (this system does not say which: no /proc/locks)"
        advice = "A process that ends releases the lock."
    return (
        f"{purpose}: gave up after waiting {wait_s:g} s for the lock {path}, held by {who}. "
        f"{advice} {setting} sets how long to wait (seconds)."
    )


def lock_holders(path: Path) -> list[int]:
    """The processes holding a lock on ``path`` (flock or POSIX), as ``/proc/locks`` lists
    them; empty where there is no ``/proc/locks`` or the holder is not visible."""
    try:
        stat = path.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    # A lock's file as major:minor:inode, the device numbers in hex (fs/locks.c).
    wanted = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)
    holders: list[int] = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":  # "->": a process waiting, not holding
            continue
        pid, device = fields[4], fields[5]
        parts = device.split(":")
        if len(parts) != 3 or not pid.lstrip("-").isdigit():
            continue
        try:
            here = (int(parts[0], 16), int(parts[1], 16), int(parts[2]))
        except ValueError:
            continue
        # pid -1: an open-file-description lock, 0: a process outside this pid namespace.
        if here == wanted and int(pid) > 0 and int(pid) not in holders:
            holders.append(int(pid))
    return holders


def describe_process(pid: int) -> str:
    """A process's state and command line, for a message: "stopped: python -m ..."."""
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            state = process.status()
            # On one line: an argument may hold line breaks (``python -c`` code).
            command = " ".join(" ".join(process.cmdline()).split())
    except psutil.NoSuchProcess:
        return "ended meanwhile"
    except psutil.AccessDenied:
        return "another user's process"
    if len(command) > 200:
        command = command[:200] + "..."
    return f"{state}: {command}" if command else state
