"""The project's real assets wired to test services (mirror URL, temp lake, test database),
in process (:func:`pipeline_resources`) or through the environment of a ``dagster``
process (:func:`cli_env`)."""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import dagster._check as check
import pyarrow.dataset as pads
import sqlalchemy as sa

from taxi_assets.definitions import build_definitions, build_resources
from taxi_assets.pg.inspect import month_counts
from taxi_assets.resources import LakeResource, PostgresResource, TaxiSourceResource
from taxi_assets.resources.bigquery import BigQueryWarehouse
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets.warehouse_engine import BIGQUERY, warehouse_resources

REPO = Path(__file__).resolve().parents[1]
_DEFS = build_definitions("2019-01")
# Assets and their checks: checks run with every materialization of their asset.


def materializable(definitions: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The definitions' assets and checks, as ``dg.materialize`` takes them."""
    assets = [a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return [*assets, *(definitions.asset_checks or [])]


ASSETS = materializable(_DEFS)
# The same definitions with the warehouse in BigQuery (TAXI_WAREHOUSE_URL=bigquery://...).
BIGQUERY_ASSETS = materializable(build_definitions("2019-01", BIGQUERY))


def pipeline_resources(
    mirror_url: str,
    lake: Path | str | None,
    pg_url: str | None = None,
    source: str = "dtc",
) -> dict[str, Any]:
    """The project's resources (:func:`build_resources`) on the test services; ``lake``
    None means the lake from the environment, as deployed."""
    return build_resources(
        source=TaxiSourceResource(
            source=source,
            dtc_url=mirror_url,
            tlc_url=mirror_url,
            zones_url=f"{mirror_url}/misc/taxi_zone_lookup.csv",
            backoff_seconds=0.01,
            attempts=3,
        ),
        lake=LakeResource(url=None if lake is None else str(lake)),
        warehouse=PostgresResource(url=pg_url or "postgresql://unused@127.0.0.1:9/none"),
    )


def bigquery_resources(
    mirror_url: str, lake: Path | str | None, bigquery_url: str, source: str = "dtc"
) -> dict[str, Any]:
    """:func:`pipeline_resources` with the warehouse in BigQuery (``bigquery://PROJECT``)."""
    resources = pipeline_resources(mirror_url, lake, source=source)
    resources.update(warehouse_resources(BIGQUERY, BigQueryWarehouse(url=bigquery_url)))
    return resources


def project_env(
    mirror_url: str, lake: Path | str, warehouse_url: str | None = None
) -> dict[str, str]:
    """The ``TAXI_*`` settings naming the same test services as :func:`pipeline_resources`."""
    env = {
        "TAXI_SOURCE": "dtc",
        "TAXI_DTC_URL": mirror_url,
        "TAXI_TLC_URL": mirror_url,
        "TAXI_ZONES_URL": f"{mirror_url}/misc/taxi_zone_lookup.csv",
        "TAXI_LAKE_URL": str(lake),
    }
    if warehouse_url is not None:
        env["TAXI_WAREHOUSE_URL"] = warehouse_url
    return env


def dagster_home(tmp_path: Path, config: Path = REPO / "dagster.yaml") -> Path:
    """A DAGSTER_HOME for the environment to name, with ``config`` as its dagster.yaml (by
    default the repository's: local SQLite). Another folder than conftest's ``instance``."""
    home = tmp_path / "env_dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(config, home / "dagster.yaml")
    return home


def cli_env(
    tmp_path: Path, mirror_url: str, lake: Path | str, warehouse_url: str | None = None
) -> dict[str, str]:
    """The environment of a ``dagster`` CLI, daemon or webserver process against the test
    services: :func:`project_env` and a :func:`dagster_home` of its own."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(tmp_path)),
        **project_env(mirror_url, lake, warehouse_url),
    }


def run(
    selection: str | list[str],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    partition_key: str | None = None,
    raise_on_error: bool = True,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    keys = [selection] if isinstance(selection, str) else selection
    bigquery = isinstance(resources.get("warehouse"), BigQueryWarehouse)
    return dg.materialize(
        BIGQUERY_ASSETS if bigquery else ASSETS,
        selection=[dg.AssetKey.from_user_string(key) for key in keys],
        partition_key=partition_key,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def run_naming_its_assets(
    keys: list[str],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    partition_key: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """:func:`run`, but the run names its assets (``DagsterRun.asset_selection``), as the
    runs of the new-month sensor, the schedules, backfills and ``dagster asset materialize``
    do; ``dg.materialize`` names none. Failures are returned, not raised."""
    selection = [dg.AssetKey.from_user_string(key) for key in keys]
    definitions = dg.Definitions(
        assets=ASSETS, resources=resources, jobs=[dg.define_asset_job("named", selection)]
    )
    return definitions.resolve_job_def("named").execute_in_process(
        asset_selection=selection,
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=False,
    )


def run_of_request(
    request: dg.RunRequest,
    keys: list[str],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> dg.ExecuteInProcessResult:
    """The run the daemon makes of a sensor's ``request`` (its partition, tags and run
    key), of the assets ``keys``; failures are returned, not raised."""
    return run_naming_its_assets(
        keys,
        resources,
        instance,
        check.not_none(request.partition_key),
        tags={**request.tags, "dagster/run_key": request.run_key or ""},
    )


def run_checks_only(
    key: dg.AssetKey, resources: dict[str, Any], instance: dg.DagsterInstance, month: str
) -> dg.ExecuteInProcessResult:
    """The month's checks of ``key``, without materializing it (as "Execute checks" in
    the UI): they look at the asset's latest materialization. Failures are returned."""
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(key))
    checks = [c for c in ASSETS if isinstance(c, dg.AssetChecksDefinition)]
    assets = [a for a in ASSETS if not isinstance(a, dg.AssetChecksDefinition)]
    definitions = dg.Definitions(
        assets=assets, asset_checks=checks, jobs=[job], resources=resources
    )
    # The partition as a tag: a job of checks alone has no asset to validate the key against.
    return definitions.resolve_job_def("checks_only").execute_in_process(
        tags={"dagster/partition": month}, instance=instance, raise_on_error=False
    )


