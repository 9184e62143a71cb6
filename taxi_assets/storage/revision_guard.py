"""Publishing what was made from a slot's current revision only while it is still current.

A lake month is parsed from the raw month's current revision, which takes a while; another
run of the month may store a newer revision meanwhile and write the lake month from it.
The slower run must not then publish the superseded revision's rows over it (the month
has one lake path). :func:`while_current` is entered right before the publish, and the
publish happens inside it.

Locally the check and the publish run under the slot's folder lock
(:mod:`taxi_assets.storage.slot_lock`), the lock every change of the manifest takes: no
revision can become current between them. Object stores have no lock: the manifest is
read right before the publish, and a revision made current by another writer between
that read and the end of the upload (seconds for a month) is not seen: the lake month then
holds the superseded revision until it is materialized again, as before this check
(docs/fault_tolerance.md, 5i; its blocking check ``rows_match_raw`` fails when the two
revisions' row counts differ).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taxi_assets.storage.revision_manifest import read_manifest
from taxi_assets.storage.revisions import RevisionSlot
from taxi_assets.storage.slot_lock import slot_lock


class RevisionSuperseded(RuntimeError):
    """The revision something was made from is no longer its slot's current one."""


@contextmanager
def while_current(slot: RevisionSlot, sha256: str, made: str) -> Iterator[None]:
    """Run the block only if ``sha256`` is still ``slot``'s current revision, and (locally)
    keep it current until the block ends. Raises :class:`RevisionSuperseded` otherwise,
    before the block runs; ``made`` names what the block publishes, for the message."""
    with slot_lock(slot.folder, f"publishing {made} of {slot.label}"):
        manifest = read_manifest(slot.manifest_path)
        current = None if manifest is None else manifest.current
        if current != sha256:
            now = "no revision is current now" if current is None else f"{current} is current now"
            raise RevisionSuperseded(
                f"{slot.label}: the raw {'month' if slot.legacy_key else 'file'} changed while "
                f"this run converted it: it read revision {sha256}, and {now} "
                f"({slot.manifest_path}); {made} was not published (the lake keeps what it "
                "had). Run it again."
            )
        yield
