"""Fetching one published file for a raw asset, skipping it when upstream is unchanged."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from taxi_assets.contracts import Contract
from taxi_assets.contracts.headers import header_targets
from taxi_assets.io_managers.arrow_stats import row_count_metadata
from taxi_assets.io_managers.raw_files import StagedFile, UnchangedFile
from taxi_assets.materializations import latest_metadata
from taxi_assets.resources.lake import LakeResource
from taxi_assets.resources.source import TaxiSourceResource
from taxi_assets.upstream.download import DownloadError, SourceForbidden, SourceNotFound

# Metadata of the previous materialization carried over when the download is skipped.
CARRIED_KEYS = (
    "url",
    "file",
    "bytes",
    "sha256",
    "etag",
    "last_modified",
    "source_rows",
    "path",
    "dagster/column_schema",
)


def raw_column_schema(columns: tuple[tuple[str, str], ...], contract: Contract) -> dg.TableSchema:
    """The file's own columns (as published), each described by the contract column it
    feeds in the lake, so the UI shows what the lake step will make of the file."""
    targets, _ = header_targets([name for name, _ in columns], contract)
    described = []
    for (name, type_name), target in zip(columns, targets, strict=True):
        if target is None:
            description = f"not in the {contract.name} contract: the lake step will reject the file"
        else:
            column = contract.column(target)
            description = f"-> {target} ({column.type}): {column.description}"
        described.append(dg.TableColumn(name=name, type=type_name, description=description))
    return dg.TableSchema(columns=described)


def _versioned_output(
    value: object, sha256: str, metadata: dict[str, dg.RawMetadataValue]
) -> dg.Output:
    """An output whose data version is the file's sha256, so unchanged bytes do not cascade."""
    with warnings.catch_warnings():
        # `data_version` on Output is marked beta in Dagster 1.13; it is the documented way
        # to report a data version from an asset with an IO manager.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(value, data_version=dg.DataVersion(sha256), metadata=metadata)


def _still_stored(previous: dict[str, object], lake: LakeResource) -> bool:
    path = previous.get("path")
    if not isinstance(path, str):
        return False
    stored = lake.resolve(path)
    return stored.exists() and stored.stat().st_size == previous.get("bytes")


def fetch_published_file(
    context: dg.AssetExecutionContext,
    source: TaxiSourceResource,
    lake: LakeResource,
    url: str,
    name: str,
    partition_key: str | None,
    source_label: str,
    contract: Contract,
    explain_forbidden: Callable[[], str] | None = None,
) -> dg.Output:
    """Download ``url`` (or keep the stored copy when upstream's ETag and size match).

    A 404 or a 403 fails the run at once, without retries; ``explain_forbidden`` says what
    a 403 means for this file (TLC: "not published yet", unless the source refuses access).
    """
    log = context.log.warning

    def forbidden(error: SourceForbidden) -> dg.Failure:
        message = explain_forbidden() if explain_forbidden else f"{name}: {error}"
        return dg.Failure(description=message, allow_retries=False)

    try:
        remote = source.head(url, log=log)
    except SourceNotFound as missing:
        raise dg.Failure(description=f"{name} is {missing}", allow_retries=False) from missing
    except SourceForbidden as error:
        raise forbidden(error) from error
    except DownloadError as error:
        context.log.warning(f"HEAD failed, downloading without the unchanged-file check: {error}")
        remote = None

    previous = latest_metadata(context.instance, context.asset_key, partition_key)
    if (
        remote is not None
        and previous
        and remote.etag is not None
        and previous.get("url") == url
        and previous.get("etag") == remote.etag
        and previous.get("bytes") == remote.size
        and _still_stored(previous, lake)
    ):
        context.log.info(
            f"{name}: upstream unchanged (ETag {remote.etag}); keeping the stored copy"
        )
        carried = {k: previous[k] for k in CARRIED_KEYS if k in previous and k != "path"}
        return _versioned_output(
            UnchangedFile(name=name),
            str(previous["sha256"]),
            {**carried, "download": "skipped: upstream unchanged"},
        )

    staging = Path(tempfile.mkdtemp(prefix="taxi-raw-"))
    started = time.monotonic()
    try:
        fetched = source.download(url, name, staging, log=log)
    except SourceNotFound as missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise dg.Failure(description=f"{name} is {missing}", allow_retries=False) from missing
    except SourceForbidden as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise forbidden(error) from error
    except DownloadError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise dg.Failure(description=str(error), allow_retries=False) from error
    elapsed = time.monotonic() - started
    metadata: dict[str, dg.RawMetadataValue] = {
        "url": dg.MetadataValue.url(url),
        "file": name,
        "source": source_label,
        "bytes": dg.MetadataValue.int(fetched.size),
        "sha256": fetched.sha256,
        "etag": fetched.etag or "",
        "last_modified": fetched.last_modified or "",
        "download": "downloaded",
        "duration_s": round(elapsed, 3),
    }
    if fetched.columns is not None:
        metadata["dagster/column_schema"] = raw_column_schema(fetched.columns, contract)
    if fetched.row_count is not None:
        metadata["source_rows"] = dg.MetadataValue.int(fetched.row_count)
        metadata.update(row_count_metadata(fetched.row_count, partition_key is not None))
        metadata["rows_per_s"] = int(fetched.row_count / elapsed) if elapsed > 0 else 0
    return _versioned_output(
        StagedFile(name=name, local_path=fetched.local_path, scratch_dir=staging),
        fetched.sha256,
        metadata,
    )
