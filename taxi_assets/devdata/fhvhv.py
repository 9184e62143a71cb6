"""Synthetic high-volume FHV months (Uber, Lyft, Via, Juno) in both upstream layouts.

TLC's Parquet layout (24 columns, 25 with ``cbd_congestion_fee`` from 2025-01) follows TLC's
data dictionary and public reports of the files' types: location IDs int64 before 2023-02
and int32 after, flags string before 2023-02 and large_string after, and some months with
a column typed ``null``. No real FHVHV Parquet sample was available, so which months carry
a null-typed column is this generator's choice: ``airport_fee`` before 2022-01 and
``wav_match_flag`` in 2019. The course mirror's CSV.gz has 7 columns; its 2021-06 file has
the FHV layout instead (checked against the real sample in ``shared/tlc-samples``).

Times are consistent per trip: request <= on scene <= pickup < dropoff, and trip_time is
dropoff - pickup in seconds (negative on the few "dropoff before pickup" rows).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.devdata.arrays import pick, timestamps
from taxi_assets.devdata.zones import AIRPORT_IDS, N_ZONES, zone_weights

FIRST_MONTH = "2019-02"
DTC_HEADER = (
    "hvfhs_license_num,dispatching_base_num,pickup_datetime,dropoff_datetime,"
    "PULocationID,DOLocationID,SR_Flag"
).split(",")
# The course mirror's 2021-06 FHVHV file was published in the FHV layout.
FHV_LAYOUT_MONTHS = frozenset({"2021-06"})
FHV_LAYOUT_HEADER = (
    "dispatching_base_num,pickup_datetime,dropoff_datetime,PULocationID,DOLocationID,"
    "SR_Flag,Affiliated_base_number"
).split(",")
LICENSES = np.array(["HV0002", "HV0003", "HV0004", "HV0005"])  # Juno, Uber, Via, Lyft
# Each company's dispatching bases (TLC base license numbers, as seen in the real sample).
_BASES = {
    "HV0002": ["B02907", "B02914"],
    "HV0003": ["B02764", "B02617", "B02682", "B02869", "B02871", "B02872", "B02875", "B02887"],
    "HV0004": ["B02800"],
    "HV0005": ["B02510", "B02844"],
}


def dtc_header(month: str) -> list[str]:
    return FHV_LAYOUT_HEADER if month in FHV_LAYOUT_MONTHS else DTC_HEADER


def tlc_schema(month: str) -> pa.Schema:
    """The Arrow schema of TLC's FHVHV Parquet file for ``month`` (see the module doc)."""
    ids = pa.int32() if month >= "2023-02" else pa.int64()
    text = pa.large_string() if month >= "2023-02" else pa.string()
    ts, f64 = pa.timestamp("us"), pa.float64()
    fields = [
        ("hvfhs_license_num", text), ("dispatching_base_num", text),
        ("originating_base_num", text), ("request_datetime", ts), ("on_scene_datetime", ts),
        ("pickup_datetime", ts), ("dropoff_datetime", ts), ("PULocationID", ids),
        ("DOLocationID", ids), ("trip_miles", f64), ("trip_time", pa.int64()),
        ("base_passenger_fare", f64), ("tolls", f64), ("bcf", f64), ("sales_tax", f64),
        ("congestion_surcharge", f64),
        ("airport_fee", pa.null() if month < "2022-01" else f64),
        ("tips", f64), ("driver_pay", f64),
        ("shared_request_flag", text), ("shared_match_flag", text),
        ("access_a_ride_flag", text), ("wav_request_flag", text),
        ("wav_match_flag", pa.null() if month < "2020-01" else text),
    ]  # fmt: skip
    if month >= "2025-01":
        fields.append(("cbd_congestion_fee", f64))
    return pa.schema(fields)


def _license_p(month: str) -> np.ndarray:
    juno = 0.03 if month < "2020-01" else 0.0  # Juno left in late 2019
    via = 0.02 if month < "2022-01" else 0.0
    p = np.array([juno, 0.72, via, 0.0])
    p[3] = 1.0 - p.sum()
    return p


def _bases(rng: np.random.Generator, licenses: np.ndarray) -> pa.Array:
    out = np.empty(len(licenses), dtype=object)
    for code, bases in _BASES.items():
        rows = licenses == code
        out[rows] = np.array(bases)[rng.integers(0, len(bases), int(rows.sum()))]
    return pa.array(out, pa.string())


def _yes(rng: np.random.Generator, n: int, share: float) -> pa.Array:
    return pc.take(pa.array(["N", "Y"]), pa.array((rng.random(n) < share).astype(np.int64)))


