"""``python -m taxi_assets.cli raw list|pin|unpin``: the revisions of raw files, and pins.

A pin is recorded in the month's manifest and holds until removed: the next
materialization of the raw month (by hand, the schedule, a backfill) makes the pinned
revision current without downloading, and the new-month sensor stops re-fetching it.
"""

from __future__ import annotations

from upath import UPath

from taxi_assets.raw_zone import ZONES, raw_key, raw_slot, stored_months
from taxi_assets.storage.revision_manifest import ManifestError
from taxi_assets.storage.revision_updates import set_pin
from taxi_assets.storage.revisions import describe, inspect


def list_revisions(root: UPath, service: str, month: str | None) -> list[str]:
    """Lines describing one month's revisions (or, without a month, every stored month)."""
    if month is None and service != ZONES:
        return [_month_line(root, service, m) for m in stored_months(root, service)] or [
            f"no revisions of {raw_key(service).to_user_string()} under {root}"
        ]
    state = inspect(raw_slot(root, service, month))
    lines = [f"{state.slot.folder}:"]
    lines += [f"  {describe(r, state.manifest)}" for r in state.manifest.revisions]
    lines += [f"  file of the flat layout, adopted on first touch: {p}" for p in state.legacy]
    if state.empty:
        lines.append("  nothing stored")
    lines += [f"  problem: {problem}" for problem in state.problems]
    return lines


def _month_line(root: UPath, service: str, month: str) -> str:
    try:
        state = inspect(raw_slot(root, service, month))
    except ManifestError as error:  # one month's problem: the other months are still listed
        return f"{month}  problem: {error}"
    current = state.manifest.find(state.manifest.current)
    text = f"{month}  {len(state.manifest.revisions)} revision(s)"
    text += f"  current {current.short} {current.name}" if current else "  no current revision"
    if state.manifest.pinned:
        text += f"  pinned {state.manifest.pinned[:12]}"
    if state.legacy:
        text += f"  {len(state.legacy)} file(s) of the flat layout, adopted on first touch"
    if state.problems:
        text += f"  {len(state.problems)} problem(s): raw list {service} {month}"
    return text


def pin(root: UPath, service: str, month: str | None, prefix: str) -> list[str]:
    slot = raw_slot(root, service, month)
    messages: list[str] = []
    state, revision = set_pin(slot, prefix, messages.append)
    assert revision is not None
    what = f"{service} {month}" if month not in (None, "-") else service
    return [
        *messages,
        *(f"problem (reported, repaired where safe): {p}" for p in state.problems),
        f"{what} pinned to revision {revision.sha256} ({revision.name})",
        "It becomes current, and lake and warehouse are rebuilt from it, when the month is "
        f"materialized again, e.g.: {_materialize_hint(service, month)}",
    ]


def unpin(root: UPath, service: str, month: str | None) -> list[str]:
    slot = raw_slot(root, service, month)
    messages: list[str] = []
    state, _ = set_pin(slot, None, messages.append)
    current = state.manifest.find(state.manifest.current)
    what = f"{service} {month}" if month not in (None, "-") else service
    now = f"current: {current.short} ({current.name})" if current else "no current revision"
    return [
        *messages,
        *(f"problem (reported, repaired where safe): {p}" for p in state.problems),
        f"{what} unpinned ({now}); the next materialization fetches the newest upstream file",
    ]


def _materialize_hint(service: str, month: str | None) -> str:
    if service == ZONES:
        return (
            "dagster asset materialize -m taxi_assets "
            "--select raw/taxi_zone_lookup,lake/taxi_zones,warehouse/taxi_zones"
        )
    return (
        f"dagster asset materialize -m taxi_assets --select 'tag:service={service}' "
        f"--partition {month}"
    )
