"""One code path for local folders and object stores (``gs://``): roots and atomic publishing."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")


def resolve_root(url: str) -> UPath:
    """A storage root from a local path, a ``file://`` URL or an fsspec URL such as ``gs://``."""
    if "://" not in url or url.startswith("file://"):
        return UPath(Path(url.removeprefix("file://")).expanduser().resolve())
    return UPath(url)


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def local_staging_dir(dest: UPath) -> Path:
    """Where to write a file before publishing it to ``dest``.

    Locally that is ``dest``'s own folder (so publishing is a rename on the same
    filesystem); for object stores a local temp folder (publishing is one upload).
    """
    if is_local(dest):
        folder = Path(dest.path).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    import tempfile

    return Path(tempfile.gettempdir())


def staging_name(dest: UPath) -> str:
    # Leading dot: pyarrow.dataset and Hive-style readers skip hidden files.
    return f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"


def publish_file(local_src: Path, dest: UPath) -> None:
    """Make ``local_src`` visible at ``dest`` in one step; readers never see a partial file.

    Locally: fsync, then ``os.replace`` (atomic within a filesystem). Object stores: a
    single-object upload, which becomes visible only once complete. ``local_src`` is gone
    afterwards either way.
    """
    if is_local(dest):
        target = Path(dest.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local_src.parent != target.parent:
            staged = target.parent / staging_name(dest)
            try:
                shutil.copyfile(local_src, staged)
            except BaseException:
                Path(staged).unlink(missing_ok=True)
                raise
            local_src.unlink()
            local_src = staged
        with open(local_src, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(local_src, target)
        return
    try:
        dest.fs.put_file(str(local_src), dest.path)
    finally:
        local_src.unlink(missing_ok=True)


def remove_if_exists(path: UPath) -> None:
    if path.exists():
        path.unlink()
