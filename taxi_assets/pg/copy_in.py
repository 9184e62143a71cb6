"""Arrow -> PostgreSQL through COPY FROM STDIN, with no per-row Python code.

Loads use PostgreSQL's binary COPY format, encoded from Arrow arrays with vectorised
numpy and Arrow kernels: the server parses binary rows about twice as fast as CSV (no
number or timestamp parsing). Tables whose column types differ from what the Arrow
schema maps to (for example a column created by hand with another type), and types
the encoder does not cover (numeric, nanosecond timestamps...), fall back to CSV
written by Arrow's C++ CSV writer: it leaves nulls as unquoted empty fields and quotes
strings only when needed, exactly how PostgreSQL's CSV COPY tells NULL from "".
Encoded batches are handed to a sending thread, so encoding and sending overlap.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from taxi_assets.io_managers.arrow_stats import ProgressLog
from taxi_assets.pg.ddl import ident, pg_type
from taxi_assets.pg.interrupts import hang_up, is_interruption
from taxi_assets.sql_types import decoded_type

# Rows per COPY write: encoding needs a few times a chunk's size in memory.
COPY_CHUNK_ROWS = 16 * 1024
# Encoded chunks waiting for the sending thread (bounds memory when the server is slower).
MAX_IN_FLIGHT = 2
_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")

# Binary COPY: signature, flags, header extension length; trailer = field count -1.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_BINARY_TRAILER = struct.pack("!h", -1)
_NULL_CELL = struct.pack("!i", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}
# PostgreSQL's first timestamp, 4714-11-24 00:00:00 BC (Julian day 0), in microseconds
# since 1970-01-01. Its last (294276 AD) lies beyond any int64 count of microseconds.
_PG_MIN_TIMESTAMP_US = -210_866_803_200_000_000
_INT64_MAX = 2**63 - 1
# PostgreSQL type -> the Arrow type whose values are its binary form (big-endian on the
# wire; booleans are one byte, 0 or 1).
_FIXED_WIDTH = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.uint8(),
}


def copy_arrow(
    cursor: psycopg.Cursor,
    table_sql: str,
    reader: pa.RecordBatchReader,
    log: Callable[[str], None] = lambda _: None,
    expected_rows: int | None = None,
    freeze: bool = False,
) -> int:
    """COPY every batch of ``reader`` into ``table_sql``; the row count PostgreSQL reports.

    ``log`` hears progress every few seconds (rows, % of ``expected_rows`` when given,
    rows/s). ``freeze``: the table was created in this transaction, so its rows can be
    written frozen and all-visible (no hint-bit writes on first read, nothing for vacuum
    to freeze later).
    """
    columns = ", ".join(ident(field.name) for field in reader.schema)
    binary = _binary_compatible(cursor, table_sql, reader.schema)
    options = ("FORMAT binary" if binary else "FORMAT csv") + (", FREEZE" if freeze else "")
    progress = ProgressLog(f"COPY {table_sql}", log, expected_rows)
    statement = f"COPY {table_sql} ({columns}) FROM STDIN ({options})"
    # The pool exits first (waiting for the sends in flight), then the COPY ends or,
    # on an error, is aborted.
    with cursor.copy(statement) as copy, ThreadPoolExecutor(1, "copy-send") as pool:
        in_flight: deque[Future[None]] = deque()

        def send(data: bytes | memoryview) -> None:
            in_flight.append(pool.submit(copy.write, data))
            while len(in_flight) > MAX_IN_FLIGHT:
                in_flight.popleft().result()

        try:
            if binary:
                send(_BINARY_HEADER)
            for batch in _rechunk(reader, COPY_CHUNK_ROWS):
                if binary:
                    _check_timestamp_range(batch, table_sql, first_row=progress.rows + 1)
                for data in _encode_binary(batch) if binary else [_encode_csv(batch)]:
                    send(data)
                progress.add(batch.num_rows)
            if binary:
                send(_BINARY_TRAILER)
            while in_flight:
                in_flight.popleft().result()
        except BaseException as error:
            # Interrupted (the run terminated) while the sending thread may be blocked on
            # a server that answers nothing: leaving the pool would wait for it for ever.
            if is_interruption(error):
                hang_up(cursor.connection)
            raise
    pa.default_memory_pool().release_unused()  # give cached blocks back to the OS
    return cursor.rowcount if cursor.rowcount >= 0 else progress.rows


def without_constant_columns(
    reader: pa.RecordBatchReader, constants: Mapping[str, Any], table_sql: str
) -> pa.RecordBatchReader:
    """``reader`` without ``constants``, columns said to hold one value in every row (None:
    null): COPY then leaves them to the table (its column default, or NULL), and the server
    decodes, and the client encodes, none of their fields. Each batch is checked: a row
    holding anything else fails the load, naming the column and row, rather than be lost."""
    skipped = [name for name in reader.schema.names if name in constants]
    if not skipped:
        return reader
    kept = [name for name in reader.schema.names if name not in constants]
    schema = pa.schema([reader.schema.field(name) for name in kept], reader.schema.metadata)
    expected = {
        name: pa.scalar(constants[name], decoded_type(reader.schema.field(name).type))
        for name in skipped
    }

    def batches() -> Iterator[pa.RecordBatch]:
        first_row = 1
        for batch in reader:
            for name in skipped:
                different = _other_than(batch.column(name), expected[name])
                if different is not None:
                    raise ValueError(
                        f"{table_sql}: column {name} was to hold {expected[name].as_py()!r} "
                        f"in every row but row {first_row + different:,} of the stream does "
                        "not; nothing was loaded"
                    )
            first_row += batch.num_rows
            yield batch.select(kept)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _other_than(column: pa.Array, value: pa.Scalar) -> int | None:
    """Index of the first row of ``column`` that does not hold ``value`` (null: is null)."""
    if not value.is_valid:
        if column.null_count == len(column):
            return None
        return pc.index(pc.is_valid(column), True).as_py()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    same = pc.fill_null(pc.equal(column, value), False)
    if column.null_count == 0 and pc.all(same).as_py():
        return None
    return pc.index(same, False).as_py()


def _check_timestamp_range(batch: pa.RecordBatch, table_sql: str, *, first_row: int) -> None:
    """Raise naming column and row when a timestamp is outside PostgreSQL's range, or
    beyond an int64 count of microseconds: binary COPY sends PostgreSQL its microseconds
    since 2000 as int64, and such a value would wrap around into another, valid time
    (year -290308 arriving as 294247, a ``timestamp[ms]`` far in the past as 1970)
    instead of being refused."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not pa.types.is_timestamp(column.type) or column.null_count == len(column):
            continue
        factor = _UNIT_US[column.type.unit]
        low, high = -(-_PG_MIN_TIMESTAMP_US // factor), _INT64_MAX // factor
        counts = column.cast(pa.int64())
        bounds = pc.min_max(counts)
        if bounds["min"].as_py() >= low and bounds["max"].as_py() <= high:
            continue
        outside = pc.or_(pc.less(counts, low), pc.greater(counts, high))
        index = pc.index(pc.fill_null(outside, False), True).as_py()
        raise ValueError(
            f"{table_sql}: column {name}, row {first_row + index:,} of the stream: timestamp "
            f"{counts[index].as_py()} {column.type.unit} from 1970-01-01 is outside the "
            "range PostgreSQL stores (4714-11-24 BC to 294276 AD)"
        )


def _encode_csv(batch: pa.RecordBatch) -> memoryview:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(batch, sink, _WRITE_OPTIONS)
    return memoryview(sink.getvalue())


def _rechunk(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of about ``rows`` rows: big ones sliced (no copy), small ones combined, so
    each COPY write carries a useful amount of data and encoding memory stays small."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        if not pending:
            offset = 0
            while batch.num_rows - offset >= rows:
                yield batch.slice(offset, rows)
                offset += rows
            batch = batch.slice(offset) if offset else batch
            if batch.num_rows == 0:
                continue
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield from _combined(pending, reader.schema, rows)
            pending, count = [], 0
    if pending:
        yield from _combined(pending, reader.schema, rows)


def _combined(batches: list[pa.RecordBatch], schema: pa.Schema, rows: int) -> list[pa.RecordBatch]:
    table = pa.Table.from_batches(batches, schema).combine_chunks()
    return table.to_batches(max_chunksize=rows)


def _binary_compatible(cursor: psycopg.Cursor, table_sql: str, schema: pa.Schema) -> bool:
    """True when every column can go in binary form: the table's column types are exactly
    those the Arrow types map to, and the encoder knows them."""
    try:
        wanted = {field.name: pg_type(field.type) for field in schema}
    except TypeError:
        return False
    if not all(_binary_encodable(field.type, wanted[field.name]) for field in schema):
        return False
    rows = cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table_sql,),
    ).fetchall()
    actual: dict[str, str] = dict(rows)
    return all(actual.get(name) == pg for name, pg in wanted.items())


