"""Replace a month of a BigQuery table atomically, checked before anything is visible.

1. Each Parquet file is loaded by a load job into a staging table of its own, created
   first with the file's columns in the file's order (the emulator matches Parquet
   columns by position; BigQuery by name: both agree then). A file on ``gs://`` is read
   by BigQuery itself (``load_table_from_uri``): no byte passes through the worker; a
   local file is uploaded in a resumable upload, chunk by chunk.
2. Each file is checked to be the version its footer was read from (the lake month was
   not materialized again meanwhile), and the staged rows are counted and compared with
   the rows expected (the lake's footers). A change or a mismatch stops here: the table
   has not changed.
3. The rows become visible in one step, with the lineage columns (constants such as
   ``partition_month`` and ``source_file``) added in SQL and columns a file lacks as null:
   - ``partition-copy`` (BigQuery): ``INSERT ... SELECT`` into a second staging table of
     the final shape, counted again, then one copy job with ``WRITE_TRUNCATE`` into the
     partition ``table$YYYYMM``. A copy job replaces its destination atomically.
   - ``transaction`` (servers that refuse partition decorators, such as the emulator;
     loads that span several months; tables without partitions, whose copy would also
     carry the staging table's expiry): ``BEGIN TRANSACTION; DELETE`` the window;
     ``INSERT ... SELECT``; ``COMMIT``. Scripts take no query parameters on the
     emulator, so the window is written as literals built from ``date`` objects.
4. The staging tables are dropped, on success and on failure (they also expire by
   themselves after a day, should the run be killed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from google.cloud import bigquery

from taxi_assets.bq.names import TableName, column_sql, date_literal, sql_literal
from taxi_assets.bq.query import run_query
from taxi_assets.bq.tables import TableLayout, create_staging_table, drop_expiring_table
from taxi_assets.bq.types import bigquery_schema, column_type
from taxi_assets.errors import LoadLogBehind, RowCountMismatch
from taxi_assets.io_managers.table_load import ParquetPart

Strategy = Literal["partition-copy", "transaction"]


@dataclass(frozen=True)
class Window:
    """Rows with ``start <= column < end`` (half-open), column of BigQuery ``type``."""

    column: str
    start: date
    end: date
    type: str = "DATE"

    def literal(self, value: date) -> str:
        if self.type == "DATE":
            return date_literal(value)
        if self.type == "DATETIME":
            return f"DATETIME {date_literal(value).removeprefix('DATE ')}"
        raise TypeError(f"partition column {self.column} of type {self.type} is not supported")

    def where_sql(self) -> str:
        column = column_sql(self.column)
        return f"{column} >= {self.literal(self.start)} AND {column} < {self.literal(self.end)}"

    def single_month(self) -> date | None:
        """The month, when the window is exactly one MONTH partition."""
        start, end = self.start, self.end
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        return start if start.day == 1 and end == following else None


@dataclass(frozen=True)
class Staged:
    """One file loaded into a staging table."""

    table: TableName
    columns: Mapping[str, str]  # the file's columns -> BigQuery type
    constants: Mapping[str, Any]
    rows: int
    source: str  # the gs:// URI loaded, or "upload"


@dataclass
class ReplaceResult:
    rows_written: int
    rows_replaced: int
    strategy: Strategy
    sources: list[str] = field(default_factory=list)
    staged: list[Staged] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def copy_or_transaction(
    strategy: Strategy,
    target: bigquery.Table,
    window: Window | None,
    log: Callable[[str], None] = lambda _: None,
) -> Strategy:
    """A copy job replaces one partition, ``table$YYYYMM``: only of a table partitioned by
    month on the window's column. A range, a whole small table (the zones) and a table of
    another layout (made by hand: unpartitioned, by day, or on another column, where the
    decorator is refused or names a partition holding other file months) are replaced by
    DML in a transaction."""
    if strategy != "partition-copy":
        return strategy
    if window is None or window.single_month() is None:
        return "transaction"
    partitioning = target.time_partitioning
    if partitioning is None or partitioning.type_ != "MONTH" or partitioning.field != window.column:
        layout = (
            "not partitioned"
            if partitioning is None
            else f"partitioned by {partitioning.type_} on {partitioning.field or '_PARTITIONTIME'}"
        )
        log(
            f"{target.table_id} is {layout}, not by MONTH on {window.column}: "
            "its month is replaced in a transaction, not by a partition copy"
        )
        return "transaction"
    return "partition-copy"


def replace_rows(
    client: bigquery.Client,
    target: bigquery.Table,
    name: TableName,
    parts: Sequence[ParquetPart],
    window: Window | None,
    expected_rows: int | None,
    strategy: Strategy,
    log: Callable[[str], None] = lambda _: None,
    inspect: Callable[[Sequence[Staged]], None] = lambda _: None,
    log_statements: Sequence[str] = (),
    warn: Callable[[str], None] | None = None,
) -> ReplaceResult:
    """Make ``parts`` the rows of ``window`` in ``target`` (the whole table without a
    window), atomically. ``inspect`` sees the staged files before they become visible;
    ``log_statements`` are committed with the rows (see the module's docstring)."""
    warn = warn or log
    strategy = copy_or_transaction(strategy, target, window, log)
    key = f"{window.start:%Y%m}" if window else "all"
    run_id = uuid.uuid4().hex[:8]
    staging: list[TableName] = []
    result = ReplaceResult(0, 0, strategy)
    clock = time.monotonic()
    try:
        for index, part in enumerate(parts):
            stage_name = name.sibling(f"_stage_{name.table}_{key}_{run_id}_{index}")
            staging.append(stage_name)
            staged = _stage(client, stage_name, part)
            result.staged.append(staged)
            result.sources.append(staged.source)
            log(f"{name.short}: staged {staged.rows:,} rows from {staged.source}")
        # The expected rows and the lineage come from the files' footers, read before:
        # a file replaced since (its month materialized again) is not loaded as a mix.
        for part in parts:
            part.check_unchanged()
        result.seconds["load_s"] = time.monotonic() - clock
        staged_rows = sum(s.rows for s in result.staged)
        if expected_rows is not None and staged_rows != expected_rows:
            raise RowCountMismatch(
                f"{name.short}: staged {staged_rows} rows but expected {expected_rows}; "
                "nothing was replaced, the previous rows are intact"
            )
        inspect(result.staged)
        result.rows_replaced = count_rows(client, name, window)
        clock = time.monotonic()
        select = shaped_select(target.schema, result.staged)
        if strategy == "partition-copy":
            shaped = name.sibling(f"_stage_{name.table}_{key}_{run_id}_shaped")
            staging.append(shaped)
            assert window is not None  # single_month() above
            _copy_replace(client, target, name, shaped, select, window, staged_rows)
            write_log_after_copy(client, name, window, log_statements)
        else:
            _transaction_replace(client, target, name, select, window, log_statements)
        result.seconds["replace_s"] = time.monotonic() - clock
        result.rows_written = count_rows(client, name, window)
        if result.rows_written != staged_rows:
            raise RowCountMismatch(
                f"{name.short}: {result.rows_written} rows visible after the replace but "
                f"{staged_rows} were staged (did another run write the same rows?)"
            )
        return result
    finally:
        for table in staging:
            drop_expiring_table(client, table, warn)


def _stage(client: bigquery.Client, stage_name: TableName, part: ParquetPart) -> Staged:
    physical = part.physical_schema()
    fields = bigquery_schema(physical.remove_metadata())
    # Loaded rows may hold nulls the footer's schema says they cannot (any writer's bug):
    # the staging table accepts them; the final table's modes decide.
    fields = [f if f.mode != "REQUIRED" else _nullable(f) for f in fields]
    create_staging_table(client, stage_name, fields)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
    )
    uri = part.gcs_uri()
    if uri is not None:
        client.load_table_from_uri(uri, stage_name.table_id, job_config=config).result()
    else:
        with part.open() as handle:
            # No size: a resumable upload in chunks (the emulator refuses multipart ones).
            client.load_table_from_file(handle, stage_name.table_id, job_config=config).result()
    rows = count_rows(client, stage_name, None)
    return Staged(
        table=stage_name,
        columns={f.name: f.field_type for f in fields},
        constants=part.constants,
        rows=rows,
        source=uri or "upload",
    )


