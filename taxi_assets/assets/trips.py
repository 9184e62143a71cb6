"""The three monthly assets of one service: raw file -> lake Parquet -> warehouse table."""

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import dagster as dg
import pyarrow as pa
from upath import UPath

from taxi_assets.assets.contract_stream import (
    PARTITION_MONTH,
    contract_stream,
    lineage_constants,
    warehouse_constant_columns,
    warehouse_schema,
    warehouse_stream_schema,
    while_raw_current,
    with_lineage,
)
from taxi_assets.assets.fetch import WantedFile, fetch_published_file
from taxi_assets.assets.lake_config import LakeConfig
from taxi_assets.assets.load_records import lake_lineage, month_loads
from taxi_assets.assets.raw_revision import RawRevisionConfig
from taxi_assets.automation.conditions import FOLLOW_UPSTREAM
from taxi_assets.contracts import CONTRACTS
from taxi_assets.instance_reads import materialized_partition_keys, materialized_partitions
from taxi_assets.io_managers.arrow_stats import column_schema
from taxi_assets.io_managers.lake_files import LakeFiles, is_damaged_parquet, null_columns_of
from taxi_assets.io_managers.parquet_lake import GuardedOutput, arrow_filesystem
from taxi_assets.io_managers.raw_files import StoredFile
from taxi_assets.io_managers.table_load import ParquetPart, ParquetTableLoad, lake_parts
from taxi_assets.partitions import parse_month
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.run_slots import record_run_host
from taxi_assets.services import LAYERS, Layer, Service
from taxi_assets.upstream.forbidden import explain_forbidden as forbidden_verdict
from taxi_assets.warehouse_engine import BIGQUERY, POSTGRES, WarehouseEngine

OWNERS = ["team:data-engineering"]
# One month per run in every layer: a failure touches one month, and the in-process
# executor keeps a run's fixed cost small. (The warehouse IO manager can replace a range
# of months in one transaction; mixing policies in a service's job would make Dagster
# fall back to the smallest one anyway.)
ONE_MONTH_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


# Trips are read by pickup zone (the analytics join the zones on it): BigQuery clusters
# each month's partition on it.
CLUSTER_BY = ["pu_location_id"]


def engine_column_schema(schema: pa.Schema, engine: WarehouseEngine) -> dg.TableSchema:
    """The table's columns in the engine's types (BigQuery's modules only when deployed)."""
    if engine is BIGQUERY:
        from taxi_assets.bq.types import bigquery_type

        return column_schema(schema, bigquery_type)
    return column_schema(schema)


def warehouse_metadata(service: Service, engine: WarehouseEngine = POSTGRES) -> dict[str, Any]:
    """The warehouse asset's definition metadata: how the IO manager stores it (and how the
    checks find it again), and the table's static name and columns (in the engine's
    types) for the UI."""
    contract = CONTRACTS[service.name]
    schema = warehouse_schema(contract)
    return {
        "partition_expr": PARTITION_MONTH,
        "cluster_by": CLUSTER_BY,
        "time_column": contract.time_column,
        # One child table per month, so no index on the month; BRIN on the pickup time (rows
        # arrive nearly in time order: a few pages of index per month). No btree: the
        # analytics read whole months (hash join on the zone) and the checks count a month,
        # and a zone's trips sit on most pages of its month, so a btree on the zone made a
        # one-zone query slower than a parallel scan (198 vs 133 ms on 1.37M rows) and cost
        # ~0.8 s per 1.37M rows to build (docs/performance.md). `index_columns` adds one.
        "brin_index_columns": [contract.time_column],
        "dagster/table_name": f"warehouse.{service.dataset}",
        "dagster/column_schema": engine_column_schema(schema, engine),
    }


class LakeMonthPaths(Protocol):
    """The lake IO manager as its readers outside a run's inputs see it: where it keeps a
    month (in its configured ``hive_format``)."""

    def month_path(self, key: dg.AssetKey, month: str) -> UPath: ...


