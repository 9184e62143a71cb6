"""The object stores a lake URL may name; the URL's scheme picks one (no mode switch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from upath import UPath


@dataclass(frozen=True)
class ObjectStore:
    """What the lake needs from one provider. Each provider module builds one: ``gcs``,
    ``s3``, ``azure``; publishing, the bucket check and the roots use nothing else."""

    label: str  # "Amazon S3"
    protocols: tuple[str, ...]  # URL schemes, the canonical one first
    bucket_word: str  # "bucket", "container"
    # A lake URL -> its root, with the provider's options and credentials.
    root: Callable[[str], UPath]
    # One attempt at publishing a local file as one object, all or nothing, sending parts
    # of the given size where the file is large.
    upload: Callable[[Path, UPath, int], None]
    # True when the client retries each upload request itself and cannot be told not to
    # (gcsfs): then the upload loop in ``publish`` does not retry transient errors again.
    client_retries_uploads: bool
    # Lists the root's bucket once: raises when it is missing or access is refused;
    # returns notes about optional permissions.
    probe_bucket: Callable[[UPath], list[str]]
    # A plain explanation of an error that is the bucket's absence, refused credentials
    # or a missing permission (given the bucket's name), else None.
    explain: Callable[[BaseException, str], str | None]
    # Where the root's requests go, for the check's summary ("endpoint ...", "project ...").
    describe: Callable[[UPath], str]


def store_for(protocol: str) -> ObjectStore | None:
    """The store serving URLs of ``protocol`` (``gs``, ``s3``, ``az``...), else None."""
    from taxi_assets.storage import azure, gcs, s3

    for store in (gcs.STORE, s3.STORE, azure.STORE):
        if protocol.lower() in store.protocols:
            return store
    return None


def store_for_url(url: str) -> ObjectStore | None:
    scheme, sep, _ = url.partition("://")
    return store_for(scheme) if sep else None
