"""Write a month as ONE Parquet row group, as TLC does, without holding it in memory.

pyarrow starts a new row group with every ``write_table`` call, so one row group needs the
whole month as one table. The chunks are spooled to an uncompressed Arrow IPC file on disk
first and the table is read back memory-mapped (zero copy): the Parquet writer then reads
it column by column from the page cache. The process's own (anonymous) memory stays at
about one chunk plus the writer's buffers, whatever the month's size; what it costs is a
temporary file of the month's Arrow size (~190 bytes a row for FHVHV: ~3.8 GB for 20M
rows) and mapped file pages, which count in RSS while mapped but are clean page cache the
kernel reclaims under pressure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from taxi_assets.devdata.tlc_writer import TLC_PARQUET_WRITER_OPTIONS


def write_one_row_group(dest: Path, chunks: Iterable[pa.Table], schema: pa.Schema) -> None:
    """Write ``chunks`` (cast to ``schema``) to ``dest`` as a single row group."""
    spool = dest.with_name(f".{dest.name}.{os.getpid()}.spool.arrow")
    try:
        with pa.OSFile(str(spool), "wb") as sink, ipc.new_file(sink, schema) as writer:
            for table in chunks:
                writer.write_table(table.cast(schema))
        with pa.memory_map(str(spool)) as source:
            month = ipc.open_file(source).read_all()
            with pq.ParquetWriter(dest, schema, **TLC_PARQUET_WRITER_OPTIONS) as out:
                out.write_table(month, row_group_size=max(1, month.num_rows))
            del month
    finally:
        spool.unlink(missing_ok=True)
