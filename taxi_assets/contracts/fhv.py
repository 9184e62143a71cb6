"""For-hire vehicle trip contract (TLC `fhv_tripdata_YYYY-MM`, 2015 to today)."""

from __future__ import annotations

import pyarrow as pa

from .schema import Contract, ContractColumn, HeaderLayout

# 2018 files carry the base number twice (`...,SR_Flag,Dispatching_base_number,
# Dispatching_base_num`): both land on one column; they must agree where both are set.
TWO_BASE_NUMBER_COLUMNS = HeaderLayout(
    name="fhv 2018",
    markers=("dispatching_base_number",),
    merged=("dispatching_base_num",),
)

FHV = Contract(
    name="fhv",
    version="1",
    time_column="pickup_datetime",
    description="For-hire vehicle dispatches, one row per trip, every row kept.",
    columns=(
        ContractColumn(
            "dispatching_base_num",
            pa.string(),
            "TLC license number of the dispatching base (2018 files carry it twice: "
            "`Dispatching_base_number` and `Dispatching_base_num`, merged).",
            ("Dispatching_base_number",),
        ),
        ContractColumn(
            "pickup_datetime",
            pa.timestamp("us"),
            "Pickup, NYC local time (naive, as published); `Pickup_date` in 2015-2016 files.",
            ("Pickup_date",),
        ),
        ContractColumn(
            "dropoff_datetime",
            pa.timestamp("us"),
            "Drop-off, NYC local time (naive, as published); absent before 2017.",
            ("dropOff_datetime", "Dropoff_date"),
        ),
        ContractColumn(
            "pu_location_id",
            pa.int32(),
            "TLC taxi zone of the pickup; `locationID` in 2015-2016 files.",
            ("PUlocationID", "locationID"),
        ),
        ContractColumn(
            "do_location_id", pa.int32(), "TLC taxi zone of the drop-off.", ("DOlocationID",)
        ),
        ContractColumn(
            "sr_flag",
            pa.int32(),
            "1 = shared ride (Y/1 in files), 0 = not shared (N/0), null = not flagged.",
            ("SR_Flag",),
            codes=(("1", 1), ("1.0", 1), ("Y", 1), ("0", 0), ("0.0", 0), ("N", 0)),
        ),
        ContractColumn(
            "affiliated_base_number",
            pa.string(),
            "TLC license number of the affiliated base.",
            ("Affiliated_base_num",),
        ),
    ),
    layouts=(TWO_BASE_NUMBER_COLUMNS,),
    # Only the pickup time: the real sample fhv_tripdata_2015-02.head1000.csv (shared/
    # tlc-samples) is `Dispatching_base_num,Pickup_date,locationID`, no drop-off, and the
    # 2015-2016 files share that layout (inferred from TLC's FHV history, no other sample).
    required=("pickup_datetime",),
)
