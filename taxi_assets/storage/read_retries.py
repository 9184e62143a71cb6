"""Reads of a stored object that fail midway are tried again from where they stopped.

A download's answer can be cut short: a dropped connection, a reset from a load balancer,
a server restarting. gcsfs reads again itself, and so does Azure's client for a range of a
file, but not for a whole small object (``cat_file``: the revisions manifest). s3fs would
too, but its own retries are off (``storage/s3.py``: botocore's are the one retry layer,
else a lasting SlowDown costs 25 requests), and botocore retries a request only until its
answer's headers have arrived: a body cut short reached the run, and the step failed
(measured with answers cut after 100 bytes: S3's lake step, Azure's raw step).

Files opened here retry such a read from the same offset: an fsspec file moves its
position, and its read-ahead cache, only when a read succeeds, so a retried read returns
exactly the bytes the failed one would have. An object replaced between two attempts is
caught as before, by the reader's version check (``io_managers/lake_files.py``) or the
revision's sha256. Refusals (403, a missing object) are not retried, nor a 5xx answer
(S3's 503 SlowDown, Azure's 503 ServerBusy): the store's client retried it already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

import pyarrow as pa
import pyarrow.fs as pafs
from upath import UPath

from taxi_assets.storage.roots import is_local
from taxi_assets.storage.transient import is_transient, pause_before_next, retried_by_the_client

READ_ATTEMPTS = 5
READ_BACKOFF_SECONDS = 0.5

T = TypeVar("T")


def again(read: Callable[[], T], what: object) -> T:
    """``read()``, tried again after a transient failure (``what``: named in the warnings)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return read()
        except Exception as raised:
            error = _unmasked(raised)
            # A 5xx answer (503 SlowDown, ServerBusy) was retried by the store's client
            # already (botocore, Azure's pipeline, gcsfs): trying its whole budget again
            # multiplied the requests to a throttling store by five (25 GETs on S3).
            if not is_transient(error) or retried_by_the_client(error):
                raise
            if attempt == READ_ATTEMPTS:
                if error is raised:
                    raise
                raise TimeoutError(f"a read of {what} timed out {READ_ATTEMPTS} times") from error
            pause_before_next(
                f"a read of {what}", error, attempt, READ_ATTEMPTS, READ_BACKOFF_SECONDS
            )
    raise AssertionError("unreachable")


def _unmasked(error: Exception) -> BaseException:
    """The failure behind ``error``. s3fs 2026.9's ``S3File._fetch_range`` reads
    ``ex.args[0]`` of the OSError it catches, and fsspec's ``FSTimeoutError`` (a read that
    timed out: a download that stalled) has no arguments: the timeout arrives as an
    ``IndexError`` raised while handling it (found with a stalled answer, 10i')."""
    context = error.__context__
    if isinstance(error, IndexError) and isinstance(context, TimeoutError):
        return context
    return error


class RetriedReads:
    """An fsspec file whose reads are tried again after a transient failure; everything
    else is the file's own."""

    def __init__(self, inner: Any, what: object) -> None:
        self._inner = inner
        self._what = what

    def read(self, size: int = -1) -> bytes:
        return again(lambda: self._inner.read(size), self._what)

    def readinto(self, buffer: Any) -> int:
        return again(lambda: self._inner.readinto(buffer), self._what)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> RetriedReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def open_for_reading(path: UPath) -> BinaryIO:
    """``path`` opened for reading; on an object store its reads retry (the docstring)."""
    if is_local(path):
        return path.open("rb")
    return cast(BinaryIO, RetriedReads(path.fs.open(path.path, mode="rb"), path))


class RetriedReadsHandler(pafs.FSSpecHandler):
    """pyarrow's handler of an fsspec filesystem, whose input files retry their reads."""

    def open_input_file(self, path: str) -> pa.PythonFile:
        if not self.fs.isfile(path):
            raise FileNotFoundError(path)
        return pa.PythonFile(RetriedReads(self.fs.open(path, mode="rb"), path), mode="r")

    def open_input_stream(self, path: str) -> pa.PythonFile:
        return self.open_input_file(path)
