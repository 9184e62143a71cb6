"""The lake: Parquet files in a Hive layout, on a local folder or an object store.

Outputs are Arrow streams (``pa.RecordBatchReader``) or tables, written batch by batch
into ~256k-row groups, so memory does not grow with the partition. Time-window
partitions land in ``<asset path>/year=YYYY/month=MM/<asset>_<key>.parquet``: DuckDB,
Spark and BigQuery external tables read all partitions as one dataset.
"""

import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from upath import UPath

from taxi_assets.io_managers.arrow_stats import StreamStats, column_schema
from taxi_assets.io_managers.raw_files import DEFAULT_LAKE_URL
from taxi_assets.io_managers.storage import (
    is_local,
    local_staging_dir,
    publish_file,
    resolve_root,
    staging_name,
)
from taxi_assets.settings import resolve_setting

ROW_GROUP_ROWS = 256 * 1024


def arrow_filesystem(path: UPath) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for ``path`` (native locally, fsspec otherwise)."""
    if is_local(path):
        return pafs.LocalFileSystem(), str(Path(path.path))
    return pafs.PyFileSystem(pafs.FSSpecHandler(path.fs)), path.path


class _ParquetUPathIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def __init__(self, base_path: UPath, hive_format: str, compression: str) -> None:
        super().__init__(base_path=base_path)
        self.hive_format = hive_format
        self.compression = compression

    def get_path_for_partition(
        self, context: dg.InputContext | dg.OutputContext, path: UPath, partition: str
    ) -> UPath:
        definition = context.asset_partitions_def
        if isinstance(definition, dg.TimeWindowPartitionsDefinition):
            window = definition.time_window_for_partition_key(partition)
            folder = path.joinpath(*window.start.strftime(self.hive_format).split("/"))
            return folder / f"{path.name}_{partition}"
        return self.make_safe_partition_path(path, partition)

    def dump_to_path(self, context: dg.OutputContext, obj: object, path: UPath) -> None:
        reader = _as_reader(obj)
        started = time.monotonic()
        stats = StreamStats(
            time_column=(context.definition_metadata or {}).get("time_column"),
            window=_naive_window(context),
        )
        local = local_staging_dir(path) / staging_name(path)
        try:
            with pq.ParquetWriter(local, reader.schema, compression=self.compression) as writer:
                pending: list[pa.RecordBatch] = []
                pending_rows = 0
                for batch in reader:
                    stats.add(batch)
                    pending.append(batch)
                    pending_rows += batch.num_rows
                    if pending_rows >= ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending, reader.schema))
                        pending, pending_rows = [], 0
                if pending or stats.rows == 0:
                    writer.write_table(pa.Table.from_batches(pending, reader.schema))
            size = local.stat().st_size
            publish_file(local, path)
        finally:
            local.unlink(missing_ok=True)
        elapsed = time.monotonic() - started
        context.add_output_metadata(
            {
                **stats.metadata(),
                "bytes": dg.MetadataValue.int(size),
                "duration_s": round(elapsed, 3),
                "rows_per_s": int(stats.rows / elapsed) if elapsed > 0 else 0,
                "dagster/column_schema": column_schema(reader.schema),
                **_schema_metadata(reader.schema),
            }
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pads.Dataset:
        filesystem, native = arrow_filesystem(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: materialize the upstream asset first")
        return pads.dataset(native, format="parquet", filesystem=filesystem)

    def load_partitions(self, context: dg.InputContext) -> dict[str, pads.Dataset]:
        """Always ``{partition_key: dataset}``, for one partition as for a range."""
        paths = self._get_paths_for_partitions(context)
        return {
            key: self.load_from_path(context, paths[key]) for key in context.asset_partition_keys
        }


def _as_reader(obj: object) -> pa.RecordBatchReader:
    if isinstance(obj, pa.RecordBatchReader):
        return obj
    if isinstance(obj, pa.Table):
        return obj.to_reader(max_chunksize=ROW_GROUP_ROWS)
    raise TypeError(f"the lake stores Arrow readers or tables, not {type(obj).__name__}")


def _naive_window(context: dg.OutputContext):  # noqa: ANN202
    if not context.has_asset_partitions or not isinstance(
        context.asset_partitions_def, dg.TimeWindowPartitionsDefinition
    ):
        return None
    window = context.asset_partitions_time_window
    # Partition windows are timezone-aware; the data's timestamps are naive local time.
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def _schema_metadata(schema: pa.Schema) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in (schema.metadata or {}).items()}


class ParquetLakeIOManager(dg.ConfigurableIOManagerFactory):
    """Parquet (zstd) under ``<root>/<asset key path>``; root is ``$TAXI_LAKE_URL`` by default."""

    root: str | None = None
    hive_format: str = "year=%Y/month=%m"
    compression: str = "zstd"

    def create_io_manager(self, context: dg.InitResourceContext) -> _ParquetUPathIOManager:
        root = resolve_setting(self.root, "TAXI_LAKE_URL", DEFAULT_LAKE_URL) or DEFAULT_LAKE_URL
        return _ParquetUPathIOManager(resolve_root(root), self.hive_format, self.compression)
