"""Raw revisions through the real assets: a republished month, the same bytes again, files
of the earlier flat layout, a manifest that disagrees with the files, retention."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from taxi_assets.devdata import write_month
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.lake_stores import PREFIX, LakeStore
from taxi_assets_tests.pipeline import (
    current_raw_file,
    materialization_metadata,
    pipeline_resources,
    raw_manifest,
    run,
    warehouse_counts,
    warehouse_loads,
)

MONTH = "2021-01"
YELLOW = "yellow_tripdata"
NAME = f"{YELLOW}_{MONTH}.csv.gz"
CSV = f"/yellow/{NAME}"
FILE_KEYS = [f"raw/{YELLOW}", f"lake/{YELLOW}"]
ALL_KEYS = [*FILE_KEYS, f"warehouse/{YELLOW}"]
FIRST_ROWS = 2000  # conftest's ROWS: the mirror's generated months
REPUBLISHED_ROWS = 1234


def republish(mirror: FaultyMirror, rows: int, seed: int) -> bytes:
    """TLC republishes the month: other bytes, another row count, a new ETag."""
    write_month(
        Path(mirror.root), source="dtc", service="yellow", month=MONTH, rows=rows, seed=seed
    )
    return (Path(mirror.root) / "yellow" / NAME).read_bytes()


class Lake:
    """The test lake on any store (``lake_store``), read the same way."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store
        self.config: Path | None = None  # the lake from TAXI_LAKE_URL, set by the store

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Files under ``prefix`` (relative to the lake root): path -> bytes."""
        found = self.store.objects(f"{PREFIX}/{prefix}")
        return {name.removeprefix(f"{PREFIX}/"): data for name, data in found.items()}

    def manifest(self) -> dict[str, Any]:
        return json.loads(
            self.objects(f"raw/{YELLOW}/{MONTH}")[f"raw/{YELLOW}/{MONTH}/revisions.json"]
        )


def test_a_republished_month_is_a_second_revision_and_replaces_lake_and_warehouse(
    lake_store: LakeStore,
    own_mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    instance: dg.DagsterInstance,
) -> None:
    lake = Lake(lake_store)
    resources = pipeline_resources(own_mirror.url, lake.config, pg_url)
    original = (Path(own_mirror.root) / "yellow" / NAME).read_bytes()
    first = run(ALL_KEYS, resources, instance, MONTH)
    first_raw = materialization_metadata(first, f"raw/{YELLOW}")
    assert first_raw["previous_sha256"] == "none" and first_raw["revisions"] == 1
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: FIRST_ROWS}
    first_load = warehouse_loads(pg_url)[(f"warehouse.{YELLOW}", MONTH)]
    assert (first_load["source_sha256"], first_load["row_count"]) == (
        first_raw["sha256"],
        FIRST_ROWS,
    )
    first_warehouse = materialization_metadata(first, f"warehouse/{YELLOW}")
    assert first_warehouse["previous_source_sha256"] == "none"
    assert "row_count_change" not in first_warehouse

    republished = republish(own_mirror, REPUBLISHED_ROWS, seed=7)
    second = run(ALL_KEYS, resources, instance, MONTH)
    raw = materialization_metadata(second, f"raw/{YELLOW}")
    old_sha, new_sha = first_raw["sha256"], raw["sha256"]
    assert old_sha != new_sha
    # The UI metadata: the revision, the one it replaced, and the row difference.
    assert raw["previous_sha256"] == old_sha and raw["revision_changed"] is True
    assert raw["previous_source_rows"] == FIRST_ROWS
    assert raw["source_rows"] == REPUBLISHED_ROWS
    assert raw["source_rows_change"] == REPUBLISHED_ROWS - FIRST_ROWS
    assert raw["revisions"] == 2 and raw["revision_added"] is True
    lake_meta = materialization_metadata(second, f"lake/{YELLOW}")
    assert lake_meta["source_sha256"] == new_sha
    assert lake_meta["previous_source_sha256"] == old_sha
    assert lake_meta["dagster/partition_row_count"] == REPUBLISHED_ROWS
    assert warehouse_counts(pg_url, YELLOW) == {MONTH: REPUBLISHED_ROWS}
    # warehouse.loads: one row for the month, now naming the new revision; the warehouse
    # materialization shows both revisions and the row difference.
    loads = warehouse_loads(pg_url)
    assert list(loads) == [(f"warehouse.{YELLOW}", MONTH)]
    load = loads[(f"warehouse.{YELLOW}", MONTH)]
    assert (load["source_sha256"], load["source_file"], load["row_count"]) == (
        new_sha,
        NAME,
        REPUBLISHED_ROWS,
    )
    assert load["run_id"] == second.run_id and load["loaded_at"] > first_load["loaded_at"]
    shown = materialization_metadata(second, f"warehouse/{YELLOW}")
    assert (shown["source_sha256"], shown["previous_source_sha256"]) == (new_sha, old_sha)
    assert shown["revision_changed"] is True
    assert shown["previous_row_count"] == FIRST_ROWS
    assert shown["row_count_change"] == REPUBLISHED_ROWS - FIRST_ROWS
    assert shown["previous_run_id"] == first.run_id

    # Both revisions are stored byte for byte; the manifest names the new one current.
    raw_files = lake.objects(f"raw/{YELLOW}")
    month = f"raw/{YELLOW}/{MONTH}"
    assert raw_files == {
        f"{month}/{old_sha}/{NAME}": original,
        f"{month}/{new_sha}/{NAME}": republished,
        f"{month}/revisions.json": raw_files[f"{month}/revisions.json"],
    }
    manifest = lake.manifest()
    assert manifest["current"] == new_sha and manifest["pinned"] is None
    assert [(r["sha256"], r["rows"]) for r in manifest["revisions"]] == [
        (old_sha, FIRST_ROWS),
        (new_sha, REPUBLISHED_ROWS),
    ]
    # The lake file records the revision it was parsed from.
    (lake_file,) = lake.objects(f"lake/{YELLOW}").values()
    lineage = pq.ParquetFile(io.BytesIO(lake_file)).schema_arrow.metadata
    assert lineage[b"source_sha256"].decode() == new_sha
    assert lineage[b"source_file"].decode() == NAME


def test_the_same_bytes_downloaded_again_make_no_new_revision(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    first = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    # A new modification time: the mirror's ETag changes, the bytes do not.
    upstream = Path(own_mirror.root) / "yellow" / NAME
    os.utime(upstream, ns=(upstream.stat().st_atime_ns, upstream.stat().st_mtime_ns + 10**9))
    again = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    assert own_mirror.requests_seen(CSV).count("GET") == 2  # downloaded again...
    assert again["download"].startswith("downloaded: the same bytes as stored revision")
    assert again["sha256"] == first["sha256"]
    assert (again["revisions"], again["revision_added"], again["revision_changed"]) == (
        1,
        False,
        False,
    )
    assert again["previous_sha256"] == first["sha256"] and again["source_rows_change"] == 0
    manifest = raw_manifest(lake, YELLOW, MONTH)
    assert len(manifest["revisions"]) == 1
    assert manifest["revisions"][0]["source"]["etag"] == again["etag"]  # the newest ETag

    # Unchanged upstream (same ETag): no download at all, the stored revision stays.
    third = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    assert third["download"] == "skipped: upstream unchanged"
    assert own_mirror.requests_seen(CSV).count("GET") == 2


def flatten(lake: Path, dataset: str, month: str | None) -> Path:
    """The raw file as an earlier version stored it: ``<lake>/raw/<dataset>/<name>``."""
    current = current_raw_file(lake, dataset, month)
    flat = lake / "raw" / dataset / current.name
    current.rename(flat)
    shutil.rmtree(lake / "raw" / dataset / month if month else current.parent)
    if month is None:
        (lake / "raw" / dataset / "revisions.json").unlink()
    return flat


def test_files_of_the_flat_layout_are_adopted_without_downloading_again(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    first = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    flat = flatten(lake, YELLOW, MONTH)

    result = run(FILE_KEYS, resources, instance, MONTH)
    raw = materialization_metadata(result, f"raw/{YELLOW}")
    assert own_mirror.requests_seen(CSV).count("GET") == 1  # adopted, not downloaded again
    assert not flat.exists()
    assert raw["download"] == "skipped: upstream unchanged"
    assert (raw["sha256"], raw["revision_origin"]) == (first["sha256"], "adopted")
    assert raw["source_rows"] == FIRST_ROWS  # completed from the earlier materialization
    (revision,) = raw_manifest(lake, YELLOW, MONTH)["revisions"]
    assert revision["rows"] == FIRST_ROWS and revision["source"]["url"].endswith(CSV)
    assert materialization_metadata(result, f"lake/{YELLOW}")["source_sha256"] == first["sha256"]

    # The zone lookup too; and here the lake step is the first touch.
    zones = ["raw/taxi_zone_lookup", "lake/taxi_zones"]
    assert run(zones, resources, instance).success
    flat = flatten(lake, "taxi_zone_lookup", None)
    lake_only = run("lake/taxi_zones", resources, instance)
    assert not flat.exists() and current_raw_file(lake, "taxi_zone_lookup").name == flat.name
    assert materialization_metadata(lake_only, "lake/taxi_zones")["dagster/row_count"] == 265


def test_a_manifest_that_disagrees_with_the_files_is_reported_and_never_trusted(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    first = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    republish(own_mirror, REPUBLISHED_ROWS, seed=7)
    second = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")

    # The current revision's file disappears: the lake step refuses to guess.
    current = current_raw_file(lake, YELLOW, MONTH)
    current.unlink()
    failed = run(f"lake/{YELLOW}", resources, instance, MONTH, raise_on_error=False)
    assert not failed.success
    error = str(failed.get_step_failure_events()[0].step_failure_data.error)
    assert f"current revision {second['sha256'][:12]}" in error and "is missing" in error
    assert first["sha256"] in error  # the revisions that could be pinned instead

    # Materializing the raw month downloads it again (the same bytes restore the revision),
    # and reports what it found in the run's metadata.
    restored = run(FILE_KEYS, resources, instance, MONTH)
    raw = materialization_metadata(restored, f"raw/{YELLOW}")
    assert raw["download"] == "downloaded" and raw["sha256"] == second["sha256"]
    assert "is missing" in raw["manifest_problems"]
    assert current.exists() and raw["revisions"] == 2

    # An unlisted revision file, and a listed one gone: listed / forgotten, and reported.
    stray = current.parent.parent / ("0" * 64)
    stray.mkdir()
    (stray / NAME).write_bytes(b"not what its name says")
    shutil.rmtree(lake / "raw" / YELLOW / MONTH / first["sha256"])
    again = run(FILE_KEYS, resources, instance, MONTH)
    problems = materialization_metadata(again, f"raw/{YELLOW}")["manifest_problems"]
    assert "hash to" in problems and "forgotten" in problems
    assert "hash to" in materialization_metadata(again, f"lake/{YELLOW}")["raw_manifest_problems"]
    logged = [
        entry.user_message
        for entry in instance.all_logs(again.run_id)
        if entry.level == logging.WARNING
    ]
    assert any("hash to" in line and str(stray) in line for line in logged)  # the run log
    assert [r["sha256"] for r in raw_manifest(lake, YELLOW, MONTH)["revisions"]] == [
        second["sha256"]
    ]


def test_retention_keeps_the_last_n_revisions(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    monkeypatch.setenv("TAXI_RAW_KEEP_REVISIONS", "zero")
    refused = run(f"raw/{YELLOW}", resources, instance, MONTH, raise_on_error=False)
    assert not refused.success and own_mirror.requests_seen(CSV) == []  # before any request
    errors = " ".join(str(e.event_specific_data) for e in refused.all_events if e.is_failure)
    assert "$TAXI_RAW_KEEP_REVISIONS: keep 'zero' revisions: expected 'all'" in errors

    monkeypatch.setenv("TAXI_RAW_KEEP_REVISIONS", "1")
    first = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    republish(own_mirror, REPUBLISHED_ROWS, seed=7)
    second = materialization_metadata(run(FILE_KEYS, resources, instance, MONTH), f"raw/{YELLOW}")
    assert second["revisions_removed"] == first["sha256"] and second["revisions"] == 1
    assert sorted(p.name for p in (lake / "raw" / YELLOW / MONTH).iterdir()) == [
        second["sha256"],
        "revisions.json",
    ]
