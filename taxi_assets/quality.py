"""Quality signals of a month of trips: plain functions over Arrow batches (no Dagster).

Nothing here removes rows: the lake keeps every published row, and these numbers say how
many rows look wrong, so that a user can decide. Each signal names the contract columns it
needs, so a service gets exactly the signals its columns allow (FHV has no fares; FHVHV has
request times, trip_time and driver_pay). Default thresholds come from the real TLC samples
in ``shared/tlc-samples`` where one exists (see ``DEFAULT_THRESHOLDS``).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

MAX_LOCATION_ID = 265
# An amount or distance this large is no trip's: TLC's largest known outliers are around a
# million dollars (a few yellow rows) or a few hundred thousand miles (taximeter faults),
# far below. The analytics count such a value as unknown, as a NaN: summed, it could
# overflow the stats' numeric(16,2) (up to 1e14) and fail the month for every service.
HUGE_NUMBER = 1e9
ABSURD_DISTANCE_MILES = 500.0
# The trip distance in miles: the taximeter's (yellow, green) or the app's (FHVHV).
DISTANCE_COLUMNS = ("trip_distance", "trip_miles")

# Share of rows above which a signal warns, set above what the real samples in
# shared/tlc-samples show (measured with `measure`): pickups outside the month 0.08%
# (yellow 2021-01), 1.1% (green 2019-01), 0.004% (green 2024-01); negative fare or total
# 0.85% (yellow 2021-01); zero distance 1.5% (yellow 2021-01), 5.1% (green 2024-01);
# passenger_count 0 2.2% (yellow 2021-01); distances over 500 miles 0.08% (green 2024-01);
# location IDs outside 1..265 and dropoff before pickup: none. The null block is ~1-3% of a
# late-2020 month (the yellow 2020-01 sample is its head and tail, so 50%) and 6.0% of
# green 2024-01.
# FHVHV's own signals (negative trip_time or driver_pay, pickup before request) have no
# real sample with those columns to measure: their thresholds are a first guess, low
# enough that a month unlike the others warns.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "pickup_outside_month": 0.02,
    "dropoff_before_pickup": 0.005,
    "negative_fare_or_total": 0.02,
    "null_block": 0.10,
    "zero_distance": 0.08,
    "location_out_of_range": 0.001,
    "passenger_count_zero": 0.05,
    "absurd_distance": 0.002,
    "negative_trip_time_or_driver_pay": 0.01,
    "pickup_before_request": 0.005,
    # NaN or ±infinity in an amount or distance: no real sample has one (they read "nan",
    # "inf" from a CSV, or come from a Parquet writer), and a sum over the month becomes
    # NaN or infinite: any row warns.
    "non_finite_number": 0.0,
    # An amount or distance of magnitude HUGE_NUMBER or more: none in any sample; any warns.
    "huge_number": 0.0,
}

Window = tuple[datetime, datetime] | None

# The float columns of the contracts that sums and averages are taken of: every service's
# amounts and distance (FHV has none).
NUMBER_COLUMNS = (
    "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "ehail_fee",
    "improvement_surcharge", "total_amount", "congestion_surcharge", "airport_fee",
    "cbd_congestion_fee", "base_passenger_fare", "tolls", "bcf", "sales_tax", "tips",
    "driver_pay", *DISTANCE_COLUMNS,
)  # fmt: skip


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def _distance(batch: pa.RecordBatch) -> pa.Array:
    name = next(c for c in DISTANCE_COLUMNS if c in batch.schema.names)
    return batch.column(name)


def _outside_month(batch: pa.RecordBatch, window: Window) -> int:
    if window is None:
        return 0
    pickup = batch.column("pickup_datetime")
    start, end = (pa.scalar(t, pickup.type) for t in window)
    return _count(pc.or_(pc.less(pickup, start), pc.greater_equal(pickup, end)))


def _non_finite(batch: pa.RecordBatch, _: Window) -> int:
    """Rows with NaN or an infinity in any of their number columns."""
    bad = None
    for name in NUMBER_COLUMNS:
        if name in batch.schema.names and pa.types.is_floating(batch.schema.field(name).type):
            column = pc.invert(pc.fill_null(pc.is_finite(batch.column(name)), True))
            bad = column if bad is None else pc.or_(bad, column)
    return 0 if bad is None else _count(bad)


def _huge(batch: pa.RecordBatch, _: Window) -> int:
    """Rows with a finite number of magnitude ``HUGE_NUMBER`` or more in any of their
    number columns."""
    bad = None
    for name in NUMBER_COLUMNS:
        if name in batch.schema.names and pa.types.is_floating(batch.schema.field(name).type):
            column = pc.greater_equal(pc.abs(batch.column(name)), HUGE_NUMBER)
            column = pc.and_(column, pc.is_finite(batch.column(name)))
            bad = column if bad is None else pc.or_kleene(bad, column)
    return 0 if bad is None else _count(bad)


def _either_below_zero(batch: pa.RecordBatch, first: str, second: str) -> int:
    """Rows where either column is negative: a null on one side does not hide the other."""
    return _count(pc.or_kleene(pc.less(batch.column(first), 0), pc.less(batch.column(second), 0)))


def _location_out_of_range(batch: pa.RecordBatch, _: Window) -> int:
    """Rows with a pickup or drop-off zone outside 1..265: a row with both counts once, so
    the share stays a share of rows."""
    bad = None
    for column in ("pu_location_id", "do_location_id"):
        ids = batch.column(column)
        outside = pc.or_(pc.less(ids, 1), pc.greater(ids, MAX_LOCATION_ID))
        bad = outside if bad is None else pc.or_kleene(bad, outside)
    return _count(bad)


# The dispatch codes missing from every row of TLC's "null block". Not payment_type: null
# in green's block, but TLC's data dictionary now gives such yellow trips a code of their
# own (0, "Flex Fare trip"; no yellow Parquet month here to check).
BLOCK_CODES = ("passenger_count", "ratecode_id")


def _null_block(batch: pa.RecordBatch, _: Window) -> int:
    """Rows of TLC's "null block": trips without the dispatch codes. In the CSV files of
    2020 and 2021 they name no vendor either; in the Parquet files since, the vendor is
    there (green 2024-01: its last 3,415 rows, 6%, with ``VendorID`` set and
    passenger_count, RatecodeID, payment_type null), so a row counts when it names no
    vendor or has neither code. Yellow's 2009-2014 rows name their vendor in text
    (``vendor_name``) and leave ``vendor_id`` null: such a row names one."""
    missing = pc.is_null(batch.column("vendor_id"))
    if "vendor_name" in batch.schema.names:
        missing = pc.and_(missing, pc.is_null(batch.column("vendor_name")))
    if all(code in batch.schema.names for code in BLOCK_CODES):
        no_codes = pc.and_(
            pc.is_null(batch.column("passenger_count")), pc.is_null(batch.column("ratecode_id"))
        )
        missing = pc.or_(missing, no_codes)
    return _count(missing)


@dataclass(frozen=True)
class Signal:
    """A count of suspicious rows. It applies to a service whose contract has every column
    of ``needs`` and, when ``needs_one_of`` is set, at least one of those."""

    name: str
    needs: tuple[str, ...]
    count: Callable[[pa.RecordBatch, Window], int]
    needs_one_of: tuple[str, ...] = ()
    # Columns the count also reads where the service has them.
    reads: tuple[str, ...] = ()

    def applies_to(self, columns: Iterable[str]) -> bool:
        present = set(columns)
        return set(self.needs) <= present and (
            not self.needs_one_of or bool(present.intersection(self.needs_one_of))
        )


SIGNALS: tuple[Signal, ...] = (
    Signal("pickup_outside_month", ("pickup_datetime",), _outside_month),
    Signal(
        "dropoff_before_pickup",
        ("pickup_datetime", "dropoff_datetime"),
        lambda b, _: _count(pc.less(b.column("dropoff_datetime"), b.column("pickup_datetime"))),
    ),
    Signal(
        "negative_fare_or_total",
        ("fare_amount", "total_amount"),
        lambda b, _: _either_below_zero(b, "fare_amount", "total_amount"),
    ),
    Signal("null_block", ("vendor_id",), _null_block, reads=("vendor_name", *BLOCK_CODES)),
    Signal(
        "zero_distance",
        (),
        lambda b, _: _count(pc.equal(_distance(b), 0)),
        needs_one_of=DISTANCE_COLUMNS,
    ),
    Signal("location_out_of_range", ("pu_location_id", "do_location_id"), _location_out_of_range),
    Signal(
        "passenger_count_zero",
        ("passenger_count",),
        lambda b, _: _count(pc.equal(b.column("passenger_count"), 0)),
    ),
    Signal(
        "absurd_distance",
        (),
        lambda b, _: _count(pc.greater(_distance(b), ABSURD_DISTANCE_MILES)),
        needs_one_of=DISTANCE_COLUMNS,
    ),
    Signal(
        "negative_trip_time_or_driver_pay",
        ("trip_time", "driver_pay"),
        lambda b, _: _either_below_zero(b, "trip_time", "driver_pay"),
    ),
    Signal(
        "pickup_before_request",
        ("request_datetime", "pickup_datetime"),
        lambda b, _: _count(pc.less(b.column("pickup_datetime"), b.column("request_datetime"))),
    ),
    Signal("non_finite_number", (), _non_finite, needs_one_of=NUMBER_COLUMNS),
    Signal("huge_number", (), _huge, needs_one_of=NUMBER_COLUMNS),
)


def signals_for(columns: Iterable[str]) -> tuple[Signal, ...]:
    """The signals a service's contract columns allow, in a fixed order."""
    names = list(columns)
    return tuple(signal for signal in SIGNALS if signal.applies_to(names))


