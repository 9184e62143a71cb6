"""Datasets and tables from Arrow schemas: created when missing, new columns added."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from google.api_core.exceptions import Conflict, GoogleAPIError, NotFound
from google.cloud import bigquery

from taxi_assets.bq.names import TableName, column_sql, string_literal
from taxi_assets.bq.query import run_query
from taxi_assets.bq.types import bigquery_schema, bigquery_type, column_type, schema_field

# A staging table outlives its run only if the run was killed: BigQuery then drops it.
STAGING_LIFETIME = timedelta(days=1)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableLayout:
    """How a table is stored: MONTH partitions on a date column, clustering columns."""

    partition_column: str | None = None
    cluster_by: tuple[str, ...] = ()

    def apply(self, table: bigquery.Table) -> bigquery.Table:
        if self.partition_column:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.MONTH, field=self.partition_column
            )
        present = {field.name for field in table.schema}
        clustering = [column for column in self.cluster_by if column in present]
        if clustering:
            table.clustering_fields = clustering[:4]  # BigQuery's limit
        return table


def ensure_dataset(client: bigquery.Client, name: TableName) -> None:
    dataset = bigquery.Dataset(f"{name.project}.{name.dataset}")
    if client.location:
        dataset.location = client.location
    client.create_dataset(dataset, exists_ok=True)


def ensure_table(
    client: bigquery.Client,
    name: TableName,
    schema: pa.Schema,
    layout: TableLayout,
    log: Callable[[str], None] = lambda _: None,
) -> bigquery.Table:
    """The table ``name`` with at least the columns of ``schema``: created (with its
    partitioning and clustering) when missing; columns the schema gained since are added
    as NULLABLE, so older rows read them as null."""
    ensure_dataset(client, name)
    try:
        table = client.get_table(name.table_id)
    except NotFound:
        created = layout.apply(bigquery.Table(name.table_id, schema=bigquery_schema(schema)))
        try:
            table = client.create_table(created)
            log(f"created table {name.short} ({len(schema)} columns)")
            return table
        except Conflict:  # another run created it meanwhile
            table = client.get_table(name.table_id)
    refuse_other_types(table, name, schema)
    return add_missing_columns(client, table, name, schema, log)


class ColumnTypesDiffer(ValueError):
    """The table holds a column of the load under another type."""


def refuse_other_types(table: bigquery.Table, name: TableName, schema: pa.Schema) -> None:
    """A table made by hand, or by another version, whose column has another type than
    the load's: the load's SELECT would cast every value into it without a word (a naive
    New York time into a TIMESTAMP, read as UTC: 4-5 hours off; a fare into INT64,
    rounded). Refused, naming each column, before anything is staged."""
    found = {f.name: column_type(f) for f in table.schema}
    differ = [
        f"{field.name} is {found[field.name]}, the load's is {bigquery_type(field.type)}"
        for field in schema
        if field.name in found and found[field.name] != bigquery_type(field.type)
    ]
    if differ:
        raise ColumnTypesDiffer(
            f"{name.short} has columns of other types than the load: {'; '.join(differ)}. "
            "Its values would be cast into them (a naive New York time read as UTC, a "
            "fare rounded): nothing was loaded. Change those columns' types, or drop or "
            "rename the table to have it created again."
        )


def add_missing_columns(
    client: bigquery.Client,
    table: bigquery.Table,
    name: TableName,
    schema: pa.Schema,
    log: Callable[[str], None] = lambda _: None,
) -> bigquery.Table:
    present = {field.name for field in table.schema}
    missing = [field for field in schema if field.name not in present]
    if not missing:
        return table
    added = [schema_field(field.with_nullable(True)) for field in missing]
    for field in added:
        run_query(client, add_column_sql(name, field))
    table = client.get_table(name.table_id)
    known = {field.name for field in table.schema}
    if not all(field.name in known for field in added):
        # The emulator applies ALTER TABLE to its storage only, not to the table's
        # metadata; BigQuery updates both. Add the rest through the API.
        table.schema = [*table.schema, *(field for field in added if field.name not in known)]
        table = client.update_table(table, ["schema"])
    log(f"{name.short}: added column(s) {', '.join(field.name for field in added)}")
    return table


def add_column_sql(name: TableName, field: bigquery.SchemaField) -> str:
    """``ALTER TABLE ... ADD COLUMN`` with the column's description, as a created table's
    columns have theirs."""
    options = (
        f" OPTIONS(description={string_literal(field.description)})" if field.description else ""
    )
    return (
        f"ALTER TABLE {name.sql()} ADD COLUMN IF NOT EXISTS "
        f"{column_sql(field.name)} {field.field_type}{options}"
    )


def create_staging_table(
    client: bigquery.Client,
    name: TableName,
    schema: Sequence[bigquery.SchemaField],
    layout: TableLayout = TableLayout(),
) -> bigquery.Table:
    """A fresh table for one load, expiring by itself if the run dies before dropping it."""
    table = layout.apply(bigquery.Table(name.table_id, schema=list(schema)))
    table.expires = datetime.now(UTC) + STAGING_LIFETIME
    return client.create_table(table)


def drop_table(client: bigquery.Client, name: TableName) -> None:
    client.delete_table(name.table_id, not_found_ok=True)


def drop_expiring_table(
    client: bigquery.Client, name: TableName, warn: Callable[[str], None] = _log.warning
) -> None:
    """Drop a table made with an expiry (staging, cells), after the work it served: a drop
    that fails (a role without bigquery.tables.delete, an outage) is a warning, not the
    step's failure: the month was published (or the step's own error is the one to see),
    and the table expires by itself."""
    try:
        drop_table(client, name)
    except GoogleAPIError as error:
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warn(
            f"{name.short}: could not drop this temporary table ({said}); it expires by "
            f"itself within {STAGING_LIFETIME.days} day"
        )
