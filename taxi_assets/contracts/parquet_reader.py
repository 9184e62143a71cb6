"""Streaming reader for TLC Parquet files onto a contract."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .casting import check_source_type, conform, from_sources, refuse_nul
from .headers import map_header
from .schema import Contract, ContractError

# Big enough to amortise per-batch Python work, small enough to keep memory flat.
PARQUET_BATCH_ROWS = 65536
# TLC writes a whole month as ONE row group (20M rows, ~450 MB for FHVHV). Without a
# buffered stream the reader loads each column chunk of the row group whole, so memory
# would follow the month's size; through a buffer of this size per column it follows the
# batch instead. pyarrow caps the buffer at the column chunk's size, so a small month's
# columns take less: 256 KiB rather than 1 MiB keeps a 20M-row FHVHV month's reader within
# ~8 MB of a 1M-row month's (1 MiB: ~16 MB), at the same speed (docs/performance.md).
# Columns whose pages are under 16 KiB still grow up to their compressed size: see
# devdata/tlc_writer.py.
PARQUET_BUFFER_BYTES = 256 * 1024


# INT96 timestamps (Spark's, Hive's, Impala's, old pandas' files) are read as
# microseconds, the contract's unit: pyarrow reads them as nanoseconds by default, and a
# time outside 1677-09-21..2262-04-11 then wraps around silently (3000-01-01 became
# 1830-11-23). Digits below the microsecond are truncated, as for timestamp[ns] columns.
INT96_UNIT = "us"

# Text columns read as dictionaries (``dictionary_strings``) come out with this type.
STRING_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def with_dictionary_text(schema: pa.Schema, names: Collection[str]) -> pa.Schema:
    """``schema`` with the fields ``names`` typed :data:`STRING_DICTIONARY`."""
    for index, field in enumerate(schema):
        if field.name in names:
            schema = schema.set(index, field.with_type(STRING_DICTIONARY))
    return schema


# pandas' name for an unnamed index it stores as a column (a row number, not data).
PANDAS_ROW_NUMBER = re.compile(r"__index_level_\d+__")


def pandas_row_numbers(schema: pa.Schema) -> list[str]:
    """Columns pandas stored an unnamed index in (``__index_level_0__``), as the file's
    own ``pandas`` metadata lists them: a file written from a DataFrame without
    ``index=False``. A named index (``trip_id``) is data, and is kept."""
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None:
        return []
    try:
        listed = json.loads(raw).get("index_columns", [])
    except (ValueError, AttributeError):
        return []
    return [
        name
        for name in listed
        if isinstance(name, str) and PANDAS_ROW_NUMBER.fullmatch(name) and name in schema.names
    ]


def open_parquet_reader(
    source: Any,
    *,
    file_name: str,
    contract: Contract,
    warn: Callable[[str], None],
    dictionary_strings: bool = False,
) -> pa.RecordBatchReader:
    """Open eagerly (footer and header errors surface here), stream batches lazily.

    ``dictionary_strings``: text columns (license and base numbers, Y/N flags) stay
    dictionary-encoded, as TLC stores them, instead of one string per row: a Parquet
    writer then writes their indices without hashing every value again (a 20M-row FHVHV
    month: 2-4 s less CPU in the lake step). Their fields are typed :data:`STRING_DICTIONARY`.
    """
    try:
        parquet = pq.ParquetFile(
            source,
            buffer_size=PARQUET_BUFFER_BYTES,
            pre_buffer=False,
            coerce_int96_timestamp_unit=INT96_UNIT,
            # Pages with a CRC (writers such as Spark's add one) are checked: a damaged
            # download fails naming the file instead of decoding as other values.
            page_checksum_verification=True,
        )
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ContractError(f"{file_name}: not a readable Parquet file ({exc})") from exc
    try:
        index = pandas_row_numbers(parquet.schema_arrow)
        for name in index:
            warn(
                f"{file_name}: column {name!r} is the row number pandas wrote the file with "
                "(its 'pandas' metadata names it the index), not a trip column: not loaded"
            )
        names = [name for name in parquet.schema_arrow.names if name not in index]
        targets = map_header(names, contract, file_name)
        fields = [parquet.schema_arrow.field(name) for name in names]
        for field, target in zip(fields, targets, strict=True):
            # From the footer, before any row is read; names the file's column.
            check_source_type(
                field.type, contract.column(target), file_name=file_name, header=field.name
            )
        encoded = _text_columns(pa.schema(fields), targets, contract) if dictionary_strings else []
        if encoded:
            # Reopened to read those columns as dictionaries; the footer is parsed once.
            footer = parquet.metadata
            parquet.close()
            parquet = pq.ParquetFile(
                source,
                metadata=footer,
                buffer_size=PARQUET_BUFFER_BYTES,
                pre_buffer=False,
                read_dictionary=encoded,
                coerce_int96_timestamp_unit=INT96_UNIT,
                page_checksum_verification=True,
            )
    except Exception:
        parquet.close()
        raise
    if parquet.metadata.num_rows == 0:
        warn(f"{file_name}: Parquet file has no rows")
    schema = with_dictionary_text(contract.schema, {targets[names.index(name)] for name in encoded})
    return pa.RecordBatchReader.from_batches(
        schema, _batches(parquet, names, targets, file_name, contract, schema)
    )


def _text_columns(physical: pa.Schema, targets: list[str], contract: Contract) -> list[str]:
    """Raw text columns that are alone in feeding a plain text contract column."""
    columns = {col.name: col for col in contract.columns}
    found = []
    for field, target in zip(physical, targets, strict=True):
        col = columns.get(target)
        if (
            col is not None
            and col.type == pa.string()
            and not col.codes
            and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
            and targets.count(target) == 1
        ):
            found.append(field.name)
    return found


def _batches(
    parquet: pq.ParquetFile,
    names: list[str],
    targets: list[str],
    file_name: str,
    contract: Contract,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    first_row = 1
    try:
        batches = parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, columns=names, use_threads=True
        )
        for batch in batches:
            arrays = []
            for col, field in zip(contract.columns, schema, strict=True):
                if field.type == STRING_DICTIONARY:
                    # Its one source, dictionary-encoded: only the dictionary is cast
                    # (large_string in files since 2023-02).
                    encoded = batch.column(targets.index(col.name)).cast(STRING_DICTIONARY)
                    if pc.any(pc.match_substring(encoded.dictionary, "\x00")).as_py():
                        # The dictionary may hold values no row of this batch uses.
                        refuse_nul(
                            encoded.dictionary_decode(),
                            col,
                            file_name=file_name,
                            first_row=first_row,
                        )
                    arrays.append(encoded)
                    continue
                sources = [
                    (name, conform(batch.column(i), col, file_name=file_name, first_row=first_row))
                    for i, (name, target) in enumerate(zip(names, targets, strict=True))
                    if target == col.name
                ]
                arrays.append(
                    from_sources(
                        sources, col, file_name=file_name, first_row=first_row, rows=len(batch)
                    )
                )
            first_row += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ContractError(f"{file_name}: cannot read Parquet data ({exc})") from exc
    finally:
        parquet.close()