def _nullable(schema_field: bigquery.SchemaField) -> bigquery.SchemaField:
    return bigquery.SchemaField(
        schema_field.name,
        schema_field.field_type,
        "NULLABLE",
        description=schema_field.description,
    )


def count_rows(client: bigquery.Client, name: TableName, window: Window | None) -> int:
    where = f" WHERE {window.where_sql()}" if window else ""
    rows = list(run_query(client, f"SELECT COUNT(*) AS n FROM {name.sql()}{where}"))
    return int(rows[0]["n"])


def shaped_select(target: Sequence[bigquery.SchemaField], staged: Sequence[Staged]) -> str:
    """One SELECT per staged file, in the target's column order, joined by UNION ALL:
    the file's columns (cast where the type differs), constants as literals, and null for
    columns the file lacks."""
    selects = []
    for part in staged:
        expressions = []
        for column in target:
            quoted = column_sql(column.name)
            wanted = column_type(column)
            if column.name in part.constants:
                value = sql_literal(part.constants[column.name])
                expressions.append(f"CAST({value} AS {wanted}) AS {quoted}")
            elif column.name in part.columns:
                if part.columns[column.name] == wanted:
                    expressions.append(quoted)
                else:
                    expressions.append(f"CAST({quoted} AS {wanted}) AS {quoted}")
            else:
                expressions.append(f"CAST(NULL AS {wanted}) AS {quoted}")
        selects.append(f"SELECT {', '.join(expressions)} FROM {part.table.sql()}")
    return "\nUNION ALL\n".join(selects)


