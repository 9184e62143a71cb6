"""The raw zone by service and month: which revision slot holds a raw file, and its pin.

The raw assets and their IO manager find a slot from the asset key and partition; the
CLI (``raw list|pin|unpin``), the new-month sensor and the schedule know a service name
and a month, and find the same slot here (one layout: :func:`storage.revisions.slot_for`).
"""

from __future__ import annotations

import re

import dagster as dg
from upath import UPath

from taxi_assets.partitions import parse_month
from taxi_assets.services import SERVICES, zone_key
from taxi_assets.storage.revision_manifest import read_manifest
from taxi_assets.storage.revisions import RevisionSlot, slot_for

ZONES = "zones"  # the zone lookup: one file, no months
NO_MONTH = "-"


def raw_key(service: str) -> dg.AssetKey:
    if service == ZONES:
        return zone_key("raw")
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose from {[*SERVICES, ZONES]}")
    return SERVICES[service].key("raw")


def raw_slot(lake_root: UPath, service: str, month: str | None) -> RevisionSlot:
    """The slot of ``service``'s ``month`` (None or ``-`` for the zone lookup)."""
    month = None if month in (None, NO_MONTH) else month
    if (service == ZONES) != (month is None):
        raise ValueError(
            "the zone lookup has no months (give '-')"
            if service == ZONES
            else f"{service} files are monthly: give a month (YYYY-MM)"
        )
    if month is not None:
        parse_month(month)
    return slot_for(lake_root, raw_key(service).path, month)


def pinned_revision(lake_root: UPath, service: str, month: str | None) -> str | None:
    """The sha256 ``service``'s ``month`` is pinned to, or None (reads one manifest;
    raises ManifestError for a manifest that cannot be read)."""
    manifest = read_manifest(raw_slot(lake_root, service, month).manifest_path)
    return manifest.pinned if manifest is not None else None


# The month in the name of a file of the flat layout (``yellow_tripdata_2021-01.csv.gz``).
_FLAT_FILE_MONTH = re.compile(r"(?<!\d)(\d{4}-\d{2})(?!\d)")


def stored_months(lake_root: UPath, service: str) -> list[str]:
    """The months of ``service`` with a revision folder, or a file of the flat layout of
    earlier versions (``<asset folder>/<published name>``, adopted on first touch)."""
    folder = lake_root.joinpath(*raw_key(service).path)
    if not folder.exists():
        return []
    months = set()
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith("."):
            continue
        try:
            parse_month(name)
        except ValueError:
            found = _FLAT_FILE_MONTH.search(name)
            if found is None or not entry.is_file():
                continue
            try:
                parse_month(found[1])
            except ValueError:
                continue
            name = found[1]
        months.add(name)
    return sorted(months)
