"""Green (boro) taxi trip contract (TLC `green_tripdata_YYYY-MM`, 2013-08 to today)."""

from __future__ import annotations

from . import trip_columns as t
from .schema import Contract, ContractColumn

GREEN = Contract(
    name="green",
    version="1",
    time_column="pickup_datetime",
    description="Green (street-hail livery) taxi trips, one row per trip, every row kept.",
    columns=(
        t.VENDOR_ID,
        t.PICKUP_DATETIME,
        t.DROPOFF_DATETIME,
        t.STORE_AND_FWD_FLAG,
        t.RATECODE_ID,
        t.PU_LOCATION_ID,
        t.DO_LOCATION_ID,
        t.PASSENGER_COUNT,
        t.TRIP_DISTANCE,
        t.FARE_AMOUNT,
        t.EXTRA,
        t.MTA_TAX,
        t.TIP_AMOUNT,
        t.TOLLS_AMOUNT,
        t.money("ehail_fee", "E-hail fee (published, always empty in practice)"),
        t.IMPROVEMENT_SURCHARGE,
        t.TOTAL_AMOUNT,
        t.PAYMENT_TYPE,
        ContractColumn("trip_type", t.INT, "1 = street hail, 2 = dispatch."),
        t.CONGESTION_SURCHARGE,
        t.CBD_CONGESTION_FEE,
        # Optional columns of the 2013-08..2016-06 layouts (coordinates, no zone IDs).
        *t.COORDINATES,
    ),
    required=t.TRIP_TIMES_REQUIRED,
)
