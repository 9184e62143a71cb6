"""A lake partition as the warehouse reads it: its Parquet file(s), without pyarrow.dataset.

``pyarrow.dataset`` imports pandas (about 0.4 s and 40 MB in every run process that
loads the definitions) and reads ahead; a month of the lake is one file (or a folder of
files) whose footers give the row count and whose row groups are read one at a time.
Files are opened on a buffered stream without pre-buffering, so a file written as ONE
row group (TLC's layout) is decoded page by page rather than loaded whole.

A partition is read as the version it had when it was listed: a file is opened several
times (footers, then data), and on an object store each read is a request of its own, so a
month re-materialized meanwhile could otherwise be read as parts of two files. Listing
records each file's version (GCS generation, S3 or Azure ETag, or size and modification
time); reading a file to its end checks the version again and raises
:class:`LakeFileChanged` if it moved, so the caller's transaction never commits a mix.
Each file's footer is read once and kept: row counts, schemas and lineage come from it,
and the data read reuses it, so a month costs one footer request, not one per question.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Bytes read from storage at a time for each column being decoded.
READ_BUFFER_BYTES = 1 << 20
BATCH_ROWS = 64 * 1024


def is_damaged_parquet(error: BaseException) -> bool:
    """Whether ``error``, raised reading a Parquet file, says the file itself is damaged:
    Arrow's ArrowInvalid (no magic bytes, a cut file), or the plain OSError without an
    errno that pyarrow raises for bytes that do not decode (``_DAMAGE``: a footer's
    "Couldn't deserialize thrift"). Not other OSErrors: a store that throttles or refuses
    (s3fs raises OSError for a 503) says nothing of the file."""
    if isinstance(error, pa.ArrowInvalid):
        return True
    return type(error) is OSError and error.errno is None and _is_damage(error)


class LakeFileChanged(RuntimeError):
    """A lake file was replaced while it was read (its month was materialized again)."""


Version = tuple[object, ...]


class LakeFileDamaged(RuntimeError):
    """A page of a lake file fails its CRC: its bytes changed after they were written."""


# Arrow's words for a page whose CRC fails (the lake writes one per page), a compressed
# page that does not decompress, and a page header that does not parse (a CRC covers the
# page's data, not its header).
_DAMAGE = (
    "CRC checksum verification failed",
    "decompression failed",
    "Deserializing page header failed",
    "Couldn't deserialize thrift",
    "Page was smaller than expected",
)


def _is_damage(error: BaseException) -> bool:
    return any(words in str(error) for words in _DAMAGE)


def file_version(filesystem: pafs.FileSystem, path: str) -> Version:
    """What changes whenever ``path`` is replaced: its size and, on an object store, the
    store's own version (GCS generation, S3 and Azure ETag); locally its modification time."""
    handler = getattr(filesystem, "handler", None)
    if isinstance(handler, pafs.FSSpecHandler):
        store = handler.fs
        store.invalidate_cache(path)  # a listing's cached entry would hide a replacement
        info = store.info(path)
        for key in ("generation", "ETag", "etag", "mtime", "LastModified", "last_modified"):
            if info.get(key):
                return (info.get("size"), key, str(info[key]))
        return (info.get("size"),)
    local = filesystem.get_file_info(path)
    return (local.size, local.mtime_ns)


@dataclass(frozen=True)
class LakeFiles:
    """The Parquet files of one partition (one file, or every ``.parquet`` under a folder),
    with each file's version when listed (``versions``, in the order of ``paths``)."""

    filesystem: pafs.FileSystem
    paths: tuple[str, ...]
    versions: tuple[Version, ...] = field(compare=False)
    # Footers read so far, by path. A footer read after a replacement is caught like any
    # other read: the file's version is checked when its data has been read.
    _footers: dict[str, pq.FileMetaData] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def at(cls, filesystem: pafs.FileSystem, path: str) -> LakeFiles:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{path} does not exist: materialize the upstream asset first")
        if info.type == pafs.FileType.File:
            files: list[str] = [path]
        else:
            found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(f.path for f in found if f.is_file and f.path.endswith(".parquet"))
        versions = tuple(file_version(filesystem, file) for file in files)
        return cls(filesystem, tuple(files), versions)

    def check_unchanged(self, path: str) -> None:
        """Raise :class:`LakeFileChanged` if ``path`` is no longer the version listed."""
        listed = self.versions[self.paths.index(path)]
        now = file_version(self.filesystem, path)
        if now != listed:
            raise LakeFileChanged(
                f"{path} was replaced while this run read it (its month was materialized "
                "again): nothing read from it is kept. Run again to load the new version."
            )

    @contextmanager
    def open(self, path: str, read_dictionary: Sequence[str] = ()) -> Iterator[pq.ParquetFile]:
        """``read_dictionary``: columns to read as Arrow dictionaries (text columns the
        file stores dictionary-encoded then cost no string per row)."""
        with self.filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(
                handle,
                metadata=self._footers.get(path),
                buffer_size=READ_BUFFER_BYTES,
                pre_buffer=False,
                read_dictionary=list(read_dictionary) or None,
                # The lake writes a CRC per page (parquet_lake); files without any
                # (written before, or by other tools) are read as before.
                page_checksum_verification=True,
            )
            self._footers.setdefault(path, parquet.metadata)
            try:
                yield parquet
            finally:
                parquet.close()

    def footer(self, path: str) -> pq.FileMetaData:
        """``path``'s Parquet footer (rows, row groups, statistics, key-value metadata),
        read on first use only."""
        if path not in self._footers:
            with self.open(path):
                pass
        return self._footers[path]

    def arrow_schema(self, path: str) -> pa.Schema:
        """``path``'s Arrow schema with its metadata, as ``pq.ParquetFile.schema_arrow``."""
        return self.footer(path).schema.to_arrow_schema()

    def count_rows(self) -> int:
        """Rows of every file, from the footers (no data is read)."""
        return sum(self.footer(path).num_rows for path in self.paths)

    @property
    def schema(self) -> pa.Schema:
        """The first file's schema, with its metadata (the lake writes one schema per asset)."""
        if not self.paths:
            raise FileNotFoundError("no Parquet file in this lake partition")
        return self.arrow_schema(self.paths[0])

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
        use_threads: bool = True,
    ) -> Iterator[pa.RecordBatch]:
        """Batches of one file, row group by row group: one iterator over all groups holds
        on to the pages it has read until it ends, so memory would grow with the file.
        At the end (or on a read error) the file's version is checked against the listing's.
        ``use_threads=False`` decodes the columns on the calling thread rather than on
        Arrow's CPU pool."""
        try:
            with self.open(path, read_dictionary) as parquet:
                for group in range(parquet.num_row_groups):
                    yield from parquet.iter_batches(
                        batch_size=batch_size,
                        row_groups=[group],
                        columns=columns,
                        use_threads=use_threads,
                    )
        except (OSError, pa.ArrowException) as error:
            # Bytes of two versions may not decode, or a store may refuse the old version
            # (s3fs reads with If-Match): say what happened rather than how it showed.
            self.check_unchanged(path)
            if _is_damage(error):
                raise LakeFileDamaged(
                    f"{path} is damaged ({error}): nothing read from it is kept; "
                    "materialize its lake month again to rewrite it from the raw file"
                ) from error
            raise
        self.check_unchanged(path)


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
