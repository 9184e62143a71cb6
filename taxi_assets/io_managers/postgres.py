"""A PostgreSQL IO manager: Arrow streams in with COPY, atomically, partition by partition.

A time-window partitioned asset with ``partition_expr`` metadata lives in a table
partitioned by range of that column, one child table per partition; writing partitions
replaces their children (:func:`taxi_assets.pg.month_swap.replace_months`: COPY into a
staging table, row-count check, index, ANALYZE, then a short swap), so a failed or
killed run leaves the previous rows intact, two runs of one partition leave exactly one
copy, and a reload leaves no dead tuples. A range of partitions is replaced in one swap.
Unpartitioned assets are replaced whole in one transaction (DELETE, COPY, check).

Definition metadata shapes the table: ``primary_key``, ``index_columns`` (btree) and
``brin_index_columns`` (BRIN: cheap on columns that follow the load order, like times).

A load may carry a :class:`~taxi_assets.io_managers.load_log.LoadLog` (records about the
load, e.g. which source file it came from): they are written in the transaction that
publishes the rows (the swap's), replacing the records of the same key.
"""

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.errors import RowCountMismatch
from taxi_assets.io_managers.arrow_stats import StreamStats, static_schema_metadata
from taxi_assets.io_managers.load_log import LoadLog, Record
from taxi_assets.pg.copy_in import copy_arrow, without_constant_columns
from taxi_assets.pg.copy_out import read_query_arrow
from taxi_assets.pg.ddl import (
    TableLayout,
    driver_cursor,
    ensure_table,
    ident,
    qualified,
)
from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.pg.load_log import ensure_log_table, replace_records
from taxi_assets.pg.lost_server import naming_lost_server
from taxi_assets.pg.month_swap import InSwap, MonthBounds, Staging, replace_months
from taxi_assets.pg.partitions import tree_bytes
from taxi_assets.pg.server_limits import naming_server_limits
from taxi_assets.resources.postgres import PostgresResource


@dataclass(frozen=True)
class TableLoad:
    """An Arrow stream to store, and how many rows it must hold (None: not checked).

    ``in_swap``: statements to run in the transaction that swaps the partitions in, so
    that they commit with the months or not at all (PostgreSQL only). ``log``: records
    about the load, written in the transaction that publishes it (every engine).
    ``constant_columns``: columns holding one value in every row of ``reader`` (None:
    null), known without reading it (the lake's footers, the month); a month's COPY does
    not send them, the month's table holds them once rather than in each row
    (``pg.month_swap``: PostgreSQL, partitioned tables), and a row holding anything else
    fails the load.
    """

    reader: pa.RecordBatchReader
    expected_rows: int | None = None
    in_swap: InSwap | None = None
    log: LoadLog | None = None
    constant_columns: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Slice:
    schema: str
    table: str
    partition_expr: str | None
    window: tuple[datetime, datetime] | None
    keys: tuple[str, ...]
    key_windows: tuple[tuple[datetime, datetime], ...] = ()

    def where(self) -> tuple[str, dict[str, object]]:
        if self.partition_expr is None or self.window is None:
            return "", {}
        quoted = ident(self.partition_expr)
        return (
            f" WHERE {quoted} >= %(start)s AND {quoted} < %(end)s",
            {"start": self.window[0], "end": self.window[1]},
        )


def table_of(asset_key: dg.AssetKey, metadata: Mapping[str, Any]) -> tuple[str, str]:
    """(schema, table) of an asset: the key says where data lives (``warehouse/yellow_tripdata``
    is ``warehouse.yellow_tripdata``); definition metadata ``schema`` / ``table`` may
    override it."""
    path = asset_key.path
    schema = metadata.get("schema") or (path[-2] if len(path) > 1 else "public")
    return schema, metadata.get("table") or path[-1]


def table_layout(metadata: Mapping[str, Any], partitioned: bool = True) -> TableLayout:
    """How an asset's table is laid out, from its definition metadata (see module doc)."""
    return TableLayout(
        partition_by=metadata.get("partition_expr") if partitioned else None,
        primary_key=tuple(metadata.get("primary_key", ())),
        btree_columns=tuple(metadata.get("index_columns", ())),
        brin_columns=tuple(metadata.get("brin_index_columns", ())),
    )


