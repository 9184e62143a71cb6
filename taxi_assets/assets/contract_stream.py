"""Arrow streams between layers: published file -> contract batches -> warehouse rows."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg
import pyarrow as pa

from taxi_assets.contracts import (
    Contract,
    ContractError,
    open_contract_reader,
    with_dictionary_text,
)
from taxi_assets.errors import RowCountMismatch
from taxi_assets.instance_reads import latest_metadata
from taxi_assets.io_managers.lake_files import LakeFiles, null_columns_of
from taxi_assets.io_managers.parquet_lake import EXPECTED_ROWS_KEY
from taxi_assets.io_managers.raw_files import StoredFile
from taxi_assets.storage.revision_guard import RevisionSuperseded, while_current
from taxi_assets.upstream.line_counter import first_quoted_line_break

# Rows per batch read back from the lake: a batch is decoded whole, so this bounds memory.
WAREHOUSE_BATCH_ROWS = 64 * 1024
# Lineage columns the warehouse adds to every lake row: the file's month (what a month's
# load replaces) and the published file's name.
PARTITION_MONTH = "partition_month"
SOURCE_FILE = "source_file"
LINEAGE_COLUMNS = (PARTITION_MONTH, SOURCE_FILE)
# Parquet key-value metadata of a lake file: the sha256 of the raw revision it was parsed
# from (next to `source_file` and `partition_key`); the lake materialization shows it too.
SOURCE_SHA256_KEY = b"source_sha256"


def warehouse_schema(contract: Contract) -> pa.Schema:
    """The contract's columns plus the lineage columns, as the warehouse stores them."""
    return contract.schema.append(
        pa.field(PARTITION_MONTH, pa.date32(), metadata={"description": "The file's month."})
    ).append(
        pa.field(SOURCE_FILE, pa.string(), metadata={"description": "The published file's name."})
    )


