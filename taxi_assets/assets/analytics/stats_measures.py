"""What each service's trips contribute to ``analytics.monthly_zone_stats``, per engine.

One definition per service (which columns hold passengers, revenue and distance), from
which both the PostgreSQL SQL (``stats_sql``) and the BigQuery SQL
(``stats_sql_bigquery``) are generated: adding a service here adds it to both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taxi_assets.services import SERVICES


@dataclass(frozen=True)
class ServiceMeasures:
    """Column names of one service's trip table (empty / None: the service does not
    publish that measure, and the stats hold null, not zero)."""

    passengers: str | None = "passenger_count"
    # Summed per trip, nulls counted as 0 when there are several; one column is taken as is.
    revenue: tuple[str, ...] = ("total_amount",)
    # Negative distances are left out of the average.
    distance: str | None = "trip_distance"
    location: str = "pu_location_id"
    pickup: str = "pickup_datetime"
    dropoff: str = "dropoff_datetime"


# Yellow and green publish fares (total_amount: what the rider paid, cash tips excluded),
# passenger counts and distances; FHV publishes none of them.
FARES = ServiceMeasures()
NO_FARES = ServiceMeasures(passengers=None, revenue=(), distance=None)
MEASURES: dict[str, ServiceMeasures] = {"yellow": FARES, "green": FARES, "fhv": NO_FARES}
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


def measures_sql(measures: ServiceMeasures, dialect: Dialect) -> str:
    """``passengers``, ``revenue`` and ``distance`` of one trip, as select expressions."""
    q = dialect.quote
    passengers = (
        f"CAST({q(measures.passengers)} AS {dialect.integer})"
        if measures.passengers
        else f"CAST(NULL AS {dialect.integer})"
    )
    if not measures.revenue:
        revenue = f"CAST(NULL AS {dialect.real})"
    elif len(measures.revenue) == 1:
        revenue = q(measures.revenue[0])
    else:
        revenue = " + ".join(f"COALESCE({q(column)}, 0)" for column in measures.revenue)
    distance = (
        f"CASE WHEN {q(measures.distance)} >= 0 THEN {q(measures.distance)} END"
        if measures.distance
        else f"CAST(NULL AS {dialect.real})"
    )
    return f"{passengers} AS passengers, {revenue} AS revenue, {distance} AS distance"
