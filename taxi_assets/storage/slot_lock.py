"""One writer at a time for a folder's manifest read-modify-write.

Locally: ``flock`` on the folder itself (no lock file to leave behind or to race over
when removing it), held by the open descriptor, so a killed process releases it. Across
processes of one machine, and across machines only where the filesystem supports
``flock`` (local disks; not every network filesystem).

Object stores (``gs://``, ``s3://``, ...) have no such lock, and the GCS emulator has no
generation preconditions to build one on: writers are not serialised and the last
manifest written wins. :mod:`taxi_assets.storage.revisions` is written so that this loses
nothing: revision files are content-addressed (two writers of the same bytes write the
same object) and a revision file the manifest does not list is found, verified and
listed again by the next writer.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upath import UPath

from taxi_assets.storage.roots import is_local


@contextmanager
def slot_lock(folder: UPath) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if needed) while the block runs."""
    if not is_local(folder):
        yield
        return
    local = Path(folder.path)
    local.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(local, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