def warehouse_stream_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` as :func:`with_lineage` streams it: the text columns read from the lake
    (not the lineage) dictionary-encoded, as the lake files store them, so that no
    string is built per row on the way to the warehouse (an FHVHV month has 8 of them)."""
    text = {f.name for f in schema if f.type == pa.string() and f.name not in LINEAGE_COLUMNS}
    return with_dictionary_text(schema, text)


def lake_schema(
    schema: pa.Schema, source_file: str, sha256: str | None, partition_key: str | None
) -> pa.Schema:
    """``schema`` with the lineage a lake file carries in its metadata: the published file's
    name (each warehouse row's ``source_file``), the raw revision the rows were parsed from
    (which bytes, exactly) and the partition."""
    return schema.with_metadata(
        {
            **(schema.metadata or {}),
            b"source_file": source_file.encode(),
            SOURCE_SHA256_KEY: (sha256 or "").encode(),
            b"partition_key": (partition_key or "").encode(),
        }
    )


def contract_stream(
    context: dg.AssetExecutionContext,
    raw_file: StoredFile,
    contract: Contract,
    raw_key: dg.AssetKey,
    partition_key: str | None,
    accept_empty: bool = False,
    lake_rows: Callable[[], int | None] = lambda: None,
    *,
    accept_missing_columns: bool = False,
    lake_filled_columns: Callable[[], frozenset[str] | None] = lambda: None,
) -> pa.RecordBatchReader:
    """The published file as a lazy stream of contract batches.

    Rows are counted as they pass and compared with the count taken while downloading,
    before the lake IO manager publishes anything: no row is lost silently. A file with
    no rows does not replace a month that holds some, unless ``accept_empty``: as the
    asset's last materialization says, or ``lake_rows()`` (the lake file's footer, which
    holds even when Dagster's instance forgot the run). Nor does a file that leaves empty
    a column the month's lake file has values in (``lake_filled_columns()``: a republished
    file without a column), unless ``accept_missing_columns``.
    """
    expected = _expected_rows(context, raw_file, raw_key, partition_key)
    if isinstance(expected, int):
        context.add_output_metadata({EXPECTED_ROWS_KEY: dg.MetadataValue.int(expected)})
    context.add_output_metadata(_lineage_metadata(context, raw_file, partition_key))
    handle = raw_file.open()
    try:
        # Text columns stay dictionary-encoded on their way into the lake's Parquet.
        reader = open_contract_reader(
            handle,
            file_name=raw_file.name,
            contract=contract,
            warn=context.log.warning,
            dictionary_strings=True,
        )
    except ContractError as error:
        handle.close()
        # Chained to the error's own cause (pyarrow's text adds to it), not to the error:
        # Dagster shows each chained error's message, the same text twice.
        raise dg.Failure(description=str(error), allow_retries=False) from error.__cause__
    except BaseException:
        handle.close()
        raise
    schema = lake_schema(reader.schema, raw_file.name, raw_file.sha256, partition_key)

    def batches() -> Iterator[pa.RecordBatch]:
        rows = 0
        empty = set(schema.names)  # columns with no value in any row so far
        try:
            for batch in reader:
                rows += batch.num_rows
                if empty:
                    empty.difference_update(
                        name
                        for name, column in zip(batch.schema.names, batch.columns, strict=True)
                        if column.null_count < len(column)
                    )
                yield batch
        except ContractError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error.__cause__
        finally:
            handle.close()
        if isinstance(expected, int) and rows != expected:
            raise RowCountMismatch(
                f"{raw_file.name}: parsed {rows} rows but the published file holds {expected} "
                f"(counted while downloading){_mismatch_cause(raw_file)}; nothing was written"
            )
        if rows == 0 and not accept_empty:
            _refuse_emptying(context, raw_file.name, partition_key, lake_rows)
        if rows > 0 and not accept_missing_columns:
            _refuse_emptied_columns(raw_file.name, partition_key, empty, lake_filled_columns)
        context.log.info(f"{raw_file.name}: {rows:,} rows parsed onto contract v{contract.version}")

    return pa.RecordBatchReader.from_batches(schema, batches())


@contextmanager
def while_raw_current(raw_file: StoredFile, made: str) -> Iterator[None]:
    """Where ``made`` (what was parsed from ``raw_file``) is published: only while its
    revision is still the raw file's current one (locally, under its slot's lock). Another
    run may have stored a newer revision and written the lake from it while this one
    parsed the older one (docs/fault_tolerance.md, 5i)."""
    if raw_file.slot is None or raw_file.sha256 is None:
        yield  # not a revision of a slot: nothing can supersede it
        return
    try:
        with while_current(raw_file.slot, raw_file.sha256, made):
            yield
    except RevisionSuperseded as error:
        # Its whole message is the Failure's; chained, Dagster's error showed it twice, and
        # its traceback (the guard's own lines) tells nothing more.
        raise dg.Failure(description=str(error)) from None


def _mismatch_cause(raw_file: StoredFile) -> str:
    """Why a CSV's parsed rows differ from its lines, when we can tell ("" otherwise).

    The download counts lines; a quoted value holding a line break spans lines but is one
    row. TLC files carry none, so such a file is rejected, and the message says where.
    Reads the file a second time: only after the counts already disagreed.
    """
    name = raw_file.name.lower()
    if ".csv" not in name:
        return ""
    try:
        with raw_file.open() as handle:
            text = gzip.GzipFile(fileobj=handle) if name.endswith((".gz", ".gzip")) else handle
            line = first_quoted_line_break(iter(lambda: text.read(1 << 20), b""))
    except (OSError, EOFError, zlib.error):
        return ""  # the mismatch itself is still reported
    if line is None:
        return ""
    return (
        f": a quoted value opened on line {line} holds a line break, so rows span lines; "
        "TLC files hold one row per line, and this one is rejected"
    )


def _refuse_emptying(
    context: dg.AssetExecutionContext,
    file_name: str,
    partition_key: str | None,
    lake_rows: Callable[[], int | None],
) -> None:
    """Fail when the asset's latest materialization of the partition held rows, or the
    lake file it would replace does."""
    previous = latest_metadata(context.instance, context.asset_key, partition_key)
    held = previous.get("dagster/partition_row_count", previous.get("dagster/row_count"))
    if not (isinstance(held, int) and held > 0):
        held = lake_rows()
    if isinstance(held, int) and held > 0:
        what = f"{partition_key} " if partition_key else ""
        raise dg.Failure(
            description=(
                f"{file_name} holds no data rows, and the lake's {what}holds {held:,}: an "
                "empty file does not replace a loaded month (nothing was written). If the "
                "month really is empty now, materialize it again with the lake asset's "
                "config `accept_empty: true`."
            ),
            allow_retries=False,
        )


def _refuse_emptied_columns(
    file_name: str,
    partition_key: str | None,
    empty: set[str],
    lake_filled_columns: Callable[[], frozenset[str] | None],
) -> None:
    """Fail when a column the lake month being replaced has values in is empty in every
    row of the new file: the contract reads a missing column as nulls, so a republished
    file without ``tip_amount`` replaced a month's tips with nulls, every check passing."""
    filled = lake_filled_columns() if empty else None
    emptied = sorted(empty & filled) if filled else []
    if emptied:
        what = f"{partition_key} " if partition_key else ""
        raise dg.Failure(
            description=(
                f"{file_name} has no value in any row for {', '.join(emptied)} (missing from "
                f"the file, or empty), and the lake's {what}has values in them: a "
                "republished file does not replace a month's values with nulls (nothing was "
                "written). If the month really lost them, materialize it again with the lake "
                "asset's config `accept_missing_columns: true`."
            ),
            allow_retries=False,
        )


def _expected_rows(
    context: dg.AssetExecutionContext,
    raw_file: StoredFile,
    raw_key: dg.AssetKey,
    partition_key: str | None,
) -> int | None:
    """Rows of the raw revision being parsed: as recorded with the revision, else as the
    raw asset's latest materialization reported them for the same bytes."""
    if raw_file.rows is not None:
        return raw_file.rows
    raw_metadata = latest_metadata(context.instance, raw_key, partition_key)
    rows = raw_metadata.get("source_rows")
    same_bytes = raw_file.sha256 is None or raw_metadata.get("sha256") == raw_file.sha256
    if not same_bytes:
        context.log.warning(
            f"{raw_file.name}: revision {raw_file.sha256} is not the one the raw asset last "
            f"reported ({raw_metadata.get('sha256')}); its row count is unknown"
        )
    return rows if isinstance(rows, int) and same_bytes else None


def _lineage_metadata(
    context: dg.AssetExecutionContext, raw_file: StoredFile, partition_key: str | None
) -> dict[str, dg.RawMetadataValue]:
    """The raw revision this lake file comes from, and the one the previous lake file did."""
    previous = latest_metadata(context.instance, context.asset_key, partition_key)
    metadata: dict[str, dg.RawMetadataValue] = {
        "previous_source_sha256": str(previous.get(SOURCE_SHA256_KEY.decode()) or "none"),
    }
    if raw_file.problems:
        metadata["raw_manifest_problems"] = dg.MetadataValue.md(
            "\n".join(f"- {problem}" for problem in raw_file.problems)
        )
    return metadata


def lake_row_count(data: LakeFiles) -> int:
    """Rows of a lake partition, from the Parquet footers (no data is read)."""
    return data.count_rows()


def with_lineage(data: LakeFiles, month: date, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Lake batches with ``partition_month`` and ``source_file`` added, in ``schema`` order.

    Columns an older lake file lacks (the contract gained them later) arrive as nulls.
    Parquet files are read a row group at a time, without read-ahead, so memory stays flat.
    Columns ``schema`` types as dictionaries (:func:`warehouse_stream_schema`) are read as
    dictionaries.
    """
    for path in data.paths:
        physical = data.arrow_schema(path)
        source_file = source_file_of(physical)
        present = set(physical.names)
        wanted = [f.name for f in schema if f.name in present and f.name not in LINEAGE_COLUMNS]
        encoded = [name for name in wanted if pa.types.is_dictionary(schema.field(name).type)]
        # Decoded on this thread, not on Arrow's pool: the stream feeds a COPY whose server
        # is the slower side and may share this machine's cores, and the pool's bursts
        # took cores from it (docs/performance.md, "Arrow's decoding threads").
        for batch in data.file_batches(
            path,
            columns=wanted,
            batch_size=WAREHOUSE_BATCH_ROWS,
            read_dictionary=encoded,
            use_threads=False,
        ):
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


def source_file_of(physical: pa.Schema) -> str | None:
    """The raw file a lake file was parsed from, as its key-value metadata names it."""
    return (physical.metadata or {}).get(b"source_file", b"").decode() or None


def warehouse_constant_columns(
    lake_months: Mapping[date, LakeFiles], schema: pa.Schema
) -> dict[str, Any]:
    """Columns of ``schema`` holding one value in every row :func:`with_lineage` yields for
    ``lake_months``, known without reading a row (one footer read per file): None for those
    null in all the lake files or missing from them, and the lineage columns when one month
    and one ``source_file`` are loaded (the usual run: one month, one file)."""
    found: dict[str, Any] = dict.fromkeys(
        name for name in schema.names if name not in LINEAGE_COLUMNS
    )
    sources: set[str | None] = set()
    for data in lake_months.values():
        for path in data.paths:
            physical = data.arrow_schema(path)
            nulls = null_columns_of(data.footer(path))
            found = {name: None for name in found if name not in physical.names or name in nulls}
            sources.add(source_file_of(physical))
    lineage: dict[str, set[Any]] = {PARTITION_MONTH: set(lake_months), SOURCE_FILE: sources}
    for name, values in lineage.items():
        if name in schema.names and len(values) == 1:
            found[name] = values.pop()
    return found


def lineage_constants(month: date | None) -> Callable[[LakeFiles, str], dict[str, Any]]:
    """The lineage columns of one lake file, as :func:`with_lineage` adds them, for
    engines that load the file itself and add the columns in SQL (BigQuery)."""

    def constants(files: LakeFiles, path: str) -> dict[str, Any]:
        if month is None:
            return {}
        return {PARTITION_MONTH: month, SOURCE_FILE: source_file_of(files.arrow_schema(path))}

    return constants
