"""High-volume for-hire trip contract (TLC `fhvhv_tripdata_YYYY-MM`, 2019-02 to today).

Three published layouts land on this one contract:

- TLC's Parquet files: 24 columns, 25 with ``cbd_congestion_fee`` from 2025-01. Location IDs
  are int64 (int32 from 2023-02), the flags string (large_string from 2023-02), and in some
  months ``airport_fee`` or ``wav_match_flag`` are typed ``null`` (no value at all).
- The course mirror's CSV.gz: 7 columns, ``hvfhs_license_num, dispatching_base_num,
  pickup_datetime, dropoff_datetime, PULocationID, DOLocationID, SR_Flag`` (no fares, times
  or miles: those columns are null for these months).
- The course mirror's 2021-06 file, published in the FHV layout: no license number, with
  ``Affiliated_base_number`` (rows keep a null ``hvfhs_license_num``).

Reality check: the course layouts were checked against the real sample in
``shared/tlc-samples`` (``fhvhv_tripdata_2021-06.dtc-fhv-layout.head100.csv``). No sample of
TLC's FHVHV Parquet file was available: its columns and types here are inferred from TLC's
data dictionary for High Volume FHV trip records and from public reports of the files'
schemas (see the README's history section).
"""

from __future__ import annotations

import pyarrow as pa

from . import trip_columns as t
from .schema import Contract, ContractColumn

INT64 = pa.int64()


def flag(name: str, meaning: str) -> ContractColumn:
    # Text as published (Y/N; TLC also writes other values, such as a blank in
    # access_a_ride_flag): a code mapping would lose what is not Y or N.
    return ContractColumn(name, t.TEXT, f"{meaning} Y or N, kept as published (text).")


FHVHV = Contract(
    name="fhvhv",
    version="1",
    time_column="pickup_datetime",
    description="High-volume for-hire (app) trips, one row per trip, every published row kept.",
    columns=(
        ContractColumn(
            "hvfhs_license_num",
            t.TEXT,
            "TLC license of the high-volume company: HV0002 Juno, HV0003 Uber, HV0004 Via, "
            "HV0005 Lyft. Null in the course's 2021-06 file (FHV layout).",
        ),
        ContractColumn(
            "dispatching_base_num", t.TEXT, "TLC license number of the dispatching base."
        ),
        ContractColumn(
            "originating_base_num",
            t.TEXT,
            "TLC license number of the base that received the request.",
        ),
        ContractColumn(
            "request_datetime", t.TIMESTAMP, "Ride requested, NYC local time (naive, as published)."
        ),
        ContractColumn(
            "on_scene_datetime",
            t.TIMESTAMP,
            "Driver arrived at the pickup (Accessible Vehicles only), NYC local time.",
        ),
        ContractColumn(
            "pickup_datetime", t.TIMESTAMP, "Pickup, NYC local time (naive, as published)."
        ),
        ContractColumn(
            "dropoff_datetime",
            t.TIMESTAMP,
            "Drop-off, NYC local time (naive, as published).",
            ("dropOff_datetime",),
        ),
        ContractColumn(
            "pu_location_id",
            t.INT,
            "TLC taxi zone of the pickup (int64 in TLC's files before 2023-02).",
            ("PULocationID",),
        ),
        ContractColumn(
            "do_location_id", t.INT, "TLC taxi zone of the drop-off.", ("DOLocationID",)
        ),
        ContractColumn("trip_miles", t.FLOAT, "Miles of the passenger trip."),
        ContractColumn(
            "trip_time", INT64, "Seconds of the passenger trip (int64, as TLC publishes it)."
        ),
        t.money("base_passenger_fare", "Base fare before tolls, tips, taxes and fees"),
        t.money("tolls", "Tolls paid in the trip"),
        t.money("bcf", "Black Car Fund contribution"),
        t.money("sales_tax", "NYS sales tax"),
        t.CONGESTION_SURCHARGE,
        t.money("airport_fee", "Fee for a drop-off or pickup at LaGuardia, Newark or JFK"),
        t.money("tips", "Tips to the driver"),
        t.money(
            "driver_pay",
            "What the driver was paid, tolls and tips excluded (not part of what the rider paid)",
        ),
        flag("shared_request_flag", "The rider agreed to a shared or pooled ride:"),
        flag("shared_match_flag", "The rider shared the vehicle with another booking:"),
        flag("access_a_ride_flag", "Trip administered on behalf of the MTA (Access-A-Ride):"),
        flag("wav_request_flag", "The rider requested a wheelchair-accessible vehicle:"),
        flag("wav_match_flag", "The trip took place in a wheelchair-accessible vehicle:"),
        t.CBD_CONGESTION_FEE,
        # Columns of the course's CSV layouts only (null in TLC's Parquet files).
        ContractColumn(
            "sr_flag",
            t.TEXT,
            "SR_Flag of the course's CSV files: shared ride (1, Y) or not (N, empty), kept "
            "as published (text); null in TLC's files, which carry the shared_* flags.",
            ("SR_Flag",),
        ),
        ContractColumn(
            "affiliated_base_number",
            t.TEXT,
            "TLC license number of the affiliated base (the course's 2021-06 file only).",
            ("Affiliated_base_num",),
        ),
    ),
    # Both times: the real sample fhvhv_tripdata_2021-06.dtc-fhv-layout.head100.csv has
    # them; the course's 7-column CSV and TLC's Parquet (no sample: inferred from TLC's
    # data dictionary and public schema reports, see above) have them too.
    required=("pickup_datetime", "dropoff_datetime"),
)
