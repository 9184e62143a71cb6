"""A BigQuery IO manager: Parquet files in with load jobs, a partition replaced atomically.

Tables are ``<key prefix>.<key name>`` (dataset ``warehouse``, table ``yellow_tripdata``),
created from the output's Arrow schema with MONTH partitions on the ``partition_expr``
column and clustered on the ``cluster_by`` columns of the asset's definition metadata.
Writing a partition replaces exactly the rows whose ``partition_expr`` falls in the
partition's window, as :mod:`taxi_assets.bq.replace` describes: files staged by load jobs
(from ``gs://`` without passing through this process), counted against the expected
rows, then published in one copy job or one transaction. A failed load leaves the
previous rows intact. A load's log records (``TableLoad.log``) are written with the rows
(:mod:`taxi_assets.bq.load_log`), after the stored records of the same keys were read.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from google.cloud import bigquery

from taxi_assets.bq.load_log import log_table, read_records, replace_statements
from taxi_assets.bq.names import TableName, column_sql
from taxi_assets.bq.query import run_query
from taxi_assets.bq.replace import ReplaceResult, Staged, Window, count_rows, replace_rows
from taxi_assets.bq.tables import TableLayout, ensure_table
from taxi_assets.io_managers.arrow_stats import (
    preview_markdown,
    row_count_metadata,
    static_schema_metadata,
)
from taxi_assets.io_managers.load_log import LoadLog
from taxi_assets.io_managers.postgres import TableLoad, table_of
from taxi_assets.io_managers.table_load import ParquetPart, ParquetTableLoad
from taxi_assets.resources.bigquery import BigQueryWarehouse

PREVIEW_ROWS = 5


class BigQueryIOManager(dg.ConfigurableIOManager):
    """Tables ``<key prefix>.<key name>`` in the warehouse's BigQuery project."""

    warehouse: BigQueryWarehouse

    def handle_output(self, context: dg.OutputContext, obj: TableLoad | pa.Table | None) -> None:
        if obj is None:
            return
        load = obj if isinstance(obj, TableLoad) else TableLoad(obj.to_reader(), obj.num_rows)
        metadata = context.definition_metadata or {}
        dataset, table = table_of(context.asset_key, metadata)
        partition_expr = metadata.get("partition_expr")
        if context.has_asset_partitions and not partition_expr:
            raise ValueError(f"{context.asset_key.to_user_string()} needs partition_expr metadata")
        layout = TableLayout(
            partition_column=partition_expr, cluster_by=tuple(metadata.get("cluster_by", ()))
        )
        started = time.monotonic()
        strategy = self.warehouse.replace_strategy()
        with tempfile.TemporaryDirectory(prefix="bq-load-") as scratch:
            parts = tuple(load.parts()) if isinstance(load, ParquetTableLoad) else ()
            if not parts:
                parts = (_spill(load.reader, Path(scratch) / "rows.parquet"),)
            with self.warehouse.client() as client:
                name = TableName(client.project, dataset, table)
                target = ensure_table(client, name, load.reader.schema, layout, context.log.info)
                window = _window(context, target, partition_expr)
                observed: dict[str, dg.RawMetadataValue] = {}
                logged = _LogRecords(client, load.log, context.log.info)
                result = replace_rows(
                    client,
                    target,
                    name,
                    parts,
                    window,
                    load.expected_rows,
                    strategy,
                    log=context.log.info,
                    inspect=lambda staged: observed.update(
                        _staged_metadata(client, staged, metadata.get("time_column"), window)
                    ),
                    log_statements=logged.statements(),
                    warn=context.log.warning,
                )
                observed.update(logged.metadata())
                table_bytes = client.get_table(name.table_id).num_bytes or 0
        elapsed = time.monotonic() - started
        context.log.info(
            f"{name.short}: {result.rows_written:,} rows in {elapsed:.1f} s "
            f"({result.strategy}, replaced {result.rows_replaced:,})"
        )
        context.add_output_metadata(
            {
                **row_count_metadata(result.rows_written, context.has_asset_partitions),
                **observed,
                **static_schema_metadata(context, load.reader.schema, name.short),
                **_result_metadata(result),
                "table": name.short,
                "table_bytes": dg.MetadataValue.int(int(table_bytes)),
                "duration_s": round(elapsed, 3),
                "rows_per_s": int(result.rows_written / elapsed) if elapsed > 0 else 0,
            }
        )

    def partition_row_count(
        self, asset_key: dg.AssetKey, metadata: Mapping[str, Any], window: tuple[datetime, datetime]
    ) -> int:
        """Rows of the asset's table in one partition window, found as this IO manager
        writes them (table from the key, rows by the ``partition_expr`` column)."""
        dataset, table = table_of(asset_key, metadata)
        with self.warehouse.client() as client:
            name = TableName(client.project, dataset, table)
            target = client.get_table(name.table_id)
            column = metadata["partition_expr"]
            return count_rows(
                client,
                name,
                Window(column, window[0].date(), window[1].date(), _column_type(target, column)),
            )

    def load_input(self, context: dg.InputContext) -> pa.Table:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata if upstream else None) or {}
        dataset, table = table_of(context.asset_key, metadata)
        with self.warehouse.client() as client:
            name = TableName(client.project, dataset, table)
            where = ""
            if context.has_asset_partitions:
                target = client.get_table(name.table_id)
                window = _window(context, target, metadata.get("partition_expr"))
                where = f" WHERE {window.where_sql()}" if window else ""
            rows = run_query(client, f"SELECT * FROM {name.sql()}{where}")
            return rows.to_arrow(create_bqstorage_client=False)


