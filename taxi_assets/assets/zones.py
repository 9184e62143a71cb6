"""The taxi zone dimension: lookup CSV -> lake Parquet -> warehouse table (unpartitioned)."""

import dagster as dg
import pyarrow as pa

from taxi_assets.assets.contract_stream import contract_stream, lake_row_count, while_raw_current
from taxi_assets.assets.fetch import WantedFile, fetch_published_file
from taxi_assets.assets.lake_config import LakeConfig
from taxi_assets.assets.raw_revision import RawRevisionConfig
from taxi_assets.assets.trips import OWNERS, engine_column_schema
from taxi_assets.automation.conditions import FOLLOW_UPSTREAM, zone_lookup_condition
from taxi_assets.contracts import CONTRACTS
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.parquet_lake import GuardedOutput
from taxi_assets.io_managers.raw_files import StoredFile
from taxi_assets.io_managers.table_load import ParquetTableLoad, lake_parts
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.services import zone_key
from taxi_assets.warehouse_engine import POSTGRES, WarehouseEngine

CONTRACT = CONTRACTS["zones"]
RAW_KEY = zone_key("raw")
LAKE_KEY = zone_key("lake")


@dg.asset(
    key=RAW_KEY,
    group_name="raw",
    io_manager_key="raw_io_manager",
    kinds={"csv"},
    owners=OWNERS,
    code_version="1",
    automation_condition=zone_lookup_condition(),
    description=(
        "TLC taxi zone lookup CSV exactly as published (265 zones), every revision kept "
        "under its sha256; fetched by the automation sensor when missing, then monthly."
    ),
)
def raw_taxi_zone_lookup(
    context: dg.AssetExecutionContext,
    config: RawRevisionConfig,
    source: TaxiSourceResource,
    lake: LakeResource,
) -> dg.Output:
    url, name = source.layout().zones_file()
    wanted = WantedFile(url, name, None, "zones", CONTRACT)
    return fetch_published_file(context, source, lake, wanted, config)


@dg.asset(
    key=LAKE_KEY,
    ins={"raw_file": dg.AssetIn(key=RAW_KEY)},
    group_name="lake",
    io_manager_key="lake_io_manager",
    kinds={"parquet"},
    owners=OWNERS,
    code_version=f"contract-{CONTRACT.version}",
    metadata={"contract_version": CONTRACT.version},
    automation_condition=FOLLOW_UPSTREAM,
    description="Taxi zones typed to the zones contract; 'N/A', 'NA' and 'Unknown' kept as text.",
)
def lake_taxi_zones(
    context: dg.AssetExecutionContext, config: LakeConfig, raw_file: StoredFile
) -> GuardedOutput:
    stream = contract_stream(context, raw_file, CONTRACT, RAW_KEY, None, config.accept_empty)
    return GuardedOutput(stream, lambda: while_raw_current(raw_file, "the lake file"))


def build_zone_assets(engine: WarehouseEngine = POSTGRES) -> list[dg.AssetsDefinition]:
    """The zone assets; the warehouse table in ``engine``."""

    @dg.asset(
        key=zone_key("warehouse"),
        ins={"zones": dg.AssetIn(key=LAKE_KEY)},
        group_name="warehouse",
        io_manager_key="warehouse_io_manager",
        kinds={engine.kind},
        owners=OWNERS,
        code_version="1",
        metadata={
            "primary_key": ["location_id"],
            # The columns in the engine's types, as the trip tables show theirs.
            "dagster/column_schema": engine_column_schema(CONTRACT.schema, engine),
        },
        automation_condition=FOLLOW_UPSTREAM,
        description=(
            f"{engine.label} table warehouse.taxi_zones (one row per location_id"
            f"{', the primary key' if engine is POSTGRES else ''}), replaced on every load."
        ),
    )
    def warehouse_taxi_zones(zones: LakeFiles) -> ParquetTableLoad:
        reader = pa.RecordBatchReader.from_batches(zones.schema, zones.to_batches())
        return ParquetTableLoad(reader, lake_row_count(zones), parts=lambda: lake_parts(zones))

    return [raw_taxi_zone_lookup, lake_taxi_zones, warehouse_taxi_zones]
