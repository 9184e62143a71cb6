"""Yellow taxi trip contract (TLC `yellow_tripdata_YYYY-MM`, 2009 to today)."""

from __future__ import annotations

from . import trip_columns as t
from .schema import Contract, ContractColumn, HeaderLayout

VENDOR_NAME = ContractColumn(
    "vendor_name",
    t.TEXT,
    "Text vendor code of 2009-2014 files (CMT, VTS, DDS); null later, "
    "when vendor_id holds the numeric code.",
)
PAYMENT_TYPE_TEXT = ContractColumn(
    "payment_type_text",
    t.TEXT,
    "Text payment type of 2009-2014 files as published "
    "(CASH, Credit, CSH, CRD, NOC, DIS, UNK...); null later, when payment_type holds the code.",
)

# 2009-2014 yellow headers are the only ones with `surcharge` (later: `extra`). In those
# files `vendor_id`/`vendor_name` and `payment_type` hold text, so they go to text columns.
LEGACY_TEXT_CODES = HeaderLayout(
    name="yellow 2009-2014",
    markers=("surcharge",),
    renames=(
        ("vendor_id", "vendor_name"),
        ("payment_type", "payment_type_text"),
    ),
)

YELLOW = Contract(
    name="yellow",
    version="1",
    time_column="pickup_datetime",
    description="Yellow medallion taxi trips, one row per trip, every published row kept.",
    columns=(
        t.VENDOR_ID,
        t.PICKUP_DATETIME,
        t.DROPOFF_DATETIME,
        t.PASSENGER_COUNT,
        t.TRIP_DISTANCE,
        t.RATECODE_ID,
        t.STORE_AND_FWD_FLAG,
        t.PU_LOCATION_ID,
        t.DO_LOCATION_ID,
        t.PAYMENT_TYPE,
        t.FARE_AMOUNT,
        t.EXTRA,
        t.MTA_TAX,
        t.TIP_AMOUNT,
        t.TOLLS_AMOUNT,
        t.IMPROVEMENT_SURCHARGE,
        t.TOTAL_AMOUNT,
        t.CONGESTION_SURCHARGE,
        t.money("airport_fee", "Pickup fee at LaGuardia and JFK (from 2021)"),
        t.CBD_CONGESTION_FEE,
        # Optional columns of the pre-2016 layouts, appended so modern columns keep their order.
        *t.COORDINATES,
        VENDOR_NAME,
        PAYMENT_TYPE_TEXT,
    ),
    layouts=(LEGACY_TEXT_CODES,),
    required=t.TRIP_TIMES_REQUIRED,
)
