"""The TLC services this platform loads, and how their datasets are named."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """A TLC trip record service (a family of monthly files)."""

    name: str
    description: str
    first_published_month: str  # the first month TLC published for this service

    @property
    def dataset(self) -> str:
        """The dataset name used in file names, asset keys and table names."""
        return f"{self.name}_tripdata"


SERVICES: dict[str, Service] = {
    "yellow": Service("yellow", "Yellow taxi trips (medallion cabs, street hails)", "2009-01"),
    "green": Service("green", "Green taxi trips (boro cabs, outer-borough hails)", "2013-08"),
    "fhv": Service("fhv", "For-hire vehicle trips (livery, black cars)", "2015-01"),
}

ZONES_DATASET = "taxi_zones"
ZONES_RAW_DATASET = "taxi_zone_lookup"
