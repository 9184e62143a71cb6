"""Which months a run covers, read from its tags.

A run for one partition (the schedule, the sensor, `dagster job backfill`, a UI launch)
carries `dagster/partition`; a run an asset backfill launches carries only the range tags
`dagster/asset_partition_range_start` / `_end`, even for a single month.
"""

from collections.abc import Mapping

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_month_range(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(first, last) partition key of the run, or None for an unpartitioned run."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    return None


def covers(tags: Mapping[str, str], month: str) -> bool:
    """Whether the run's partitions include ``month`` (monthly keys sort as months do)."""
    bounds = run_month_range(tags)
    return bounds is not None and bounds[0] <= month <= bounds[1]


def describe_partitions(tags: Mapping[str, str]) -> str | None:
    """`2021-01`, or `2021-01...2021-03` for a range; None when unpartitioned."""
    bounds = run_month_range(tags)
    if bounds is None:
        return None
    first, last = bounds
    return first if first == last else f"{first}...{last}"
