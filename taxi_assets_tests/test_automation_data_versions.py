"""Automation follows data versions (automation/conditions.py), on a real instance.

The project's definitions and assets, real runs against PostgreSQL and the HTTP mirror,
and ``dg.evaluate_automation_conditions`` ticking as the automation sensor does:

- unchanged raw bytes (a re-download, or the zone lookup again): nothing downstream;
- a republished month: exactly lake, warehouse and analytics of that month;
- a failed blocking check holds the month back until a re-run passes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests

from taxi_assets import defs
from taxi_assets.devdata import write_month
from taxi_assets.instance_reads import latest_metadata
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    materialization_metadata,
    pipeline_resources,
    run,
    run_checks_only,
    run_naming_its_assets,
)

MONTH = "2021-01"
NEXT = "2021-02"
STATS = "analytics/monthly_zone_stats"
ZONES = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
SERVICES = ("yellow", "green", "fhv", "fhvhv")
DATA_VERSION_TAG = "dagster/data_version"


def layers(service: str, *names: str) -> list[str]:
    return [f"{layer}/{service}_tripdata" for layer in names or ("raw", "lake", "warehouse")]


class Ticks:
    """The automation sensor's evaluations, one call per tick, its cursor kept between."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor: Any = None
        self.result: Any = None
        self.evaluation_time: datetime | None = None  # None: now

    def __call__(self) -> dict[str, set[str | None]]:
        """What this tick requests: asset -> partitions."""
        self.result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=self.instance,
            cursor=self.cursor,
            evaluation_time=self.evaluation_time,
        )
        self.cursor = self.result.cursor
        requested = {
            key.to_user_string(): set(self.result.get_requested_partitions(key))
            for key in defs.resolve_all_asset_keys()
        }
        return {key: months for key, months in requested.items() if months}

    def run_requests(self) -> list[dg.RunRequest]:
        """What the sensor (``emit_backfills=True``) makes of the last tick's requests.

        Dagster's own function (not public) that the automation sensor calls; run against
        this tick's requests, it shows runs versus one backfill without a daemon."""
        return list(
            build_run_requests(
                self.result._requested_subsets,  # not public, see the docstring
                defs.resolve_asset_graph(),
                {},
                emit_backfills=True,
            )
        )


def data_version(instance: dg.DagsterInstance, key: str, month: str | None) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(key),
            asset_partitions=[month] if month else None,
        ),
        limit=1,
    ).records
    materialization = records[0].asset_materialization
    assert materialization is not None and materialization.tags is not None
    return materialization.tags[DATA_VERSION_TAG]


def republish(mirror: FaultyMirror, service: str, month: str, rows: int) -> None:
    """Upstream rewrites the month: other bytes, another row count."""
    write_month(Path(mirror.root), source="dtc", service=service, month=month, rows=rows, seed=11)


@pytest.fixture
def resources(
    own_mirror: FaultyMirror, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    return pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url)


