"""analytics/monthly_zone_stats: computed in PostgreSQL from every service and the zones."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets import defs
from taxi_assets_tests.faults_support import run_warnings
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    engine_for,
    lake_dataset,
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

STATS = "analytics/monthly_zone_stats"
ZONES = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
SERVICES = ("yellow", "green", "fhv", "fhvhv")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What an FHVHV rider paid: the base fare plus every charge and the tip (stats_sql.py).
FHVHV_REVENUE = (
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "congestion_surcharge",
    "airport_fee",
    "tips",
    "cbd_congestion_fee",
)


def trips(service: str) -> list[str]:
    """A service's three layers: one run per service (each has its own partitions)."""
    return [f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")]


@pytest.fixture
def loaded(
    mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Zones and both months of every service in the warehouse; the lake in tmp_path. The
    source is `auto`: the course's files, and TLC's Parquet for FHVHV (with fares)."""
    lake = tmp_path / "lake"
    monkeypatch.setenv("TAXI_LAKE_URL", str(lake))
    resources = pipeline_resources(mirror.url, lake, pg_url, source="auto")
    assert run(ZONES, resources, instance).success
    for month in ("2021-01", "2021-02"):
        for service in SERVICES:
            assert run(trips(service), resources, instance, month).success
    return {"resources": resources, "lake": lake}


@pytest.fixture
def resources(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The test services' resources, the lake in tmp_path (also as TAXI_LAKE_URL, which the
    analytics asset reads for its chart)."""
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    return pipeline_resources(mirror.url, tmp_path / "lake", pg_url)


def stats_rows(pg_url: str, month: str) -> list[dict[str, Any]]:
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT * FROM analytics.monthly_zone_stats "
                "WHERE partition_month = CAST(:m AS date) ORDER BY borough, service"
            ),
            {"m": f"{month}-01"},
        ).mappings()
        result = [dict(row) for row in rows]
    engine.dispose()
    return result


