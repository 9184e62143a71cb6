"""Storage roots: a local path, a ``file://`` URL, or an object store URL (``gs://``).

A lake URL ``gs://bucket/prefix`` is a Google Cloud Storage root through gcsfs, with the
project and credentials from configuration (:mod:`taxi_assets.storage.gcs`).
"""

from __future__ import annotations

from pathlib import Path

from upath import UPath

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.gcs import GCS_PROTOCOLS, gcs_storage_options, split_gcs_url

LOCAL_PROTOCOLS = ("", "file", "local")
DEFAULT_LAKE_URL = "./data/lake"


def lake_root(configured: str | None = None) -> UPath:
    """The lake's root: ``configured`` (a resource's ``root``), else ``$TAXI_LAKE_URL``,
    else ``./data/lake``; shared by every layer written to the lake."""
    return resolve_root(
        resolve_setting(configured, "TAXI_LAKE_URL", DEFAULT_LAKE_URL) or DEFAULT_LAKE_URL
    )


def resolve_root(url: str) -> UPath:
    """A storage root from a local path, a ``file://`` URL or an fsspec URL such as ``gs://``."""
    if "://" not in url or url.startswith("file://"):
        return UPath(Path(url.removeprefix("file://")).expanduser().resolve())
    if url.partition("://")[0].lower() in GCS_PROTOCOLS:
        bucket, prefix = split_gcs_url(url)
        return UPath(f"gs://{bucket}/{prefix}".rstrip("/"), **gcs_storage_options())
    return UPath(url)


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def is_gcs(path: UPath) -> bool:
    return path.protocol in GCS_PROTOCOLS
