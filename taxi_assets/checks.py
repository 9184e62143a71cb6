"""Asset checks: reconciliation, schema contract, quality signals, freshness."""

import dagster as dg


def build_asset_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """Asset checks over raw, lake and warehouse; none yet."""
    return []
