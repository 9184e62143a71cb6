"""The columns of ``analytics.monthly_zone_stats``, with their descriptions."""

from dataclasses import dataclass

import dagster as dg

from taxi_assets.quality import ABSURD_DISTANCE_MILES, HUGE_NUMBER

ANALYTICS_SCHEMA = "analytics"
STATS_TABLE = "monthly_zone_stats"
STATS_KEY = dg.AssetKey([ANALYTICS_SCHEMA, STATS_TABLE])
# Pickups whose zone is not in warehouse.taxi_zones (or is null) count under this borough.
NO_ZONE_BOROUGH = "Unknown"


@dataclass(frozen=True)
class StatsColumn:
    name: str
    sql_type: str
    description: str


COLUMNS = (
    StatsColumn("partition_month", "date NOT NULL", "File month the trips were published in."),
    StatsColumn("service", "text NOT NULL", "TLC service: yellow, green, fhv or fhvhv."),
    StatsColumn(
        "borough",
        "text NOT NULL",
        f"Pickup borough from warehouse.taxi_zones; '{NO_ZONE_BOROUGH}' when the zone is "
        "unknown or missing.",
    ),
    StatsColumn("trips", "bigint NOT NULL", "Trips (rows) published for the month."),
    StatsColumn(
        "passengers",
        "bigint",
        "Sum of passenger_count; null for FHV and FHVHV (not published).",
    ),
    StatsColumn(
        "revenue",
        "numeric(16,2)",
        "What riders paid, in USD. Yellow and green: sum of total_amount (cash tips "
        "excluded). FHVHV (no total published): sum of base_passenger_fare + tolls + bcf + "
        "sales_tax + congestion_surcharge + airport_fee + tips + cbd_congestion_fee, a null "
        "charge counting as 0 and a trip without a base fare as null (driver_pay is not "
        "what riders paid). A trip with an amount that is not a number, infinite or "
        f"{HUGE_NUMBER:,.0f} or more in size is left out. Null for FHV, and for FHVHV months "
        "from the course's files (no fares).",
    ),
    StatsColumn(
        "avg_distance_mi",
        "double precision",
        "Average trip_distance (FHVHV: trip_miles) in miles, over trips of 0 to "
        f"{ABSURD_DISTANCE_MILES:.0f} miles "
        "(negative and absurd distances left out, as the quality signal absurd_distance "
        "counts them); null for FHV.",
    ),
    StatsColumn(
        "avg_duration_min",
        "double precision",
        "Average minutes from pickup to drop-off, over trips lasting more than 0 and at "
        "most 24 hours.",
    ),
)
PRIMARY_KEY = ("partition_month", "service", "borough")


def column_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.sql_type.removesuffix(" NOT NULL"),
                description=c.description,
                constraints=dg.TableColumnConstraints(nullable="NOT NULL" not in c.sql_type),
            )
            for c in COLUMNS
        ]
    )
