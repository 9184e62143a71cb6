"""Statistics gathered batch by batch while an Arrow stream is written (no second pass),
and progress messages for long writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.sql_types import decoded_type

PREVIEW_ROWS = 5


def preview_markdown(table: pa.Table) -> str:
    """Rows as a markdown table, a null shown as ``null``: through pandas a null became
    ``nan`` in a number or dictionary column (like a real NaN, which the quality signals
    count) and blank in a text one, so the two engines' previews of one month differed."""
    if table.num_rows == 0:
        return "(no rows)"
    from tabulate import tabulate

    rows = [list(row.values()) for row in table.to_pylist()]
    return tabulate(rows, headers=table.column_names, tablefmt="pipe", missingval="null")


PROGRESS_EVERY_S = 5.0


class ProgressLog:
    """Calls ``log`` at most every ``every_s`` seconds while rows pass: rows done, % of
    ``expected`` when known, rows/s (so a run watched in the UI visibly moves)."""

    def __init__(
        self,
        label: str,
        log: Callable[[str], None],
        expected: int | None = None,
        every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self.label = label
        self.log = log
        self.expected = expected if isinstance(expected, int) and expected > 0 else None
        self.every_s = every_s
        self.rows = 0
        self.started = self._last = time.monotonic()

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.log(self.message(now))

    def message(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        share = (
            f" ({100 * self.rows / self.expected:.0f}% of {self.expected:,})"
            if self.expected
            else ""
        )
        return f"{self.label}: {self.rows:,} rows{share}, {self.rows / elapsed:,.0f} rows/s"


class StreamStats:
    """Row count, min/max of a time column, rows outside a time window, a preview."""

    def __init__(
        self,
        time_column: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> None:
        self.time_column = time_column
        self.window = window
        self.rows = 0
        self.rows_outside_window = 0
        self.time_min: datetime | None = None
        self.time_max: datetime | None = None
        self._preview: pa.Table | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        if self._preview is None or self._preview.num_rows < PREVIEW_ROWS:
            head = pa.Table.from_batches([batch.slice(0, PREVIEW_ROWS)])
            self._preview = (
                head if self._preview is None else pa.concat_tables([self._preview, head])
            )
        if self.time_column is None or batch.num_rows == 0:
            return
        times = batch.column(self.time_column)
        bounds = pc.min_max(times)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None:
            self.time_min = low if self.time_min is None else min(self.time_min, low)
            self.time_max = high if self.time_max is None else max(self.time_max, high)
        if self.window is not None:
            start = pa.scalar(self.window[0], times.type)
            end = pa.scalar(self.window[1], times.type)
            outside = pc.or_(pc.less(times, start), pc.greater_equal(times, end))
            self.rows_outside_window += pc.sum(outside.cast(pa.int64())).as_py() or 0

    def preview_markdown(self) -> str:
        if self._preview is None:
            return "(no rows)"
        return preview_markdown(self._preview.slice(0, PREVIEW_ROWS))

    def metadata(self, partitioned: bool) -> dict[str, dg.RawMetadataValue]:
        result: dict[str, dg.RawMetadataValue] = {
            **row_count_metadata(self.rows, partitioned),
            "preview": dg.MetadataValue.md(self.preview_markdown()),
        }
        if self.time_column is not None:
            result[f"min_{self.time_column}"] = str(self.time_min) if self.time_min else "-"
            result[f"max_{self.time_column}"] = str(self.time_max) if self.time_max else "-"
            if self.window is not None:
                result["rows_outside_partition"] = dg.MetadataValue.int(self.rows_outside_window)
        return result


def row_count_metadata(rows: int, partitioned: bool) -> dict[str, dg.RawMetadataValue]:
    """Dagster's row count key: ``dagster/row_count`` is the whole asset's, so a partition's
    rows go under ``dagster/partition_row_count``."""
    key = "dagster/partition_row_count" if partitioned else "dagster/row_count"
    return {key: dg.MetadataValue.int(rows)}


def static_schema_metadata(
    context: dg.OutputContext, schema: pa.Schema, table_name: str | None = None
) -> dict[str, dg.RawMetadataValue]:
    """Column schema (and table name) for a materialization, unless the asset declares them
    in its definition metadata, where static facts belong (shown once, on the asset)."""
    declared = context.definition_metadata or {}
    result: dict[str, dg.RawMetadataValue] = {}
    if "dagster/column_schema" not in declared:
        result["dagster/column_schema"] = column_schema(schema)
    if table_name is not None and "dagster/table_name" not in declared:
        result["dagster/table_name"] = table_name
    return result


def decoded_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each dictionary type replaced by its value type (a stream's text
    columns may travel dictionary-encoded; what they hold is text)."""
    return pa.schema([f.with_type(decoded_type(f.type)) for f in schema], schema.metadata)


def column_schema(
    schema: pa.Schema, type_name: Callable[[pa.DataType], str] = str
) -> dg.TableSchema:
    """Dagster's column schema (shown as a table in the UI), with field descriptions;
    ``type_name`` names each column's type (Arrow's own names by default, or a warehouse
    engine's)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=type_name(field.type),
                description=(field.metadata or {}).get(b"description", b"").decode() or None,
            )
            for field in decoded_schema(schema)
        ]
    )
