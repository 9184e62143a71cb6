"""Which stored revision a raw materialization makes current without downloading: one
named in run config (which pins it), or the partition's pin. Also the metadata a stored
revision shows, rebuilt from its manifest record."""

from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from taxi_assets.contracts import Contract
from taxi_assets.contracts.headers import header_targets
from taxi_assets.contracts.parquet_reader import PANDAS_ROW_NUMBER
from taxi_assets.io_managers.arrow_stats import row_count_metadata
from taxi_assets.storage.revision_manifest import Revision
from taxi_assets.storage.revision_updates import PinChange
from taxi_assets.storage.revisions import RevisionError, SlotState
from taxi_assets.upstream.shown_url import shown_url

UNPIN_COMMAND = "python -m taxi_assets.cli raw unpin"


class RawRevisionConfig(dg.Config):
    """Run config of a raw asset: rebuild a month from an older revision, or stop doing so."""

    revision: str | None = Field(
        default=None,
        description=(
            "sha256 (or a unique prefix) of a stored revision: pin the month to it and make "
            "it current without downloading, so lake and warehouse rebuild from it. The pin "
            f"holds (sensor and schedule too) until `unpin` here or `{UNPIN_COMMAND}`."
        ),
    )
    unpin: bool = Field(
        default=False,
        description="Remove the month's pin and fetch the newest upstream file again.",
    )


@dataclass(frozen=True)
class StoredChoice:
    revision: Revision
    pin: PinChange
    why: str  # for the `download` metadata entry


def stored_choice(state: SlotState, config: RawRevisionConfig, what: str) -> StoredChoice | None:
    """The stored revision to make current instead of looking upstream, or None.

    Fails (not retried) for a revision that does not exist or is not usable, listing the
    revisions that are.
    """
    if config.revision and config.unpin:
        raise dg.Failure("run config sets both `revision` and `unpin`", allow_retries=False)
    try:
        if config.revision:
            revision = state.resolve(config.revision)
            why = f"skipped: revision {revision.short} from run config, now pinned"
            return StoredChoice(revision, PinChange.SET, why)
        pinned = state.manifest.pinned
        if pinned is None or config.unpin:
            return None
        revision = state.resolve(pinned)
    except RevisionError as error:
        raise dg.Failure(f"{what}: {error}", allow_retries=False) from error
    why = f"skipped: pinned to revision {revision.short} (`{UNPIN_COMMAND}` to follow upstream)"
    return StoredChoice(revision, PinChange.KEEP, why)


def raw_column_schema(columns: tuple[tuple[str, str], ...], contract: Contract) -> dg.TableSchema:
    """The file's own columns (as published), each described by the contract column it
    feeds in the lake, so the UI shows what the lake step will make of the file."""
    targets, _ = header_targets([name for name, _ in columns], contract)
    described = []
    for (name, type_name), target in zip(columns, targets, strict=True):
        if target is None and PANDAS_ROW_NUMBER.fullmatch(name):
            description = "the row number pandas wrote the file with: not loaded"
        elif target is None:
            description = f"not in the {contract.name} contract: the lake step will reject the file"
        else:
            column = contract.column(target)
            description = f"-> {target} ({column.type}): {column.description}"
        described.append(dg.TableColumn(name=name, type=type_name, description=description))
    return dg.TableSchema(columns=described)


def stored_revision_metadata(
    revision: Revision, contract: Contract, partitioned: bool
) -> "dict[str, dg.RawMetadataValue]":
    """The download metadata of a stored revision, from what its manifest recorded."""
    source = revision.source
    metadata: dict[str, dg.RawMetadataValue] = {
        "file": revision.name,
        "bytes": dg.MetadataValue.int(revision.bytes),
        "sha256": revision.sha256,
        "etag": source.get("etag", ""),
        "last_modified": source.get("last_modified", ""),
        "revision_added_at": revision.added_at,
        "revision_origin": revision.origin,
    }
    if "url" in source:
        # Masked here too: a revision recorded by an earlier version holds the URL as
        # configured, credentials included.
        metadata["url"] = dg.MetadataValue.url(shown_url(source["url"]))
    if "upstream" in source:
        metadata["source"] = source["upstream"]
    if revision.rows is not None:
        metadata["source_rows"] = dg.MetadataValue.int(revision.rows)
        metadata.update(row_count_metadata(revision.rows, partitioned))
    if revision.columns is not None:
        metadata["dagster/column_schema"] = raw_column_schema(revision.columns, contract)
    return metadata
