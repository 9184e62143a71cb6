"""Publishing what was made from a slot's current revision only while it is still current.

A lake month is parsed from the raw month's current revision, which takes a while; another
run of the month may store a newer revision meanwhile and write the lake month from it.
The slower run must not then publish the superseded revision's rows over it (the month
has one lake path). :func:`while_current` is entered right before the publish, and the
publish happens inside it.

Locally the check and the publish run under the slot's folder lock
(:mod:`taxi_assets.storage.slot_lock`), the lock every change of the manifest takes: no
revision can become current between them. Object stores have no lock: the manifest is
read right before the publish and again right after it. A revision made current by
another writer during the upload (seconds for a month) fails the step after all: the
lake month may then hold the superseded revision (the newer run's upload may have ended
first), until it is materialized again, and the step's failure says so; the run's later
steps do not load it (docs/fault_tolerance.md, 5i). A revision made current in the
instant between the second read and the step's end is still not seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taxi_assets.storage.revision_manifest import read_manifest
from taxi_assets.storage.revisions import RevisionSlot
from taxi_assets.storage.roots import is_local
from taxi_assets.storage.slot_lock import slot_lock


class RevisionSuperseded(RuntimeError):
    """The revision something was made from is no longer its slot's current one."""


@contextmanager
def while_current(slot: RevisionSlot, sha256: str, made: str) -> Iterator[None]:
    """Run the block only if ``sha256`` is still ``slot``'s current revision, and (locally)
    keep it current until the block ends. Raises :class:`RevisionSuperseded` otherwise,
    before the block runs; on an object store also after it, when another revision became
    current while it ran. ``made`` names what the block publishes, for the message."""
    with slot_lock(slot.folder, f"publishing {made} of {slot.label}"):
        current = _current(slot)
        if current != sha256:
            raise RevisionSuperseded(
                f"{slot.label}: the raw {_what(slot)} changed while this run converted it: it "
                f"read revision {sha256}, and {_now(current)} ({slot.manifest_path}); {made} "
                "was not published (the lake keeps what it had). Run it again."
            )
        yield
        if is_local(slot.folder):
            return  # the lock kept it current
        current = _current(slot)
        if current != sha256:
            raise RevisionSuperseded(
                f"{slot.label}: the raw {_what(slot)} changed while this run uploaded {made}: "
                f"it was made from revision {sha256}, and {_now(current)} "
                f"({slot.manifest_path}). The lake may hold {made} of the superseded "
                "revision until the month is materialized again (an object store has no "
                "lock to keep the two uploads apart). Run it again."
            )


def _current(slot: RevisionSlot) -> str | None:
    manifest = read_manifest(slot.manifest_path)
    return None if manifest is None else manifest.current


def _what(slot: RevisionSlot) -> str:
    return "month" if slot.legacy_key else "file"


def _now(current: str | None) -> str:
    return "no revision is current now" if current is None else f"{current} is current now"
