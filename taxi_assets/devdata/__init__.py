"""Offline demo/test data: synthetic TLC months in each upstream's layout, and
a local HTTP mirror to serve them (``python -m taxi_assets.devdata --help``).

- ``layouts.py``: what each upstream publishes, month by month (paths, headers, schemas).
- ``trips.py``: the rows, deterministic and in chunks (``fhvhv.py``: the FHVHV columns).
- ``csv_gz.py``, ``tlc_writer.py``, ``one_row_group.py``: the course's CSV.gz files and
  TLC's Parquet files (a row group per 500,000 rows; with ``single_row_group``, as the
  benchmarks write them, one row group per month, as TLC writes them).
- ``generate.py``: month files and whole mirrors; ``mirror.py``: the HTTP server;
  ``zones.py``: the zone lookup.
"""

from taxi_assets.devdata.generate import generate_mirror, write_month
from taxi_assets.devdata.layouts import (
    DTC_HEADERS,
    SERVICES,
    SOURCES,
    default_crlf,
    default_float_codes,
    month_range,
    relpath,
    tlc_schema,
)
from taxi_assets.devdata.mirror import MirrorServer
from taxi_assets.devdata.trips import iter_trip_chunks, trip_table
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
