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
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.errors import LakeAccessError, LakeConfigurationError
from taxi_assets.storage.leftovers import PROBE
from taxi_assets.storage.silent_peers import shared_connector
from taxi_assets.storage.stores import Leftover, LeftoverGone, ObjectStore
from taxi_assets.storage.urls import bucket_of, split_bucket_url

if TYPE_CHECKING:
    from google.cloud import storage

GCS_PROTOCOLS = ("gs", "gcs")
READ_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
EMULATOR_PROJECT = "taxi-local"
# Seconds a request may take to connect, and then may wait for each read of its answer.
# gcsfs passes no timeout of its own, and aiohttp then waits for ever: a connection that
# stops answering (a partition, a NAT that forgot it) held the run until max_runtime.
# Timed out, a request is retried by gcsfs like a dropped connection. Per read, not per
# request: a large file that streams is never cut.
REQUEST_CONNECT_S = 30.0
REQUEST_READ_S = 300.0
# Bucket names: https://cloud.google.com/storage/docs/buckets#naming (dotted names too).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class GcsConfigurationError(LakeConfigurationError):
    """The GCS settings or credentials are unusable (the message names no secret)."""


def emulator_host() -> str | None:
    """``STORAGE_EMULATOR_HOST`` when it points at an emulator, else None."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    return host if host not in ("", "default") else None


def split_gcs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; ``gcs://`` works too."""
    return split_bucket_url(url, GCS_PROTOCOLS, _BUCKET, error=GcsConfigurationError)


def gcs_root(url: str) -> UPath:
    bucket, prefix = split_gcs_url(url)
    root = UPath(f"gs://{bucket}/{prefix}".rstrip("/"), **gcs_storage_options())
    _give_up_on_silence(root.fs)
    return root


def _give_up_on_silence(fs: Any) -> None:
    """Sessions whose sockets give up on a server that stops taking an upload
    (``storage/silent_peers.py``): aiohttp bounds no send. gcsfs makes its session from
    ``session_kwargs`` when it first needs one; set on the (cached) filesystem rather than
    passed as an option, so that the root stays picklable (a connector is not). Not with
    mutual TLS (``GOOGLE_API_USE_CLIENT_CERTIFICATE``), where gcsfs makes a connector of its
    own, with the client certificate, unless given one: that one stays unbounded."""
    if "connector" not in fs.session_kwargs and not getattr(fs, "_use_client_cert", False):
        fs.session_kwargs = {
            **fs.session_kwargs,
            "connector": shared_connector(),
            "connector_owner": False,
        }


def gcp_project(project: str | None = None) -> str | None:
    """The configured project: ``project``, else ``$TAXI_GCP_PROJECT`` (None: from ADC)."""
    return resolve_setting(project, "TAXI_GCP_PROJECT", None)


def gcs_storage_options(project: str | None = None) -> dict[str, Any]:
    """``gcsfs.GCSFileSystem`` keyword arguments for the lake.

    Listings are not cached: a month's file is found by listing its folder, and another
    process may have replaced it since.
    """
    from aiohttp import ClientTimeout

    bound = ClientTimeout(sock_connect=REQUEST_CONNECT_S, sock_read=REQUEST_READ_S)
    common: dict[str, Any] = {"use_listings_cache": False, "requests_timeout": bound}
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


def upload_once(local: Path, dest: UPath, chunk_bytes: int) -> None:
    """gcsfs sends files under 5 MiB in one request and larger ones as a resumable upload
    in ``chunk_bytes`` chunks (cancelled when one fails: nothing partial is left). It
    retries each request itself (6 tries on 408/429/5xx, timeouts and resets: built in,
    not configurable), and checks the stored object's MD5 against the bytes sent."""
    dest.fs.put_file(str(local), dest.path, chunksize=chunk_bytes, consistency="md5")


