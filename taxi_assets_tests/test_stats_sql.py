"""The analytics SQL of both engines comes from one per-service measure definition."""

from datetime import date

from taxi_assets.assets.analytics.stats_measures import MEASURES, ServiceMeasures, measures_sql
from taxi_assets.assets.analytics.stats_sql import MAX_TRIP, POSTGRES_SQL, month_cells_sql
from taxi_assets.assets.analytics.stats_sql_bigquery import (
    BIGQUERY_SQL,
    replace_month_script,
)
from taxi_assets.assets.analytics.stats_sql_bigquery import MAX_TRIP as BIGQUERY_MAX_TRIP
from taxi_assets.assets.analytics.stats_sql_bigquery import (
    month_cells_sql as bigquery_month_cells_sql,
)
from taxi_assets.bq.names import TableName
from taxi_assets.services import SERVICES


def test_every_service_has_measures() -> None:
    assert set(MEASURES) == set(SERVICES)


def test_one_measure_definition_gives_both_dialects() -> None:
    """A service whose revenue is a fare plus fee columns (as FHVHV's is), without
    passengers: no fare, no revenue (the sum is null); a missing fee counts as 0; an
    amount that is not a finite number under 1e9 counts as unknown, and so does a distance
    outside 0..500 miles."""
    fees = ServiceMeasures(passengers=None, revenue=("base_fare", "tips"), distance="trip_miles")
    assert measures_sql(fees, POSTGRES_SQL) == (
        'CAST(NULL AS bigint) AS passengers, CASE WHEN abs("base_fare") < 1000000000 AND '
        '("tips" IS NULL OR abs("tips") < 1000000000) THEN "base_fare" + COALESCE("tips", 0) '
        'END AS revenue, CASE WHEN "trip_miles" >= 0 AND "trip_miles" <= 500 '
        'THEN "trip_miles" END AS distance'
    )
    assert measures_sql(fees, BIGQUERY_SQL) == (
        "CAST(NULL AS INT64) AS passengers, CASE WHEN abs(`base_fare`) < 1000000000 AND "
        "(`tips` IS NULL OR abs(`tips`) < 1000000000) THEN `base_fare` + COALESCE(`tips`, 0) "
        "END AS revenue, CASE WHEN `trip_miles` >= 0 AND `trip_miles` <= 500 "
        "THEN `trip_miles` END AS distance"
    )


def test_every_service_is_read_once_in_both_engines() -> None:
    postgres = month_cells_sql(list(SERVICES))
    bigquery = bigquery_month_cells_sql(TableName("p1", "analytics", "_cells"), list(SERVICES))
    for service in SERVICES:
        dataset = SERVICES[service].dataset
        assert postgres.count(f'"warehouse"."{dataset}"') == 1
        assert bigquery.count(f"`p1.warehouse.{dataset}`") == 1
    assert "`p1.warehouse.taxi_zones`" in bigquery
    assert MAX_TRIP == "24 hours" and BIGQUERY_MAX_TRIP.total_seconds() == 24 * 3600


def test_the_bigquery_month_replace_is_one_transaction_with_literals() -> None:
    script = replace_month_script(TableName("p1", "analytics", "_cells_x"), date(2021, 1, 1))
    assert script.strip().startswith("BEGIN TRANSACTION;")
    assert script.strip().endswith("COMMIT TRANSACTION;")
    assert "WHERE `partition_month` = DATE '2021-01-01'" in script
    assert "@" not in script  # scripts take no query parameters on the emulator


def test_the_bigquery_cells_table_expires_from_its_creation() -> None:
    """A run killed between the CREATE and the drop must not leave the table for good, so
    the expiry is in the CREATE itself. Checked as text: the emulator ignores table
    expiry (OPTIONS and the tables API alike)."""
    create = bigquery_month_cells_sql(TableName("p1", "analytics", "_cells"), list(SERVICES))
    head = create.split("\nAS\n", 1)[0]
    assert head.split() == [
        "CREATE",
        "TABLE",
        "`p1.analytics._cells`",
        "OPTIONS",
        "(expiration_timestamp",
        "=",
        "TIMESTAMP_ADD(CURRENT_TIMESTAMP(),",
        "INTERVAL",
        "86400",
        "SECOND))",
    ]
