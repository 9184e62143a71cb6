"""Renames and new folders that survive a power cut once the call returns."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename into ``folder`` durable: until the folder itself is fsynced, a power
    cut or a kernel crash may bring back the old name after the rename returned (ext4 and
    XFS keep a directory's entries in its own blocks). A no-op where directories cannot be
    opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_folder_durably(folder: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``, each folder it creates fsynced into
    its parent, so that a file renamed into it and fsynced (:func:`fsync_dir`) cannot lose
    its folder to a power cut."""
    missing = [folder, *folder.parents]
    missing = list(reversed([path for path in missing if not path.exists()]))
    for path in missing:
        # Made meanwhile by another run: fsynced here all the same, its maker may not have
        # got that far yet.
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)
