"""Files a killed run left behind, removed by the next run that writes the same place.

Every write stages a hidden file beside its destination (or in the temporary folder,
for an object store) and downloads go to a ``taxi-raw-*`` folder in the temporary
folder; both are removed when the write ends, unless the process was killed (SIGKILL,
out of memory). Readers never see them (hidden, not published), but they take disk: a
killed FHVHV month leaves ~0.5 GB. The next write to the same destination, and the next
download, remove those that nothing has written to for ``STALE_AFTER_SECONDS``: a
live write updates its file's time continuously, so only dead ones are that old.

A month that is never written again keeps its leftover: ``lake sweep`` (:func:`sweep`)
removes every stale one under a local lake root and in the temporary folder at once.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Far longer than any write takes to append its next block (seconds), and shorter than a
# backfill of the whole history, so the next runs of a backfill clean up after a crash.
STALE_AFTER_SECONDS = 3 * 3600
# staging_name()'s form: ".<destination name>.<12 hex digits>.tmp".
_STAGING = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")
# Folders of fetch._download (and of revision_files.adopt_file): tempfile.mkdtemp's names,
# the prefix and 8 characters of its alphabet, nothing longer.
DOWNLOAD_PREFIXES = ("taxi-raw-", "taxi-adopt-")
_DOWNLOAD_FOLDER = re.compile(
    "^(?:" + "|".join(map(re.escape, DOWNLOAD_PREFIXES)) + ")[a-z0-9_]{8}$"
)

_log = logging.getLogger(__name__)


def _newest_write(path: Path) -> float:
    if not path.is_dir():
        return path.stat().st_mtime
    times = [path.stat().st_mtime]
    times.extend(inner.stat().st_mtime for inner in path.rglob("*"))
    return max(times)


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(inner.stat().st_size for inner in path.rglob("*") if inner.is_file())


def _remove(path: Path, log: Callable[[str], None], now: float, *, dry_run: bool = False) -> bool:
    """Remove ``path`` if stale; a cleanup that fails is logged, never the run's failure."""
    try:
        age = now - _newest_write(path)
        if age < STALE_AFTER_SECONDS:
            return False
        if dry_run:
            log(f"would remove {path}, left by a killed run (untouched for {age / 3600:.1f} h)")
            return True
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # removed meanwhile by another run cleaning up too
        return False
    except OSError as error:  # another user's, or a folder that changed under us
        log(f"could not remove {path}, left by a killed run: {error}")
        return False
    log(f"removed {path}, left by a killed run (untouched for {age / 3600:.1f} h)")
    return True


def _ours(path: Path, kind: Callable[[int], bool] = stat.S_ISDIR) -> bool:
    """A real folder or file (not a link) of this user: another program's or user's entry
    of a like name in the shared temporary folder is none of our business."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return kind(info.st_mode) and info.st_uid == os.getuid()


def remove_stale_staging(
    folder: Path, destination_name: str, log: Callable[[str], None] = _log.warning
) -> list[Path]:
    """Remove ``folder``'s staging files of ``destination_name`` that no write touched for
    ``STALE_AFTER_SECONDS``; the paths removed."""
    now = time.time()
    removed = []
    for path in folder.glob(f".{glob_escape(destination_name)}.*.tmp"):
        match = _STAGING.match(path.name)
        if match and match["name"] == destination_name and _remove(path, log, now):
            removed.append(path)
    return removed


def remove_stale_downloads(folder: Path, log: Callable[[str], None] = _log.warning) -> list[Path]:
    """Remove ``folder``'s download folders (``taxi-raw-*``, ``taxi-adopt-*``) that no
    download touched for ``STALE_AFTER_SECONDS``; the paths removed."""
    now = time.time()
    removed = []
    for path in folder.iterdir():
        if _DOWNLOAD_FOLDER.match(path.name) and _ours(path) and _remove(path, log, now):
            removed.append(path)
    return removed


@dataclass(frozen=True)
class Swept:
    """What :func:`sweep` removed (or, dry, would remove)."""

    paths: list[Path]
    bytes: int


def sweep(
    roots: list[Path], *, dry_run: bool = False, log: Callable[[str], None] = _log.warning
) -> Swept:
    """Remove every stale staging file under the local ``roots`` (a lake's raw and lake
    layers), and the stale staging files and download folders of the temporary folder
    (where object-store writes stage): what :func:`remove_stale_staging` and
    :func:`remove_stale_downloads` do for one destination, for all of them."""
    now = time.time()
    temp = Path(tempfile.gettempdir())
    candidates = [
        path
        for root in roots
        if root.is_dir()
        for path in root.rglob(".*.tmp")
        if _STAGING.match(path.name) and _ours(path, stat.S_ISREG)
    ]
    candidates += [
        path
        for path in temp.iterdir()
        if (_STAGING.match(path.name) and _ours(path, stat.S_ISREG))
        or (_DOWNLOAD_FOLDER.match(path.name) and _ours(path))
    ]
    removed, size = [], 0
    for path in dict.fromkeys(candidates):  # a root inside the temporary folder: once
        try:
            bytes_ = _size(path)
        except FileNotFoundError:
            continue
        if _remove(path, log, now, dry_run=dry_run):
            removed.append(path)
            size += bytes_
    return Swept(removed, size)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)
