"""A lake the command line cannot use, said in one line, as ``lake check`` says it.
``explained`` (a store's refusal of a read) is the runs' own (``storage.explained``)."""

from __future__ import annotations

from upath import UPath

from taxi_assets.storage.errors import LakeConfigurationError
from taxi_assets.storage.explained import explained
from taxi_assets.storage.roots import is_local, lake_root, refuse_unknown_store

__all__ = ["explained", "usable_lake_root"]


def usable_lake_root(url: str | None) -> UPath:
    """:func:`lake_root` of ``url`` (default ``$TAXI_LAKE_URL``), refusing what ``lake
    check`` refuses: a URL that is neither a local folder nor an object store."""
    root = lake_root(url)
    refuse_unknown_store(root, url or str(root))
    if is_local(root) and root.exists() and not root.is_dir():
        raise LakeConfigurationError(f"the lake {root} is a file, not a folder")
    return root
