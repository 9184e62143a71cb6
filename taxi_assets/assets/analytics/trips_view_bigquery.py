"""``analytics.trips`` in BigQuery: the trip tables it reads, and the view itself.

The view carries its columns' descriptions, as the PostgreSQL view's column comments do,
set in the same ``CREATE OR REPLACE VIEW`` (a column list with ``OPTIONS(description=...)``):
a replace leaves no moment without them, and no API call of its own. BigQuery runs the
view's query with the reader's own access to the warehouse tables (it is not an
authorized view): readers need ``roles/bigquery.dataViewer`` on both datasets
(``docs/deployment.md``).
"""

from __future__ import annotations

from collections.abc import Callable

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from taxi_assets.assets.analytics.stats_sql_bigquery import BIGQUERY_SQL, WAREHOUSE_DATASET
from taxi_assets.assets.analytics.trips_view import (
    ANALYTICS_SCHEMA,
    TRIPS_VIEW,
    VIEW_COLUMNS,
    trip_stream_schema,
    view_sql,
)
from taxi_assets.assets.trips import warehouse_metadata
from taxi_assets.bq.names import TableName, column_sql, string_literal
from taxi_assets.bq.query import run_query
from taxi_assets.bq.tables import TableLayout, ensure_dataset, ensure_table
from taxi_assets.services import SERVICES
from taxi_assets.warehouse_engine import BIGQUERY


def _trip_table(project: str, service: str) -> TableName:
    return TableName(project, WAREHOUSE_DATASET, SERVICES[service].dataset)


def ensure_trip_tables_bigquery(client: bigquery.Client, log: Callable[[str], None]) -> list[str]:
    """Create the trip tables missing, as the BigQuery IO manager would; those created."""
    created = []
    for name, service in SERVICES.items():
        table = _trip_table(client.project, name)
        try:
            client.get_table(table.table_id)
            continue
        except NotFound:
            pass
        metadata = warehouse_metadata(service, BIGQUERY)
        layout = TableLayout(
            partition_column=metadata["partition_expr"], cluster_by=tuple(metadata["cluster_by"])
        )
        ensure_table(client, table, trip_stream_schema(name), layout, log)
        created.append(name)
    return created


def replace_view_bigquery(client: bigquery.Client) -> str:
    """Create or replace the view; the statement run."""
    view = TableName(client.project, ANALYTICS_SCHEMA, TRIPS_VIEW)
    ensure_dataset(client, view)
    select = view_sql(BIGQUERY_SQL, lambda service: _trip_table(client.project, service).sql())
    statement = view_statement(view, select)
    run_query(client, statement)
    return statement


def view_statement(view: TableName, select: str) -> str:
    """``CREATE OR REPLACE VIEW`` naming every column (in ``view_sql``'s order) with its
    description."""
    columns = ",\n  ".join(
        f"{column_sql(c.name)} OPTIONS(description={string_literal(c.description)})"
        for c in VIEW_COLUMNS
    )
    return f"CREATE OR REPLACE VIEW {view.sql()} (\n  {columns}\n) AS\n{select}"
