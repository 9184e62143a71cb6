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
# its answer (an upload's sending too: requests bounds each socket operation, not the
# whole request). google-cloud-bigquery passes no bound (timeout=None) to most requests:
# a connection that stops answering (a network partition, a NAT that dropped it) held the
# run for ever, and its own retries (DEFAULT_RETRY, 600 s) never got their turn. A
# request that times out is retried by them like a dropped connection.
REQUEST_TIMEOUT_S: tuple[float, float] = (30.0, 300.0)


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
    """Give ``client``'s requests that have no timeout :data:`REQUEST_TIMEOUT_S`.

    Through the client's HTTP session (``_http``: google-cloud-core's, the one it would
    create on first use; pinned by test_bigquery_io_manager.py), for every request made
    with ``timeout=None``: the API's calls and an upload's chunks alike."""
    session = client._http
    unbounded = session.request

    def request(method: str, url: str, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
        bound = REQUEST_TIMEOUT_S if timeout is None else timeout
        return unbounded(method, url, *args, timeout=bound, **kwargs)

    session.request = request
