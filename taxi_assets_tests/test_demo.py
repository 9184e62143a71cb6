"""`make demo`'s chain, run twice: the same counts, non-zero for every service and month."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from taxi_assets.demo import analytics_totals, run_demo
from taxi_assets_tests.pipeline import engine_for


@pytest.mark.slow
def test_demo_twice_gives_the_same_counts(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name in ("TAXI_SOURCE", "TAXI_DTC_URL", "TAXI_TLC_URL", "TAXI_ZONES_URL"):
        monkeypatch.setenv(name, "")  # run_demo sets them; monkeypatch restores them
    months = ("2021-01", "2021-02")
    first = run_demo(tmp_path / "data", months, rows=300)
    second = run_demo(tmp_path / "data", months, rows=300)
    assert first == second
    for table in ("yellow_tripdata", "green_tripdata", "fhv_tripdata", "fhvhv_tripdata"):
        assert set(first[table]) == set(months)
        assert all(rows > 0 for rows in first[table].values())
    assert first["taxi_zones"] == {"-": 265}
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        # FHVHV came from TLC's Parquet layout (fares included), the others from the course.
        fares = connection.execute(
            sa.text("SELECT count(base_passenger_fare) FROM warehouse.fhvhv_tripdata")
        ).scalar()
        services = connection.execute(
            sa.text(
                "SELECT service, count(*), sum(revenue) FROM analytics.monthly_zone_stats "
                "GROUP BY service ORDER BY service"
            )
        ).all()
    engine.dispose()
    assert fares == sum(first["fhvhv_tripdata"].values())
    # What the demo's summary prints: the analytics' trips tie out with the warehouse rows.
    totals = analytics_totals()
    assert {(month, service): trips for month, service, trips, _ in totals} == {
        (month, table.removesuffix("_tripdata")): rows
        for table, by_month in first.items()
        if table != "taxi_zones"
        for month, rows in by_month.items()
    }
    assert [revenue is None for _, service, _, revenue in totals] == [
        service == "fhv" for _, service, _, _ in totals
    ]
    assert [row[0] for row in services] == ["fhv", "fhvhv", "green", "yellow"]
    assert all(revenue > 0 for service, _, revenue in services if service != "fhv")


def test_a_month_before_a_services_first_is_skipped_saying_so(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """FHVHV starts in 2019-02: the demo of 2019-01 loads the other three and says why
    FHVHV has nothing (it failed with DagsterUnknownPartitionError, after the others)."""
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name in ("TAXI_SOURCE", "TAXI_DTC_URL", "TAXI_TLC_URL", "TAXI_ZONES_URL"):
        monkeypatch.setenv(name, "")
    counts = run_demo(tmp_path / "data", ("2019-01",), rows=50)
    for table in ("yellow_tripdata", "green_tripdata", "fhv_tripdata"):
        assert set(counts[table]) == {"2019-01"}, table
    assert counts["fhvhv_tripdata"] == {}
    assert "Skipping fhvhv 2019-01: not one of its months (2019-02 on)" in capsys.readouterr().out


def test_the_summary_alone_creates_nothing_and_reads_a_warehouse_without_zones(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--summary-only`` "running nothing": where nothing was loaded it made a new embedded
    server (left running) and failed on warehouse.taxi_zones with a traceback, as it did
    over a warehouse holding a trip month loaded by itself (no zones, no analytics)."""
    import sys

    from taxi_assets import demo

    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["demo", "--summary-only"])
    demo.main()
    folder = tmp_path / "data" / "warehouse"
    assert capsys.readouterr().out == (
        f"nothing loaded yet: no embedded warehouse at {folder} (`make demo` loads one)\n"
    )
    assert not (tmp_path / "data").exists()

    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    engine = engine_for(pg_url)
    with engine.begin() as connection:  # one trip month, as `tag:service=yellow` loads it
        connection.execute(sa.text("CREATE SCHEMA warehouse"))
        connection.execute(
            sa.text(
                "CREATE TABLE warehouse.yellow_tripdata AS SELECT DATE '2021-01-01' AS partition_month"
            )
        )
    engine.dispose()
    demo.main()
    said = capsys.readouterr().out
    assert "  yellow_tripdata      2021-01           1" in said
    assert "taxi_zones" not in said
