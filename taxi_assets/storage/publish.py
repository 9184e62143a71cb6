"""Atomic publishing, one code path for local folders and object stores (``gs://``).

Files are always written to local disk first and published in one step: a rename
locally, a single object upload on GCS (an object appears, or is replaced, only once its
upload completes).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from upath import UPath

from taxi_assets.storage.roots import is_gcs, is_local

# Uploads: gcsfs sends files under 5 MiB in one request and larger ones as a resumable
# upload in chunks of this size (a multiple of 256 KiB), read from disk chunk by chunk.
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024
# gcsfs retries each request (429, 5xx, timeouts) 6 times with backoff; when it gives up,
# the whole upload is tried again this many times in all, waiting backoff * 2**n seconds.
UPLOAD_ATTEMPTS = 3
UPLOAD_BACKOFF_SECONDS = 2.0
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_log = logging.getLogger(__name__)


def local_staging_dir(dest: UPath) -> Path:
    """Where to write a file before publishing it to ``dest``.

    Locally that is ``dest``'s own folder (so publishing is a rename on the same
    filesystem); for object stores a local temp folder (publishing is one upload).
    """
    if is_local(dest):
        folder = Path(dest.path).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    import tempfile

    return Path(tempfile.gettempdir())


def staging_name(dest: UPath) -> str:
    # Leading dot: pyarrow.dataset and Hive-style readers skip hidden files.
    return f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"


def publish_file(local_src: Path, dest: UPath) -> None:
    """Make ``local_src`` visible at ``dest`` in one step; readers never see a partial file.

    Locally: fsync, then ``os.replace`` (atomic within a filesystem). Object stores: a
    single-object upload, which becomes visible only once complete (see
    :func:`upload_file`). ``local_src`` is gone afterwards either way.
    """
    if is_local(dest):
        target = Path(dest.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local_src.parent != target.parent:
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
        return
    try:
        upload_file(local_src, dest)
    finally:
        local_src.unlink(missing_ok=True)


def upload_file(local_src: Path, dest: UPath) -> None:
    """Upload ``local_src`` as the one object ``dest``, all or nothing, retrying transients.

    On GCS an object (or a new version replacing it) becomes visible only when its upload
    finishes, so readers see the old month or the new one, never a mix. gcsfs streams
    files of 5 MiB and more as a resumable upload and cancels the session when a chunk
    fails, so nothing partial is left. Never ``with path.open("wb")`` instead: an
    exception inside that block still commits what was written so far.
    """
    kwargs: dict[str, object] = {}
    if is_gcs(dest):
        # md5 of what the server stored, compared with the bytes sent.
        kwargs = {"chunksize": UPLOAD_CHUNK_BYTES, "consistency": "md5"}
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            dest.fs.put_file(str(local_src), dest.path, **kwargs)
            return
        except Exception as error:
            if _is_checksum_error(error):
                # The object was replaced by bytes that differ from ours: do not keep them.
                _remove_quietly(dest)
            if attempt == UPLOAD_ATTEMPTS or not is_transient(error):
                raise
            pause = UPLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1)
            _log.warning(
                "upload of %s failed (%s: %s); attempt %d of %d in %.1fs",
                dest,
                type(error).__name__,
                error,
                attempt + 1,
                UPLOAD_ATTEMPTS,
                pause,
            )
            time.sleep(pause)


def is_transient(error: BaseException) -> bool:
    """Worth another try: throttling (429), server errors (5xx), timeouts, dropped connections."""
    if _is_checksum_error(error):
        return True
    code = getattr(error, "code", None)
    if isinstance(code, int | str) and str(code).isdigit():
        return int(code) in TRANSIENT_STATUSES
    try:
        import aiohttp
        import requests
    except ImportError:  # pragma: no cover - both ship with gcsfs
        return isinstance(error, ConnectionError | TimeoutError)
    return isinstance(
        error,
        ConnectionError
        | TimeoutError
        | aiohttp.ClientConnectionError
        | aiohttp.ServerTimeoutError
        | requests.ConnectionError  # gcsfs raises ProxyError (a subclass) for a 502
        | requests.Timeout,
    )


def _is_checksum_error(error: BaseException) -> bool:
    return type(error).__name__ == "ChecksumError"


def _remove_quietly(path: UPath) -> None:
    try:
        path.fs.rm_file(path.path)
    except Exception:  # noqa: BLE001 - best effort; the upload error is what matters
        _log.warning("could not remove %s after a failed checksum", path)


def remove_if_exists(path: UPath) -> None:
    if path.exists():
        path.unlink()
