"""Analytics assets computed inside PostgreSQL from the warehouse (see issue "What users see")."""

import dagster as dg


def build_analytics_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Analytics assets over the warehouse tables; none yet."""
    return []
