"""A synthetic taxi zone lookup with the real file's shape and quirks.

The real ``taxi_zone_lookup.csv`` has 265 rows, a fully quoted header, quoted
strings, unquoted integer ids and CRLF line endings. Ids 264/265 are the
"unknown" zones whose text ("NV", "NA", "N/A") a naive CSV reader turns into
nulls. Zone names here are invented ("Queens Zone 7"); nothing is copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ZONES_RELPATH = "misc/taxi_zone_lookup.csv"
N_ZONES = 265
ZONE_HEADER = '"LocationID","Borough","Zone","service_zone"'

# Roughly the real borough sizes; ids 2..263 are shared among these.
_BOROUGH_COUNTS = {
    "Queens": 69,
    "Bronx": 43,
    "Manhattan": 69,
    "Staten Island": 20,
    "Brooklyn": 61,
}
# Synthetic airport zones (real data has two in Queens plus EWR).
AIRPORT_IDS = (132, 135)


def _borough_by_id() -> dict[int, str]:
    labels: list[str] = []
    for borough, count in _BOROUGH_COUNTS.items():
        labels.extend([borough] * count)
    n = len(labels)  # 262 ids: 2..263
    # Interleave deterministically (97 is coprime with 262) so boroughs are
    # not contiguous id blocks, without depending on an RNG implementation.
    order = [(k * 97) % n for k in range(n)]
    out = {1: "EWR"}
    for offset, idx in enumerate(order):
        out[2 + offset] = labels[idx]
    out[264] = "Unknown"
    out[265] = "Unknown"
    return out


def zone_rows() -> list[tuple[int, str, str, str]]:
    """(LocationID, Borough, Zone, service_zone) for ids 1..265."""
    boroughs = _borough_by_id()
    per_borough: dict[str, int] = {}
    rows: list[tuple[int, str, str, str]] = []
    for loc in range(1, N_ZONES + 1):
        borough = boroughs[loc]
        if loc == 1:
            rows.append((1, "EWR", "EWR Zone 1", "EWR"))
            continue
        if loc == 264:
            rows.append((264, "Unknown", "NV", "N/A"))
            continue
        if loc == 265:
            rows.append((265, "Unknown", "NA", "N/A"))
            continue
        per_borough[borough] = per_borough.get(borough, 0) + 1
        name = f"{borough} Zone {per_borough[borough]}"
        if loc in AIRPORT_IDS:
            service_zone = "Airports"
            name = f"{borough} Airport Zone {per_borough[borough]}"
        elif borough == "Manhattan":
            service_zone = "Yellow Zone"
        else:
            service_zone = "Boro Zone"
        rows.append((loc, borough, name, service_zone))
    return rows


def zone_csv_bytes() -> bytes:
    """The lookup file exactly as written (quoted strings, CRLF)."""
    lines = [ZONE_HEADER]
    lines += [f'{loc},"{b}","{z}","{s}"' for loc, b, z, s in zone_rows()]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def write_zones(root: Path) -> Path:
    """Write ``misc/taxi_zone_lookup.csv`` under ``root``; returns its path."""
    from taxi_assets.devdata.generate import write_if_changed

    return write_if_changed(Path(root) / ZONES_RELPATH, zone_csv_bytes())


def zone_weights(service: str) -> np.ndarray:
    """Pickup/dropoff popularity per LocationID (index 0 = id 1), summing to 1.

    Yellow cabs concentrate in Manhattan and airports, green cabs in the outer
    boroughs, FHV and FHVHV everywhere; 264/265 get a small fixed share.
    """
    boroughs = _borough_by_id()
    by_service = {
        "yellow": {"Manhattan": 30.0, "Queens": 1.5, "Brooklyn": 1.0},
        "green": {"Manhattan": 2.0, "Queens": 4.0, "Brooklyn": 4.0, "Bronx": 3.0},
        "fhv": {"Manhattan": 3.0, "Queens": 2.0, "Brooklyn": 2.5, "Bronx": 2.0},
        "fhvhv": {"Manhattan": 6.0, "Queens": 3.0, "Brooklyn": 4.0, "Bronx": 2.5},
    }[service]
    w = np.array(
        [by_service.get(boroughs[loc], 0.5) for loc in range(1, N_ZONES + 1)],
        dtype=np.float64,
    )
    # Mild per-zone variation so not every zone of a borough is equal.
    w *= 1.0 + 0.8 * ((np.arange(N_ZONES) * 37) % 11) / 10.0
    for airport in AIRPORT_IDS:
        w[airport - 1] = w.max() * (1.5 if service == "yellow" else 0.3)
    w[0] = w.max() * 0.02  # EWR: rare
    w[263] = w[264] = 0.0
    w = w / w.sum() * (1.0 - 0.007)
    w[263] = 0.005  # 264 "NV"
    w[264] = 0.002  # 265 "NA"
    return w / w.sum()