def signal_columns(signals: Iterable[Signal], columns: Iterable[str]) -> list[str]:
    """The columns of ``columns`` that ``signals`` read (what to read from the lake)."""
    wanted = {c for s in signals for c in (*s.needs, *s.needs_one_of, *s.reads)}
    return [c for c in columns if c in wanted]


@dataclass
class QualityReport:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def share(self, signal: str) -> float:
        return self.counts[signal] / self.rows if self.rows else 0.0

    def exceeded(self, thresholds: dict[str, float]) -> list[str]:
        return [name for name in self.counts if self.share(name) > thresholds[name]]


def measure(
    batches: Iterable[pa.RecordBatch], window: Window, signals: Iterable[Signal] | None = None
) -> QualityReport:
    """Count each signal over ``batches`` (a month of one service's lake rows); by default
    every signal the first batch's columns allow."""
    chosen = None if signals is None else tuple(signals)
    report = QualityReport()
    for batch in batches:
        if chosen is None:
            chosen = signals_for(batch.schema.names)
        if not report.counts:
            report.counts = {signal.name: 0 for signal in chosen}
        report.rows += batch.num_rows
        for signal in chosen:
            report.counts[signal.name] += signal.count(batch, window)
    if not report.counts and chosen is not None:
        report.counts = {signal.name: 0 for signal in chosen}
    return report