def insert_sql(name: TableName, target: Sequence[bigquery.SchemaField], select: str) -> str:
    columns = ", ".join(column_sql(c.name) for c in target)
    return f"INSERT INTO {name.sql()} ({columns})\n{select}"


def transaction_script(
    name: TableName,
    target: Sequence[bigquery.SchemaField],
    select: str,
    window: Window | None,
    log_statements: Sequence[str] = (),
) -> str:
    where = window.where_sql() if window else "TRUE"
    return script(
        [
            f"DELETE FROM {name.sql()} WHERE {where}",
            insert_sql(name, target, select),
            *log_statements,
        ]
    )


def script(statements: Sequence[str]) -> str:
    """One transaction: a failing statement aborts the script and rolls all of it back."""
    body = "".join(f"{statement};\n" for statement in statements)
    return f"BEGIN TRANSACTION;\n{body}COMMIT TRANSACTION;"


def _transaction_replace(
    client: bigquery.Client,
    target: bigquery.Table,
    name: TableName,
    select: str,
    window: Window | None,
    log_statements: Sequence[str],
) -> None:
    run_query(client, transaction_script(name, target.schema, select, window, log_statements))


def write_log_after_copy(
    client: bigquery.Client, name: TableName, window: Window, log_statements: Sequence[str]
) -> None:
    """The log statements after a copy job, in one transaction of their own."""
    if not log_statements:
        return
    try:
        run_query(client, script(log_statements))
    except Exception as error:
        raise LoadLogBehind(
            f"{name.short}: the copy job replaced {window.start:%Y-%m}, but the load log "
            f"could not be updated ({error}); it still names the previous load of the "
            "month: materialize the month again"
        ) from error


def partition_copy_job(
    shaped: TableName, name: TableName, month: date
) -> tuple[str, str, bigquery.CopyJobConfig]:
    """(source, destination, configuration) of the copy that publishes a month: into the
    partition decorator ``table$YYYYMM``, replacing exactly that partition, and never
    creating the table."""
    destination = f"{name.table_id}${month:%Y%m}"
    config = bigquery.CopyJobConfig(
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
    )
    return shaped.table_id, destination, config


def _copy_replace(
    client: bigquery.Client,
    target: bigquery.Table,
    name: TableName,
    shaped: TableName,
    select: str,
    window: Window,
    staged_rows: int,
) -> None:
    month = window.single_month()
    if month is None:
        raise ValueError(f"{window} is not one month: a copy job replaces one partition")
    layout = TableLayout(
        partition_column=target.time_partitioning.field if target.time_partitioning else None,
        cluster_by=tuple(target.clustering_fields or ()),
    )
    create_staging_table(client, shaped, target.schema, layout)
    run_query(client, insert_sql(shaped, target.schema, select))
    shaped_rows = count_rows(client, shaped, None)
    if shaped_rows != staged_rows:
        raise RowCountMismatch(
            f"{name.short}: {shaped_rows} rows shaped from {staged_rows} staged; nothing replaced"
        )
    source, destination, config = partition_copy_job(shaped, name, month)
    client.copy_table(source, destination, job_config=config).result()
