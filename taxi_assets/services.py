"""The TLC services this platform loads, and the one place their asset keys are built.

An asset key is ``[layer, dataset]``: the layer (``raw``, ``lake``, ``warehouse``) says
where the data lives, the dataset names the files and tables (``yellow_tripdata``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg

Layer = Literal["raw", "lake", "warehouse"]
LAYERS: tuple[Layer, ...] = ("raw", "lake", "warehouse")


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

    def key(self, layer: Layer) -> dg.AssetKey:
        return dg.AssetKey([layer, self.dataset])

    def keys(self) -> list[dg.AssetKey]:
        """The service's assets in every layer, raw first."""
        return [self.key(layer) for layer in LAYERS]


SERVICES: dict[str, Service] = {
    "yellow": Service("yellow", "Yellow taxi trips (medallion cabs, street hails)", "2009-01"),
    # TLC's catalogue lists green from 2014-01 (the 2013-08..12 files exist but are not
    # offered there); the 2013 headers stay readable (contract tests).
    "green": Service("green", "Green taxi trips (boro cabs, outer-borough hails)", "2014-01"),
    "fhv": Service("fhv", "For-hire vehicle trips (livery, black cars)", "2015-01"),
    "fhvhv": Service("fhvhv", "High-volume for-hire trips (Uber, Lyft, Via, Juno)", "2019-02"),
}

# The zone dimension: TLC's lookup file is `taxi_zone_lookup`; lake and warehouse hold
# `taxi_zones`.
ZONES_DATASET = "taxi_zones"
ZONES_RAW_DATASET = "taxi_zone_lookup"


def zone_key(layer: Layer) -> dg.AssetKey:
    return dg.AssetKey([layer, ZONES_RAW_DATASET if layer == "raw" else ZONES_DATASET])


def trip_keys(services: list[str] | None = None) -> list[dg.AssetKey]:
    """Every layer of ``services`` (default: all), service by service."""
    return [key for name in services or list(SERVICES) for key in SERVICES[name].keys()]
