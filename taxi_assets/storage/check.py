"""Is the lake's bucket (or container) reachable and writable with these credentials?

The same steps on every store, through the code the runs use: build the root (settings
and credentials), list the bucket, publish a hidden probe object, delete it. Each step's
failure is explained: a missing bucket, refused credentials, or a missing permission.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from upath import UPath

from taxi_assets.settings import resolve_setting
from taxi_assets.storage.errors import LakeAccessError, LakeConfigurationError
from taxi_assets.storage.publish import publish_bytes
from taxi_assets.storage.roots import resolve_root
from taxi_assets.storage.stores import ObjectStore, store_for_url
from taxi_assets.storage.urls import bucket_of

T = TypeVar("T")


def check(url: str | None = None) -> str:
    """Verify the lake bucket is reachable and writable; a summary (one line, then notes).

    Raises :class:`LakeConfigurationError` (or its :class:`LakeAccessError`) saying what
    is wrong; the message names no secret.
    """
    url = url or resolve_setting(None, "TAXI_LAKE_URL", None) or ""
    store = store_for_url(url)
    if store is None:
        raise LakeConfigurationError(
            f"{url!r} is not an object store URL: gs://BUCKET/PREFIX, s3://BUCKET/PREFIX "
            "or az://CONTAINER/PREFIX (give one, or set TAXI_LAKE_URL)"
        )
    root = resolve_root(url)
    bucket = bucket_of(root.path)
    notes = _step(store, bucket, f"list {store.bucket_word} {bucket!r}", store.probe_bucket, root)
    probe = root / f".taxi-probe-{uuid.uuid4().hex[:12]}"
    _step(store, bucket, "write a probe object", _write_probe, probe)
    _step(store, bucket, "delete the probe object", _delete, probe)
    summary = f"{root}: reachable and writable ({store.label}, {store.describe(root)})"
    return "\n".join([summary, *(f"note: {note}" for note in notes)])


def _step(
    store: ObjectStore, bucket: str, what: str, action: Callable[[UPath], T], path: UPath
) -> T:
    try:
        return action(path)
    except LakeConfigurationError:
        raise
    except Exception as error:
        explanation = store.explain(error, bucket)
        if explanation is None:
            raise
        raise LakeAccessError(f"{path}: cannot {what}: {explanation}") from error


def _write_probe(probe: UPath) -> None:
    publish_bytes(b"probe", probe)  # the runs' own upload path


def _delete(probe: UPath) -> None:
    probe.fs.rm_file(probe.path)