def _binary_encodable(arrow_type: pa.DataType, pg: str) -> bool:
    if pg in _FIXED_WIDTH or pg == "text":
        return True
    if pg == "date":
        return pa.types.is_date32(arrow_type)
    if pg.startswith("timestamp"):
        return arrow_type.unit in _UNIT_US
    return False


def _encode_binary(batch: pa.RecordBatch) -> Iterator[memoryview]:
    """``batch`` as binary COPY rows (no header or trailer)."""
    if batch.num_rows == 0:
        return
    try:
        yield memoryview(_binary_rows(batch))
    except (pa.ArrowInvalid, pa.ArrowCapacityError):
        # Offsets overflow (more than 2 GiB of row data in one batch): halve and retry.
        if batch.num_rows == 1:
            raise
        half = batch.num_rows // 2
        yield from _encode_binary(batch.slice(0, half))
        yield from _encode_binary(batch.slice(half))


def _binary_rows(batch: pa.RecordBatch) -> pa.Buffer:
    """Rows = field count + one cell per column, joined row by row by an Arrow kernel.

    Runs of "uniform" columns (the same bytes per row: fixed-width without nulls, all
    nulls, text of one length) are packed together with the field count into one numpy
    record array per run, so the join has few, wide inputs.
    """
    n = batch.num_rows
    parts: list[pa.Array] = []
    run = _UniformRun(n)
    run.add(">i2", batch.num_columns)
    for column in batch.columns:
        if not run.try_add_column(column):
            run.flush_into(parts)
            parts.append(_cells(column))
    run.flush_into(parts)
    if len(parts) == 1:
        rows = parts[0]
    else:
        rows = pc.binary_join_element_wise(*parts, b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    return rows.buffers()[2][int(offsets[0]) : int(offsets[-1])]


class _UniformRun:
    """Consecutive cells whose bytes have the same length in every row, as record fields."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.fields: list[tuple[str, str]] = []
        self.values: list[object] = []

    def add(self, dtype: str, values: object) -> None:
        self.fields.append((f"f{len(self.fields)}", dtype))
        self.values.append(values)

    def try_add_column(self, column: pa.Array) -> bool:
        n = len(column)
        if column.null_count == n:
            self.add(">i4", -1)
            return True
        if column.null_count:
            return False
        if pa.types.is_dictionary(column.type):
            # Each row's cell is its value's cell: encoded once per dictionary entry, then
            # picked by index (Y/N flags, licence and base numbers: one width each).
            cells = _cells(column.dictionary)
            width = _constant_width(cells)
            if width is None:
                return False
            self.add(f"S{width}", _text_values(cells, width)[column.indices.to_numpy()])
            return True
        pg = pg_type(column.type)
        if pg == "text":
            width = _constant_width(column)
            if width is None:
                return False
            self.add(">i4", width)
            if width:
                self.add(f"S{width}", _text_values(column, width))
            return True
        values = _values(column, pg)
        dtype = _dtype_for(values)
        self.add(">i4", np.dtype(dtype).itemsize)
        self.add(dtype, values)
        return True

    def flush_into(self, parts: list[pa.Array]) -> None:
        if not self.fields:
            return
        record = np.empty(self.rows, dtype=np.dtype(self.fields))
        for (name, _), values in zip(self.fields, self.values, strict=True):
            record[name] = values
        width = record.dtype.itemsize
        fixed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), self.rows, [None, pa.py_buffer(record)]
        )
        parts.append(fixed.cast(pa.binary()))
        self.fields, self.values = [], []


def _offsets(column: pa.Array) -> np.ndarray:
    large = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
    return np.frombuffer(
        column.buffers()[1],
        dtype=np.int64 if large else np.int32,
        count=len(column) + 1,
        offset=column.offset * (8 if large else 4),
    )


def _constant_width(column: pa.Array) -> int | None:
    """The byte length every (non-null) string of ``column`` has, if it is one length."""
    lengths = np.diff(_offsets(column))
    if len(lengths) == 0:
        return 0
    first = int(lengths[0])
    return first if bool((lengths == first).all()) else None


def _text_values(column: pa.Array, width: int) -> np.ndarray:
    offsets = _offsets(column)
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
    return data[int(offsets[0]) : int(offsets[-1])].view(f"S{width}")


def _cells(column: pa.Array) -> pa.Array:
    """One binary COPY field per row: 4-byte big-endian length, then the value (or -1)."""
    n = len(column)
    if column.null_count == n:
        return _constant_cells(_NULL_CELL, n)
    arrow_type = column.type
    pg = pg_type(arrow_type)
    if pa.types.is_dictionary(arrow_type):
        cells = _cells(column.dictionary).take(column.indices)
    elif pg == "text":
        text = column.cast(
            pa.large_binary() if pa.types.is_large_string(arrow_type) else pa.binary()
        )
        lengths = pc.binary_length(text).fill_null(0).to_numpy().astype(">i4")
        prefix = _fixed_cells(lengths, with_length=False).cast(text.type)
        cells = pc.binary_join_element_wise(prefix, text, pa.scalar(b"", text.type))
        if pa.types.is_large_binary(cells.type):
            cells = cells.cast(pa.binary())
    else:
        cells = _fixed_cells(_values(column, pg), with_length=True)
    if column.null_count:
        cells = pc.if_else(pc.is_valid(column), cells, pa.scalar(_NULL_CELL, pa.binary()))
    return cells


def _values(column: pa.Array, pg: str) -> np.ndarray:
    """Non-null values in PostgreSQL's binary representation (nulls become 0)."""
    if pg.startswith("timestamp"):
        micros = column.cast(pa.int64()).fill_null(0).to_numpy()
        factor = _UNIT_US[column.type.unit]
        return (micros * factor if factor != 1 else micros) - _PG_EPOCH_US
    if pg == "date":
        return column.cast(pa.int32()).fill_null(0).to_numpy() - _PG_EPOCH_DAYS
    return column.cast(_FIXED_WIDTH[pg]).fill_null(0).to_numpy()


def _dtype_for(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind == "u" and values.dtype.itemsize == 1:
        return "u1"
    return f">{kind}{values.dtype.itemsize}"


def _fixed_cells(values: np.ndarray, *, with_length: bool) -> pa.Array:
    """A binary array whose every element is ``[length]`` + the big-endian value."""
    n = len(values)
    dtype = _dtype_for(values)
    width = np.dtype(dtype).itemsize
    if with_length:
        record = np.empty(n, dtype=np.dtype([("length", ">i4"), ("value", dtype)]))
        record["length"] = width
        record["value"] = values
        width += 4
    else:
        record = values.astype(dtype, copy=False)
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [None, pa.py_buffer(np.ascontiguousarray(record))]
    )
    return fixed.cast(pa.binary())


def _constant_cells(cell: bytes, n: int) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(len(cell)), n, [None, pa.py_buffer(cell * n)]
    ).cast(pa.binary())
