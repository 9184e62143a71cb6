"""Taxi zone lookup contract (TLC `taxi_zone_lookup.csv`)."""

from __future__ import annotations

import pyarrow as pa

from .schema import Contract, ContractColumn

ZONES = Contract(
    name="zones",
    version="1",
    time_column=None,
    description="The 265 TLC taxi zones. Text such as 'N/A', 'NA' and 'Unknown' is data, "
    "not null (zones 264 and 265).",
    columns=(
        ContractColumn("location_id", pa.int32(), "TLC taxi zone ID (1-265).", ("LocationID",)),
        ContractColumn("borough", pa.string(), "Borough, or 'Unknown' / 'EWR'."),
        ContractColumn("zone", pa.string(), "Zone name ('NV' and 'NA' are real values)."),
        ContractColumn(
            "service_zone",
            pa.string(),
            "Service zone: Yellow Zone, Boro Zone, Airports, EWR or 'N/A'.",
        ),
    ),
    # TLC published one layout (the real sample taxi+_zone_lookup.csv): all four columns.
    required=("location_id", "borough", "zone", "service_zone"),
    # The warehouse table's primary key: a repeated LocationID is refused while reading.
    unique=("location_id",),
)
