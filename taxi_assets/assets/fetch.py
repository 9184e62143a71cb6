"""Fetching one published file for a raw asset: a stored revision when the partition is
pinned (or run config names one), the stored copy when upstream is unchanged, else a
download that the raw IO manager stores as a new revision (unless the bytes are known)."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg

from taxi_assets.assets.raw_revision import (
    RawRevisionConfig,
    raw_column_schema,
    stored_choice,
    stored_revision_metadata,
)
from taxi_assets.contracts import Contract
from taxi_assets.contracts.headers import header_targets
from taxi_assets.instance_reads import latest_metadata
from taxi_assets.io_managers.arrow_stats import row_count_metadata
from taxi_assets.io_managers.raw_files import KeptRevision, StagedFile
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.run_slots import record_run_host
from taxi_assets.storage.explained import explained
from taxi_assets.storage.leftovers import remove_stale_downloads
from taxi_assets.storage.revision_manifest import Revision, utc_now
from taxi_assets.storage.revision_updates import PinChange, repair
from taxi_assets.storage.revisions import SlotState, slot_for
from taxi_assets.upstream.download import (
    DownloadError,
    RemoteFile,
    SourceForbidden,
    SourceNotFound,
)
from taxi_assets.upstream.shown_url import shown_url


@dataclass(frozen=True)
class WantedFile:
    """The published file a raw asset materializes."""

    url: str
    name: str
    partition_key: str | None
    source_label: str  # which upstream: dtc, tlc, zones
    contract: Contract
    # What a 403 means for this file (TLC: "not published yet", unless the source refuses
    # access); None: a plain refusal.
    explain_forbidden: Callable[[], str] | None = None

    def forbidden(self, error: SourceForbidden) -> dg.Failure:
        """A 403 fails the run at once, without retries."""
        message = self.explain_forbidden() if self.explain_forbidden else f"{self.name}: {error}"
        return dg.Failure(description=message, allow_retries=False)


def _versioned_output(
    value: object, sha256: str, metadata: dict[str, dg.RawMetadataValue]
) -> dg.Output:
    """An output whose data version is the file's sha256, so unchanged bytes do not cascade."""
    with warnings.catch_warnings():
        # `data_version` on Output is marked beta in Dagster 1.13; it is the documented way
        # to report a data version from an asset with an IO manager.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(value, data_version=dg.DataVersion(sha256), metadata=metadata)


def fetch_published_file(
    context: dg.AssetExecutionContext,
    source: TaxiSourceResource,
    lake: LakeResource,
    wanted: WantedFile,
    config: RawRevisionConfig,
) -> dg.Output:
    """The output of one raw materialization; its data version is the bytes' sha256."""
    record_run_host(context.instance, context.run)  # before the download pool's slot matters
    # Download folders of killed runs (every raw step looks, downloading or not).
    remove_stale_downloads(Path(tempfile.gettempdir()), log=context.log.warning)
    slot = slot_for(lake.root(), context.asset_key.path, wanted.partition_key)
    # Adopts a file of the flat layout (first touch); a store's refusal is said as such.
    state = explained(slot.folder, lambda: repair(slot, context.log.info))
    reported = tuple(state.problems)
    partitioned = wanted.partition_key is not None
    choice = stored_choice(state, config, wanted.name)
    if choice is not None:
        context.log.info(f"{wanted.name}: {choice.why}")
        metadata = stored_revision_metadata(choice.revision, wanted.contract, partitioned)
        return _versioned_output(
            KeptRevision(choice.revision, choice.pin, reported),
            choice.revision.sha256,
            {**metadata, "download": choice.why},
        )
    pin = PinChange.CLEAR if config.unpin else PinChange.KEEP
    if config.unpin:
        context.log.info(f"{wanted.name}: pin removed; following upstream again")

    try:
        remote = source.head(wanted.url, log=context.log.warning)
    except SourceNotFound as missing:
        raise dg.Failure(
            description=f"{wanted.name} is {missing}", allow_retries=False
        ) from missing
    except SourceForbidden as error:
        raise wanted.forbidden(error) from error
    except DownloadError as error:
        context.log.warning(f"HEAD failed, downloading without the unchanged-file check: {error}")
        remote = None

    previous = latest_metadata(context.instance, context.asset_key, wanted.partition_key)
    unchanged = _unchanged_revision(state, remote, previous, wanted.url)
    if unchanged is not None:
        context.log.info(
            f"{wanted.name}: upstream unchanged (ETag {remote and remote.etag}); keeping "
            f"revision {unchanged.short}"
        )
        metadata = stored_revision_metadata(unchanged, wanted.contract, partitioned)
        if "dagster/column_schema" in previous and previous.get("sha256") == unchanged.sha256:
            metadata.setdefault("dagster/column_schema", previous["dagster/column_schema"])
        return _versioned_output(
            KeptRevision(unchanged, pin, reported),
            unchanged.sha256,
            {**metadata, "download": "skipped: upstream unchanged"},
        )
    return _download(context, source, wanted, state, pin, reported)