def chunk(
    rng: np.random.Generator, month: str, pickup: np.ndarray, quotas: dict[str, int]
) -> pa.Table:
    """One chunk of trips with these pickups (epoch seconds), in TLC's layout for ``month``.

    ``quotas``: ``backwards`` rows get a dropoff before the pickup, ``refund`` rows a
    negative driver_pay (an adjustment), as real months carry a few of each."""
    n = len(pickup)
    licenses = LICENSES[rng.choice(len(LICENSES), size=n, p=_license_p(month))]
    uber = licenses == "HV0003"
    wait = rng.lognormal(np.log(300), 0.6, n).astype(np.int64).clip(30, 3600)
    request = pickup - wait
    on_scene = pickup - (wait * rng.random(n) * 0.5).astype(np.int64)
    miles = np.round(rng.lognormal(np.log(3.2), 0.8, n).clip(0.1, 80.0), 3)
    miles[rng.random(n) < 0.002] = 0.0
    speed = rng.normal(13.0, 4.0, n).clip(4.0, 40.0)
    trip_time = (miles / speed * 3600).astype(np.int64) + rng.integers(30, 300, n)
    back = pick(rng, n, quotas["backwards"])
    trip_time[back] = -rng.integers(60, 3600, len(back))
    dropoff = pickup + trip_time

    w = zone_weights("fhvhv")
    pu = rng.choice(N_ZONES, size=n, p=w) + 1
    do = rng.choice(N_ZONES, size=n, p=w) + 1
    airport = np.isin(pu, AIRPORT_IDS) | np.isin(do, AIRPORT_IDS)

    # Amounts in integer cents so every amount has at most 2 decimals.
    minutes = np.maximum(trip_time, 0) / 60.0
    fare = np.maximum(np.rint(250 + 115 * miles + 40 * minutes), 800).astype(np.int64)
    tolls = np.where(rng.random(n) < 0.04, 694, 0)
    bcf = np.rint(fare * 0.025).astype(np.int64)
    sales_tax = np.rint(fare * 0.08875).astype(np.int64)
    congestion = np.where(rng.random(n) < 0.4, 275, 0)
    airport_fee = np.where(airport, 250, 0)
    tips = np.rint(fare * rng.choice([0.0, 0.1, 0.15, 0.2], size=n, p=[0.8, 0.05, 0.07, 0.08]))
    driver_pay = np.rint(fare * rng.uniform(0.6, 0.85, n)).astype(np.int64)
    refund = pick(rng, n, quotas["refund"])
    driver_pay[refund] = -driver_pay[refund]
    cents = {
        "base_passenger_fare": fare,
        "tolls": tolls,
        "bcf": bcf,
        "sales_tax": sales_tax,
        "congestion_surcharge": congestion,
        "airport_fee": airport_fee,
        "tips": tips,
        "driver_pay": driver_pay,
        "cbd_congestion_fee": np.where(rng.random(n) < 0.3, 150, 0),
    }
    shared_request = rng.random(n) < 0.03
    dispatching = _bases(rng, licenses)
    # Uber names the base that took the request; Lyft leaves it empty. Uber's
    # access_a_ride_flag is a blank, not Y or N (kept as published by the contract).
    originating = pc.if_else(pa.array(uber), dispatching, pa.scalar(None, pa.string()))
    access = pc.if_else(pa.array(uber), pa.scalar(" "), _yes(rng, n, 0.001))
    columns: dict[str, pa.Array] = {
        "hvfhs_license_num": pa.array(licenses, pa.string()),
        "dispatching_base_num": dispatching,
        "originating_base_num": originating,
        "request_datetime": timestamps(request),
        "on_scene_datetime": pc.if_else(
            pa.array(uber), timestamps(on_scene), pa.scalar(None, pa.timestamp("us"))
        ),
        "pickup_datetime": timestamps(pickup),
        "dropoff_datetime": timestamps(dropoff),
        "PULocationID": pa.array(pu, pa.int64()),
        "DOLocationID": pa.array(do, pa.int64()),
        "trip_miles": pa.array(miles, pa.float64()),
        "trip_time": pa.array(trip_time, pa.int64()),
        **{name: pa.array(value / 100.0, pa.float64()) for name, value in cents.items()},
        "shared_request_flag": pc.take(
            pa.array(["N", "Y"]), pa.array(shared_request.astype(np.int64))
        ),
        "shared_match_flag": pc.take(
            pa.array(["N", "Y"]),
            pa.array((shared_request & (rng.random(n) < 0.5)).astype(np.int64)),
        ),
        "access_a_ride_flag": access,
        "wav_request_flag": _yes(rng, n, 0.005),
        "wav_match_flag": _yes(rng, n, 0.05),
    }
    schema = tlc_schema(month)
    arrays = [
        pa.nulls(n, field.type)
        if pa.types.is_null(field.type)
        else columns[field.name].cast(field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def dtc_table(month: str, table: pa.Table) -> pa.Table:
    """The course mirror's columns for a chunk in TLC's layout: ``SR_Flag`` (7-column files:
    1 for a shared ride, else empty; the FHV layout of 2021-06: Y/N) and
    ``Affiliated_base_number`` (the dispatching base, empty on about a third of the rows)."""
    shared = pc.equal(table.column("shared_match_flag").cast(pa.string()), "Y")
    if month in FHV_LAYOUT_MONTHS:
        sr_flag = pc.if_else(shared, "Y", "N")
    else:
        sr_flag = pc.if_else(shared, "1", pa.scalar(None, pa.string()))
    third = pa.array(table.column("trip_time").to_numpy() % 3 == 0)
    dispatching = table.column("dispatching_base_num").cast(pa.string())
    affiliated = pc.if_else(third, pa.scalar(None, pa.string()), dispatching)
    return table.append_column("SR_Flag", sr_flag).append_column(
        "Affiliated_base_number", affiliated
    )
