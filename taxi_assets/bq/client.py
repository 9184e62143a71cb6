"""A BigQuery client for the warehouse: credentials from Google's standard mechanisms.

Through dagster-gcp's ``BigQueryResource``: Application Default Credentials, which cover
a service-account key file named by ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login`` and the metadata server (workload identity). With
``BIGQUERY_EMULATOR_HOST`` set (tests, offline development) the client talks to that
emulator with anonymous credentials, as the GCS code does with ``STORAGE_EMULATOR_HOST``:
``BigQueryResource`` alone would look for credentials there and fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a client is made: ~0.7 s that PostgreSQL runs never pay
    from google.cloud import bigquery

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
# Seconds a BigQuery API request may take to connect, and then may wait for each read of
# its answer. google-cloud-bigquery passes no bound (timeout=None) to most requests: a
# connection that stops answering (a network partition, a NAT that dropped it) held the
# run for ever, and its own retries (DEFAULT_RETRY, 600 s) never got their turn. A
# request that times out is retried by them like a dropped connection.
REQUEST_TIMEOUT_S: tuple[float, float] = (30.0, 300.0)
# urllib3 sends a request's body under the *connect* timeout, in one sendall that it
# bounds as a whole (requests#5263): with 30 s, an upload's chunk (100 MB) had to go at
# 3.3 MB/s or fail at every try (measured at a smaller scale: a 4.7 MB file over a 1 MB/s
# link with a 1 s bound failed). A request with a larger body than this gets no connect
# timeout (connecting is bounded by the kernel's SYN retries, ~2 min); its sending is
# bounded by the sockets' TCP_USER_TIMEOUT instead, as the lake's uploads are
# (storage/silent_peers.py): a peer that acknowledges nothing for 300 s is given up.
SMALL_BODY_BYTES = 64 * 1024


class BigQueryConfigurationError(Exception):
    """The BigQuery settings or credentials are unusable (the message names no secret)."""


def emulator_host() -> str | None:
    """``BIGQUERY_EMULATOR_HOST`` as a base URL (``http://HOST:PORT``), or None."""
    host = os.environ.get(EMULATOR_ENV, "").strip()
    if not host:
        return None
    # google-cloud-bigquery uses the value verbatim as its base URL: it needs the scheme.
    return host if "://" in host else f"http://{host}"


@contextmanager
def bigquery_client(project: str, location: str | None) -> Iterator[bigquery.Client]:
    """A client acting for ``project`` (jobs run and bill there), jobs in ``location``."""
    from google.cloud import bigquery

    host = emulator_host()
    if host is not None:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=host),
        )
        bound_requests(client)
        try:
            yield client
        finally:
            client.close()
        return

    import google.auth.exceptions
    from dagster_gcp import BigQueryResource

    try:
        with BigQueryResource(project=project, location=location).get_client() as client:
            bound_requests(client)
            try:
                yield client
            finally:
                client.close()
    except google.auth.exceptions.DefaultCredentialsError as error:
        key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
        where = (
            f"the key file named by GOOGLE_APPLICATION_CREDENTIALS ({key_file})"
            if key_file
            else "Application Default Credentials"
        )
        # `from None`: the original message may quote the key file's content.
        raise BigQueryConfigurationError(
            f"no usable Google credentials for BigQuery from {where} "
            f"({type(error).__name__}). Set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
            "key file, run `gcloud auth application-default login`, or run with a workload "
            f"identity (or set {EMULATOR_ENV} for an emulator)."
        ) from None


def bound_requests(client: bigquery.Client) -> None:
    """Give ``client``'s requests that have no timeout :data:`REQUEST_TIMEOUT_S`, or, for
    one with a body over :data:`SMALL_BODY_BYTES`, only its read bound, and its sockets
    ``TCP_USER_TIMEOUT``.

    Through the client's HTTP session (``_http``: google-cloud-core's, the one it would
    create on first use; pinned by test_bigquery_io_manager.py), for every request made
    with ``timeout=None``: the API's calls and an upload's chunks alike."""
    session = client._http
    _give_up_on_silence(session)
    unbounded = session.request

    def request(method: str, url: str, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
        if timeout is None:
            body = kwargs.get("data", args[0] if args else None)
            timeout = (None, REQUEST_TIMEOUT_S[1]) if _large(body) else REQUEST_TIMEOUT_S
        return unbounded(method, url, *args, timeout=timeout, **kwargs)

    session.request = request


def _large(body: object) -> bool:
    if body is None:
        return False
    if isinstance(body, str | bytes | bytearray | memoryview):
        return len(body) > SMALL_BODY_BYTES
    return True  # a stream: its size unknown


def _give_up_on_silence(session: Any) -> None:
    """Mount, for each scheme, requests' adapter with the same pool settings, whose
    connections' sockets carry ``TCP_USER_TIMEOUT`` (Linux only; elsewhere nothing changes),
    through urllib3's ``socket_options`` (requests' documented way: a subclass's
    ``init_poolmanager``, and ``proxy_manager_for`` for a proxy's connections)."""
    from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
    from urllib3.connection import HTTPConnection

    from taxi_assets.storage.silent_peers import user_timeout_option

    option = user_timeout_option()
    if option is None:
        return
    options = [*HTTPConnection.default_socket_options, option]

    class GivingUpOnSilence(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **{**kwargs, "socket_options": options})

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            return super().proxy_manager_for(proxy, **{**proxy_kwargs, "socket_options": options})

    for prefix, adapter in list(session.adapters.items()):
        if isinstance(adapter, HTTPAdapter) and not isinstance(adapter, GivingUpOnSilence):
            session.mount(
                prefix,
                GivingUpOnSilence(
                    pool_connections=getattr(adapter, "_pool_connections", DEFAULT_POOLSIZE),
                    pool_maxsize=getattr(adapter, "_pool_maxsize", DEFAULT_POOLSIZE),
                    max_retries=adapter.max_retries,
                    pool_block=getattr(adapter, "_pool_block", False),
                ),
            )
