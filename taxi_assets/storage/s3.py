"""Amazon S3 (and S3-compatible stores) for the lake: ``s3://BUCKET/PREFIX`` through s3fs.

Credentials come only from botocore's standard chain, never from a resource field or a
URL: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``),
``AWS_PROFILE`` and the shared config files, web identity, ECS task roles and the EC2
instance role. The endpoint is AWS unless ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
names another (MinIO, Ceph, R2, a local emulator); the region comes from
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the profile.

Retries: each read, listing and delete is retried by botocore (standard mode:
throttling, 5xx, timeouts, resets), s3fs's own second loop is turned off; uploads are
retried as a whole by :func:`taxi_assets.storage.publish.upload_file`, so the upload
client makes one attempt per request. Every failure is retried in exactly one place.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upath import UPath

from taxi_assets.storage import silent_peers
from taxi_assets.storage.leftovers import LAKE_FOLDERS, PROBE, PROBE_PREFIX, STALE_AFTER_SECONDS
from taxi_assets.storage.silent_peers import socket_giving_up_on_silence
from taxi_assets.storage.stores import Leftover, LeftoverGone, ObjectStore
from taxi_assets.storage.urls import bucket_of, split_bucket_url

S3_PROTOCOLS = ("s3", "s3a")
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# botocore's requests per operation (reads, listings, deletes): backoff with jitter, max 20 s.
READ_ATTEMPTS = 5
# How long a request waits for each read of its answer: s3fs's own default, said here. A
# download that stalls is given up after it and read again (storage/read_retries.py); an
# upload's answer waits longer (silent_peers.UPLOAD_ANSWER_S).
READ_S = 15.0
# Parts uploaded at once for a multipart upload (each part is held in memory).
UPLOAD_CONCURRENCY = 4
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403"})

_log = logging.getLogger(__name__)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; ``s3a://`` works too."""
    return split_bucket_url(url, S3_PROTOCOLS, _BUCKET)


def endpoint_url() -> str | None:
    """The S3 endpoint botocore would use from the environment (None: AWS's own).

    Passed to s3fs explicitly so that it is part of fsspec's filesystem cache key."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def s3_storage_options(attempts: int = READ_ATTEMPTS) -> dict[str, Any]:
    """``s3fs.S3FileSystem`` keyword arguments: no credentials (botocore's chain finds
    them), listings never cached (another process may have replaced a month since)."""
    options: dict[str, Any] = {"use_listings_cache": False, "config_kwargs": _config(attempts)}
    endpoint = endpoint_url()
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


def s3_root(url: str) -> UPath:
    bucket, prefix = split_s3_url(url)
    root = UPath(f"s3://{bucket}/{prefix}".rstrip("/"), **s3_storage_options())
    _one_retry_layer(root.fs)
    return root


def _one_retry_layer(fs: Any) -> None:
    """s3fs retries SlowDown and timeouts again around botocore's own retries (a lasting
    SlowDown cost 25 requests and 46 s): let botocore be the only layer. Not a
    constructor option; set on the (cached, shared) instance."""
    fs.retries = 1


def upload_once(local: Path, dest: UPath, chunk_bytes: int) -> None:
    """One attempt: a single PUT below ``2 * chunk_bytes``, else a multipart upload in
    parts of ``chunk_bytes`` that becomes visible only when completed (s3fs aborts it when
    a part fails). Then this key's other pending multipart uploads that nothing has
    touched for ``STALE_AFTER_SECONDS`` (a killed run's) are aborted; a recent one may be
    another run's upload of the same month still in progress, and is left alone."""
    from s3fs import S3FileSystem

    uploader = S3FileSystem(**{**dest.storage_options, **_single_attempt()})
    _one_retry_layer(uploader)
    uploader.put_file(
        str(local), dest.path, chunksize=chunk_bytes, max_concurrency=UPLOAD_CONCURRENCY
    )
    try:
        abort_pending_uploads(dest)
    except Exception as error:  # noqa: BLE001 - the object is published; say what is left
        _log.warning(
            "%s is published, but its interrupted multipart uploads could not be listed or "
            "aborted (%s): grant s3:ListBucketMultipartUploads, s3:ListMultipartUploadParts "
            "and s3:AbortMultipartUpload, or rely on the bucket's "
            "AbortIncompleteMultipartUpload lifecycle rule",
            dest,
            explain(error, bucket_of(dest.path)) or type(error).__name__,
        )


def _single_attempt() -> dict[str, Any]:
    # Reads and listings keep READ_S; an upload's answer waits longer (silent_peers).
    read_timeout = silent_peers.UPLOAD_ANSWER_S
    return {"config_kwargs": {**_config(attempts=1), "read_timeout": read_timeout}}


def _config(attempts: int) -> dict[str, Any]:
    """aiobotocore's ``AioConfig``: botocore's retries (its "max_attempts" counts retries,
    "total_max_attempts" requests), each read's bound (s3fs's own 15 s, said here), and
    sockets that give up on a server that stops taking an upload
    (``storage/silent_peers.py``)."""
    return {
        "retries": {"mode": "standard", "total_max_attempts": attempts},
        "read_timeout": READ_S,
        "connector_args": {"socket_factory": socket_giving_up_on_silence},
    }


def pending_uploads(dest: UPath) -> list[dict[str, Any]]:
    """The multipart uploads of exactly ``dest``'s key still in progress (``UploadId``,
    ``Initiated``...)."""
    bucket, _, key = dest.path.partition("/")
    found: list[dict[str, Any]] = []
    markers: dict[str, str] = {}
    while True:
        page = dest.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key, **markers)
        found += [u for u in page.get("Uploads", []) if u["Key"] == key]
        if not page.get("IsTruncated"):
            return found
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }


