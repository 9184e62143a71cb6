"""The three monthly assets of one service: raw file -> lake Parquet -> warehouse table."""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from taxi_assets.assets.contract_stream import (
    PARTITION_MONTH,
    contract_stream,
    lake_row_count,
    warehouse_schema,
    with_lineage,
)
from taxi_assets.assets.fetch import fetch_published_file
from taxi_assets.automation.conditions import FOLLOW_UPSTREAM
from taxi_assets.contracts import CONTRACTS
from taxi_assets.io_managers.arrow_stats import column_schema
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.postgres import TableLoad
from taxi_assets.io_managers.raw_files import StoredFile
from taxi_assets.partitions import parse_month
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import LAYERS, Layer, Service

OWNERS = ["team:data-engineering"]
# One month per run in every layer: a failure touches one month, and the in-process
# executor keeps a run's fixed cost small. (The warehouse IO manager can replace a range
# of months in one transaction; mixing policies in taxi_monthly_job would make Dagster
# fall back to the smallest one anyway.)
ONE_MONTH_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def warehouse_metadata(service: Service) -> dict[str, Any]:
    """The warehouse asset's definition metadata: how the IO manager stores it (and how the
    checks find it again), and the table's static name and columns for the UI."""
    contract = CONTRACTS[service.name]
    return {
        "partition_expr": PARTITION_MONTH,
        "time_column": contract.time_column,
        # One child table per month, so no index on the month; BRIN on the pickup time (rows
        # arrive nearly in time order: a few pages of index per month). No btree: the
        # analytics read whole months (hash join on the zone) and the checks count a month,
        # and a zone's trips sit on most pages of its month, so a btree on the zone made a
        # one-zone query slower than a parallel scan (198 vs 133 ms on 1.37M rows) and cost
        # ~0.8 s per 1.37M rows to build (docs/performance.md). `index_columns` adds one.
        "brin_index_columns": [contract.time_column],
        "dagster/table_name": f"warehouse.{service.dataset}",
        "dagster/column_schema": column_schema(warehouse_schema(contract)),
    }


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
    service: Service, partitions_def: dg.PartitionsDefinition
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
        description=f"{service.description}: the monthly file exactly as published.",
        pool="downloads",
        output_required=False,
    )
    def raw(
        context: dg.AssetExecutionContext, source: TaxiSourceResource, lake: LakeResource
    ) -> Iterator[dg.Output]:
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
        if month < service.first_published_month:
            # One partitions definition serves every service; months before a service
            # existed have nothing to load, so the run skips them (lake and warehouse too).
            context.log.info(
                f"{service.name} has no trips before {service.first_published_month}: "
                f"{month} skipped, nothing to load"
            )
            return
        layout = source.layout()
        url, name = layout.trip_file(dataset, month)
        yield fetch_published_file(
            context, source, lake, url, name, month, layout.source_for(month), contract
        )

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
    def lake(context: dg.AssetExecutionContext, raw_file: StoredFile) -> pa.RecordBatchReader:
        parse_month(context.partition_key)
        return contract_stream(context, raw_file, contract, raw_key, context.partition_key)

    @layer_asset(
        service,
        "warehouse",
        partitions_def,
        upstream_input="lake_months",
        kinds={"postgres"},
        code_version="1",
        metadata=warehouse_metadata(service),
        description=(
            f"{service.description}: table warehouse.{dataset}, one month per "
            "partition_month, replaced atomically on every load."
        ),
        pool="warehouse",
    )
    def warehouse(lake_months: dict[str, LakeFiles]) -> TableLoad:
        schema = warehouse_schema(contract)

        def batches() -> Iterator[pa.RecordBatch]:
            for month, months_data in lake_months.items():
                yield from with_lineage(months_data, parse_month(month), schema)

        expected = sum(lake_row_count(data) for data in lake_months.values())
        return TableLoad(pa.RecordBatchReader.from_batches(schema, batches()), expected)

    return [raw, lake, warehouse]
