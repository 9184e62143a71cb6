"""Revision files: hashing stored bytes, moving a file of the flat layout into its revision
folder, removing a pruned revision. UPath operations only (plus a rename locally)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import BinaryIO

from upath import UPath

from taxi_assets.storage.durable import fsync_dir, make_folder_durably
from taxi_assets.storage.publish import publish_file
from taxi_assets.storage.read_retries import open_for_reading
from taxi_assets.storage.revision_manifest import Revision, utc_now
from taxi_assets.storage.roots import is_local

CHUNK_BYTES = 1 << 20


def content_sha256(path: UPath, copy_to: Path | None = None) -> tuple[str, int]:
    """sha256 and size of the bytes at ``path``, read in chunks (optionally copied to the
    local file ``copy_to`` on the way, so an object is downloaded once)."""
    digest = hashlib.sha256()
    size = 0
    with open_for_reading(path) as handle, _maybe_open(copy_to) as copy:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if copy is not None:
                copy.write(chunk)
    return digest.hexdigest(), size


def _maybe_open(path: Path | None) -> AbstractContextManager[BinaryIO | None]:
    return open(path, "wb") if path is not None else nullcontext()


def adopt_file(legacy: UPath, folder: UPath, log: Callable[[str], None]) -> Revision:
    """Move ``legacy`` (a file of the flat layout) to ``<folder>/<sha256>/<its name>`` and
    describe it as a revision; no download. A rename locally; elsewhere one pass that
    hashes while copying to local disk, one upload, then the old object goes."""
    if is_local(legacy):
        sha256, size = content_sha256(legacy)
        target = folder / sha256 / legacy.name
        make_folder_durably(Path(target.path).parent)
        os.replace(legacy.path, target.path)
        fsync_dir(Path(target.path).parent)
        fsync_dir(Path(legacy.path).parent)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="taxi-adopt-"))
        try:
            local = scratch / legacy.name
            sha256, size = content_sha256(legacy, copy_to=local)
            target = folder / sha256 / legacy.name
            if not target.exists():
                publish_file(local, target)
            legacy.unlink()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    log(f"{legacy}: adopted as revision {sha256[:12]} ({target}); not downloaded again")
    return Revision(sha256, legacy.name, size, utc_now(), "adopted")


def remove_revision_file(path: UPath) -> None:
    """Remove a revision's file and, locally, its emptied folder (object stores have none)."""
    if path.exists():
        path.unlink()
    if is_local(path):
        try:
            Path(path.path).parent.rmdir()
        except OSError:
            pass  # not empty (something else was put there) or already gone: leave it
