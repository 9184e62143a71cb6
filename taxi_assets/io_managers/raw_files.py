"""An IO manager for files kept exactly as published, one per partition.

A partition's file keeps its published name, which must contain the partition key
(``yellow_tripdata_2021-01.csv.gz``): that is how a partition finds its file again, and
writing a partition replaces whatever file that partition held before, even under
another name (for example when a month moves from a CSV.gz to a Parquet source).
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from upath import UPath

from taxi_assets.resources.lake import LakeResource
from taxi_assets.storage.publish import publish_file


@dataclass(frozen=True)
class StagedFile:
    """A verified local file, ready to be published under ``name``."""

    name: str
    local_path: Path
    scratch_dir: Path | None = None  # removed once the file is published


@dataclass(frozen=True)
class UnchangedFile:
    """The stored file is already the current version: keep it."""

    name: str


@dataclass(frozen=True)
class StoredFile:
    """A published file in storage, as handed to downstream assets."""

    name: str
    path: UPath

    def open(self):  # noqa: ANN201 - an fsspec/local binary file object
        return self.path.open("rb")


class RawFileIOManager(dg.ConfigurableIOManager):
    """Stores files byte for byte under ``<lake>/<asset key path>/<published name>``."""

    lake: dg.ResourceDependency[LakeResource]

    def root_path(self) -> UPath:
        return self.lake.root()

    def _folder(self, context: dg.OutputContext | dg.InputContext) -> UPath:
        return self.root_path().joinpath(*context.asset_key.path)

    @staticmethod
    def _partition_key(context: dg.OutputContext | dg.InputContext) -> str | None:
        if not context.has_asset_partitions:
            return None
        keys = context.asset_partition_keys
        if len(keys) != 1:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()} stores one file per partition; "
                f"got {len(keys)} partitions in one run (use one run per partition)",
                allow_retries=False,
            )
        return keys[0]

    def _existing(self, folder: UPath, partition_key: str | None) -> list[UPath]:
        if not folder.exists():
            return []
        return sorted(
            entry
            for entry in folder.iterdir()
            if not entry.name.startswith(".")
            and (partition_key is None or partition_key in entry.name)
        )

    def handle_output(self, context: dg.OutputContext, obj: StagedFile | UnchangedFile) -> None:
        try:
            self._store(context, obj)
        finally:
            # Whatever failed (root, partition, publishing), the downloaded copy goes.
            if isinstance(obj, StagedFile) and obj.scratch_dir is not None:
                shutil.rmtree(obj.scratch_dir, ignore_errors=True)

    def _store(self, context: dg.OutputContext, obj: StagedFile | UnchangedFile) -> None:
        folder = self._folder(context)
        partition_key = self._partition_key(context)
        if partition_key is not None and partition_key not in obj.name:
            raise ValueError(f"file name {obj.name!r} does not contain partition {partition_key}")
        target = folder / obj.name
        if isinstance(obj, StagedFile):
            publish_file(obj.local_path, target)
        elif not target.exists():
            raise FileNotFoundError(f"{target} was expected to exist already")
        for stale in self._existing(folder, partition_key):
            if stale.name != obj.name:
                context.log.info(f"Removing {stale}: replaced by {obj.name}")
                stale.unlink()
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target))})

    def load_input(self, context: dg.InputContext) -> StoredFile:
        folder = self._folder(context)
        partition_key = self._partition_key(context)
        found = self._existing(folder, partition_key)
        what = f"partition {partition_key} of " if partition_key else ""
        if not found:
            raise FileNotFoundError(
                f"no stored file for {what}{context.asset_key.to_user_string()} in {folder}; "
                "materialize it first"
            )
        if len(found) > 1:
            raise ValueError(f"several files for {what}{folder}: {[p.name for p in found]}")
        return StoredFile(name=found[0].name, path=found[0])
