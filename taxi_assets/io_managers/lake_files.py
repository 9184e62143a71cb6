"""A lake partition as the warehouse reads it: its Parquet file(s), without pyarrow.dataset.

``pyarrow.dataset`` imports pandas (about 0.4 s and 40 MB in every run process that
loads the definitions) and reads ahead; a month of the lake is one file (or a folder of
files) whose footers give the row count and whose row groups are read one at a time.
Files are opened on a buffered stream without pre-buffering, so a file written as ONE
row group (TLC's layout) is decoded page by page rather than loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Bytes read from storage at a time for each column being decoded.
READ_BUFFER_BYTES = 1 << 20
BATCH_ROWS = 64 * 1024


@dataclass(frozen=True)
class LakeFiles:
    """The Parquet files of one partition (one file, or every ``.parquet`` under a folder)."""

    filesystem: pafs.FileSystem
    paths: tuple[str, ...]

    @classmethod
    def at(cls, filesystem: pafs.FileSystem, path: str) -> LakeFiles:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{path} does not exist: materialize the upstream asset first")
        if info.type == pafs.FileType.File:
            return cls(filesystem, (path,))
        found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(f.path for f in found if f.is_file and f.path.endswith(".parquet"))
        return cls(filesystem, tuple(files))

    @contextmanager
    def open(self, path: str, read_dictionary: Sequence[str] = ()) -> Iterator[pq.ParquetFile]:
        """``read_dictionary``: columns to read as Arrow dictionaries (text columns the
        file stores dictionary-encoded then cost no string per row)."""
        with self.filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(
                handle,
                buffer_size=READ_BUFFER_BYTES,
                pre_buffer=False,
                read_dictionary=list(read_dictionary) or None,
            )
            try:
                yield parquet
            finally:
                parquet.close()

    def count_rows(self) -> int:
        """Rows of every file, from the footers (no data is read)."""
        total = 0
        for path in self.paths:
            with self.open(path) as parquet:
                total += parquet.metadata.num_rows
        return total

    @property
    def schema(self) -> pa.Schema:
        """The first file's schema, with its metadata (the lake writes one schema per asset)."""
        if not self.paths:
            raise FileNotFoundError("no Parquet file in this lake partition")
        with self.open(self.paths[0]) as parquet:
            return parquet.schema_arrow

    def to_batches(
        self, columns: list[str] | None = None, batch_size: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        for path in self.paths:
            yield from self.file_batches(path, columns, batch_size)

    def file_batches(
        self,
        path: str,
        columns: list[str] | None = None,
        batch_size: int = BATCH_ROWS,
        read_dictionary: Sequence[str] = (),
    ) -> Iterator[pa.RecordBatch]:
        """Batches of one file, row group by row group: one iterator over all groups holds
        on to the pages it has read until it ends, so memory would grow with the file."""
        with self.open(path, read_dictionary) as parquet:
            for group in range(parquet.num_row_groups):
                yield from parquet.iter_batches(
                    batch_size=batch_size, row_groups=[group], columns=columns
                )


def null_columns_of(metadata: pq.FileMetaData) -> frozenset[str]:
    """Top-level, non-nested columns whose every row group records as many nulls as rows."""
    names = set()
    for index in range(metadata.num_columns):
        path = metadata.schema.column(index).path
        if "." in path:
            continue
        all_null = True
        for group in range(metadata.num_row_groups):
            chunk = metadata.row_group(group).column(index)
            statistics = chunk.statistics
            if (
                statistics is None
                or not statistics.has_null_count
                or statistics.null_count != metadata.row_group(group).num_rows
            ):
                all_null = False
                break
        if all_null:
            names.add(path)
    return frozenset(names)
