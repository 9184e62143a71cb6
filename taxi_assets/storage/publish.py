"""Atomic publishing, one code path for local folders and object stores.

Files are always written to local disk first and published in one step: a rename
locally, one object upload on an object store (an object appears, or is replaced, only
once its upload completes: GCS, S3 and Azure Blob Storage alike).

Retries, in one layer per request: an upload is retried here, as a whole, on throttling,
5xx answers, timeouts and dropped connections (``storage/transient.py``), the S3 and Azure
clients making each upload request once. gcsfs retries every request itself and cannot
be told not to, so on GCS this loop does not retry transient errors again (only a
checksum mismatch). Reads, listings and deletes are retried by the clients.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from upath import UPath

from taxi_assets.storage.durable import fsync_dir, make_folder_durably
from taxi_assets.storage.errors import LakeAccessError
from taxi_assets.storage.leftovers import remove_stale_staging
from taxi_assets.storage.roots import is_local
from taxi_assets.storage.stores import ObjectStore, store_for
from taxi_assets.storage.transient import is_checksum_error, is_transient, pause_before_next
from taxi_assets.storage.urls import bucket_of

# Uploads: files of at least twice this size go in parts of this size (an S3 multipart
# upload, Azure blocks committed by one block list); gcsfs sends files of 5 MiB and more
# as a resumable upload in chunks of this size (a multiple of 256 KiB). Read from disk
# part by part.
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024
# Attempts at a whole upload (S3, Azure), waiting about backoff * 2**n seconds between
# them (with jitter): 2, 4, 8, 16 s.
UPLOAD_ATTEMPTS = 5
UPLOAD_BACKOFF_SECONDS = 2.0

_log = logging.getLogger(__name__)


def local_staging_dir(dest: UPath) -> Path:
    """Where to write a file before publishing it to ``dest``.

    Locally that is ``dest``'s own folder (so publishing is a rename on the same
    filesystem); for object stores a local temp folder (publishing is one upload).
    Staging files of ``dest`` that a killed run left there are removed first.
    """
    if is_local(dest):
        folder = Path(dest.path).parent
        make_folder_durably(folder)
    else:
        import tempfile

        folder = Path(tempfile.gettempdir())
    remove_stale_staging(folder, dest.name)
    return folder


def staging_name(dest: UPath) -> str:
    # Leading dot: pyarrow.dataset and Hive-style readers skip hidden files.
    return f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"


def flush_to_disk(local_src: Path, dest: UPath) -> None:
    """Write ``local_src``'s data to disk now, where :func:`publish_file` would fsync it
    (a staged file beside a local ``dest``): the publish, which may run under a lock
    (``storage.revision_guard``), then only renames it (its own fsync finds nothing left
    to write: 0.2 s for 400 MB here, 1 ms again). Nothing to do for object stores."""
    if is_local(dest) and local_src.parent == Path(dest.path).parent:
        with open(local_src, "rb") as handle:
            os.fsync(handle.fileno())


def publish_file(local_src: Path, dest: UPath) -> None:
    """Make ``local_src`` visible at ``dest`` in one step; readers never see a partial file.

    Locally: fsync, then ``os.replace`` (atomic within a filesystem), then fsync the
    folder (so the new name survives a power cut, :func:`fsync_dir`). Object stores: a
    single-object upload, which becomes visible only once complete (see
    :func:`upload_file`). ``local_src`` is gone afterwards either way.
    """
    if is_local(dest):
        target = Path(dest.path)
        make_folder_durably(target.parent)
        if not _same_filesystem(local_src, target.parent):
            staged = target.parent / staging_name(dest)
            try:
                shutil.copyfile(local_src, staged)
            except BaseException:
                Path(staged).unlink(missing_ok=True)
                raise
            local_src.unlink()
            local_src = staged
        with open(local_src, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(local_src, target)
        fsync_dir(target.parent)
        return
    try:
        upload_file(local_src, dest)
    finally:
        local_src.unlink(missing_ok=True)


def _same_filesystem(path: Path, folder: Path) -> bool:
    """A rename can move ``path`` into ``folder`` (atomic; no copy)."""
    return path.parent == folder or os.stat(path).st_dev == os.stat(folder).st_dev


def staged_beside(local_src: Path, folder: UPath) -> Path:
    """A hidden copy of ``local_src`` in the local ``folder``, written and fsynced, that
    :func:`publish_file` can then rename into place in that filesystem: the copy (seconds
    for a large file) done before a lock, the rename under it. ``local_src`` itself where
    it is on that filesystem already, and for object stores (nothing to stage there)."""
    if not is_local(folder):
        return local_src
    local_folder = Path(folder.path)
    make_folder_durably(local_folder)
    if _same_filesystem(local_src, local_folder):
        return local_src
    copy = local_folder / staging_name(folder / local_src.name)
    try:
        shutil.copyfile(local_src, copy)
        with open(copy, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return copy


def publish_bytes(data: bytes, dest: UPath) -> None:
    """Make a small object (a manifest, a chart, a probe) visible at ``dest`` in one step."""
    local = local_staging_dir(dest) / staging_name(dest)
    try:
        local.write_bytes(data)
    except BaseException:
        local.unlink(missing_ok=True)
        raise
    publish_file(local, dest)


def upload_file(local_src: Path, dest: UPath) -> None:
    """Upload ``local_src`` as the one object ``dest``, all or nothing, retrying transients.

    Readers see the old object or the new one, never a mix: each store makes an object
    visible only once its upload completes, and a failed upload is cancelled (GCS
    resumable session, S3 multipart upload) or left as uncommitted blocks (Azure), never
    as a partial object. Never ``with path.open("wb")`` instead: an exception inside that
    block still commits what was written so far.

    A missing bucket, refused credentials or a missing permission raise
    :class:`LakeAccessError` saying which, without retries.
    """
    store = store_for(dest.protocol)
    if store is None:  # another fsspec filesystem (no lake's: the lake refuses them)
        dest.fs.put_file(str(local_src), dest.path)
        return
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            store.upload(local_src, dest, UPLOAD_CHUNK_BYTES)
            return
        except Exception as error:
            if is_checksum_error(error):
                # The object was replaced by bytes that differ from ours: do not keep them.
                _remove_quietly(dest)
            retry = is_checksum_error(error) or (
                is_transient(error) and not store.client_retries_uploads
            )
            if attempt == UPLOAD_ATTEMPTS or not retry:
                _raise_explained(error, store, dest)
                raise
            pause_before_next(
                f"upload of {dest}", error, attempt, UPLOAD_ATTEMPTS, UPLOAD_BACKOFF_SECONDS
            )


def _raise_explained(error: Exception, store: ObjectStore, dest: UPath) -> None:
    explanation = store.explain(error, bucket_of(dest.path))
    if explanation is not None:
        raise LakeAccessError(f"cannot write {dest}: {explanation}") from error


def _remove_quietly(path: UPath) -> None:
    try:
        path.fs.rm_file(path.path)
    except Exception:  # noqa: BLE001 - best effort; the upload error is what matters
        _log.warning("could not remove %s after a failed checksum", path)


def remove_if_exists(path: UPath) -> None:
    if path.exists():
        path.unlink()