def _unchanged_revision(
    state: SlotState, remote: RemoteFile | None, previous: dict[str, object], url: str
) -> Revision | None:
    """A stored revision upstream still serves (same URL, ETag and size), if any.

    Revisions record where they came from; a file adopted from the flat layout does not,
    so the latest materialization's metadata (same sha256) speaks for it and its record
    is completed from there.
    """
    if remote is None or remote.etag is None:
        return None
    # Revisions and metadata record the URL as shown (no credentials); those written
    # before that may hold it as configured: both are compared as shown.
    upstream = (shown_url(url), remote.etag, remote.size)

    def described(record: Mapping[str, object], size: object) -> tuple[object, ...]:
        return (shown_url(str(record.get("url", ""))), record.get("etag"), size)

    for revision in reversed(state.usable()):
        if described(revision.source, revision.bytes) == upstream:
            return revision
    sha256 = previous.get("sha256")
    if described(previous, previous.get("bytes")) != upstream or state.sound(str(sha256)) is None:
        return None
    listed = state.manifest.find(str(sha256))
    if listed is None:  # pragma: no cover - sound() found it listed
        return None
    rows = previous.get("source_rows")
    if listed.rows is None and isinstance(rows, int):
        listed = replace(listed, rows=rows)
    recorded = {
        key: str(previous[key])
        for key in ("url", "etag", "last_modified")
        if previous.get(key) not in (None, "")
    }
    if isinstance(previous.get("source"), str):
        recorded["upstream"] = str(previous["source"])
    return replace(listed, source={**recorded, **listed.source})


def _not_a_published_file(
    size: int, columns: tuple[tuple[str, str], ...] | None, wanted: WantedFile
) -> str | None:
    """Why a body answered with HTTP 200 is not the published file, or None. A plain CSV
    (the zone lookup) has no gzip stream or Parquet footer to fail on, so an empty body or
    an error page served as text/plain became the current revision. A file with some of
    the contract's columns is the published file, drift and all: the lake step judges it."""
    if size == 0:
        return f"the server answered HTTP 200 with an empty body instead of {wanted.name}"
    if columns is None or not wanted.name.endswith(".csv"):
        # A gzip stream or a Parquet footer was verified: the published file, whatever its
        # header (a wholly new one is the lake step's to refuse, naming every column).
        return None
    names = [name for name, _ in columns]
    targets, _ = header_targets(names, wanted.contract)
    if any(target is not None for target in targets):
        return None
    first = ",".join(names)
    return (
        f"the answer is not {wanted.name}: its first line ({first[:80]!r}) names none of the "
        f"{wanted.contract.name} contract's columns (an error page?)"
    )


def _download(
    context: dg.AssetExecutionContext,
    source: TaxiSourceResource,
    wanted: WantedFile,
    state: SlotState,
    pin: PinChange,
    reported: tuple[str, ...],
) -> dg.Output:
    staging = Path(tempfile.mkdtemp(prefix="taxi-raw-"))
    started = time.monotonic()
    try:
        fetched = source.download(wanted.url, wanted.name, staging, log=context.log.warning)
    except SourceNotFound as missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise dg.Failure(
            description=f"{wanted.name} is {missing}", allow_retries=False
        ) from missing
    except SourceForbidden as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise wanted.forbidden(error) from error
    except DownloadError as error:
        shutil.rmtree(staging, ignore_errors=True)
        # Chained to what caused it, not to it: Dagster would show its message twice.
        raise dg.Failure(description=str(error), allow_retries=False) from error.__cause__
    elapsed = time.monotonic() - started
    not_the_file = _not_a_published_file(fetched.size, fetched.columns, wanted)
    if not_the_file is not None:
        shutil.rmtree(staging, ignore_errors=True)
        raise dg.Failure(
            description=f"{shown_url(wanted.url)}: {not_the_file}; nothing was stored",
            allow_retries=False,
        )
    known = state.manifest.find(fetched.sha256) if state.sound(fetched.sha256) else None
    download = "downloaded"
    if known is not None:
        download += f": the same bytes as stored revision {known.short}, no new revision"
    metadata: dict[str, dg.RawMetadataValue] = {
        "url": dg.MetadataValue.url(shown_url(wanted.url)),
        "file": wanted.name,
        "source": wanted.source_label,
        "bytes": dg.MetadataValue.int(fetched.size),
        "sha256": fetched.sha256,
        "etag": fetched.etag or "",
        "last_modified": fetched.last_modified or "",
        "download": download,
        "duration_s": round(elapsed, 3),
        # More than one when the source failed midway; bytes_received near bytes when the
        # download went on from where it stopped, a multiple when it started over.
        "download_attempts": dg.MetadataValue.int(fetched.attempts),
        "bytes_received": dg.MetadataValue.int(fetched.received or fetched.size),
    }
    if fetched.columns is not None:
        metadata["dagster/column_schema"] = raw_column_schema(fetched.columns, wanted.contract)
    if fetched.row_count is not None:
        metadata["source_rows"] = dg.MetadataValue.int(fetched.row_count)
        metadata.update(row_count_metadata(fetched.row_count, wanted.partition_key is not None))
        metadata["rows_per_s"] = int(fetched.row_count / elapsed) if elapsed > 0 else 0
    origin = {
        "url": shown_url(wanted.url),
        "etag": fetched.etag or "",
        "last_modified": fetched.last_modified or "",
        "upstream": wanted.source_label,
    }
    revision = Revision(
        sha256=fetched.sha256,
        name=wanted.name,
        bytes=fetched.size,
        added_at=utc_now(),
        origin="download",
        rows=fetched.row_count,
        source={k: v for k, v in origin.items() if v},
        columns=fetched.columns,
    )
    return _versioned_output(
        StagedFile(revision, fetched.local_path, staging, pin, reported), fetched.sha256, metadata
    )
