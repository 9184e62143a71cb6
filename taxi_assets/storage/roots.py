"""Storage roots: a local path, a ``file://`` URL, or an object store URL.

The URL's scheme picks the store (:mod:`taxi_assets.storage.stores`): ``gs://`` Google
Cloud Storage (:mod:`~taxi_assets.storage.gcs`), ``s3://`` Amazon S3 or an S3-compatible
store (:mod:`~taxi_assets.storage.s3`), ``az://`` Azure Blob Storage
(:mod:`~taxi_assets.storage.azure`), each with credentials from its provider's standard
environment. There is no mode switch.
"""

from __future__ import annotations

from pathlib import Path

from upath import UPath

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.errors import LakeConfigurationError
from taxi_assets.storage.gcs import GCS_PROTOCOLS
from taxi_assets.storage.stores import store_for, store_for_url

LOCAL_PROTOCOLS = ("", "file", "local")
DEFAULT_LAKE_URL = "./data/lake"


def lake_root(configured: str | None = None) -> UPath:
    """The lake's root: ``configured`` (a resource's ``root``), else ``$TAXI_LAKE_URL``,
    else ``./data/lake``; shared by every layer written to the lake. A URL that is neither
    a folder nor an object store is refused, as the commands refuse it: ``memory://``
    passed, and a run wrote its lake into its own process's memory, gone when it ended."""
    url = resolve_setting(configured, "TAXI_LAKE_URL", DEFAULT_LAKE_URL) or DEFAULT_LAKE_URL
    root = resolve_root(url)
    refuse_unknown_store(root, url)
    return root


def resolve_root(url: str) -> UPath:
    """A storage root from a local path, a ``file://`` URL or an object store URL (``gs://``,
    ``s3://``, ``az://``); another fsspec scheme gets fsspec's defaults here, and the lake
    refuses it (:func:`lake_root`, :func:`refuse_unknown_store`)."""
    if "://" not in url or url.startswith("file://"):
        return UPath(Path(url.removeprefix("file://")).expanduser().resolve())
    store = store_for_url(url)
    if store is not None:
        return store.root(url)
    return UPath(url)


def refuse_unknown_store(root: UPath, url: str) -> None:
    """A root that is neither a local folder nor an object store the lake knows (another
    fsspec scheme would fail later, in its own words, or not at all) is refused, naming
    ``url``, as ``lake check`` and the commands say it."""
    if not is_local(root) and store_for(root.protocol) is None:
        if root.protocol in ("abfss", "adl"):
            raise LakeConfigurationError(
                f"{url!r}: give an Azure lake as az://CONTAINER/PREFIX, with the account in "
                "AZURE_STORAGE_ACCOUNT_NAME (or in AZURE_STORAGE_CONNECTION_STRING)"
            )
        raise LakeConfigurationError(
            f"{url!r} is neither a local folder nor an object store URL: give a path, "
            "file://PATH, gs://BUCKET/PREFIX, s3://BUCKET/PREFIX or az://CONTAINER/PREFIX "
            "(or set TAXI_LAKE_URL)"
        )


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def is_gcs(path: UPath) -> bool:
    return path.protocol in GCS_PROTOCOLS
