"""Quality signals of a month of trips: plain functions over Arrow batches (no Dagster).

Nothing here removes rows: the lake keeps every published row, and these numbers say how
many rows look wrong, so that a user can decide. Default thresholds come from the real
TLC samples in ``shared/tlc-samples`` (see ``DEFAULT_THRESHOLDS``).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

MAX_LOCATION_ID = 265
ABSURD_DISTANCE_MILES = 500.0

# Share of rows above which a signal warns, set above what the real samples in
# shared/tlc-samples show (measured with `measure`): pickups outside the month 0.08%
# (yellow 2021-01), 1.1% (green 2019-01), 0.004% (green 2024-01); negative fare or total
# 0.85% (yellow 2021-01); zero distance 1.5% (yellow 2021-01), 5.1% (green 2024-01);
# passenger_count 0 2.2% (yellow 2021-01); distances over 500 miles 0.08% (green 2024-01);
# location IDs outside 1..265 and dropoff before pickup: none. The null-vendor block is
# ~1-3% of a late-2020 month (the yellow 2020-01 sample is its head and tail, so 50%).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "pickup_outside_month": 0.02,
    "dropoff_before_pickup": 0.005,
    "negative_fare_or_total": 0.02,
    "null_vendor": 0.10,
    "zero_distance": 0.08,
    "location_out_of_range": 0.001,
    "passenger_count_zero": 0.05,
    "absurd_distance": 0.002,
}


@dataclass
class QualityReport:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEFAULT_THRESHOLDS, 0))

    def share(self, signal: str) -> float:
        return self.counts[signal] / self.rows if self.rows else 0.0

    def exceeded(self, thresholds: dict[str, float]) -> list[str]:
        return [name for name, limit in thresholds.items() if self.share(name) > limit]


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def _has(batch: pa.RecordBatch, name: str) -> bool:
    return name in batch.schema.names


def measure(
    batches: Iterable[pa.RecordBatch], window: tuple[datetime, datetime] | None
) -> QualityReport:
    """Count each quality signal over ``batches`` (a month of one service's lake rows)."""
    report = QualityReport()
    for batch in batches:
        report.rows += batch.num_rows
        counts = report.counts
        pickup = batch.column("pickup_datetime")
        if window is not None:
            start, end = (pa.scalar(t, pickup.type) for t in window)
            counts["pickup_outside_month"] += _count(
                pc.or_(pc.less(pickup, start), pc.greater_equal(pickup, end))
            )
        if _has(batch, "dropoff_datetime"):
            counts["dropoff_before_pickup"] += _count(
                pc.less(batch.column("dropoff_datetime"), pickup)
            )
        if _has(batch, "fare_amount"):
            counts["negative_fare_or_total"] += _count(
                pc.or_(
                    pc.less(batch.column("fare_amount"), 0),
                    pc.less(batch.column("total_amount"), 0),
                )
            )
        if _has(batch, "vendor_id"):
            counts["null_vendor"] += batch.column("vendor_id").null_count
        if _has(batch, "trip_distance"):
            distance = batch.column("trip_distance")
            counts["zero_distance"] += _count(pc.equal(distance, 0))
            counts["absurd_distance"] += _count(pc.greater(distance, ABSURD_DISTANCE_MILES))
        if _has(batch, "passenger_count"):
            counts["passenger_count_zero"] += _count(pc.equal(batch.column("passenger_count"), 0))
        for column in ("pu_location_id", "do_location_id"):
            ids = batch.column(column)
            counts["location_out_of_range"] += _count(
                pc.or_(pc.less(ids, 1), pc.greater(ids, MAX_LOCATION_ID))
            )
    return report