def stored_lake_month(
    lake_io_manager: LakeMonthPaths, key: dg.AssetKey, month: str
) -> LakeFiles | None:
    """The month's lake file where the lake IO manager keeps it; None when there is none."""
    path = lake_io_manager.month_path(key, month)
    if not path.exists():
        return None
    filesystem, native = arrow_filesystem(path)
    return LakeFiles.at(filesystem, native)


def lake_month_rows(lake_io_manager: LakeMonthPaths, key: dg.AssetKey, month: str) -> int | None:
    """Rows of the month's lake file, from its footer; None when there is none."""
    stored = stored_lake_month(lake_io_manager, key, month)
    return None if stored is None else stored.count_rows()


def lake_month_filled_columns(
    lake_io_manager: LakeMonthPaths,
    key: dg.AssetKey,
    month: str,
    warn: Callable[[str], None],
) -> frozenset[str] | None:
    """Columns of the month's lake file with a value in some row, from its footer's
    statistics; None when there is no such file, or it cannot be read (a damaged file:
    the load that replaces it is its repair, docs/fault_tolerance.md 6k)."""
    stored = stored_lake_month(lake_io_manager, key, month)
    if stored is None:
        return None
    filled: set[str] = set()
    try:
        for path in stored.paths:
            names = set(stored.arrow_schema(path).names)
            filled.update(names - null_columns_of(stored.footer(path)))
    except (pa.ArrowInvalid, OSError) as error:
        # Only a damaged file: a store that throttles or refuses (s3fs raises OSError for
        # a 503) read as "damaged" would let a file missing columns replace the month's
        # values.
        if not is_damaged_parquet(error):
            raise
        warn(
            f"{key.to_user_string()} {month}: the lake file being replaced cannot be read "
            f"({error}); it is replaced whatever columns it had"
        )
        return None
    return frozenset(filled)


