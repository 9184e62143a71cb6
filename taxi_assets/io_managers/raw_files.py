"""An IO manager for files kept exactly as published: every revision, and which is current.

Each partition (or an unpartitioned asset) is a revision slot
(:mod:`taxi_assets.storage.revisions`): ``<lake>/<asset key path>/<partition>/<sha256>/
<published name>`` per revision and a ``revisions.json`` manifest naming the current one.
Writing a partition stores the new bytes as a revision (unless the same bytes are stored
already) and makes it current; reading it hands out the current revision. The published
name must contain the partition key (``yellow_tripdata_2021-01.csv.gz``): a guard against
storing one month's file as another's.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg
from pydantic import PrivateAttr
from upath import UPath

from taxi_assets.resources.lake import LakeResource
from taxi_assets.run_watch import RunWatchLease, watch_run
from taxi_assets.settings import resolve_setting
from taxi_assets.storage.explained import explained, refuse_missing_bucket
from taxi_assets.storage.read_retries import open_for_reading
from taxi_assets.storage.revision_manifest import Revision
from taxi_assets.storage.revision_updates import Commit, PinChange, make_current, parse_keep
from taxi_assets.storage.revision_updates import repair as repair_slot
from taxi_assets.storage.revisions import RevisionError, RevisionSlot, slot_for
from taxi_assets.storage.slot_lock import wait_s as slot_lock_wait_s

KEEP_REVISIONS_ENV = "TAXI_RAW_KEEP_REVISIONS"


@dataclass(frozen=True)
class StagedFile:
    """New bytes from upstream in a verified local file, to become the current revision."""

    revision: Revision
    local_path: Path
    scratch_dir: Path | None = None  # removed once the file is stored
    pin: PinChange = PinChange.KEEP
    reported: tuple[str, ...] = ()  # problems the asset saw in the slot, for the metadata


@dataclass(frozen=True)
class KeptRevision:
    """A revision already stored, to be (or stay) the current one: no bytes move."""

    revision: Revision
    pin: PinChange = PinChange.KEEP
    reported: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredFile:
    """The current revision of a partition, as handed to downstream assets."""

    name: str
    path: UPath
    sha256: str | None = None
    rows: int | None = None  # as counted when the revision was stored; None if unknown
    problems: tuple[str, ...] = ()  # what disagreed in the slot's manifest (reported)
    slot: RevisionSlot | None = None  # where it is current, to check that it still is

    def open(self) -> BinaryIO:
        return open_for_reading(self.path)


class RawFileIOManager(dg.ConfigurableIOManager):
    """Stores every revision of a file byte for byte under ``<lake>/<asset key path>``."""

    lake: dg.ResourceDependency[LakeResource]
    # Revisions kept per partition: the last N (never the current or a pinned one); unset:
    # $TAXI_RAW_KEEP_REVISIONS ('all' or N), else all.
    keep_revisions: int | None = None

    def root_path(self) -> UPath:
        return self.lake.root()

    def slot(self, context: dg.OutputContext | dg.InputContext) -> RevisionSlot:
        return slot_for(self.root_path(), context.asset_key.path, self._partition_key(context))

    _run_watch: RunWatchLease | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Bad settings fail when the run starts, before downloading.
        self.keep()
        slot_lock_wait_s()
        # A run ended by someone else (max_runtime, Terminate) stops here too (run_watch).
        # Here, not in LakeResource: sensors and schedules use that one outside runs.
        self._run_watch = watch_run(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_watch is not None:
            self._run_watch.release()

    def keep(self) -> int | None:
        explicit = None if self.keep_revisions is None else str(self.keep_revisions)
        try:
            return parse_keep(resolve_setting(explicit, KEEP_REVISIONS_ENV, None))
        except ValueError as error:
            raise ValueError(f"keep_revisions / ${KEEP_REVISIONS_ENV}: {error}") from None

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

    def handle_output(self, context: dg.OutputContext, obj: StagedFile | KeptRevision) -> None:
        try:
            self._store(context, obj)
        finally:
            # Whatever failed (root, partition, publishing), the downloaded copy goes.
            if isinstance(obj, StagedFile) and obj.scratch_dir is not None:
                shutil.rmtree(obj.scratch_dir, ignore_errors=True)

    def _store(self, context: dg.OutputContext, obj: StagedFile | KeptRevision) -> None:
        partition_key = self._partition_key(context)
        name = obj.revision.name
        if partition_key is not None and partition_key not in name:
            raise ValueError(f"file name {name!r} does not contain partition {partition_key}")
        keep = self.keep()  # a bad setting fails before anything is written
        staged = obj.local_path if isinstance(obj, StagedFile) else None
        commit = make_current(
            self.slot(context), obj.revision, staged, obj.pin, keep, context.log.info
        )
        problems = list(dict.fromkeys([*obj.reported, *commit.state.problems]))
        for problem in problems:
            context.log.warning(f"revisions of {commit.state.slot.folder}: {problem}")
        context.add_output_metadata(commit_metadata(commit, problems))

    def load_input(self, context: dg.InputContext) -> StoredFile:
        slot = self.slot(context)
        # Adopts a file of the flat layout; a store's refusal is said as such.
        state = explained(slot.folder, lambda: repair_slot(slot, context.log.info))
        what = f"partition {self._partition_key(context)} of " if slot.legacy_key else ""
        if state.empty:
            refuse_missing_bucket(slot.folder)
            raise FileNotFoundError(
                f"no stored file for {what}{context.asset_key.to_user_string()} in "
                f"{slot.folder}; materialize it first"
            )
        for problem in state.problems:
            context.log.warning(f"revisions of {slot.folder}: {problem}")
        try:
            revision, stored = state.current()
        except RevisionError as error:
            raise RevisionError(f"{what}{context.asset_key.to_user_string()}: {error}") from None
        context.log.info(f"reading revision {revision.short} of {slot.folder}: {stored.path}")
        return StoredFile(
            name=revision.name,
            path=stored.path,
            sha256=revision.sha256,
            rows=revision.rows,
            problems=tuple(state.problems),
            slot=slot,
        )


def commit_metadata(commit: Commit, problems: list[str]) -> "dict[str, dg.RawMetadataValue]":
    """What a materialization shows about revisions: where the current one is, the one it
    replaced and the change in rows, pins, retention, and what disagreed in the manifest."""
    revision, previous, manifest = commit.revision, commit.previous, commit.state.manifest
    metadata: dict[str, dg.RawMetadataValue] = {
        "path": dg.MetadataValue.path(str(commit.path.path)),
        "manifest": dg.MetadataValue.path(str(commit.state.slot.manifest_path)),
        "revision_added": commit.added,
        "revision_changed": previous is None or previous.sha256 != revision.sha256,
        "revisions": dg.MetadataValue.int(len(manifest.revisions)),
        "previous_sha256": previous.sha256 if previous else "none",
        "pinned_sha256": manifest.pinned or "none",
    }
    if previous is not None:
        metadata["previous_file"] = previous.name
        if previous.rows is not None:
            metadata["previous_source_rows"] = dg.MetadataValue.int(previous.rows)
            if revision.rows is not None:
                change = revision.rows - previous.rows
                metadata["source_rows_change"] = dg.MetadataValue.int(change)
    if commit.pruned:
        metadata["revisions_removed"] = ", ".join(r.sha256 for r in commit.pruned)
    if problems:
        metadata["manifest_problems"] = dg.MetadataValue.md(
            "\n".join(f"- {problem}" for problem in problems)
        )
    return metadata