def test_stats_join_every_service_with_the_zones(
    loaded: dict[str, Any], pg_url: str, instance: dg.DagsterInstance
) -> None:
    lake: Path = loaded["lake"]
    result = run(STATS, loaded["resources"], instance, "2021-01")
    assert result.success
    rows = stats_rows(pg_url, "2021-01")

    # Every trip of the file month is counted once, under its service.
    for service in SERVICES:
        counted = sum(r["trips"] for r in rows if r["service"] == service)
        assert counted == warehouse_counts(pg_url, f"{service}_tripdata")["2021-01"]

    # FHV publishes no fares or passengers: nulls, not zeros. Taxis have both.
    fhv = [r for r in rows if r["service"] == "fhv"]
    assert fhv and all(
        r["passengers"] is None and r["revenue"] is None and r["avg_distance_mi"] is None
        for r in fhv
    )
    assert any(r["avg_duration_min"] is not None for r in fhv)
    taxis = [r for r in rows if r["service"] in ("yellow", "green")]
    assert all(r["revenue"] is not None and r["avg_distance_mi"] is not None for r in taxis)

    # Boroughs come from the zones table; cross-check one cell against the lake in Arrow.
    zones = pq.read_table(lake / "lake" / "taxi_zones.parquet")
    assert {r["borough"] for r in rows} <= set(zones.column("borough").to_pylist())
    manhattan = pc.filter(
        zones.column("location_id"), pc.equal(zones.column("borough"), "Manhattan")
    )
    yellow = lake_dataset(lake, "yellow_tripdata").to_table(
        filter=(pads_field("year") == 2021) & (pads_field("month") == 1)
    )
    in_manhattan = pc.is_in(yellow.column("pu_location_id"), value_set=manhattan)
    expected_revenue = pc.sum(pc.filter(yellow.column("total_amount"), in_manhattan)).as_py()
    cell = next(r for r in rows if r["service"] == "yellow" and r["borough"] == "Manhattan")
    assert cell["trips"] == pc.sum(in_manhattan.cast(pa.int64())).as_py()
    assert float(cell["revenue"]) == pytest.approx(expected_revenue, abs=0.01)
    manhattan_trips = pc.filter(yellow, in_manhattan)
    assert cell["passengers"] == pc.sum(manhattan_trips.column("passenger_count")).as_py()
    trip_distance = manhattan_trips.column("trip_distance")
    distances = pc.filter(
        trip_distance,
        pc.and_(pc.greater_equal(trip_distance, 0), pc.less_equal(trip_distance, 500)),
    )
    assert cell["avg_distance_mi"] == pytest.approx(pc.mean(distances).as_py(), rel=1e-9)
    minutes = pc.divide(
        pc.cast(
            pc.subtract(manhattan_trips["dropoff_datetime"], manhattan_trips["pickup_datetime"]),
            pa.int64(),
        ),
        60e6,
    )
    valid = pc.filter(minutes, pc.and_(pc.greater(minutes, 0), pc.less_equal(minutes, 24 * 60)))
    assert cell["avg_duration_min"] == pytest.approx(pc.mean(valid).as_py(), rel=1e-9)

    # FHVHV: no passengers; miles from trip_miles; revenue is what riders paid, each charge
    # counted as 0 where null (airport_fee is typed null in this generated month).
    fhvhv = lake_dataset(lake, "fhvhv_tripdata").to_table(
        filter=(pads_field("year") == 2021) & (pads_field("month") == 1)
    )
    assert fhvhv.column("airport_fee").null_count == fhvhv.num_rows
    in_manhattan = pc.is_in(fhvhv.column("pu_location_id"), value_set=manhattan)
    rides = pc.filter(fhvhv, in_manhattan)
    paid = [
        sum(value or 0.0 for value in row.values())
        for row in rides.select(list(FHVHV_REVENUE)).to_pylist()
    ]
    cell = next(r for r in rows if r["service"] == "fhvhv" and r["borough"] == "Manhattan")
    assert cell["trips"] == rides.num_rows and cell["passengers"] is None
    assert float(cell["revenue"]) == pytest.approx(sum(paid), abs=0.01)
    miles = pc.filter(
        rides["trip_miles"],
        pc.and_(pc.greater_equal(rides["trip_miles"], 0), pc.less_equal(rides["trip_miles"], 500)),
    )
    assert cell["avg_distance_mi"] == pytest.approx(pc.mean(miles).as_py(), rel=1e-9)
    assert all(r["passengers"] is None for r in rows if r["service"] == "fhvhv")

    meta = materialization_metadata(result, STATS)
    assert meta["dagster/partition_row_count"] == len(rows)
    assert meta["trips"] == sum(r["trips"] for r in rows)
    assert meta["table"] == "analytics.monthly_zone_stats"
    assert "| borough" in meta["preview"] and "null" in meta["preview"]
    stats_key = dg.AssetKey.from_user_string(STATS)
    declared = defs.resolve_assets_def(stats_key).metadata_by_key[stats_key]
    assert declared["dagster/table_name"] == "analytics.monthly_zone_stats"
    schema = declared["dagster/column_schema"]
    assert [c.name for c in schema.columns][:3] == ["partition_month", "service", "borough"]
    assert all(c.description for c in schema.columns)
    # The chart: a PNG in the lake, and the same PNG inline in the metadata.
    chart = lake / "analytics" / "monthly_zone_stats" / "2021-01.png"
    assert chart.read_bytes().startswith(PNG_MAGIC)
    assert meta["chart_path"] == str(chart)
    inline = meta["chart"].split("data:image/png;base64,", 1)[1].rstrip(")")
    assert base64.b64decode(inline) == chart.read_bytes()
    # Short enough for the UI to draw inline (the PNG opens behind "[Show Markdown]").
    assert len(meta["trips_per_day"]) < 1000
    assert "data:image/svg+xml," in meta["trips_per_day"]
    assert meta["services"] == ", ".join(SERVICES)
    # Four services: the chart's caption names each (inline, or with the chart in `chart`).
    for service in SERVICES:
        assert f"{service} (" in meta["trips_per_day"]