def _last_touched(dest: UPath, upload: dict[str, Any]) -> datetime:
    """When the upload was started or last received a part, whichever is later. (Not
    ``Initiated`` alone: moto_server reports a fixed 2010 date for every upload.)"""
    bucket, _, key = dest.path.partition("/")
    return _upload_state(dest.fs, bucket, key, upload)[0]


def _upload_state(fs: Any, bucket: str, key: str, upload: dict[str, Any]) -> tuple[datetime, int]:
    """An upload's last touch (see :func:`_last_touched`) and the bytes of its stored parts."""
    newest: datetime = upload["Initiated"]
    size = 0
    marker: dict[str, Any] = {}
    while True:
        page = fs.call_s3(
            "list_parts", Bucket=bucket, Key=key, UploadId=upload["UploadId"], **marker
        )
        parts = page.get("Parts", [])
        newest = max([newest, *(part["LastModified"] for part in parts)])
        size += sum(int(part.get("Size", 0)) for part in parts)
        if not page.get("IsTruncated"):
            return newest, size
        marker = {"PartNumberMarker": page["NextPartNumberMarker"]}


def abort_pending_uploads(dest: UPath, stale_after: float | None = None) -> int:
    """Abort the multipart uploads of ``dest``'s key (never another key's) untouched for
    ``stale_after`` seconds: a killed run's. A more recent one may be another run writing
    the same month right now (aborting it would fail that run), so it is kept; the next
    upload of the key after it went stale, or the bucket's lifecycle rule, removes it.
    How many were aborted."""
    if stale_after is None:
        stale_after = STALE_AFTER_SECONDS
    bucket, _, key = dest.path.partition("/")
    aborted = 0
    for upload in pending_uploads(dest):
        try:
            age = (datetime.now(UTC) - _last_touched(dest, upload)).total_seconds()
        except FileNotFoundError:  # completed or aborted meanwhile (NoSuchUpload)
            continue
        if age < stale_after:
            continue
        dest.fs.call_s3(
            "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
        )
        aborted += 1
    if aborted:
        _log.info(
            "aborted %d interrupted multipart upload(s) of %s (untouched for %.1f h or more)",
            aborted,
            dest,
            stale_after / 3600,
        )
    return aborted


def _key_prefix(root: UPath) -> tuple[str, str]:
    """The root's bucket and the prefix of its keys ("nyc/": never "nyc2/...")."""
    bucket, _, prefix = root.path.partition("/")
    return bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def leftovers(root: UPath) -> Iterator[Leftover]:
    """The multipart uploads of keys in the root's ``LAKE_FOLDERS`` still in progress (a
    killed run's, or a live one's: the sweep tells them apart by age), with their parts'
    bytes, and ``lake check`` probes left at the root."""
    fs = root.fs
    bucket, prefix = _key_prefix(root)
    for folder in LAKE_FOLDERS:
        yield from _pending_uploads(fs, bucket, f"{prefix}{folder}")
    for item in _objects(fs, bucket, f"{prefix}{PROBE_PREFIX}"):
        key = item["Key"]
        if PROBE.match(key[len(prefix) :]):
            yield Leftover(
                f"probe object s3://{bucket}/{key}",
                item["LastModified"],
                int(item["Size"]),
                _delete(fs, bucket, key),
            )