def _slice(context: dg.OutputContext | dg.InputContext) -> _Slice:
    if isinstance(context, dg.InputContext) and context.upstream_output is not None:
        metadata = context.upstream_output.definition_metadata or {}
    else:
        metadata = context.definition_metadata or {}
    schema, table = table_of(context.asset_key, metadata)
    window = None
    keys: tuple[str, ...] = ()
    if context.has_asset_partitions:
        if not isinstance(context.asset_partitions_def, dg.TimeWindowPartitionsDefinition):
            raise TypeError("PostgresIOManager supports time-window partitions only")
        if not metadata.get("partition_expr"):
            raise ValueError(f"{context.asset_key.to_user_string()} needs partition_expr metadata")
        time_window = context.asset_partitions_time_window
        window = (time_window.start.replace(tzinfo=None), time_window.end.replace(tzinfo=None))
        keys = tuple(context.asset_partition_keys)
        definition = context.asset_partitions_def
        key_windows = tuple(_naive(definition.time_window_for_partition_key(key)) for key in keys)
        return _Slice(schema, table, metadata["partition_expr"], window, keys, key_windows)
    return _Slice(schema, table, metadata.get("partition_expr"), window, keys)


def _naive(window: dg.TimeWindow) -> tuple[datetime, datetime]:
    # Partition windows are timezone-aware; the table's values are naive.
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