def leftovers(root: UPath) -> Iterator[Leftover]:
    """``lake check`` probes left at the root: the only leftover GCS lets us list (see
    :data:`UNSWEEPABLE`). One listing of the root's top level."""
    fs = root.fs
    try:
        entries = fs.ls(root.path, detail=True)
    except FileNotFoundError:  # nothing under the root yet, or no bucket: say which
        probe_bucket(root)
        return
    for entry in entries:
        name = entry["name"]
        if entry.get("type") == "file" and PROBE.match(name.rsplit("/", 1)[-1]):
            yield Leftover(
                f"probe object gs://{name}",
                datetime.fromisoformat(entry["updated"]),
                int(entry.get("size") or 0),
                _remover(fs, name),
            )


def _remover(fs: Any, path: str) -> Callable[[], None]:
    def remove() -> None:
        try:
            fs.rm_file(path)
        except FileNotFoundError as error:
            raise LeftoverGone(path) from error

    return remove


# gcsfs sends a file of 5 MiB or more as a resumable upload (JSON API): a killed one
# leaves its session, holding the chunks sent, and no object. GCS has no request that
# lists sessions (only the XML API's multipart uploads are listed; gcsfs does not use
# them), so nothing here can find one; GCS ends each session a week after it began.
UNSWEEPABLE = (
    "a killed upload's resumable session (no object; GCS cannot list them) ends a week "
    "after it began"
)


def probe_bucket(root: UPath) -> list[str]:
    """The bucket exists and these credentials see it (through dagster-gcp's client)."""
    bucket = bucket_of(root.path)
    if gcs_client().lookup_bucket(bucket) is None:
        raise LakeAccessError(
            f"bucket {bucket!r} does not exist or is not visible to these credentials"
        )
    return []


def explain(error: BaseException, bucket: str) -> str | None:
    """A missing bucket, refused credentials or a missing permission, said plainly."""
    import google.auth.exceptions

    if isinstance(error, google.auth.exceptions.RefreshError):
        # Google's own words ("invalid_grant: ..."): they name no secret.
        said = str(error.args[0]) if error.args else type(error).__name__
        if "iat" in said or "reasonable timeframe" in said:
            # The token request is signed with this machine's time: a clock minutes off
            # is refused like a bad key ("Invalid JWT: Token must be a short-lived token
            # (60 minutes) and in a reasonable timeframe. Check your iat and exp values").
            return (
                f"Google refused the credentials ({said}): this machine's clock is probably "
                "off by minutes or more; synchronise it (NTP) and try again"
            )
        return (
            f"Google refused the credentials ({said}): check GOOGLE_APPLICATION_CREDENTIALS "
            "or the workload identity"
        )
    code = getattr(error, "code", None)
    if code == 401:
        return "Google refused the credentials (HTTP 401)"
    message = str(error)
    # gcsfs raises OSError("Forbidden: <url>\n<GCS's message>") for a 403.
    if code == 403 or message.startswith("Forbidden"):
        said = (message.strip().splitlines() or [""])[-1]
        # GCS's words for an object it keeps: "Object 'b/o' is subject to bucket's
        # retention policy and cannot be deleted, overwritten or archived until <time>",
        # "... is under active Temporary hold ...". No permission helps.
        if "retention" in said or " hold" in said:
            return (
                f"GCS keeps this object ({said}): bucket {bucket!r} has a retention policy, "
                "or the object a hold, and the lake replaces objects (a month's lake file, "
                "the raw revisions' manifest) and removes its staging. Use a bucket without "
                "a retention policy for the lake (Object Versioning with a lifecycle rule "
                "keeps earlier copies instead), or release the hold"
            )
        return (
            f"these credentials may not use bucket {bucket!r} (HTTP 403): grant "
            "roles/storage.objectAdmin on it"
        )
    if code == 404 or isinstance(error, FileNotFoundError):
        return f"bucket {bucket!r} does not exist or is not visible to these credentials"
    return None


def describe(root: UPath) -> str:
    return f"project {root.fs.project}"


STORE = ObjectStore(
    label="Google Cloud Storage",
    protocols=GCS_PROTOCOLS,
    bucket_word="bucket",
    root=gcs_root,
    upload=upload_once,
    client_retries_uploads=True,
    probe_bucket=probe_bucket,
    explain=explain,
    describe=describe,
    leftovers=leftovers,
    unsweepable=UNSWEEPABLE,
)
