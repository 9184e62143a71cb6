"""What each service's trips contribute to ``analytics.monthly_zone_stats``, per engine.

One definition per service (which columns hold passengers, revenue and distance), from
which both the PostgreSQL SQL (``stats_sql``) and the BigQuery SQL
(``stats_sql_bigquery``) are generated: adding a service here adds it to both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taxi_assets.quality import ABSURD_DISTANCE_MILES, HUGE_NUMBER
from taxi_assets.services import SERVICES


@dataclass(frozen=True)
class ServiceMeasures:
    """Column names of one service's trip table (empty / None: the service does not
    publish that measure, and the stats hold null, not zero)."""

    passengers: str | None = "passenger_count"
    # One column is taken as is. Several are summed per trip: the first is the fare, and a
    # trip without one has no revenue (null); a null among the others counts as 0.
    revenue: tuple[str, ...] = ("total_amount",)
    # Negative distances are left out of the average.
    distance: str | None = "trip_distance"
    location: str = "pu_location_id"
    pickup: str = "pickup_datetime"
    dropoff: str = "dropoff_datetime"


# What riders paid for an FHVHV trip (TLC's files have no total): the base fare plus every
# charge and the tip. A null charge counts as 0 (airport_fee is typed null in some months,
# cbd_congestion_fee exists from 2025-01); a null base fare (the course's CSV layouts
# publish no fares) leaves the trip's revenue null. driver_pay is what the driver got, not
# what the rider paid, so it is not part of it.
FHVHV_REVENUE_TERMS = (
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "congestion_surcharge",
    "airport_fee",
    "tips",
    "cbd_congestion_fee",
)

# Yellow and green publish fares (total_amount: what the rider paid, cash tips excluded),
# passenger counts and distances; FHV publishes none of them; FHVHV publishes fares in
# parts and miles (trip_miles), no passenger count.
FARES = ServiceMeasures()
NO_FARES = ServiceMeasures(passengers=None, revenue=(), distance=None)
HIGH_VOLUME = ServiceMeasures(passengers=None, revenue=FHVHV_REVENUE_TERMS, distance="trip_miles")
MEASURES: dict[str, ServiceMeasures] = {
    "yellow": FARES,
    "green": FARES,
    "fhv": NO_FARES,
    "fhvhv": HIGH_VOLUME,
}
_unmeasured = set(SERVICES) - set(MEASURES)
if _unmeasured:
    raise KeyError(
        f"services {sorted(_unmeasured)} have no analytics measures: add them to "
        "taxi_assets/assets/analytics/stats_measures.py (MEASURES)"
    )


@dataclass(frozen=True)
class Dialect:
    """How an engine spells identifiers and the types the measures are cast to."""

    quote: Callable[[str], str]
    integer: str
    real: str


def _usable(expression: str) -> str:
    """A condition true where ``expression`` is a finite number of magnitude under
    ``HUGE_NUMBER`` (false or null otherwise). An infinite or NaN amount (the contract keeps
    them, the quality signal ``non_finite_number`` flags them) would turn a whole cell's sum
    into one, and a finite amount of 1e14 or more overflows the stats' ``numeric(16,2)``:
    either failed the month's stats for every service. ``huge_number`` flags the second.
    NaN compares greater than every number in PostgreSQL (and in the BigQuery emulator's
    DuckDB) and false in BigQuery, so ``abs(x) < bound`` is false for NaN and inf in each."""
    return f"abs({expression}) < {HUGE_NUMBER:.0f}"


def measures_sql(measures: ServiceMeasures, dialect: Dialect) -> str:
    """``passengers``, ``revenue`` and ``distance`` of one trip, as select expressions.
    A revenue that is not a usable number (``_usable``) counts as unknown (null), as does a
    distance that is negative or over ``ABSURD_DISTANCE_MILES``."""
    q = dialect.quote
    passengers = (
        f"CAST({q(measures.passengers)} AS {dialect.integer})"
        if measures.passengers
        else f"CAST(NULL AS {dialect.integer})"
    )
    if not measures.revenue:
        revenue = f"CAST(NULL AS {dialect.real})"
    else:
        # The fare first: a null fare is a null revenue (unknown), and so is the trip's when
        # any of its terms is not usable (each is tested before the sum, which could
        # overflow a double). A null charge counts as 0.
        fare, *charges = measures.revenue
        usable = " AND ".join(
            [_usable(q(fare)), *(f"({q(c)} IS NULL OR {_usable(q(c))})" for c in charges)]
        )
        total = " + ".join([q(fare), *(f"COALESCE({q(c)}, 0)" for c in charges)])
        revenue = f"CASE WHEN {usable} THEN {total} END"
    # A distance over ABSURD_DISTANCE_MILES (the quality signal's bound) is a meter's
    # garbage, not a trip: TLC's green 2024-01 has seven in the Bronx, the longest
    # 201,421 miles, which made the borough's average 390 miles instead of 2.8. The bound
    # also leaves out NaN and infinities (false in both dialects' comparisons).
    distance = (
        f"CASE WHEN {q(measures.distance)} >= 0 "
        f"AND {q(measures.distance)} <= {ABSURD_DISTANCE_MILES:.0f} "
        f"THEN {q(measures.distance)} END"
        if measures.distance
        else f"CAST(NULL AS {dialect.real})"
    )
    return f"{passengers} AS passengers, {revenue} AS revenue, {distance} AS distance"
