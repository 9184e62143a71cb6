"""A lake the command line cannot use, said in one line, as ``lake check`` says it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from upath import UPath

from taxi_assets.storage.errors import LakeConfigurationError
from taxi_assets.storage.roots import is_local, lake_root, refuse_unknown_store
from taxi_assets.storage.stores import store_for
from taxi_assets.storage.urls import bucket_of

T = TypeVar("T")


def usable_lake_root(url: str | None) -> UPath:
    """:func:`lake_root` of ``url`` (default ``$TAXI_LAKE_URL``), refusing what ``lake
    check`` refuses: a URL that is neither a local folder nor an object store."""
    root = lake_root(url)
    refuse_unknown_store(root, url or str(root))
    if is_local(root) and root.exists() and not root.is_dir():
        raise LakeConfigurationError(f"the lake {root} is a file, not a folder")
    return root


def explained(root: UPath, read: Callable[[], T]) -> T:
    """``read()``, with a store's refusal (no credentials, no such bucket, access denied)
    raised as a :class:`LakeConfigurationError` in the store's own words; anything the
    store does not recognise is raised as it was."""
    try:
        return read()
    except LakeConfigurationError:
        raise
    except Exception as error:
        store = None if is_local(root) else store_for(root.protocol)
        reason = None if store is None else store.explain(error, bucket_of(root.path))
        if reason is None:
            raise
        raise LakeConfigurationError(f"cannot read the lake at {root}: {reason}") from error
