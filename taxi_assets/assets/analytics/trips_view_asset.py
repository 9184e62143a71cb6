"""The asset ``analytics/trips``: the view of every service's trips (``trips_view``)."""

import dagster as dg

from taxi_assets.assets.analytics.trips_view import (
    ANALYTICS_SCHEMA,
    TRIPS_VIEW,
    TRIPS_VIEW_KEY,
    VIEW_COLUMNS,
    ensure_trip_tables_postgres,
    replace_view_postgres,
)
from taxi_assets.assets.trips import OWNERS
from taxi_assets.resources.bigquery import BigQueryWarehouse
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets.services import SERVICES
from taxi_assets.warehouse_engine import BIGQUERY, POSTGRES, WarehouseEngine


def build_trips_view_asset(engine: WarehouseEngine = POSTGRES) -> dg.AssetsDefinition:
    bigquery = engine is BIGQUERY
    columns = dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.bigquery_type if bigquery else c.postgres_type, c.description)
            for c in VIEW_COLUMNS
        ]
    )

    @dg.asset(
        key=TRIPS_VIEW_KEY,
        deps=[service.key("warehouse") for service in SERVICES.values()],
        group_name=ANALYTICS_SCHEMA,
        kinds={engine.kind, "sql"},
        owners=OWNERS,
        tags={"layer": "analytics"},
        code_version="1",
        metadata={
            "dagster/table_name": f"{ANALYTICS_SCHEMA}.{TRIPS_VIEW}",
            "dagster/column_schema": columns,
        },
        description=(
            f"{engine.label} view {ANALYTICS_SCHEMA}.{TRIPS_VIEW}: every service's trips in "
            "one shape (times, zones, passengers, what the rider paid, miles, file month "
            "and file). Materialize it once: it reads all four trip tables (creating, empty, "
            "those of services not loaded yet), so new months and services appear in it "
            "by themselves."
        ),
    )
    def trips_view(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[PostgresResource | BigQueryWarehouse],
    ) -> dg.MaterializeResult:
        if isinstance(warehouse, BigQueryWarehouse):
            from taxi_assets.assets.analytics.trips_view_bigquery import (
                ensure_trip_tables_bigquery,
                replace_view_bigquery,
            )

            with warehouse.client() as client:
                created = ensure_trip_tables_bigquery(client, context.log.info)
                statement = replace_view_bigquery(client)
        else:
            engine = warehouse.engine()
            waits = warehouse.lock_waits()
            created = ensure_trip_tables_postgres(engine, waits, context.log.info)
            statement = replace_view_postgres(engine, waits, context.log.info)
        if created:
            context.log.info(
                f"created the empty trip tables of {', '.join(created)} (not loaded yet)"
            )
        return dg.MaterializeResult(
            metadata={
                "view": f"{ANALYTICS_SCHEMA}.{TRIPS_VIEW}",
                "services": ", ".join(SERVICES),
                "tables_created_empty": ", ".join(created) or "-",
                "definition": dg.MetadataValue.md(f"```sql\n{statement}\n```"),
            }
        )

    return trips_view
