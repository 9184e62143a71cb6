"""Resources: configuration read when a run starts, local and production alike."""

from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets.resources.source import TaxiSourceResource

__all__ = ["LakeResource", "PostgresResource", "TaxiSourceResource"]
