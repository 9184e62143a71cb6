"""Offline demo/test data: synthetic TLC months in each upstream's layout, and
a local HTTP mirror to serve them (``python -m taxi_assets.devdata --help``)."""

from taxi_assets.devdata.generate import (
    DTC_HEADERS,
    SERVICES,
    SOURCES,
    default_crlf,
    default_float_codes,
    generate_mirror,
    iter_trip_chunks,
    month_range,
    relpath,
    tlc_schema,
    trip_table,
    write_month,
)
from taxi_assets.devdata.mirror import MirrorServer
from taxi_assets.devdata.zones import ZONES_RELPATH, write_zones, zone_rows

__all__ = [
    "DTC_HEADERS",
    "SERVICES",
    "SOURCES",
    "ZONES_RELPATH",
    "MirrorServer",
    "default_crlf",
    "default_float_codes",
    "generate_mirror",
    "iter_trip_chunks",
    "month_range",
    "relpath",
    "tlc_schema",
    "trip_table",
    "write_month",
    "write_zones",
    "zone_rows",
]
