"""A store's refusal of a read (no credentials, wrong ones, no such bucket, a missing
permission), said in the store's words and naming the setting, wherever the lake is read:
the command line, and every run's first read (each step reads the lake before it writes,
so bad credentials met that read first, as the client's own error: "Forbidden",
"NoCredentialsError", ten lines of Azure's XML). A missing bucket is told apart from a
file not stored yet ("materialize it first" sent the operator the wrong way)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from upath import UPath

from taxi_assets.storage.errors import LakeAccessError, LakeConfigurationError
from taxi_assets.storage.roots import is_local
from taxi_assets.storage.stores import store_for
from taxi_assets.storage.urls import bucket_of

T = TypeVar("T")


def explained(path: UPath, read: Callable[[], T]) -> T:
    """``read()`` of the lake at ``path``, a store's refusal raised as a
    :class:`LakeAccessError` in the store's own words; anything the store does not
    recognise is raised as it was."""
    try:
        return read()
    except LakeConfigurationError:
        raise
    except Exception as error:
        store = None if is_local(path) else store_for(path.protocol)
        reason = None if store is None else store.explain(error, bucket_of(path.path))
        if reason is None:
            raise
        raise LakeAccessError(f"cannot read the lake at {path}: {reason}") from error


def refuse_missing_bucket(path: UPath) -> None:
    """Before saying that nothing is stored at ``path`` on an object store: its bucket
    exists and may be listed, else :class:`LakeAccessError` saying which."""
    if is_local(path):
        return
    store = store_for(path.protocol)
    if store is not None:
        explained(path, lambda: store.probe_bucket(path))