def _objects(fs: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under ``prefix``, page after page (one answer holds 1,000 at most)."""
    markers: dict[str, str] = {}
    while True:
        page = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, **markers)
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        markers = {"ContinuationToken": page["NextContinuationToken"]}


def _pending_uploads(fs: Any, bucket: str, prefix: str) -> Iterator[Leftover]:
    markers: dict[str, str] = {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads", []):
            key = upload["Key"]
            try:
                touched, size = _upload_state(fs, bucket, key, upload)
            except FileNotFoundError:  # completed or aborted meanwhile (NoSuchUpload)
                continue
            yield Leftover(
                f"multipart upload of s3://{bucket}/{key} ({upload['UploadId'][:16]}...)",
                touched,
                size,
                _abort(fs, bucket, key, upload["UploadId"]),
            )
        if not page.get("IsTruncated"):
            return
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }


def _abort(fs: Any, bucket: str, key: str, upload_id: str) -> Callable[[], None]:
    def abort() -> None:
        try:
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except FileNotFoundError as error:  # NoSuchUpload: completed or aborted meanwhile
            raise LeftoverGone(upload_id) from error

    return abort


def _delete(fs: Any, bucket: str, key: str) -> Callable[[], None]:
    def delete() -> None:  # S3 answers a delete of a missing key with success too
        fs.call_s3("delete_object", Bucket=bucket, Key=key)

    return delete


def probe_bucket(root: UPath) -> list[str]:
    """List one key of the bucket (raises when missing or refused); note whether
    interrupted multipart uploads can be cleaned."""
    bucket, _, prefix = root.path.partition("/")
    root.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    try:
        root.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, MaxUploads=1)
    except Exception as error:  # noqa: BLE001 - optional: reported, not fatal
        reason = explain(error, bucket) or f"{type(error).__name__}: {error}"
        return [
            f"interrupted multipart uploads cannot be cleaned ({reason}); grant "
            "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload or add an "
            "AbortIncompleteMultipartUpload lifecycle rule"
        ]
    return []


def error_code(error: BaseException) -> str | None:
    """S3's error code (``NoSuchBucket``, ``AccessDenied``...) behind an s3fs error."""
    for exc in (error, error.__cause__, error.__context__):
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
    return None


def explain(error: BaseException, bucket: str) -> str | None:
    """A missing bucket, missing or refused credentials, or a missing permission."""
    import botocore.exceptions as bce

    if isinstance(error, bce.NoCredentialsError | bce.PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE, or run with an instance or task role"
        )
    code = error_code(error)
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist"
    if code == "RequestTimeTooSkewed":
        # Requests are signed with this machine's time; S3 refuses one 15 minutes off.
        return (
            "S3 refused the request's time (RequestTimeTooSkewed): this machine's clock is "
            "off by more than 15 minutes; synchronise it (NTP) and try again"
        )
    if code in CREDENTIAL_CODES:
        return (
            f"S3 refused the credentials ({code}): check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the role"
        )
    if code == "403":
        # A HEAD's answer has no body, so no reason: a wrong key and a missing permission
        # look the same.
        return (
            "S3 refused the request (HTTP 403, no reason given to a HEAD): the credentials "
            "are wrong (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the "
            f"role), or may not read bucket {bucket!r} (s3:ListBucket, s3:GetObject)"
        )
    if code in DENIED_CODES:
        return (
            f"access denied ({code}): these credentials may not do this in bucket "
            f"{bucket!r}; the lake needs s3:ListBucket, s3:GetObject, s3:PutObject and "
            "s3:DeleteObject"
        )
    return None


def describe(root: UPath) -> str:
    return f"endpoint {root.storage_options.get('endpoint_url') or 'AWS'}"


STORE = ObjectStore(
    label="Amazon S3",
    protocols=S3_PROTOCOLS,
    bucket_word="bucket",
    root=s3_root,
    upload=upload_once,
    client_retries_uploads=False,
    probe_bucket=probe_bucket,
    explain=explain,
    describe=describe,
    leftovers=leftovers,
    # A killed single PUT stores nothing; a killed multipart upload is listed above.
    unsweepable="",
)