def materialization_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey.from_user_string(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise KeyError(key)


def raw_manifest(lake: Path, dataset: str, month: str | None) -> dict[str, Any]:
    """The revision manifest of a raw month (of the unpartitioned ``dataset`` when month
    is None), as JSON."""
    folder = lake / "raw" / dataset / (month or "")
    return json.loads((folder / "revisions.json").read_text())


def current_raw_file(lake: Path, dataset: str, month: str | None = None) -> Path:
    """The current revision's file of a raw month, as the manifest names it."""
    manifest = raw_manifest(lake, dataset, month)
    (current,) = [r for r in manifest["revisions"] if r["sha256"] == manifest["current"]]
    return lake / "raw" / dataset / (month or "") / current["sha256"] / current["name"]


def lake_dataset(lake: Path, dataset: str) -> pads.Dataset:
    return pads.dataset(lake / "lake" / dataset, format="parquet", partitioning="hive")


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url))


def warehouse_counts(pg_url: str, table: str) -> dict[str, int]:
    """Rows of ``warehouse.<table>`` by partition month (``YYYY-MM``)."""
    engine = engine_for(pg_url)
    try:
        return month_counts(engine, "warehouse", table)
    finally:
        engine.dispose()


def warehouse_loads(pg_url: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``warehouse.loads`` by (table, month ``YYYY-MM``): empty before the first load."""
    engine = engine_for(pg_url)
    try:
        with engine.connect() as connection:
            if connection.exec_driver_sql("SELECT to_regclass('warehouse.loads')").scalar() is None:
                return {}
            rows = connection.exec_driver_sql("SELECT * FROM warehouse.loads").mappings().all()
    finally:
        engine.dispose()
    return {(r["table_name"], f"{r['partition_month']:%Y-%m}"): dict(r) for r in rows}


def warehouse_tables(pg_url: str) -> list[str]:
    """The tables of schema ``warehouse``, sorted (none before a first load); a partitioned
    table's months (its partitions) are not listed."""
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        names = connection.exec_driver_sql(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'warehouse' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY 1"
        ).scalars()
        tables = list(names)
    engine.dispose()
    return tables
