"""Every revision of a published file, kept under its sha256, and which one is current.

A *slot* holds the revisions of one partition of one asset (or of an unpartitioned asset):

    <lake>/<asset key path>/<partition key>/revisions.json              the manifest
    <lake>/<asset key path>/<partition key>/<sha256>/<published name>   one revision
    <lake>/<asset key path>/revisions.json, .../<sha256>/<name>         unpartitioned

Revision files never change once written (their folder is their content's hash), so
readers need no lock; the manifest is replaced in one step. Files of the earlier flat
layout (``<lake>/<asset key path>/<published name>``) are adopted as revisions on the
first touch, without downloading them again. A manifest that disagrees with the files
present is reported, repaired where that is safe, and never trusted where it would hand
out the wrong bytes. Plain functions over UPath, no Dagster: local folders and object
stores behave the same (locking aside, see :mod:`taxi_assets.storage.slot_lock`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from upath import UPath

from taxi_assets.storage.revision_manifest import (
    MANIFEST_NAME,
    SHA256,
    Manifest,
    Revision,
    read_manifest,
)

SAFE_PARTITION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")


class RevisionError(ValueError):
    """A revision that is asked for but cannot be used; the message lists those that can."""


@dataclass(frozen=True)
class RevisionSlot:
    """Where the revisions of one partition (or of an unpartitioned asset) live."""

    folder: UPath
    # The flat layout of earlier versions: files in ``legacy_folder`` (whose name contains
    # ``legacy_key``, for a partition) are adopted as revisions of this slot.
    legacy_folder: UPath
    legacy_key: str | None

    @property
    def manifest_path(self) -> UPath:
        return self.folder / MANIFEST_NAME

    def revision_path(self, revision: Revision) -> UPath:
        return self.folder / revision.sha256 / revision.name

    @property
    def label(self) -> str:
        """The slot in messages: its asset's folder and partition, "yellow_tripdata 2021-01"
        (unpartitioned: the asset's folder)."""
        if self.legacy_key is None:
            return self.folder.name
        return f"{self.folder.parent.name} {self.legacy_key}"


def slot_for(root: UPath, key_path: Sequence[str], partition_key: str | None) -> RevisionSlot:
    """The slot of ``partition_key`` (None: unpartitioned) of the asset at ``key_path``."""
    asset_folder = root.joinpath(*key_path)
    if partition_key is None:
        return RevisionSlot(asset_folder, asset_folder, None)
    if not SAFE_PARTITION_KEY.fullmatch(partition_key) or SHA256.fullmatch(partition_key):
        raise ValueError(f"partition key {partition_key!r} cannot name a folder")
    return RevisionSlot(asset_folder / partition_key, asset_folder, partition_key)


@dataclass(frozen=True)
class StoredRevision:
    """A revision file found on storage."""

    sha256: str
    path: UPath
    size: int


@dataclass
class SlotState:
    """A slot as read: its manifest, the revision files present, and what disagrees."""

    slot: RevisionSlot
    manifest: Manifest
    files: dict[str, StoredRevision]
    problems: list[str] = field(default_factory=list)
    legacy: list[UPath] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.manifest.revisions or self.files or self.legacy)

    def sound(self, sha256: str | None) -> StoredRevision | None:
        """The file of a listed revision, present with the listed size; else None."""
        revision = self.manifest.find(sha256)
        stored = self.files.get(sha256 or "")
        if revision is None or stored is None or stored.size != revision.bytes:
            return None
        return stored

    def usable(self) -> list[Revision]:
        return [r for r in self.manifest.revisions if self.sound(r.sha256) is not None]

    def current(self) -> tuple[Revision, StoredRevision]:
        """The current revision and its file; raises :class:`RevisionError` rather than
        hand out bytes the manifest does not vouch for."""
        sha256 = self.manifest.current
        revision = self.manifest.find(sha256)
        stored = self.sound(sha256)
        if sha256 is None:
            problem = f"{self.slot.manifest_path}: no current revision is recorded"
        elif revision is None:
            problem = f"{self.slot.manifest_path}: current revision {sha256[:12]} is not listed"
        elif stored is None:
            problem = f"current revision {revision.short}: {self._unsound(revision)}"
        else:
            return revision, stored
        raise RevisionError(f"{problem}; {self.listing()}")

    def resolve(self, prefix: str) -> Revision:
        """The usable revision whose sha256 starts with ``prefix`` (unique)."""
        wanted = prefix.strip().lower()
        if not wanted or not re.fullmatch(r"[0-9a-f]+", wanted):
            raise RevisionError(f"revision {prefix!r} is not a sha256 or a prefix of one")
        matches = [r for r in self.manifest.revisions if r.sha256.startswith(wanted)]
        if len(matches) > 1:
            shown = ", ".join(r.short for r in matches)
            raise RevisionError(f"revision {prefix!r} is ambiguous ({shown}); give more digits")
        if not matches:
            raise RevisionError(f"no revision {prefix!r} in {self.slot.folder}; {self.listing()}")
        if self.sound(matches[0].sha256) is None:
            problem = self._unsound(matches[0])
            raise RevisionError(f"revision {matches[0].short}: {problem}; {self.listing()}")
        return matches[0]

    def _unsound(self, revision: Revision) -> str:
        stored = self.files.get(revision.sha256)
        if stored is None:
            return f"its file {self.slot.revision_path(revision)} is missing"
        return f"{stored.path} holds {stored.size} bytes, the manifest says {revision.bytes}"

    def listing(self) -> str:
        usable = self.usable()
        if not usable:
            return f"no usable revision is stored in {self.slot.folder}"
        return "revisions stored: " + "; ".join(describe(r, self.manifest) for r in usable)


