"""Optional: BigQuery external tables over the lake, for ad-hoc SQL without loading.

One table per trip dataset, ``lake_external.<dataset>``, reading the lake's Parquet in
place on GCS with Hive partitioning: ``year`` and ``month`` become INT64 columns that
BigQuery prunes on. Materialize them once (``dagster asset materialize --select
'group:lake_external'``); new months appear in them by themselves. Only defined when the
warehouse is BigQuery; they need a ``gs://`` lake.
"""

import dagster as dg
from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from taxi_assets.assets.trips import OWNERS
from taxi_assets.bq.names import TableName
from taxi_assets.bq.tables import ensure_dataset
from taxi_assets.resources.bigquery import BigQueryWarehouse
from taxi_assets.resources.lake import LakeResource
from taxi_assets.services import SERVICES, Service
from taxi_assets.storage.roots import is_gcs

EXTERNAL_DATASET = "lake_external"


def external_table(name: TableName, lake_url: str, dataset: str) -> bigquery.Table:
    """The table resource: Parquet under ``<lake>/lake/<dataset>/``, Hive partitions
    ``year=YYYY/month=MM`` typed INT64 (as the lake IO manager writes them), no partition
    filter required."""
    folder = f"{lake_url.rstrip('/')}/lake/{dataset}"
    config = bigquery.ExternalConfig(bigquery.ExternalSourceFormat.PARQUET)
    config.source_uris = [f"{folder}/*"]
    hive = bigquery.HivePartitioningOptions()
    hive.mode = "CUSTOM"
    hive.source_uri_prefix = f"{folder}/{{year:INTEGER}}/{{month:INTEGER}}"
    hive.require_partition_filter = False
    config.hive_partitioning = hive
    table = bigquery.Table(name.table_id)
    table.external_data_configuration = config
    table.description = f"The lake's {dataset} Parquet files on GCS, read in place."
    return table


def create_or_replace(client: bigquery.Client, table: bigquery.Table) -> bigquery.Table:
    try:
        return client.create_table(table)
    except Conflict:
        return client.update_table(table, ["external_data_configuration", "description"])


def build_external_table_assets() -> list[dg.AssetsDefinition]:
    return [_external_table_asset(service) for service in SERVICES.values()]


def _external_table_asset(service: Service) -> dg.AssetsDefinition:
    @dg.asset(
        key=[EXTERNAL_DATASET, service.dataset],
        deps=[service.key("lake")],
        group_name=EXTERNAL_DATASET,
        kinds={"bigquery", "parquet"},
        owners=OWNERS,
        # Not the trip layers' `service` tag: the selections of one service's month
        # (`tag:service=yellow --partition M`) would take this unpartitioned table too.
        tags={"layer": EXTERNAL_DATASET, "dataset": service.dataset},
        code_version="1",
        metadata={"dagster/table_name": f"{EXTERNAL_DATASET}.{service.dataset}"},
        description=(
            f"{service.description}: BigQuery external table {EXTERNAL_DATASET}."
            f"{service.dataset} over the lake's Parquet on GCS (year and month partitions), "
            "for ad-hoc SQL without loading. Optional; needs a gs:// lake."
        ),
    )
    def external(
        context: dg.AssetExecutionContext, warehouse: BigQueryWarehouse, lake: LakeResource
    ) -> dg.MaterializeResult:
        root = lake.root()
        if not is_gcs(root):
            raise dg.Failure(
                description=(
                    "BigQuery external tables read the lake where it lies, on Google Cloud "
                    "Storage: set TAXI_LAKE_URL to gs://BUCKET/PREFIX"
                ),
                allow_retries=False,
            )
        with warehouse.client() as client:
            name = TableName(client.project, EXTERNAL_DATASET, service.dataset)
            ensure_dataset(client, name)
            table = create_or_replace(client, external_table(name, str(root), service.dataset))
        source_uris = table.external_data_configuration.source_uris
        context.log.info(f"{name.short} reads {', '.join(source_uris)}")
        return dg.MaterializeResult(
            metadata={"table": name.short, "source_uris": ", ".join(source_uris)}
        )

    return external