class PostgresIOManager(dg.ConfigurableIOManager):
    """Tables ``<key prefix>.<key name>`` in PostgreSQL, written with COPY."""

    database: PostgresResource

    def handle_output(self, context: dg.OutputContext, obj: TableLoad | pa.Table | None) -> None:
        where = self.database.describe()
        with naming_lost_server(where), naming_server_limits(where):
            self._handle_output(context, obj)

    def _handle_output(self, context: dg.OutputContext, obj: TableLoad | pa.Table | None) -> None:
        if obj is None:
            return
        load = obj if isinstance(obj, TableLoad) else TableLoad(obj.to_reader(), obj.num_rows)
        target = _slice(context)
        engine = self.database.engine()
        metadata = context.definition_metadata or {}
        partitioned = target.window is not None and target.partition_expr is not None
        ensure_table(
            engine,
            target.schema,
            target.table,
            load.reader.schema,
            table_layout(metadata, partitioned),
            log=context.log.info,
            waits=self.database.lock_waits(),
        )
        if load.log is not None:
            ensure_log_table(engine, load.log, self.database.lock_waits(), context.log.info)
        started = time.monotonic()
        stats = StreamStats(time_column=metadata.get("time_column"), window=target.window)
        reader = _observed(load.reader, stats)
        logged = _Logged(load.log)
        if partitioned:
            written, replaced, details = self._replace_partitions(
                context, target, reader, load, logged
            )
        else:
            written, replaced = self._replace_table(target, reader, load, logged, context.log.info)
            details = {}
        with engine.connect() as connection:
            table_bytes = tree_bytes(connection, target.schema, target.table)
        elapsed = time.monotonic() - started
        context.add_output_metadata(
            {
                **stats.metadata(partitioned=context.has_asset_partitions),
                **static_schema_metadata(
                    context, load.reader.schema, f"{target.schema}.{target.table}"
                ),
                "table_bytes": dg.MetadataValue.int(table_bytes),
                "rows_written": dg.MetadataValue.int(written),
                "rows_replaced": dg.MetadataValue.int(replaced),
                "table": f"{target.schema}.{target.table}",
                "duration_s": round(elapsed, 3),
                "rows_per_s": int(written / elapsed) if elapsed > 0 else 0,
                **details,
                **logged.metadata(),
            }
        )

    def _replace_partitions(
        self,
        context: dg.OutputContext,
        target: _Slice,
        reader: pa.RecordBatchReader,
        load: TableLoad,
        logged: "_Logged",
    ) -> tuple[int, int, dict[str, Any]]:
        assert target.partition_expr is not None
        as_dates = pa.types.is_date(reader.schema.field(target.partition_expr).type)
        months = [
            MonthBounds(key, start.date(), end.date()) if as_dates else MonthBounds(key, start, end)
            for key, (start, end) in zip(target.keys, target.key_windows, strict=True)
        ]

        constants = {k: v for k, v in load.constant_columns.items() if k in reader.schema.names}

        def fill(connection: sa.Connection, staging: Staging) -> int:
            # The constants are replace_months' to fill in: the COPY sends none of them.
            # An interruption is replace_months' to handle (the fill included).
            return copy_arrow(
                driver_cursor(connection),
                staging.target,
                without_constant_columns(reader, constants, staging.target),
                log=context.log.info,
                expected_rows=load.expected_rows,
                freeze=staging.freeze,
            )

        done = replace_months(
            self.database.engine(),
            target.schema,
            target.table,
            target.partition_expr,
            months,
            fill,
            expected_rows=load.expected_rows,
            constants=constants,
            in_swap=logged.in_swap(load.in_swap),
            waits=self.database.lock_waits(),
            log=context.log.info,
        )
        return (
            done.rows_written,
            done.rows_replaced,
            {
                "swap_lock_ms": round(done.swap_lock_ms, 1),
                "swap_attempts": dg.MetadataValue.int(done.swap_attempts),
                "copy_s": round(done.fill_s, 3),
                "index_s": round(done.index_s, 3),
                "analyze_s": round(done.analyze_s, 3),
                # One value in every row of the months loaded: not sent by COPY.
                "null_columns": dg.MetadataValue.json(
                    [name for name, value in constants.items() if value is None]
                ),
                "constant_columns": dg.MetadataValue.json(
                    [name for name, value in constants.items() if value is not None]
                ),
            },
        )

    def _replace_table(
        self,
        target: _Slice,
        reader: pa.RecordBatchReader,
        load: TableLoad,
        logged: "_Logged",
        log: Callable[[str], None],
    ) -> tuple[int, int]:
        """The whole table in one transaction: DELETE, COPY, row-count check, the load's
        log records, COMMIT."""
        name = qualified(target.schema, target.table)
        engine = self.database.engine()
        with engine.begin() as connection, dropped_if_interrupted(connection):
            cursor = driver_cursor(connection)
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))",
                {"lock": f"{target.schema}.{target.table}/<all>"},
            )
            cursor.execute(f"DELETE FROM {name}")
            replaced = cursor.rowcount
            written = copy_arrow(cursor, name, reader, log=log, expected_rows=load.expected_rows)
            if load.expected_rows is not None and written != load.expected_rows:
                raise RowCountMismatch(
                    f"{name}: loaded {written} rows but expected {load.expected_rows}; "
                    "rolled back, the previous rows are intact"
                )
            logged.write(connection)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"ANALYZE {name}")
        return written, replaced

    def partition_row_count(
        self, asset_key: dg.AssetKey, metadata: Mapping[str, Any], window: tuple[datetime, datetime]
    ) -> int:
        """Rows of the asset's table in one partition window, found as this IO manager
        writes them (table from the key, rows by the ``partition_expr`` column)."""
        schema, table = table_of(asset_key, metadata)
        target = _Slice(schema, table, metadata["partition_expr"], window, ())
        where, params = target.where()
        with self.database.engine().connect() as connection:
            count = connection.exec_driver_sql(
                f"SELECT count(*) FROM {qualified(schema, table)}{where}", params
            ).scalar()
        return int(count or 0)

    def load_input(self, context: dg.InputContext) -> pa.Table | object:
        where = self.database.describe()
        with naming_lost_server(where), naming_server_limits(where):
            return self._load_input(context)

    def _load_input(self, context: dg.InputContext) -> pa.Table | object:
        source = _slice(context)
        where, params = source.where()
        table = read_query_arrow(
            self.database.engine(),
            source.schema,
            source.table,
            where,
            params,
        )
        if context.dagster_type.typing_type is not pa.Table and _wants_pandas(context):
            return table.to_pandas()
        return table


class _Logged:
    """A load's log records, written in the publishing transaction, and what they replaced.

    The swap may be tried several times (lock timeouts): the last attempt's records count.
    """

    def __init__(self, log: LoadLog | None) -> None:
        self.log = log
        self.previous: list[Record] = []
        self.written: list[Record] = []

    def write(self, connection: sa.Connection) -> None:
        if self.log is not None:
            self.previous, self.written = replace_records(connection, self.log)

    def in_swap(self, caller: InSwap | None) -> InSwap:
        def statements(connection: sa.Connection) -> None:
            if caller is not None:
                caller(connection)
            self.write(connection)

        return statements

    def metadata(self) -> dict[str, Any]:
        if self.log is None:
            return {}
        return dict(self.log.describe(self.previous, self.written))


def _observed(reader: pa.RecordBatchReader, stats: StreamStats) -> pa.RecordBatchReader:
    """``reader`` unchanged, with each batch counted into ``stats`` on its way to COPY."""

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            stats.add(batch)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _wants_pandas(context: dg.InputContext) -> bool:
    typing_type = context.dagster_type.typing_type
    return getattr(typing_type, "__name__", "") == "DataFrame"