class _LogRecords:
    """A load's log records: the stored ones of the same keys read before the replace,
    the statements writing the new ones, and what they became (read after)."""

    def __init__(
        self, client: bigquery.Client, log: LoadLog | None, message: Callable[[str], None]
    ) -> None:
        self.client, self.log = client, log
        self.name = log_table(client, log, message) if log is not None else None
        self.previous = read_records(client, self.name, log) if self.name and log else []

    def statements(self) -> list[str]:
        return replace_statements(self.name, self.log) if self.name and self.log else []

    def metadata(self) -> dict[str, dg.RawMetadataValue]:
        if self.name is None or self.log is None:
            return {}
        written = read_records(self.client, self.name, self.log)
        return dict(self.log.describe(self.previous, written))


def _window(
    context: dg.OutputContext | dg.InputContext,
    target: bigquery.Table,
    partition_expr: str | None,
) -> Window | None:
    if not context.has_asset_partitions or not partition_expr:
        return None
    if not isinstance(context.asset_partitions_def, dg.TimeWindowPartitionsDefinition):
        raise TypeError("BigQueryIOManager supports time-window partitions only")
    time_window = context.asset_partitions_time_window
    return Window(
        partition_expr,
        time_window.start.date(),
        time_window.end.date(),
        _column_type(target, partition_expr),
    )


def _column_type(table: bigquery.Table, column: str) -> str:
    for field in table.schema:
        if field.name == column:
            return str(field.field_type)
    raise KeyError(f"{table.table_id} has no column {column}")


def _spill(reader: pa.RecordBatchReader, path: Path) -> ParquetPart:
    """A stream that is not already in Parquet files, written to one (batch by batch)."""
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    return ParquetPart(str(path), pafs.LocalFileSystem())


def _staged_metadata(
    client: bigquery.Client,
    staged: Sequence[Staged],
    time_column: str | None,
    window: Window | None,
) -> dict[str, dg.RawMetadataValue]:
    """A preview and the time column's range, read from the staging tables (before the
    rows are visible), as the PostgreSQL IO manager computes them while COPY streams."""
    if not staged:
        return {}
    preview = client.list_rows(staged[0].table.table_id, max_results=PREVIEW_ROWS)
    table = preview.to_arrow(create_bqstorage_client=False)
    result: dict[str, dg.RawMetadataValue] = {
        "preview": dg.MetadataValue.md(preview_markdown(table))
    }
    if not time_column or any(time_column not in s.columns for s in staged):
        return result
    column = column_sql(time_column)
    union = " UNION ALL ".join(f"SELECT {column} AS t FROM {s.table.sql()}" for s in staged)
    outside = "0"
    if window is not None:
        outside = "COUNTIF(t < @start OR t >= @end)"
    kind = staged[0].columns[time_column]
    parameters = (
        [
            bigquery.ScalarQueryParameter("start", kind, _at_midnight(window.start, kind)),
            bigquery.ScalarQueryParameter("end", kind, _at_midnight(window.end, kind)),
        ]
        if window is not None
        else []
    )
    row = next(
        iter(
            run_query(
                client,
                f"SELECT MIN(t) AS low, MAX(t) AS high, {outside} AS outside FROM ({union})",
                parameters,
            )
        )
    )
    result[f"min_{time_column}"] = str(row["low"]) if row["low"] is not None else "-"
    result[f"max_{time_column}"] = str(row["high"]) if row["high"] is not None else "-"
    if window is not None:
        result["rows_outside_partition"] = dg.MetadataValue.int(int(row["outside"] or 0))
    return result


def _at_midnight(day: Any, kind: str) -> Any:
    return datetime.combine(day, datetime.min.time()) if kind in ("DATETIME", "TIMESTAMP") else day


def _result_metadata(result: ReplaceResult) -> dict[str, dg.RawMetadataValue]:
    return {
        "rows_written": dg.MetadataValue.int(result.rows_written),
        "rows_replaced": dg.MetadataValue.int(result.rows_replaced),
        "month_replace": result.strategy,
        # gs:// URIs BigQuery read itself, or "upload" for files sent from this process.
        "loaded_from": ", ".join(result.sources),
        **{name: round(seconds, 3) for name, seconds in result.seconds.items()},
    }
