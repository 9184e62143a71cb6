"""Changing a revision slot: repairs, a revision made current, pins, retention.

Every change is a read-modify-write of the manifest under the slot's lock
(:mod:`taxi_assets.storage.slot_lock`), re-reading the slot once the lock is held.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taxi_assets.storage.publish import publish_file, staged_beside
from taxi_assets.storage.revision_files import adopt_file, content_sha256, remove_revision_file
from taxi_assets.storage.revision_manifest import (
    Manifest,
    Revision,
    read_manifest,
    utc_now,
    write_manifest,
)
from taxi_assets.storage.revisions import (
    RevisionError,
    RevisionSlot,
    SlotState,
    StoredRevision,
    inspect,
)
from taxi_assets.storage.slot_lock import slot_lock

Log = Callable[[str], None]


class PinChange(enum.Enum):
    KEEP = "keep"  # leave the pin as it is (a pin to another revision is a conflict)
    SET = "set"  # pin the revision being made current
    CLEAR = "clear"  # remove the pin


@dataclass(frozen=True)
class Commit:
    """What :func:`make_current` did."""

    revision: Revision  # now current, as listed
    path: StoredRevision
    previous: Revision | None  # current before, None for the first
    added: bool  # a new revision was stored (False: the same bytes were there already)
    pruned: list[Revision]
    state: SlotState  # the slot as left by this write; problems include what was repaired


def repair(slot: RevisionSlot, log: Log) -> SlotState:
    """The slot's state after the repairs that are safe: files of the flat layout adopted
    (first touch), unlisted revision files whose bytes match their name listed again,
    listed revisions whose file is gone forgotten (unless current or pinned: those stay
    and fail where they would be used). Every repair is kept in ``problems`` for the
    caller to report; ``log`` hears adoptions. Reads only, without the lock, when nothing
    needs repairing."""
    state = inspect(slot)
    if not _needs_repair(state):
        return state
    with slot_lock(slot.folder, f"repairing the revisions of {slot.label}"):
        return _repair_locked(slot, log)


def _needs_repair(state: SlotState) -> bool:
    protected = {state.manifest.current, state.manifest.pinned}
    gone = [
        r
        for r in state.manifest.revisions
        if r.sha256 not in state.files and r.sha256 not in protected
    ]
    return bool(state.legacy or state.unlisted or gone)


def _repair_locked(slot: RevisionSlot, log: Log) -> SlotState:
    state = inspect(slot)
    if not _needs_repair(state):
        return state
    manifest, reports = state.manifest, list(state.problems)
    adopted = []
    for path in state.legacy:
        try:
            adopted.append(adopt_file(path, slot.folder, log))
        except FileNotFoundError:
            # Object stores only (no lock): another process adopted it a moment ago; its
            # revision folder is found and listed by this repair or the next.
            reports.append(f"{path}: adopted by another process meanwhile")
    for revision in adopted:
        manifest.put(revision)
    if len(adopted) == 1 and manifest.current is None:
        manifest.current = adopted[0].sha256  # the one file the flat layout served
    elif len(adopted) > 1 and manifest.current is None:
        reports.append(
            f"{slot.folder}: {len(adopted)} files of the flat layout adopted "
            f"({', '.join(r.name for r in adopted)}); none is made current: materialize "
            "the asset, or pin one of them"
        )
    for sha256 in state.unlisted:
        stored = state.files[sha256]
        actual, size = content_sha256(stored.path)
        if actual != sha256:
            reports.append(f"{stored.path}: its bytes hash to {actual[:12]}: not used")
            continue
        manifest.put(Revision(sha256, stored.path.name, size, utc_now(), "found"))
        reports.append(f"{stored.path}: listed again (its bytes match its sha256)")
    present = set(state.files) | {r.sha256 for r in adopted}
    protected = {manifest.current, manifest.pinned}
    for revision in list(manifest.revisions):
        if revision.sha256 not in present and revision.sha256 not in protected:
            manifest.revisions.remove(revision)
            reports.append(f"revision {revision.short} ({revision.name}): file gone, forgotten")
    write_manifest(slot.manifest_path, manifest)
    repaired = inspect(slot)
    repaired.problems = list(dict.fromkeys([*reports, *repaired.problems]))
    return repaired


def make_current(
    slot: RevisionSlot,
    revision: Revision,
    staged: Path | None,
    pin: PinChange,
    keep: int | None,
    log: Log,
) -> Commit:
    """Make ``revision`` the slot's current revision, storing ``staged`` (its bytes, a
    local file) unless the same bytes are stored already; with ``staged`` None the
    revision must be stored. Then apply ``pin`` and the retention ``keep``."""
    # Copied beside the slot's revisions and fsynced before the lock, which every run of
    # the month waits on (the lake's publish too): under it, a rename (a 600 MB month's copy
    # took seconds there).
    ready = staged_beside(staged, slot.folder) if staged is not None else None
    try:
        return _make_current_locked(slot, revision, ready, pin, keep, log)
    finally:
        if ready is not None and ready != staged:
            ready.unlink(missing_ok=True)  # not needed: the same bytes were stored already


def _make_current_locked(
    slot: RevisionSlot,
    revision: Revision,
    staged: Path | None,
    pin: PinChange,
    keep: int | None,
    log: Log,
) -> Commit:
    with slot_lock(slot.folder, f"storing revision {revision.short} of {slot.label}"):
        state = _repair_locked(slot, log)
        manifest = state.manifest
        stored = state.sound(revision.sha256)
        added = manifest.find(revision.sha256) is None
        if staged is not None and stored is None:
            publish_file(staged, slot.revision_path(manifest.find(revision.sha256) or revision))
            # The upload can take minutes, and an object store has no lock: another process
            # may have written the manifest meanwhile (`raw pin`, another revision). Its
            # changes are kept: this one is made on the manifest as it is now.
            manifest = read_manifest(slot.manifest_path) or manifest
        elif staged is None and stored is None:
            raise RevisionError(
                f"revision {revision.short} of {slot.folder} is not stored; {state.listing()}"
            )
        manifest.put(revision)
        if pin is PinChange.KEEP and manifest.pinned not in (None, revision.sha256):
            write_manifest(slot.manifest_path, manifest)  # the new revision stays listed
            raise RevisionError(
                f"{slot.folder} was pinned to revision {manifest.pinned} meanwhile; revision "
                f"{revision.short} is stored but not made current"
            )
        manifest.pinned = {
            PinChange.SET: revision.sha256,
            PinChange.CLEAR: None,
            PinChange.KEEP: manifest.pinned,
        }[pin]
        previous = manifest.find(manifest.current)
        manifest.current = revision.sha256
        pruned = prune(manifest, keep)
        write_manifest(slot.manifest_path, manifest)
        # After the manifest no longer lists them: a crash in between leaves unlisted
        # files, which the next repair verifies and lists again; nothing is lost. Only
        # those the manifest, read again, still does not name: on an object store another
        # process may have pinned one, or made it current, since this one read it.
        named = _named(read_manifest(slot.manifest_path)) if pruned else set()
        pruned = [dropped for dropped in pruned if dropped.sha256 not in named]
        for dropped in pruned:
            remove_revision_file(slot.revision_path(dropped))
            log(f"revision {dropped.short} ({dropped.name}) removed: keeping the last {keep}")
        listed = manifest.find(revision.sha256)
        assert listed is not None  # put() above
        gone = {r.sha256 for r in pruned}
        files = {sha: stored for sha, stored in state.files.items() if sha not in gone}
        files[listed.sha256] = StoredRevision(
            listed.sha256, slot.revision_path(listed), listed.bytes
        )
    # The slot as this writer left it, not read back: on object stores another writer may
    # have replaced the manifest since (the next repair lists this revision again).
    after = SlotState(slot, manifest, files, problems=list(state.problems))
    return Commit(listed, files[listed.sha256], previous, added, pruned, after)


def set_pin(slot: RevisionSlot, prefix: str | None, log: Log) -> tuple[SlotState, Revision | None]:
    """Pin the revision whose sha256 starts with ``prefix`` (None: unpin). The current
    revision does not change until the asset is materialized. Returns the slot's state
    (its problems include what was repaired) and the pinned revision."""
    if inspect(slot).empty:  # before the lock, which would create the folder
        raise RevisionError(f"nothing is stored in {slot.folder}")
    doing = f"pinning {slot.label}" if prefix is not None else f"unpinning {slot.label}"
    with slot_lock(slot.folder, doing):
        state = _repair_locked(slot, log)
        if state.empty:
            raise RevisionError(f"nothing is stored in {slot.folder}")
        revision = state.resolve(prefix) if prefix is not None else None
        state.manifest.pinned = revision.sha256 if revision else None
        write_manifest(slot.manifest_path, state.manifest)
    return state, revision


def _named(manifest: Manifest | None) -> set[str]:
    """The revisions ``manifest`` lists, and its current and pinned ones."""
    if manifest is None:
        return set()
    ends = {sha for sha in (manifest.current, manifest.pinned) if sha is not None}
    return {r.sha256 for r in manifest.revisions} | ends


def prune(manifest: Manifest, keep: int | None) -> list[Revision]:
    """Drop the oldest revisions beyond the last ``keep`` (None: keep all) from
    ``manifest``, never the current or the pinned one; returns those dropped."""
    if keep is None:
        return []
    protected = {manifest.current, manifest.pinned}
    excess = max(len(manifest.revisions) - keep, 0)
    dropped = [r for r in manifest.revisions if r.sha256 not in protected][:excess]
    manifest.revisions = [r for r in manifest.revisions if r not in dropped]
    return dropped


def parse_keep(value: str | None) -> int | None:
    """A retention setting: ``all`` (or unset) keeps every revision; N >= 1 the last N."""
    text = (value or "all").strip().lower()
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"keep {value!r} revisions: expected 'all' or a whole number >= 1")
    return int(text)
