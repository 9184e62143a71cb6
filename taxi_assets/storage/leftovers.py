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

On an object store a killed write also leaves something in the bucket, invisible to
readers but stored: an S3 multipart upload, an Azure blob of uncommitted blocks, a
``lake check`` probe object (``.taxi-probe-*``). Each store lists what it can remove
(:attr:`ObjectStore.leftovers`) and says what it cannot (:attr:`ObjectStore.unsweepable`);
:func:`sweep_bucket` removes the stale ones under the lake's root.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upath import UPath

    from taxi_assets.storage.stores import ObjectStore

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
# ``lake check``'s probe at the lake's root (probe_name()): written, then deleted at once,
# unless the check was killed in between or may not delete.
PROBE_PREFIX = ".taxi-probe-"
PROBE = re.compile(rf"^{re.escape(PROBE_PREFIX)}[0-9a-f]{{12}}$")
# The folders this project writes under a lake's root: the raw and lake layers (its assets'
# key prefixes) and the analytics charts. A bucket's pending uploads are swept under these
# only: a lake at a bucket's root may share it with other applications, whose uploads in
# progress are not ours to abort.
LAKE_FOLDERS = ("raw/", "lake/", "analytics/")

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


REMOVED, KEPT, FAILED, GONE = "removed", "kept", "failed", "gone"


def _removal(path: Path, log: Callable[[str], None], now: float, *, dry_run: bool = False) -> str:
    """Remove ``path`` if stale: REMOVED (or, dry, would be), KEPT (too recent: maybe a
    write in progress), FAILED (logged) or GONE (removed meanwhile by another run)."""
    try:
        age = now - _newest_write(path)
        if age < STALE_AFTER_SECONDS:
            return KEPT
        if dry_run:
            log(f"would remove {path}, left by a killed run (untouched for {age / 3600:.1f} h)")
            return REMOVED
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # removed meanwhile by another run cleaning up too
        return GONE
    except OSError as error:  # another user's, or a folder that changed under us
        log(f"could not remove {path}, left by a killed run: {error}")
        return FAILED
    log(f"removed {path}, left by a killed run (untouched for {age / 3600:.1f} h)")
    return REMOVED


def _remove(path: Path, log: Callable[[str], None], now: float) -> bool:
    """Remove ``path`` if stale; a cleanup that fails is logged, never the run's failure."""
    return _removal(path, log, now) == REMOVED


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


def probe_name() -> str:
    import uuid

    return f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"


@dataclass
class Swept:
    """What a sweep removed (or, dry, would remove): paths or object names and their bytes;
    ``kept``: leftovers too recent to be a killed write's (maybe a write in progress);
    ``failed``: those that could not be removed (each logged)."""

    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    kept: int = 0
    failed: int = 0

    def add(self, other: Swept) -> Swept:
        return Swept(
            self.removed + other.removed,
            self.bytes + other.bytes,
            self.kept + other.kept,
            self.failed + other.failed,
        )


def sweep(
    roots: list[Path], *, dry_run: bool = False, log: Callable[[str], None] = _log.warning
) -> Swept:
    """Remove every stale staging file under the local ``roots`` (a lake's raw and lake
    layers) and ``lake check`` probe at a root, and the stale staging files and download
    folders of the temporary folder (where object-store writes stage): what
    :func:`remove_stale_staging` and :func:`remove_stale_downloads` do for one destination,
    for all of them."""
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
        for root in roots
        if root.is_dir()
        for path in root.glob(f"{PROBE_PREFIX}*")
        if PROBE.match(path.name) and _ours(path, stat.S_ISREG)
    ]
    candidates += [
        path
        for path in temp.iterdir()
        if (_STAGING.match(path.name) and _ours(path, stat.S_ISREG))
        or (_DOWNLOAD_FOLDER.match(path.name) and _ours(path))
    ]
    swept = Swept()
    for path in dict.fromkeys(candidates):  # a root inside the temporary folder: once
        try:
            bytes_ = _size(path)
        except FileNotFoundError:
            continue
        outcome = _removal(path, log, now, dry_run=dry_run)
        if outcome == REMOVED:
            swept.removed.append(str(path))
            swept.bytes += bytes_
        swept.kept += outcome == KEPT
        swept.failed += outcome == FAILED
    return swept


def sweep_bucket(
    root: UPath,
    store: ObjectStore,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = _log.warning,
) -> Swept:
    """Remove what killed writes left under the object-store ``root`` (its bucket's
    multipart uploads, uncommitted blobs, probes: :attr:`ObjectStore.leftovers`) that
    nothing touched for ``STALE_AFTER_SECONDS``. A recent one may be another run's write
    in progress (removing it would fail that run): kept. Listing errors are raised; a
    removal that fails is logged and counted, and the sweep goes on."""
    now = datetime.now(UTC)
    swept = Swept()
    for leftover in store.leftovers(root):
        age = (now - leftover.touched).total_seconds()
        if age < STALE_AFTER_SECONDS:
            swept.kept += 1
            continue
        said = f"{leftover.name}, {leftover.bytes / 1e6:,.1f} MB, left by a killed run"
        if dry_run:
            log(f"would remove {said} (untouched for {age / 3600:.1f} h)")
        else:
            from taxi_assets.storage.stores import LeftoverGone

            try:
                leftover.remove()
            except LeftoverGone:  # completed, replaced or removed meanwhile
                log(f"left {leftover.name} alone: it changed or went away since it was listed")
                continue
            except Exception as error:  # noqa: BLE001 - said, counted: the sweep's exit status
                reason = store.explain(error, root.path.split("/", 1)[0])
                log(f"could not remove {said}: {reason or f'{type(error).__name__}: {error}'}")
                swept.failed += 1
                continue
            log(f"removed {said} (untouched for {age / 3600:.1f} h)")
        swept.removed.append(leftover.name)
        swept.bytes += leftover.bytes
    return swept


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)
