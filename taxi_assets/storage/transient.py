"""What is worth another try when a store answers a request, and the pause between tries.

One classification for the uploads' retry loop (``storage/publish.py``) and the reads'
(``storage/read_retries.py``): throttling, server errors, timeouts, dropped connections
and answers cut short are transient; refusals (403, a missing object) are not.
"""

from __future__ import annotations

import logging
import random
import time

from taxi_assets.storage.urls import without_queries

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_log = logging.getLogger(__name__)


def pause_before_next(
    what: str, error: BaseException, attempt: int, attempts: int, backoff_s: float
) -> None:
    """Say that ``what`` failed with ``error`` and sleep before attempt ``attempt + 1`` of
    ``attempts``: exponential from ``backoff_s``, with jitter."""
    pause = backoff_s * 2 ** (attempt - 1) * random.uniform(1, 1.5)
    _log.warning(
        "%s failed (%s: %s); attempt %d of %d in %.1fs",
        what,
        type(error).__name__,
        first_line(error),
        attempt + 1,
        attempts,
        pause,
    )
    time.sleep(pause)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s text, short, without URLs' query strings."""
    # Without URLs' query strings: an Azure SAS rides in every request's URL.
    return without_queries((str(error).strip().splitlines() or [""])[0])[:300]


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind an object store error, wherever its library keeps it."""
    for exc in (error, error.__cause__):
        if exc is None:
            continue
        # azure.core.exceptions.HttpResponseError (adlfs passes them on as they are)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            return status
        # botocore's ClientError: s3fs raises OSError(errno, message) from it
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
        # gcsfs's HttpError
        code = getattr(exc, "code", None)
        if isinstance(code, int | str) and str(code).isdigit():
            return int(code)
    return None


def is_transient(error: BaseException) -> bool:
    """Worth another try: throttling (429, S3's 503 SlowDown, Azure's 503 ServerBusy),
    server errors (5xx), timeouts and dropped connections, from gcsfs, s3fs or adlfs."""
    if is_checksum_error(error) or isinstance(error, _transient_exception_types()):
        # Types first: an answer cut short (aiohttp's ClientPayloadError) is caused by a
        # ContentLengthError whose "code" is 400, which is no answer of the server's.
        return True
    status = http_status(error)
    return status is not None and status in TRANSIENT_STATUSES


# Statuses every store's client retries by itself on a read, list or delete (botocore's
# standard mode, Azure's retry policy, gcsfs): S3's 503 SlowDown, Azure's 503 ServerBusy,
# 5xx. Not 429: botocore retries it only under a throttling error code.
RETRIED_BY_EVERY_CLIENT = frozenset({500, 502, 503, 504})


def retried_by_the_client(error: BaseException) -> bool:
    """A server's answer whose status the store's client has retried already, as opposed
    to an answer cut short or a connection lost (an aiohttp payload error's cause carries a
    "code" 400 that no server sent)."""
    if is_checksum_error(error) or isinstance(error, _transient_exception_types()):
        return False
    status = http_status(error)
    # gcsfs retries a 429 as well (its HttpError: 6 tries in all).
    gcsfs = type(error).__module__.startswith("gcsfs")
    return status in RETRIED_BY_EVERY_CLIENT or (status == 429 and gcsfs)


def _transient_exception_types() -> tuple[type[BaseException], ...]:
    import aiohttp
    import azure.core.exceptions as azure_errors
    import botocore.exceptions as boto_errors
    import requests

    return (
        ConnectionError,
        TimeoutError,
        aiohttp.ClientConnectionError,
        aiohttp.ServerTimeoutError,
        aiohttp.ClientPayloadError,  # an answer's body cut short (s3fs passes it on)
        requests.ConnectionError,  # gcsfs raises ProxyError (a subclass) for a 502
        requests.Timeout,
        # s3fs: EndpointConnectionError, ConnectionClosedError, Read/ConnectTimeoutError
        boto_errors.ConnectionError,
        boto_errors.HTTPClientError,
        # adlfs: connection refused or reset, timeouts
        azure_errors.ServiceRequestError,
        azure_errors.ServiceResponseError,
        azure_errors.IncompleteReadError,  # an answer's body cut short
    )


def is_checksum_error(error: BaseException) -> bool:
    return type(error).__name__ == "ChecksumError"