def test_month_is_replaced_and_neighbours_kept(
    loaded: dict[str, Any], pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = loaded["resources"]
    assert run(STATS, resources, instance, "2021-01").success
    january = stats_rows(pg_url, "2021-01")
    assert run(STATS, resources, instance, "2021-02").success
    again = run(STATS, resources, instance, "2021-01")
    meta = materialization_metadata(again, STATS)
    assert meta["rows_replaced"] == meta["dagster/partition_row_count"] == len(january)
    assert stats_rows(pg_url, "2021-01") == january
    february = stats_rows(pg_url, "2021-02")
    assert february and all(str(r["partition_month"]) == "2021-02-01" for r in february)


def test_missing_zones_or_trips_fail_clearly(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str, instance: dg.DagsterInstance
) -> None:
    resources = pipeline_resources(mirror.url, tmp_path / "lake", pg_url)
    result = run(STATS, resources, instance, "2021-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "warehouse.yellow_tripdata" in message and "materialize" in message
    assert "warehouse.taxi_zones" in message


def test_a_service_without_a_table_is_left_out(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """Only yellow is loaded: the month is computed for yellow, not failed for the others."""
    assert run(ZONES, resources, instance).success
    assert run(trips("yellow"), resources, instance, "2021-01").success
    result = run(STATS, resources, instance, "2021-01")
    rows = stats_rows(pg_url, "2021-01")
    assert {r["service"] for r in rows} == {"yellow"}
    assert sum(r["trips"] for r in rows) == warehouse_counts(pg_url, "yellow_tripdata")["2021-01"]
    assert materialization_metadata(result, STATS)["services"] == "yellow"
    assert materialization_metadata(result, STATS)["services_not_loaded"] == "-"


def test_an_infinite_nan_or_huge_amount_counts_as_unknown_not_as_the_cells_sum(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """The contract keeps inf/NaN amounts (flagged by non_finite_number) and huge ones
    (huge_number): the month's stats leave them out instead of failing on numeric
    overflow (inf, or 1e15 > numeric(16,2)) or averaging NaN. An absurd distance (over
    500 miles, as real meters record: absurd_distance) is left out of the average."""
    assert run(ZONES, resources, instance).success
    assert run(trips("yellow"), resources, instance, "2021-01").success
    engine = engine_for(pg_url)
    with engine.begin() as connection:
        ids = connection.execute(
            sa.text(
                "SELECT ctid::text FROM warehouse.yellow_tripdata "
                "WHERE pu_location_id = (SELECT pu_location_id FROM warehouse.yellow_tripdata "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1) LIMIT 4"
            )
        ).scalars()
        infinite, nan, huge, absurd = list(ids)
        for ctid, amount, distance in (
            (infinite, "Infinity", "-Infinity"),
            (nan, "NaN", "NaN"),
            (huge, "1e15", "1e12"),
            (absurd, "12.5", "201421.68"),
        ):
            connection.execute(
                sa.text(
                    "UPDATE warehouse.yellow_tripdata SET total_amount = CAST(:a AS float8), "
                    "trip_distance = CAST(:d AS float8) WHERE ctid = CAST(:c AS tid)"
                ),
                {"a": amount, "d": distance, "c": ctid},
            )
        expected = connection.execute(
            sa.text(
                "SELECT z.borough, round(sum(t.total_amount)::numeric, 2), "
                "avg(t.trip_distance) FILTER (WHERE t.trip_distance BETWEEN 0 AND 500) "
                "FROM warehouse.yellow_tripdata t JOIN warehouse.taxi_zones z "
                "ON z.location_id = t.pu_location_id "
                "WHERE t.total_amount <> 'NaN' AND abs(t.total_amount) < 1e14 "
                "AND t.trip_distance <> 'NaN' AND abs(t.trip_distance) < 1e11 "
                "GROUP BY z.borough"
            )
        ).all()
    engine.dispose()
    assert run(STATS, resources, instance, "2021-01").success
    rows = {r["borough"]: r for r in stats_rows(pg_url, "2021-01")}
    for borough, revenue, distance in expected:
        assert rows[borough]["revenue"] == revenue
        assert rows[borough]["avg_distance_mi"] == pytest.approx(float(distance), rel=1e-9)
    trips_counted = sum(r["trips"] for r in rows.values())
    assert trips_counted == warehouse_counts(pg_url, "yellow_tripdata")["2021-01"]


def test_a_cell_whose_revenue_overflows_the_stats_fails_naming_the_month(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """Each trip's amount under HUGE_NUMBER, but 200,000 of them at 9e8 in one cell sum to
    1.8e14, beyond numeric(16,2): the run fails saying which month and why."""
    assert run(ZONES, resources, instance).success
    assert run(trips("yellow"), resources, instance, "2021-01").success
    engine = engine_for(pg_url)
    with engine.begin() as connection:
        # 200,000 copies of one trip, in its pickup zone's cell, each at 9e8 USD.
        connection.execute(
            sa.text(
                "INSERT INTO warehouse.yellow_tripdata "
                "SELECT (one.t).* FROM (SELECT t FROM warehouse.yellow_tripdata t "
                "WHERE partition_month = DATE '2021-01-01' LIMIT 1) AS one, "
                "generate_series(1, 200000)"
            )
        )
        connection.execute(
            sa.text(
                "UPDATE warehouse.yellow_tripdata SET total_amount = 9e8 WHERE "
                "partition_month = DATE '2021-01-01' AND pu_location_id = (SELECT "
                "pu_location_id FROM warehouse.yellow_tripdata GROUP BY 1 "
                "ORDER BY count(*) DESC LIMIT 1)"
            )
        )
    engine.dispose()
    result = run(STATS, resources, instance, "2021-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "analytics/monthly_zone_stats 2021-01" in message, message
    assert "numeric(16,2)" in message and "huge_number" in message, message


def test_a_service_that_has_not_loaded_the_month_is_named(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """Green has a table (2021-01) but not 2021-02: 2021-02 run by hand sums yellow only,
    says so in a warning and in its metadata, rather than listing green as summed."""
    assert run(ZONES, resources, instance).success
    for month in ("2021-01", "2021-02"):
        assert run(trips("yellow"), resources, instance, month).success
    assert run(trips("green"), resources, instance, "2021-01").success
    result = run(STATS, resources, instance, "2021-02")
    meta = materialization_metadata(result, STATS)
    assert (meta["services"], meta["services_not_loaded"]) == ("yellow", "green")
    assert {r["service"] for r in stats_rows(pg_url, "2021-02")} == {"yellow"}
    # The charts draw yellow alone, not green as a flat line at zero.
    assert "yellow (gold, peak" in meta["trips_per_day"]
    assert "green" not in meta["trips_per_day"]
    warnings = run_warnings(instance, result.run_id)
    assert any("green 2021-02 is not in the warehouse yet" in w for w in warnings), warnings


def pads_field(name: str):  # noqa: ANN201 - a pyarrow compute expression
    import pyarrow.dataset as pads

    return pads.field(name)


def test_month_is_recomputed_once_every_input_is_loaded(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """The automation condition the daemon's automation sensor evaluates, on a real instance."""
    from taxi_assets import defs

    key = dg.AssetKey.from_user_string(STATS)

    def requested(cursor: Any) -> tuple[set[str], Any]:
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.assets(key),
            cursor=cursor,
        )
        return {str(p) for p in result.get_requested_partitions(key)}, result.cursor

    months, cursor = requested(None)
    assert months == set()
    assert run(ZONES, resources, instance).success
    assert run(trips("yellow"), resources, instance, "2021-01").success
    months, cursor = requested(cursor)
    assert months == set()  # green, FHV and FHVHV of 2021-01 are not loaded yet
    for service in ("green", "fhv"):
        assert run(trips(service), resources, instance, "2021-01").success
    months, cursor = requested(cursor)
    assert months == set()  # FHVHV 2021-01 is a partition of FHVHV: it waits for it
    assert run(trips("fhvhv"), resources, instance, "2021-01").success
    months, cursor = requested(cursor)
    assert months == {"2021-01"}


def test_a_month_before_a_service_existed_does_not_wait_for_it(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2019-01 is a partition of the analytics (from the earliest service) but not of FHVHV
    (from 2019-02): automation computes it once the three other services are loaded, and
    the month's stats hold those three."""
    from taxi_assets import defs
    from taxi_assets.devdata import write_month

    for service in ("yellow", "green", "fhv"):
        write_month(own_mirror.root, source="dtc", service=service, month="2019-01", rows=200)
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    resources = pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url)
    key = dg.AssetKey.from_user_string(STATS)
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(key)
    )
    assert run(ZONES, resources, instance).success
    for service in ("yellow", "green", "fhv"):
        assert run(trips(service), resources, instance, "2019-01").success
    result = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=dg.AssetSelection.assets(key),
        cursor=result.cursor,
    )
    assert {str(p) for p in result.get_requested_partitions(key)} == {"2019-01"}
    assert run(STATS, resources, instance, "2019-01").success
    assert {r["service"] for r in stats_rows(pg_url, "2019-01")} == {"yellow", "green", "fhv"}
    # FHVHV 2019-01 is no required parent partition: an asset backfill of the analytics
    # would otherwise refuse the month ("depends on non-existent partitions").
    parents = defs.resolve_asset_graph().get_parents_partitions(key, "2019-01")
    assert not parents.required_but_nonexistent_parents_partitions
    assert {p.asset_key.to_user_string() for p in parents.parent_partitions} == {
        "warehouse/yellow_tripdata",
        "warehouse/green_tripdata",
        "warehouse/fhv_tripdata",
        "warehouse/taxi_zones",
    }


TRIPS_VIEW = "analytics/trips"


def test_the_trips_view_reads_every_service_and_services_loaded_later(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """Materialized once with yellow (two months) and FHVHV loaded: green and FHV get
    their empty tables, and green loaded afterwards shows in the view by itself."""
    for month in ("2021-01", "2021-02"):
        assert run(trips("yellow"), resources, instance, month).success
    assert run(trips("fhvhv"), resources, instance, "2021-01").success
    result = run(TRIPS_VIEW, resources, instance)
    meta = materialization_metadata(result, TRIPS_VIEW)
    assert meta["tables_created_empty"] == "green, fhv"
    assert "CREATE OR REPLACE VIEW" in meta["definition"]
    # What an analyst reads with \d+: every reason a value is null, as measures_sql has it.
    with engine_for(pg_url).connect() as connection:
        comments: dict[str, str] = dict(
            connection.exec_driver_sql(
                "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
                "WHERE attrelid = 'analytics.trips'::regclass AND attnum > 0"
            ).all()
        )
    assert "over 500 miles" in comments["distance_mi"]
    assert "infinite or 1,000,000,000 or more" in comments["revenue"]

    def in_view() -> dict[tuple[str, str], tuple[int, float | None]]:
        with engine_for(pg_url).connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT service, to_char(partition_month, 'YYYY-MM'), count(*), sum(revenue) "
                "FROM analytics.trips GROUP BY 1, 2"
            ).all()
        return {(s, m): (n, None if r is None else float(r)) for s, m, n, r in rows}

    yellow = warehouse_counts(pg_url, "yellow_tripdata")
    with engine_for(pg_url).connect() as connection:
        paid = connection.exec_driver_sql(
            "SELECT sum(total_amount) FROM warehouse.yellow_tripdata "
            "WHERE partition_month = DATE '2021-01-01'"
        ).scalar()
    assert paid is not None
    view = in_view()
    assert set(view) == {("yellow", "2021-01"), ("yellow", "2021-02"), ("fhvhv", "2021-01")}
    assert view[("yellow", "2021-01")][0] == yellow["2021-01"]
    assert view[("yellow", "2021-01")][1] == pytest.approx(float(paid))
    assert view[("fhvhv", "2021-01")][0] == warehouse_counts(pg_url, "fhvhv_tripdata")["2021-01"]

    # A filter on the month reaches each trip table's month partition only.
    with engine_for(pg_url).connect() as connection:
        plan = "\n".join(
            row[0]
            for row in connection.exec_driver_sql(
                "EXPLAIN SELECT count(*) FROM analytics.trips "
                "WHERE partition_month = DATE '2021-01-01'"
            )
        )
    assert "yellow_tripdata_2021_01" in plan and "yellow_tripdata_2021_02" not in plan

    # The monthly stats leave the services with empty tables out, as without a table.
    assert run(ZONES, resources, instance).success
    stats = materialization_metadata(run(STATS, resources, instance, "2021-01"), STATS)
    assert (stats["services"], stats["services_not_loaded"]) == ("yellow, fhvhv", "-")

    # Green, loaded after: its warehouse asset takes the empty table, the view shows it.
    assert run(trips("green"), resources, instance, "2021-01").success
    green = warehouse_counts(pg_url, "green_tripdata")["2021-01"]
    assert in_view()[("green", "2021-01")][0] == green


def test_the_trips_view_keeps_its_grants_and_replaces_an_older_shape(
    pg_url: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    assert run(TRIPS_VIEW, resources, instance).success
    engine = engine_for(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE ROLE bi_tool NOLOGIN")
        connection.exec_driver_sql("GRANT SELECT ON analytics.trips TO bi_tool")

    def bi_tool_reads() -> bool:
        with engine.connect() as connection:
            return bool(
                connection.exec_driver_sql(
                    "SELECT has_table_privilege('bi_tool', 'analytics.trips', 'SELECT')"
                ).scalar()
            )

    assert run(TRIPS_VIEW, resources, instance).success
    assert bi_tool_reads()  # replaced in place: the grant made on it holds
    # A view of an earlier shape (a column of another type): dropped and created again.
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP VIEW analytics.trips")
        connection.exec_driver_sql("CREATE VIEW analytics.trips AS SELECT 1 AS service")
        connection.exec_driver_sql("GRANT SELECT ON analytics.trips TO bi_tool")
    result = run(TRIPS_VIEW, resources, instance)
    assert result.success
    assert bi_tool_reads()  # dropped and created again, with the grant made on it
    with engine.connect() as connection:
        columns = (
            connection.exec_driver_sql(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'analytics' AND table_name = 'trips' ORDER BY ordinal_position"
            )
            .scalars()
            .all()
        )
    assert columns[:3] == ["service", "partition_month", "pickup_datetime"]
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any('"analytics"."trips" changed shape' in m for m in logs), logs
    engine.dispose()
