"""What earlier materializations recorded, read back from the Dagster instance."""

import dagster as dg


def latest_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str | None
) -> dict[str, object]:
    """Metadata values of the latest materialization of ``asset_key`` (for ``partition_key``);
    empty when there is none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key] if partition_key else None,
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}