def layer_asset(
    service: Service,
    layer: Layer,
    partitions_def: dg.PartitionsDefinition,
    upstream_input: str | None = None,
    **specific: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset`` for one layer of a service's month: key, group, IO manager, tags,
    owners, partitions and the one-month-per-run policy are the same in every layer.
    ``upstream_input`` names the argument that receives the previous layer's month; a
    layer with one follows it automatically. ``specific`` adds the layer's own arguments."""
    if upstream_input is not None:
        previous = service.key(LAYERS[LAYERS.index(layer) - 1])
        specific["ins"] = {upstream_input: dg.AssetIn(key=previous)}
        specific["automation_condition"] = FOLLOW_UPSTREAM
    return dg.asset(
        key=service.key(layer),
        group_name=layer,
        partitions_def=partitions_def,
        io_manager_key=f"{layer}_io_manager",
        owners=OWNERS,
        tags={"service": service.name, "layer": layer},
        backfill_policy=ONE_MONTH_PER_RUN,
        **specific,
    )


def build_trip_assets(
    service: Service, partitions_def: dg.PartitionsDefinition, engine: WarehouseEngine = POSTGRES
) -> list[dg.AssetsDefinition]:
    contract = CONTRACTS[service.name]
    dataset = service.dataset
    raw_key = service.key("raw")

    @layer_asset(
        service,
        "raw",
        partitions_def,
        kinds={"csv", "parquet"},
        code_version="1",
        description=(
            f"{service.description}: the monthly file exactly as published, every revision "
            "kept under its sha256 (run config `revision` rebuilds the month from an older one)."
        ),
        pool="downloads",
    )
    def raw(
        context: dg.AssetExecutionContext,
        config: RawRevisionConfig,
        source: TaxiSourceResource,
        lake: LakeResource,
    ) -> dg.Output:
        month = context.partition_key
        if not partitions_def.has_partition_key(month):
            # `dagster job execute --tags '{"dagster/partition": ...}'` does not check the key.
            raise dg.Failure(
                description=(
                    f"partition {month} is outside the partitions of {raw_key.to_user_string()} "
                    f"({partitions_def.get_first_partition_key()} to "
                    f"{partitions_def.get_last_partition_key()}); nothing was downloaded"
                ),
                allow_retries=False,
            )
        layout = source.layout()
        url, name = layout.trip_file(dataset, month)

        def explain_forbidden() -> str:
            if month in materialized_partition_keys(context.instance, raw_key):
                # Published once (it was loaded), refused now: not "not published yet",
                # even when it is the only month loaded (as the sensor reads it).
                return forbidden_verdict(
                    source=layout.source_for(month, dataset),
                    service=service.name,
                    month=month,
                    url=url,
                    newest_loaded=month,
                    newest_forbidden=True,
                ).message
            loaded = materialized_partitions(context.instance, raw_key, partitions_def)
            newest = max(loaded, default=None)
            return source.explain_forbidden(dataset, month, url, newest).message

        source_label = layout.source_for(month, dataset)
        wanted = WantedFile(url, name, month, source_label, contract, explain_forbidden)
        return fetch_published_file(context, source, lake, wanted, config)

    @layer_asset(
        service,
        "lake",
        partitions_def,
        upstream_input="raw_file",
        kinds={"parquet"},
        code_version=f"contract-{contract.version}",
        metadata={
            "time_column": contract.time_column,
            "contract_version": contract.version,
            "dagster/column_schema": column_schema(contract.schema),
        },
        description=(
            f"{service.description}: every published row, typed to the {service.name} "
            f"contract v{contract.version}, as Parquet (zstd) in a Hive layout."
        ),
    )
    def lake(
        context: dg.AssetExecutionContext,
        config: LakeConfig,
        lake_io_manager: dg.ResourceParam[LakeMonthPaths],
        raw_file: StoredFile,
    ) -> GuardedOutput:
        month = context.partition_key
        parse_month(month)
        stream = contract_stream(
            context,
            raw_file,
            contract,
            raw_key,
            month,
            config.accept_empty,
            lake_rows=lambda: lake_month_rows(lake_io_manager, context.asset_key, month),
            accept_missing_columns=config.accept_missing_columns,
            lake_filled_columns=lambda: lake_month_filled_columns(
                lake_io_manager, context.asset_key, month, context.log.warning
            ),
        )
        # Checked when the file is published, not here: the stream is parsed as the IO
        # manager writes it, after this returns.
        return GuardedOutput(stream, lambda: while_raw_current(raw_file, "the lake month"))

    @layer_asset(
        service,
        "warehouse",
        partitions_def,
        upstream_input="lake_months",
        kinds={engine.kind},
        code_version="1",
        metadata=warehouse_metadata(service, engine),
        description=(
            f"{service.description}: {engine.label} table warehouse.{dataset}, one month per "
            "partition_month, replaced atomically on every load."
        ),
        pool="warehouse",
    )
    def warehouse(
        context: dg.AssetExecutionContext, lake_months: dict[str, LakeFiles]
    ) -> ParquetTableLoad:
        record_run_host(context.instance, context.run)  # it holds a `warehouse` pool slot
        schema = warehouse_stream_schema(warehouse_schema(contract))

        def batches() -> Iterator[pa.RecordBatch]:
            for month, months_data in lake_months.items():
                yield from with_lineage(months_data, parse_month(month), schema)

        # Each month's raw revision and rows, from the lake footers: the rows the load
        # must hold, and its `warehouse.loads` rows (committed with the months).
        lineage = {parse_month(month): lake_lineage(data) for month, data in lake_months.items()}
        expected = sum(month.rows for month in lineage.values())
        prefix = service.key("warehouse").path[0]
        loads = month_loads(prefix, dataset, lineage, context.run.run_id)

        # The same rows twice, both lazy: a stream (PostgreSQL COPYs it) and the lake files
        # with their lineage columns (BigQuery loads them itself). Only one is ever read.
        def parts() -> tuple[ParquetPart, ...]:
            return tuple(
                part
                for month, data in lake_months.items()
                for part in lake_parts(data, lineage_constants(parse_month(month)))
            )

        return ParquetTableLoad(
            pa.RecordBatchReader.from_batches(schema, batches()),
            expected,
            log=loads,
            constant_columns=warehouse_constant_columns(
                {parse_month(month): data for month, data in lake_months.items()}, schema
            ),
            parts=parts,
        )

    return [raw, lake, warehouse]
