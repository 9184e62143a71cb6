"""Azure Blob Storage for the lake: ``az://CONTAINER/PREFIX`` through adlfs.

Credentials come only from the environment, read by adlfs itself (the first that is set
wins): ``AZURE_STORAGE_CONNECTION_STRING`` (the only way to name an emulator's http
endpoint), else ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY``, or
``AZURE_STORAGE_SAS_TOKEN``, or a service principal (``AZURE_STORAGE_CLIENT_ID``,
``AZURE_STORAGE_CLIENT_SECRET``, ``AZURE_STORAGE_TENANT_ID``), else
``DefaultAzureCredential`` for that account (managed identity, workload identity, Azure
CLI login; it reads ``AZURE_CLIENT_ID`` and friends).

Retries: reads, listings and deletes are retried by the Azure SDK's own policy
(exponential, 3 retries on 5xx, timeouts and resets); uploads are retried as a whole by
:func:`taxi_assets.storage.publish.upload_file`, each upload request made once
(``retry_total=0``). Every failure is retried in exactly one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from upath import UPath

from taxi_assets.storage import silent_peers
from taxi_assets.storage.errors import LakeConfigurationError
from taxi_assets.storage.leftovers import LAKE_FOLDERS, PROBE
from taxi_assets.storage.silent_peers import connector_giving_up_on_silence
from taxi_assets.storage.stores import Leftover, LeftoverGone, ObjectStore
from taxi_assets.storage.urls import split_bucket_url, without_queries

AZURE_PROTOCOLS = ("az", "abfs")
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Blocks uploaded at once for a block blob (adlfs's default is 2500).
UPLOAD_CONCURRENCY = 4
CREDENTIAL_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",  # what Azurite (and a firewall rule) answer to a wrong key
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)
CREDENTIALS_HINT = (
    "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
    "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or an identity DefaultAzureCredential finds"
)


def split_azure_url(url: str) -> tuple[str, str]:
    """``az://container/some/prefix`` -> ``("container", "some/prefix")``; ``abfs://`` too."""
    return split_bucket_url(url, AZURE_PROTOCOLS, _CONTAINER, bucket_word="container")


def azure_storage_options() -> dict[str, Any]:
    """No credentials here (adlfs reads the environment); listings never cached."""
    return {"use_listings_cache": False}


def azure_root(url: str) -> UPath:
    container, prefix = split_azure_url(url)
    root = UPath(f"az://{container}/{prefix}".rstrip("/"), **azure_storage_options())
    try:
        root.fs  # noqa: B018 - builds the client from the environment: fail here, clearly
    except ValueError as error:
        # adlfs: "unable to connect to account for <reason>"; the reason names no secret.
        raise LakeConfigurationError(
            f"{url}: no usable Azure credentials ({error}): {CREDENTIALS_HINT}"
        ) from None
    _give_up_on_silence(root.fs)
    _mask_signed_urls_in_errors(root.fs)
    return root


