"""One writer at a time for a folder's manifest read-modify-write.

Locally: ``flock`` on the folder itself (no lock file to leave behind or to race over
when removing it), held by the open descriptor, so a killed process releases it. Across
processes of one machine, and across machines only where the filesystem supports
``flock`` (local disks; not every network filesystem).

A holder that hangs (stopped with Ctrl-Z or SIGSTOP, a disk or network filesystem that
stops answering) made every other run of the month, and ``raw pin``/``unpin``, wait for
ever, silently. The wait is bounded: ``TAXI_RAW_LOCK_WAIT_S`` (default
``DEFAULT_WAIT_S``), then ``LockWaitTimeout`` naming the month, the folder and the
process holding it.

Object stores (``gs://``, ``s3://``, ...) have no such lock, and the GCS emulator has no
generation preconditions to build one on: writers are not serialised, nobody waits, and
the last manifest written wins. :mod:`taxi_assets.storage.revisions` is written so that
this loses nothing: revision files are content-addressed (two writers of the same bytes
write the same object) and a revision file the manifest does not list is found, verified
and listed again by the next writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upath import UPath

from taxi_assets.bounded_lock import flock_within, wait_setting
from taxi_assets.storage.durable import make_folder_durably
from taxi_assets.storage.roots import is_local

WAIT_ENV = "TAXI_RAW_LOCK_WAIT_S"
# What the lock covers is local disk work on the month's folder, never a download (the
# file is downloaded to a temporary folder before the lock is taken): reading the
# manifest, copying the downloaded file into the lake and fsyncing it, hashing revision
# files a repair finds unlisted, writing the manifest, removing pruned revisions, and
# publishing the lake month parsed from the current revision (a rename of the written
# file, fsynced before the lock: storage.revision_guard; replacing an older 600 MB lake
# file frees its blocks in the rename, 0.12-0.16 s here). For a 500 MB month that took about 1 s on a
# local SSD; on a slow disk (10 MB/s) a copy is about a minute, and a repair hashing a few
# unlisted files of that size a few more. Ten minutes leaves room for that, and for
# another run or two of the month queued before this one, while a hung holder fails the
# waiting runs in minutes instead of never.
DEFAULT_WAIT_S = 600.0


def wait_s() -> float:
    """How long to wait for another process holding a month's folder lock (seconds)."""
    return wait_setting(WAIT_ENV, DEFAULT_WAIT_S)


@contextmanager
def slot_lock(folder: UPath, purpose: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if needed) while the block runs.
    Waits at most ``wait_s()`` for another holder, then raises ``LockWaitTimeout``
    (``purpose`` opens its message: what was to be done, to which month)."""
    if not is_local(folder):
        yield
        return
    bound = wait_s()  # a bad setting fails before the folder is created
    local = Path(folder.path)
    make_folder_durably(local)  # the revisions and the manifest go in it
    descriptor = os.open(local, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flock_within(descriptor, local, bound, purpose, WAIT_ENV)
        yield
    finally:
        os.close(descriptor)  # releases the lock
