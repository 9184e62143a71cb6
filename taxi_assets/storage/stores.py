"""The object stores a lake URL may name; the URL's scheme picks one (no mode switch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from upath import UPath


class LeftoverGone(Exception):
    """A leftover was removed, completed or replaced since it was listed: nothing to do."""


@dataclass(frozen=True)
class Leftover:
    """Something a killed write left in a bucket: invisible to readers, but stored (and
    billed) until removed. :func:`taxi_assets.storage.leftovers.sweep_bucket` removes the
    stale ones."""

    name: str  # what and where, as the sweep says it
    touched: datetime  # when it was last written to (timezone-aware)
    bytes: int
    # Removes it; raises LeftoverGone when it changed or went away meanwhile.
    remove: Callable[[], None]


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
    # What killed writes left under the root that can be removed, whatever their age.
    leftovers: Callable[[UPath], Iterator[Leftover]]
    # What a killed write may leave that the store cannot list or remove, and what ends
    # it (said by ``lake sweep``); "" when there is nothing of the kind.
    unsweepable: str


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