def _mask_signed_urls_in_errors(fs: Any) -> None:
    """A request the transport cannot complete (a connect timeout, a dropped upload) fails
    with aiohttp's text, which quotes the request's URL, and a SAS rides in its query
    string (``sig=``): into the run's log (each retry's warning), its error and the alerts.
    The transport's errors are raised again with the query strings masked, of the same type
    (the retry policies decide on it) and without the original chained (Dagster records
    the chain). Once per (cached) filesystem."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    transport = fs.service_client._pipeline._transport
    send = transport.send
    if getattr(send, "masks_signed_urls", False):
        return

    async def send_masked(request: Any, **kwargs: Any) -> Any:
        try:
            return await send(request, **kwargs)
        except (ServiceRequestError, ServiceResponseError) as error:
            masked = without_queries(str(error))
            if masked == str(error):
                raise
            raise type(error)(masked) from None

    send_masked.masks_signed_urls = True  # type: ignore[attr-defined]
    transport.send = send_masked


def _give_up_on_silence(fs: Any) -> None:
    """Give the client's transport a session whose sockets give up on a server that stops
    taking an upload (``storage/silent_peers.py``), before it makes its own. Neither adlfs
    nor the client takes a connector: azure-core's ``AioHttpTransport`` makes its session
    when first opened, unless it has one (its documented ``session``; found through the
    client's pipeline, which has no public accessor). Once per (cached) filesystem."""
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport
    from fsspec.asyn import sync

    transport = fs.service_client._pipeline._transport
    if not isinstance(transport, AioHttpTransport) or transport.session is not None:
        return

    async def open_session() -> None:
        # What the transport's own session would be (azure-core's open()), and the connector.
        transport.session = aiohttp.ClientSession(
            connector=connector_giving_up_on_silence(),
            trust_env=transport._use_env_settings,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    sync(fs.loop, open_session)


def upload_once(local: Path, dest: UPath, chunk_bytes: int) -> None:
    """One attempt: a single Put Blob up to ``2 * chunk_bytes``, else blocks of
    ``chunk_bytes`` committed by one Put Block List; each request made once and checked
    with Content-MD5. A failed block upload leaves only uncommitted blocks: invisible,
    discarded by the next commit of that blob, or by Azure after a week."""
    fs = dest.fs
    # The client's documented settings; adlfs does not pass them to the constructor.
    settings = fs.service_client._config
    settings.max_single_put_size = 2 * chunk_bytes
    settings.max_block_size = chunk_bytes
    fs.put_file(
        str(local),
        dest.path,
        retry_total=0,
        max_concurrency=UPLOAD_CONCURRENCY,
        validate_content=True,
        # Per request (azure-core); reads and listings keep Azure Storage's 60 s.
        read_timeout=silent_peers.UPLOAD_ANSWER_S,
    )


def probe_bucket(root: UPath) -> list[str]:
    """List one blob of the container: raises when it is missing or access is refused."""
    from fsspec.asyn import sync

    container, _, prefix = root.path.partition("/")

    async def first_blob() -> None:
        client = root.fs.service_client.get_container_client(container)
        async for _blob in client.list_blobs(name_starts_with=prefix or None, results_per_page=1):
            break

    sync(root.fs.loop, first_blob)
    return []


@dataclass(frozen=True)
class _Found:
    what: str
    name: str
    touched: datetime
    size: int
    etag: str


def leftovers(root: UPath) -> Iterator[Leftover]:
    """Blobs in the root's ``LAKE_FOLDERS`` that hold only uncommitted blocks (a killed
    upload of a blob that did not exist yet), with the blocks' bytes, and ``lake check``
    probes left at the root. Their time is the blob's Last-Modified, which for blocks alone is when the first
    one was stored (Put Block does not change it; seen on Azurite): an upload's start, not
    its last part, so only one that ran for ``STALE_AFTER_SECONDS`` could be taken for a
    killed one (a month uploads in minutes). Uncommitted blocks of a committed blob (a
    killed replacement) cannot be removed without rewriting the blob: see
    :data:`UNSWEEPABLE`."""
    from fsspec.asyn import sync

    fs = root.fs
    container, _, prefix = root.path.partition("/")
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    async def found() -> list[_Found]:
        client = fs.service_client.get_container_client(container)
        listed = []
        async for blob in client.list_blobs(
            name_starts_with=prefix or None, include=["uncommittedblobs"]
        ):
            name, touched, etag = blob.name, blob.last_modified, blob.etag
            if PROBE.match(name[len(prefix) :]):
                listed.append(_Found("probe object", name, touched, blob.size, etag))
            elif blob.size == 0 and name[len(prefix) :].startswith(LAKE_FOLDERS):
                # A blob of uncommitted blocks alone lists as empty.
                size = await _uncommitted_only(client.get_blob_client(name))
                if size is not None:
                    listed.append(_Found("uncommitted blocks of", name, touched, size, etag))
        return listed

    for item in sync(fs.loop, found):
        yield Leftover(
            f"{item.what} az://{container}/{item.name}",
            item.touched,
            item.size,
            _remover(fs, container, item),
        )


def _remover(fs: Any, container: str, item: _Found) -> Callable[[], None]:
    """Delete the blob only as listed. A probe: only with the ETag listed. Uncommitted
    blocks: Azure (and Azurite) refuse conditions on a blob that has no committed version,
    so the blob is looked at again just before (:func:`_uncommitted_only`): a blob
    committed meanwhile (its upload alive after all) stays."""

    def remove() -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from fsspec.asyn import sync

        blob = fs.service_client.get_blob_client(container, item.name)
        try:
            if item.what == "probe object":
                sync(
                    fs.loop,
                    blob.delete_blob,
                    etag=item.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            if sync(fs.loop, _uncommitted_only, blob) is None:
                raise LeftoverGone(item.name)
            sync(fs.loop, blob.delete_blob)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise LeftoverGone(item.name) from error

    return remove


async def _uncommitted_only(blob: Any) -> int | None:
    """The bytes of ``blob``'s uncommitted blocks when it has no committed version (a
    killed upload of a new blob), else None. Not the block list alone: a blob written in
    one request (Put Blob: a small or empty file) has no committed blocks, so an empty
    published one with a replacement's blocks staged beside it would pass for a killed
    upload (and its delete would delete the file). Only a blob without a committed version
    has no properties."""
    from azure.core.exceptions import ResourceNotFoundError

    committed, uncommitted = await blob.get_block_list("all")
    if committed or not uncommitted:
        return None
    try:
        await blob.get_blob_properties()
    except ResourceNotFoundError:
        return sum(block.size for block in uncommitted)
    return None


UNSWEEPABLE = (
    "uncommitted blocks of a published blob (a killed replacement of it) go with that "
    "blob's next upload, else Azure deletes them after 7 days"
)


def _errors(error: BaseException) -> Iterator[BaseException]:
    """The error, its cause and context, and errors carried in its arguments (adlfs wraps
    a failed delete in ``RuntimeError("Failed to remove...", paths, error)``)."""
    for exc in (error, error.__cause__, error.__context__):
        if exc is not None:
            yield exc
            yield from (arg for arg in exc.args if isinstance(arg, BaseException))


# Azure's error codes for a write or delete an immutability policy or a legal hold forbids.
IMMUTABLE_CODES = frozenset({"BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"})


def explain(error: BaseException, container: str) -> str | None:
    """A missing container, missing or refused credentials, or a missing permission."""
    from azure.core.exceptions import ClientAuthenticationError

    for exc in _errors(error):
        if isinstance(exc, FileNotFoundError) and "No such container" in str(exc):
            return f"container {container!r} does not exist"
        code = getattr(exc, "error_code", None)
        code = str(getattr(code, "value", code)) if code is not None else None
        status = getattr(exc, "status_code", None)
        if code in ("ContainerNotFound", "ContainerBeingDeleted"):
            return f"container {container!r} does not exist"
        if code in IMMUTABLE_CODES:
            # No permission helps: the blob is kept by an immutability policy or hold.
            return (
                f"Azure keeps this blob ({code}): container {container!r} (or the blob) has "
                "a time-based retention policy or a legal hold, and the lake replaces blobs "
                "(a month's lake file, the raw revisions' manifest) and removes its staging. "
                "Use a container without immutability policies for the lake (versioning "
                "keeps earlier copies instead), or clear the hold"
            )
        if code in CREDENTIAL_CODES or (
            isinstance(exc, ClientAuthenticationError) and code is None
        ):
            return (
                f"Azure refused the credentials ({code or type(exc).__name__}): {CREDENTIALS_HINT}"
            )
        if (code or "").startswith("Authorization") or status == 403:
            return (
                f"access denied ({code or 'HTTP 403'}): these credentials may not do this in "
                f"container {container!r}; the lake needs read, write, delete and list "
                "(Storage Blob Data Contributor)"
            )
    return None


def describe(root: UPath) -> str:
    # Never the client's URL: with a SAS token it carries the signature.
    client = root.fs.service_client
    return f"account {client.account_name} at {client.scheme}://{client.primary_hostname}"


STORE = ObjectStore(
    label="Azure Blob Storage",
    protocols=AZURE_PROTOCOLS,
    bucket_word="container",
    root=azure_root,
    upload=upload_once,
    client_retries_uploads=False,
    probe_bucket=probe_bucket,
    explain=explain,
    describe=describe,
    leftovers=leftovers,
    unsweepable=UNSWEEPABLE,
)
