"""taxi_assets: NYC TLC trip records as Dagster software-defined assets."""

from taxi_assets.definitions import defs

__all__ = ["defs"]
