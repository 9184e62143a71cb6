"""Arrow streams between layers: published file -> contract batches -> warehouse rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import dagster as dg
import pyarrow as pa

from taxi_assets.contracts import Contract, ContractError, open_contract_reader
from taxi_assets.errors import RowCountMismatch
from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.parquet_lake import EXPECTED_ROWS_KEY
from taxi_assets.io_managers.raw_files import StoredFile
from taxi_assets.materializations import latest_metadata

# Rows per batch read back from the lake: a batch is decoded whole, so this bounds memory.
WAREHOUSE_BATCH_ROWS = 64 * 1024
# Lineage columns the warehouse adds to every lake row: the file's month (what a month's
# load replaces) and the published file's name.
PARTITION_MONTH = "partition_month"
SOURCE_FILE = "source_file"
LINEAGE_COLUMNS = (PARTITION_MONTH, SOURCE_FILE)


def warehouse_schema(contract: Contract) -> pa.Schema:
    """The contract's columns plus the lineage columns, as the warehouse stores them."""
    return contract.schema.append(
        pa.field(PARTITION_MONTH, pa.date32(), metadata={"description": "The file's month."})
    ).append(
        pa.field(SOURCE_FILE, pa.string(), metadata={"description": "The published file's name."})
    )


def contract_stream(
    context: dg.AssetExecutionContext,
    raw_file: StoredFile,
    contract: Contract,
    raw_key: dg.AssetKey,
    partition_key: str | None,
) -> pa.RecordBatchReader:
    """The published file as a lazy stream of contract batches.

    Rows are counted as they pass and compared with the count taken while downloading,
    before the lake IO manager publishes anything: no row is lost silently.
    """
    raw_metadata = latest_metadata(context.instance, raw_key, partition_key)
    expected = raw_metadata.get("source_rows")
    if isinstance(expected, int):
        context.add_output_metadata({EXPECTED_ROWS_KEY: dg.MetadataValue.int(expected)})
    handle = raw_file.open()
    try:
        reader = open_contract_reader(
            handle, file_name=raw_file.name, contract=contract, warn=context.log.warning
        )
    except ContractError as error:
        handle.close()
        raise dg.Failure(description=str(error), allow_retries=False) from error
    except BaseException:
        handle.close()
        raise
    schema = contract.schema.with_metadata(
        {
            **(contract.schema.metadata or {}),
            b"source_file": raw_file.name.encode(),
            b"partition_key": (partition_key or "").encode(),
        }
    )

    def batches() -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            for batch in reader:
                rows += batch.num_rows
                yield batch
        except ContractError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        finally:
            handle.close()
        if isinstance(expected, int) and rows != expected:
            raise RowCountMismatch(
                f"{raw_file.name}: parsed {rows} rows but the published file holds {expected} "
                "(counted while downloading); nothing was written"
            )
        context.log.info(f"{raw_file.name}: {rows:,} rows parsed onto contract v{contract.version}")

    return pa.RecordBatchReader.from_batches(schema, batches())


def lake_row_count(data: LakeFiles) -> int:
    """Rows of a lake partition, from the Parquet footers (no data is read)."""
    return data.count_rows()


def with_lineage(data: LakeFiles, month: date, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Lake batches with ``partition_month`` and ``source_file`` added, in ``schema`` order.

    Columns an older lake file lacks (the contract gained them later) arrive as nulls.
    Parquet files are read a row group at a time, without read-ahead, so memory stays flat.
    """
    for path in data.paths:
        with data.open(path) as parquet:
            physical = parquet.schema_arrow
        source_file = (physical.metadata or {}).get(b"source_file", b"").decode() or None
        present = set(physical.names)
        wanted = [f.name for f in schema if f.name in present and f.name not in LINEAGE_COLUMNS]
        for batch in data.file_batches(path, columns=wanted, batch_size=WAREHOUSE_BATCH_ROWS):
            n = batch.num_rows
            columns = []
            for field in schema:
                if field.name == PARTITION_MONTH:
                    columns.append(pa.repeat(pa.scalar(month, field.type), n))
                elif field.name == SOURCE_FILE:
                    columns.append(pa.repeat(pa.scalar(source_file, field.type), n))
                elif field.name in batch.schema.names:
                    columns.append(batch.column(field.name).cast(field.type))
                else:
                    columns.append(pa.nulls(n, field.type))
            yield pa.RecordBatch.from_arrays(columns, schema=schema)
