"""Google Cloud Storage for the lake: project and credentials from configuration.

Credentials come only from Google's standard mechanisms, never from a resource field or
a URL: Application Default Credentials, which cover a service-account key file named by
``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login`` and the
metadata server on GCE/GKE/Cloud Run (workload identity). The project comes from
``TAXI_GCP_PROJECT``, else from those credentials. With ``STORAGE_EMULATOR_HOST`` set
(tests, offline development) requests go to that emulator without credentials, as
``google-cloud-storage`` does.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from taxi_assets.settings import resolve_setting

if TYPE_CHECKING:
    from google.cloud import storage

GCS_PROTOCOLS = ("gs", "gcs")
READ_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
EMULATOR_PROJECT = "taxi-local"
# Bucket names: https://cloud.google.com/storage/docs/buckets#naming (dotted names too).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class GcsConfigurationError(Exception):
    """The GCS settings or credentials are unusable (the message names no secret)."""


def emulator_host() -> str | None:
    """``STORAGE_EMULATOR_HOST`` when it points at an emulator, else None."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    return host if host not in ("", "default") else None


def split_gcs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; ``gcs://`` works too."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in GCS_PROTOCOLS:
        raise GcsConfigurationError(f"{url!r} is not a gs://BUCKET/PREFIX URL")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise GcsConfigurationError(
            f"{url!r}: {bucket!r} is not a valid bucket name (expected gs://BUCKET/PREFIX)"
        )
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise GcsConfigurationError(f"{url!r}: the prefix must not hold empty, . or .. parts")
    return bucket, prefix


def gcp_project(project: str | None = None) -> str | None:
    """The configured project: ``project``, else ``$TAXI_GCP_PROJECT`` (None: from ADC)."""
    return resolve_setting(project, "TAXI_GCP_PROJECT", None)


def gcs_storage_options(project: str | None = None) -> dict[str, Any]:
    """``gcsfs.GCSFileSystem`` keyword arguments for the lake.

    Listings are not cached: a month's file is found by listing its folder, and another
    process may have replaced it since.
    """
    common: dict[str, Any] = {"use_listings_cache": False}
    project = gcp_project(project)
    if emulator_host():
        # gcsfs 2026.x probes every bucket for zonal/HNS features over gRPC, which an
        # emulator does not serve (each call stalls for a minute). Read at gcsfs import.
        if "gcsfs" not in sys.modules:
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        return {**common, "project": project or EMULATOR_PROJECT, "token": "anon"}
    credentials, default_project = _default_credentials(
        os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    )
    return {**common, "project": project or default_project, "token": credentials}


@functools.lru_cache(maxsize=8)
def _default_credentials(credentials_file: str) -> tuple[object, str | None]:
    """Application Default Credentials, once per process and key file (they self-refresh).

    gcsfs's own ``token="google_default"`` refuses a project that differs from the
    credentials' project; loading them here lets the project come from configuration.
    """
    import google.auth
    import google.auth.exceptions

    try:
        return google.auth.default(scopes=[READ_WRITE_SCOPE])
    except (google.auth.exceptions.GoogleAuthError, ValueError, OSError) as error:
        where = (
            f"the key file named by GOOGLE_APPLICATION_CREDENTIALS ({credentials_file})"
            if credentials_file
            else "Application Default Credentials"
        )
        # `from None`: the original error may quote the key file; Dagster records causes.
        raise GcsConfigurationError(
            f"no usable Google credentials from {where} ({type(error).__name__}). Set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run "
            "`gcloud auth application-default login`, or run with a workload identity."
        ) from None


def gcs_client(project: str | None = None) -> storage.Client:
    """A ``google.cloud.storage.Client`` through dagster-gcp's ``GCSResource``."""
    from dagster_gcp import GCSResource

    return GCSResource(project=gcp_project(project)).get_client()
