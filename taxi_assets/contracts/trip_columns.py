"""Column definitions shared by the yellow and green contracts.

Yellow and green trips share most fields (same TLC data dictionary); defining them once
keeps names, types and descriptions identical across both services.
"""

from __future__ import annotations

import pyarrow as pa

from .schema import ContractColumn

INT = pa.int32()
FLOAT = pa.float64()
TEXT = pa.string()
# NYC local wall-clock time exactly as published; never localised or converted.
TIMESTAMP = pa.timestamp("us")


def money(name: str, description: str, *aliases: str) -> ContractColumn:
    return ContractColumn(name, FLOAT, f"{description} (USD).", aliases)


VENDOR_ID = ContractColumn(
    "vendor_id",
    INT,
    "Technology provider code: 1 = Creative Mobile Technologies, "
    "2 = Curb/VeriFone, 6 = Myle, 7 = Helix.",
    ("VendorID",),
)
PICKUP_DATETIME = ContractColumn(
    "pickup_datetime",
    TIMESTAMP,
    "Meter engaged, NYC local time (naive, as published).",
    ("tpep_pickup_datetime", "lpep_pickup_datetime", "Trip_Pickup_DateTime"),
)
DROPOFF_DATETIME = ContractColumn(
    "dropoff_datetime",
    TIMESTAMP,
    "Meter disengaged, NYC local time (naive, as published).",
    ("tpep_dropoff_datetime", "lpep_dropoff_datetime", "Trip_Dropoff_DateTime"),
)
PASSENGER_COUNT = ContractColumn(
    "passenger_count", INT, "Passengers, as entered by the driver.", ("Passenger_Count",)
)
TRIP_DISTANCE = ContractColumn(
    "trip_distance", FLOAT, "Trip distance in miles reported by the taximeter.", ("Trip_Distance",)
)
RATECODE_ID = ContractColumn(
    "ratecode_id",
    INT,
    "Final rate code: 1 standard, 2 JFK, 3 Newark, 4 Nassau/Westchester, "
    "5 negotiated, 6 group ride, 99 unknown.",
    ("RatecodeID", "rate_code"),
)
STORE_AND_FWD_FLAG = ContractColumn(
    "store_and_fwd_flag",
    TEXT,
    "Y = trip held in vehicle memory before sending, N = not; "
    "2009-2014 files also hold 0/1 or empty.",
    ("store_and_forward",),
)
PU_LOCATION_ID = ContractColumn(
    "pu_location_id",
    INT,
    "TLC taxi zone of the pickup (see the zones contract); "
    "null before 2016-07, when coordinates were published instead.",
    ("PULocationID",),
)
DO_LOCATION_ID = ContractColumn(
    "do_location_id", INT, "TLC taxi zone of the drop-off; null before 2016-07.", ("DOLocationID",)
)
PAYMENT_TYPE = ContractColumn(
    "payment_type",
    INT,
    "Payment code: 0 flex fare, 1 credit card, 2 cash, 3 no charge, "
    "4 dispute, 5 unknown, 6 voided. Null in 2009-2014 yellow files (see payment_type_text).",
)
FARE_AMOUNT = money("fare_amount", "Time-and-distance fare from the meter", "Fare_Amt")
EXTRA = money(
    "extra",
    "Miscellaneous extras and surcharges (rush hour, overnight); "
    "published as `surcharge` in 2009-2014 yellow files",
    "surcharge",
)
MTA_TAX = money("mta_tax", "MTA tax triggered by the metered rate")
TIP_AMOUNT = money(
    "tip_amount", "Tip; credit card tips only, cash tips are not recorded", "Tip_Amt"
)
TOLLS_AMOUNT = money("tolls_amount", "Tolls paid in the trip", "Tolls_Amt")
IMPROVEMENT_SURCHARGE = money("improvement_surcharge", "Improvement surcharge (from 2015)")
TOTAL_AMOUNT = money("total_amount", "Total charged to passengers, cash tips excluded", "Total_Amt")
CONGESTION_SURCHARGE = money("congestion_surcharge", "NYS congestion surcharge (from 2019)")
CBD_CONGESTION_FEE = money("cbd_congestion_fee", "MTA Congestion Relief Zone toll (from 2025)")

# Columns every yellow and green file must carry (Contract.required). Decided from the real
# headers in shared/tlc-samples: schema_heads/ (every yellow CSV 2009-01..2020-06, every
# green CSV 2013-08..2020-06: all 11 header variants), yellow 2020-01 and 2021-01 CSV, green
# 2019-01 CSV and the green 2024-01 Parquet all carry both times (under the aliases of
# PICKUP_DATETIME/DROPOFF_DATETIME). Inferred, no sample: the yellow Parquet files (TLC's
# 2009-2010 files keep the 2009 CSV names, later ones `tpep_*`; public schema reports).
# The samples share more columns (fares, distance, passenger count...), but a file lacking
# one of those still has dated trips: only the times are required.
TRIP_TIMES_REQUIRED = (PICKUP_DATETIME.name, DROPOFF_DATETIME.name)

# Pre-2016-07 files published coordinates instead of zone IDs. Kept as optional columns so
# that the old layouts land on the same contract without losing data (null afterwards).
COORDINATES = (
    ContractColumn(
        "pickup_longitude", FLOAT, "Pickup longitude (pre-2016-07 files only).", ("Start_Lon",)
    ),
    ContractColumn(
        "pickup_latitude", FLOAT, "Pickup latitude (pre-2016-07 files only).", ("Start_Lat",)
    ),
    ContractColumn(
        "dropoff_longitude", FLOAT, "Drop-off longitude (pre-2016-07 files only).", ("End_Lon",)
    ),
    ContractColumn(
        "dropoff_latitude", FLOAT, "Drop-off latitude (pre-2016-07 files only).", ("End_Lat",)
    ),
)