def test_only_a_new_revision_cascades_and_exactly_its_month(
    own_mirror: FaultyMirror, resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    tick = Ticks(instance)
    # The first evaluation: nothing happened yet; the zone lookup was never loaded.
    assert tick() == {"raw/taxi_zone_lookup": {None}}
    assert run(ZONES, resources, instance).success
    for service in SERVICES:
        assert run(layers(service), resources, instance, MONTH).success
    assert run(layers("yellow"), resources, instance, NEXT).success
    # Lake and warehouse were materialized with their raw files (one run per service):
    # not again. The analytics month waited for every service and the zones.
    assert tick() == {STATS: {MONTH}}
    assert run(STATS, resources, instance, MONTH).success
    assert tick() == {}
    versions = {key: data_version(instance, key, MONTH) for key in [*layers("yellow"), STATS]}

    # The same bytes again (upstream unchanged, and the zone lookup): the raw data
    # versions (the sha256) are the same, so nothing downstream is requested.
    assert run("raw/yellow_tripdata", resources, instance, MONTH).success
    assert run("raw/taxi_zone_lookup", resources, instance).success
    assert tick() == {}
    # Lake and warehouse computed again from the same inputs keep their data versions
    # (code version + input versions): nothing cascades from them either.
    assert run(layers("yellow", "lake", "warehouse"), resources, instance, MONTH).success
    for key in layers("yellow"):
        assert data_version(instance, key, MONTH) == versions[key]
    assert tick() == {}

    # Upstream republishes yellow 2021-01: exactly lake, warehouse and analytics of that
    # month, in one tick. One month: one run (lake, warehouse and analytics share their
    # partitions definition, so Dagster puts them in one run, in dependency order).
    republish(own_mirror, "yellow", MONTH, rows=1500)
    assert run("raw/yellow_tripdata", resources, instance, MONTH).success
    expected = {"lake/yellow_tripdata", "warehouse/yellow_tripdata", STATS}
    assert tick() == {key: {MONTH} for key in expected}
    (request,) = tick.run_requests()
    assert request.partition_key == MONTH and request.asset_graph_subset is None
    assert {k.to_user_string() for k in request.asset_selection or ()} == expected
    assert run(sorted(expected), resources, instance, MONTH).success
    for key in expected:
        assert data_version(instance, key, MONTH) != versions[key]
    assert tick() == {}

    # FHVHV's partitions start later than the analytics': Dagster would run its month
    # and the analytics month side by side, so the analytics follow once FHVHV is loaded.
    republish(own_mirror, "fhvhv", MONTH, rows=900)
    assert run("raw/fhvhv_tripdata", resources, instance, MONTH).success
    assert tick() == {"lake/fhvhv_tripdata": {MONTH}, "warehouse/fhvhv_tripdata": {MONTH}}
    assert run(layers("fhvhv", "lake", "warehouse"), resources, instance, MONTH).success
    assert tick() == {STATS: {MONTH}}
    assert run(STATS, resources, instance, MONTH).success
    assert tick() == {}

    # Two months republished before a tick: one asset backfill holds all of it.
    for month in (MONTH, NEXT):
        republish(own_mirror, "yellow", month, rows=1700)
        assert run("raw/yellow_tripdata", resources, instance, month).success
    assert tick() == {
        "lake/yellow_tripdata": {MONTH, NEXT},
        "warehouse/yellow_tripdata": {MONTH, NEXT},
        STATS: {MONTH},  # 2021-02 of the other services is not loaded: it waits
    }
    (backfill,) = tick.run_requests()
    assert backfill.asset_graph_subset is not None
    covered = {
        (p.asset_key.to_user_string(), p.partition_key)
        for p in backfill.asset_graph_subset.iterate_asset_partitions()
    }
    assert covered == {
        ("lake/yellow_tripdata", MONTH),
        ("lake/yellow_tripdata", NEXT),
        ("warehouse/yellow_tripdata", MONTH),
        ("warehouse/yellow_tripdata", NEXT),
        (STATS, MONTH),
    }


def test_a_failed_blocking_check_holds_the_warehouse_until_a_run_passes(
    own_mirror: FaultyMirror, resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    tick = Ticks(instance)
    tick()
    assert run(ZONES, resources, instance).success  # as the sensor's first tick asks
    assert run(layers("yellow"), resources, instance, MONTH).success
    assert tick() == {}

    # A new revision reaches the lake, then the lake file loses a row (written over by
    # hand, say) and its checks run again: `rows_match_raw` (blocking) fails.
    republish(own_mirror, "yellow", MONTH, rows=1500)
    lake_run = run(layers("yellow", "raw", "lake"), resources, instance, MONTH)
    lake_version = data_version(instance, "lake/yellow_tripdata", MONTH)
    path = Path(materialization_metadata(lake_run, "lake/yellow_tripdata")["path"])
    pq.write_table(pq.read_table(path).slice(1), path)
    checks = run_checks_only(dg.AssetKey(["lake", "yellow_tripdata"]), resources, instance, MONTH)
    evaluations = checks.get_asset_check_evaluations()
    assert {(e.check_name, e.passed) for e in evaluations if e.blocking} == {
        ("rows_match_raw", False),
        ("schema_matches_contract", True),
    }
    assert tick() == {}  # the lake's data version changed, but its blocking check failed
    assert tick() == {}

    # The fix: the lake month again, from the same revision (the same data version),
    # and its checks pass: the warehouse follows.
    assert run("lake/yellow_tripdata", resources, instance, MONTH).success
    assert data_version(instance, "lake/yellow_tripdata", MONTH) == lake_version
    assert tick() == {"warehouse/yellow_tripdata": {MONTH}}
    assert run("warehouse/yellow_tripdata", resources, instance, MONTH).success
    assert (
        latest_metadata(instance, dg.AssetKey(["warehouse", "yellow_tripdata"]), MONTH)[
            "dagster/partition_row_count"
        ]
        == 1500
    )
    assert tick() == {}


def test_the_zone_lookup_is_fetched_when_missing_and_then_monthly(
    own_mirror: FaultyMirror, resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    """No schedule or sensor loads the zones, and every analytics month needs them."""
    tick = Ticks(instance)
    assert tick() == {"raw/taxi_zone_lookup": {None}}
    failing = pipeline_resources("http://127.0.0.1:9", resources["lake"].url)
    assert not run("raw/taxi_zone_lookup", failing, instance, raise_on_error=False).success
    assert tick() == {}  # a failed fetch is not tried again at every tick
    assert run("raw/taxi_zone_lookup", resources, instance).success
    assert tick() == {
        "lake/taxi_zones": {None},
        "warehouse/taxi_zones": {None},
    }
    assert run(["lake/taxi_zones", "warehouse/taxi_zones"], resources, instance).success
    assert tick() == {}
    # The 5th of the next month, 06:00 in New York: fetched again.
    now = datetime.now(ZoneInfo("America/New_York"))
    year, month = divmod(now.year * 12 + now.month, 12)  # next month's, 0-based month
    tick.evaluation_time = datetime(year, month + 1, 5, 6, 1, tzinfo=now.tzinfo)
    assert tick() == {key: {None} for key in ZONES}  # one run: the lookup and what follows it
    zones_version = data_version(instance, "warehouse/taxi_zones", None)
    assert run(ZONES, resources, instance).success
    # The same bytes: the same data versions, so no analytics month follows.
    assert data_version(instance, "warehouse/taxi_zones", None) == zones_version
    assert tick() == {}


def test_a_run_that_targeted_the_month_builds_it_not_the_sensor_even_when_it_failed(
    own_mirror: FaultyMirror,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    """A new raw revision in a run that also targets lake and warehouse: that run builds
    them, and the sensor requests nothing, even after the run failed at the warehouse
    (what started the run retries it, or a user re-executes it). A run that names no assets
    (``dg.materialize``, a job launched without a selection) still triggers them."""
    tick = Ticks(instance)
    tick()
    assert run(ZONES, resources, instance).success  # as the sensor's first tick asks
    assert run(layers("yellow"), resources, instance, MONTH).success
    assert tick() == {}

    republish(own_mirror, "yellow", MONTH, rows=1500)
    no_warehouse = pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url=None)
    failed = run_naming_its_assets(layers("yellow"), no_warehouse, instance, MONTH)
    assert not failed.success
    materialized = {
        event.materialization.asset_key.to_user_string()
        for event in failed.get_asset_materialization_events()
    }
    assert materialized == {"raw/yellow_tripdata", "lake/yellow_tripdata"}
    # The lake's data version changed and the warehouse month is idle, but the run that
    # changed it targeted the warehouse too.
    assert tick() == {}

    # A new revision through a run that names raw and lake only: the warehouse follows.
    republish(own_mirror, "yellow", MONTH, rows=1600)
    assert run_naming_its_assets(
        layers("yellow", "raw", "lake"), resources, instance, MONTH
    ).success
    assert tick() == {"warehouse/yellow_tripdata": {MONTH}}
    assert run("warehouse/yellow_tripdata", resources, instance, MONTH).success
    assert tick() == {}

    # A failed run that names no assets: Dagster cannot tell it targeted the warehouse,
    # so the warehouse month is requested.
    republish(own_mirror, "yellow", MONTH, rows=1700)
    assert not run(layers("yellow"), no_warehouse, instance, MONTH, raise_on_error=False).success
    assert tick() == {"warehouse/yellow_tripdata": {MONTH}}
