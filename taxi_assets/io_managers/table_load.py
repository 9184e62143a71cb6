"""A table load that names its Parquet files, for engines that load files themselves.

The PostgreSQL IO manager streams a ``TableLoad``'s Arrow batches through COPY. BigQuery
loads Parquet files with load jobs instead: from ``gs://`` directly, so no row passes
through the worker, or uploaded from a local lake. A ``ParquetTableLoad`` is both: the
same rows as a lazy Arrow stream (never read when the files are loaded) and as the files
that hold them, each with the constant columns its rows get (lineage).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from taxi_assets.io_managers.lake_files import LakeFiles
from taxi_assets.io_managers.postgres import TableLoad

GCS_PROTOCOLS = ("gs", "gcs")


@dataclass(frozen=True)
class ParquetPart:
    """One Parquet file of a load. ``constants`` are columns every row of it gets, with
    their values (Python ``date`` / ``str`` / None); columns of the load the file lacks
    (written before a contract gained them) are null."""

    path: str
    filesystem: pafs.FileSystem
    constants: Mapping[str, Any] = field(default_factory=dict)
    # The file's schema when the caller has its footer already (None: read it here).
    footer_schema: pa.Schema | None = None
    # Raises if the file is no longer the version the load was planned from (its footer's
    # rows and lineage); called once the file has been loaded.
    check_unchanged: Callable[[], None] = field(default=lambda: None, compare=False)

    def physical_schema(self) -> pa.Schema:
        """The file's own columns and types, from its footer."""
        if self.footer_schema is not None:
            return self.footer_schema
        with self.filesystem.open_input_file(self.path) as handle:
            return pq.read_schema(handle)

    def gcs_uri(self) -> str | None:
        """``gs://bucket/object`` when the file lives on Google Cloud Storage, else None."""
        handler = getattr(self.filesystem, "handler", None)
        protocol = getattr(getattr(handler, "fs", None), "protocol", ())
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        if isinstance(self.filesystem, pafs.GcsFileSystem) or set(protocols) & set(GCS_PROTOCOLS):
            return "gs://" + self.path.removeprefix("gs://").removeprefix("gcs://").lstrip("/")
        return None

    def open(self) -> BinaryIO:
        """The file as a seekable binary stream (read in chunks by the caller)."""
        return cast(BinaryIO, self.filesystem.open_input_file(self.path))


@dataclass(frozen=True)
class ParquetTableLoad(TableLoad):
    """``reader``'s rows, also available as Parquet files plus constants: ``parts()``,
    called only by an IO manager that loads files (it reads their footers)."""

    parts: Callable[[], Sequence[ParquetPart]] = lambda: ()


def lake_parts(
    data: LakeFiles,
    constants: Callable[[LakeFiles, str], Mapping[str, Any]] = lambda _files, _path: {},
) -> tuple[ParquetPart, ...]:
    """The files of a lake partition as load parts; ``constants(data, path)`` gives each
    file's constant columns. Each part checks its file is still the version listed."""
    return tuple(
        ParquetPart(
            path=path,
            filesystem=data.filesystem,
            constants=dict(constants(data, path)),
            footer_schema=data.arrow_schema(path),
            check_unchanged=functools.partial(data.check_unchanged, path),
        )
        for path in data.paths
    )