def describe(revision: Revision, manifest: Manifest) -> str:
    """One line: sha256, name, size, rows, where it came from, current/pinned."""
    flags = [m for m in ("current", "pinned") if getattr(manifest, m) == revision.sha256]
    rows = "" if revision.rows is None else f", {revision.rows} rows"
    state = f" [{', '.join(flags)}]" if flags else ""
    return (
        f"{revision.sha256} {revision.name} ({revision.bytes} bytes{rows}, "
        f"{revision.origin} {revision.added_at}){state}"
    )


def inspect(slot: RevisionSlot) -> SlotState:
    """Read ``slot`` without changing anything; ``problems`` lists what disagrees."""
    manifest = read_manifest(slot.manifest_path) or Manifest()
    state = SlotState(slot, manifest, {})
    if slot.folder.exists():
        _scan_folder(state)
    state.legacy = _legacy_files(slot)
    for revision in manifest.revisions:
        if state.sound(revision.sha256) is None:
            state.problems.append(f"revision {revision.short}: {state._unsound(revision)}")
    for name in ("current", "pinned"):
        sha256 = getattr(manifest, name)
        if sha256 is not None and manifest.find(sha256) is None:
            state.problems.append(
                f"{slot.manifest_path}: {name} revision {sha256[:12]} is not listed"
            )
    return state


def _scan_folder(state: SlotState) -> None:
    slot = state.slot
    for entry in slot.folder.iterdir():
        if entry.name.startswith(".") or entry.name == MANIFEST_NAME:
            continue
        if not SHA256.fullmatch(entry.name):
            if slot.legacy_key is not None or not entry.is_file():
                state.problems.append(f"{entry}: not part of the revision layout (left alone)")
            continue  # unpartitioned: plain files are the flat layout, see _legacy_files
        files = [f for f in entry.iterdir() if not f.name.startswith(".")]
        if len(files) != 1:
            names = sorted(f.name for f in files)
            state.problems.append(f"{entry}: expected one file in a revision folder, found {names}")
            continue
        state.files[entry.name] = StoredRevision(entry.name, files[0], files[0].stat().st_size)
        if state.manifest.find(entry.name) is None:
            state.unlisted.append(entry.name)
            state.problems.append(f"{files[0]}: a revision file the manifest does not list")


def _legacy_files(slot: RevisionSlot) -> list[UPath]:
    folder = slot.legacy_folder
    if not folder.exists():
        return []
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") or name == MANIFEST_NAME or SHA256.fullmatch(name):
            continue
        if slot.legacy_key is not None and (slot.legacy_key not in name or name == slot.legacy_key):
            continue
        if entry.is_file():
            found.append(entry)
    return sorted(found, key=lambda p: p.name)
