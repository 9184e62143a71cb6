"""The lake on Google Cloud Storage: the real assets against a local GCS emulator.

Same assertions as the local lake (layout, row counts, replacing a month, nothing partial
after a failure), with ``TAXI_LAKE_URL=gs://taxi-lake/nyc`` read by the IO managers.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import dagster as dg
import gcsfs
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from taxi_assets.devdata import write_month
from taxi_assets.storage import check as lake_check
from taxi_assets.storage import gcs as gcs_settings
from taxi_assets.storage import publish
from taxi_assets.storage.gcs import GcsConfigurationError
from taxi_assets.storage.publish import publish_file
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.faults_support import add_column
from taxi_assets_tests.gcs_emulator import (
    BUCKET,
    GcsEmulator,
    fake_service_account,
    speed_up_gcs_retries,
)
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

MONTH = "2021-01"
LAKE_URL = f"gs://{BUCKET}/nyc"
RAW_MONTH = "nyc/raw/yellow_tripdata/2021-01"
RAW_MANIFEST = f"{RAW_MONTH}/revisions.json"
LAKE_OBJECT = "nyc/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
UPLOADS = r"^/upload/storage/v1/b/taxi-lake/o"


@pytest.fixture
def fast_gcs_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    speed_up_gcs_retries(monkeypatch)


@pytest.fixture
def gcs_lake(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """The emulator, with the lake configured the production way: ``TAXI_LAKE_URL``."""
    monkeypatch.setenv("TAXI_LAKE_URL", LAKE_URL)
    return gcs


def gcs_resources(mirror_url: str, pg_url: str | None = None, source: str = "dtc") -> dict:
    # The lake from the environment, as in definitions.py.
    return pipeline_resources(mirror_url, None, pg_url, source=source)


def csv_rows(data: bytes) -> int:
    lines = gzip.decompress(data).decode().splitlines()
    return len([line for line in lines if line.strip()]) - 1


def test_raw_lake_and_warehouse_on_gcs(
    gcs_lake: GcsEmulator, mirror: FaultyMirror, pg_url: str, instance: dg.DagsterInstance
) -> None:
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    result = run(keys, gcs_resources(mirror.url, pg_url), instance, MONTH)
    assert result.success

    raw_meta = materialization_metadata(result, "raw/yellow_tripdata")
    raw_object = f"{RAW_MONTH}/{raw_meta['sha256']}/yellow_tripdata_2021-01.csv.gz"
    stored = gcs_lake.objects(prefix="nyc/")
    # Nothing staged, nothing hidden: the revision, its manifest, the lake file.
    assert sorted(stored) == sorted([LAKE_OBJECT, RAW_MANIFEST, raw_object])
    upstream = (Path(mirror.root) / "yellow" / "yellow_tripdata_2021-01.csv.gz").read_bytes()
    assert stored[raw_object] == upstream
    assert json.loads(stored[RAW_MANIFEST])["current"] == raw_meta["sha256"]
    rows = csv_rows(upstream)
    parquet = pq.ParquetFile(io.BytesIO(stored[LAKE_OBJECT]))
    assert parquet.metadata.num_rows == rows
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"

    assert raw_meta["path"] == f"gs://{BUCKET}/{raw_object}"
    lake_meta = materialization_metadata(result, "lake/yellow_tripdata")
    assert lake_meta["path"] == f"gs://{BUCKET}/{LAKE_OBJECT}"
    assert lake_meta["dagster/partition_row_count"] == rows
    # The warehouse loaded from the gs:// lake (pyarrow through gcsfs).
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: rows}
    assert gcs_lake.pending_uploads() == 0

    # What BigQuery, DuckDB or Spark see: one Hive-partitioned dataset under lake/.
    fs = gcsfs.GCSFileSystem(token="anon", project="test")
    dataset = pads.dataset(
        f"{BUCKET}/nyc/lake/yellow_tripdata",
        format="parquet",
        partitioning="hive",
        filesystem=pafs.PyFileSystem(pafs.FSSpecHandler(fs)),
    )
    assert dataset.count_rows() == rows
    assert {"year", "month"} <= set(dataset.schema.names)


def test_replacing_a_month_on_gcs(
    gcs_lake: GcsEmulator, own_mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata"]
    resources = gcs_resources(own_mirror.url)
    assert run(keys, resources, instance, MONTH).success
    first_generation = gcs_lake.generation(LAKE_OBJECT)

    # Unchanged upstream: the stored object is found on GCS and kept.
    again = run(keys, resources, instance, MONTH)
    assert materialization_metadata(again, "raw/yellow_tripdata")["download"] == (
        "skipped: upstream unchanged"
    )

    write_month(
        Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=1234, seed=7
    )
    third = run(keys, resources, instance, MONTH)
    assert materialization_metadata(third, "raw/yellow_tripdata")["download"] == "downloaded"
    stored = gcs_lake.objects(prefix="nyc/lake/")
    assert list(stored) == [LAKE_OBJECT]  # the same object, replaced
    assert pq.ParquetFile(io.BytesIO(stored[LAKE_OBJECT])).metadata.num_rows == 1234
    assert gcs_lake.generation(LAKE_OBJECT) != first_generation


def test_switching_source_keeps_both_raw_objects_as_revisions(
    gcs_lake: GcsEmulator, mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    assert run("raw/green_tripdata", gcs_resources(mirror.url), instance, MONTH).success
    assert run("raw/green_tripdata", gcs_resources(mirror.url, source="tlc"), instance, MONTH)
    objects = gcs_lake.objects(prefix="nyc/raw/green_tripdata/")
    names = sorted(name.rsplit("/", 1)[1] for name in objects)
    assert names == [
        "green_tripdata_2021-01.csv.gz",
        "green_tripdata_2021-01.parquet",
        "revisions.json",
    ]
    manifest = json.loads(objects["nyc/raw/green_tripdata/2021-01/revisions.json"])
    (current,) = [r for r in manifest["revisions"] if r["sha256"] == manifest["current"]]
    assert current["name"] == "green_tripdata_2021-01.parquet"


def test_a_rejected_month_leaves_nothing_in_the_gcs_lake(
    gcs_lake: GcsEmulator, own_mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    target = Path(own_mirror.root) / "green" / "green_tripdata_2021-01.csv.gz"
    add_column(target, "mystery_fee", "1.5")
    result = run(
        ["raw/green_tripdata", "lake/green_tripdata"],
        gcs_resources(own_mirror.url),
        instance,
        MONTH,
        raise_on_error=False,
    )
    assert not result.success
    assert "mystery_fee" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert gcs_lake.objects(prefix="nyc/lake/") == {}
    assert gcs_lake.pending_uploads() == 0


def big_file(path: Path, size: int = 6 * 1024 * 1024) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_a_failed_upload_keeps_the_previous_object(
    gcs: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = resolve_root(LAKE_URL) / "lake" / "big" / "big.parquet"
    (tmp_path / "v1").write_bytes(b"version 1")
    publish_file(tmp_path / "v1", dest)

    # A 6 MiB file goes as a resumable upload, here in 1 MiB chunks; the 3rd chunk is
    # refused for good (400 is not retried).
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", 1024 * 1024)
    big_file(tmp_path / "v2")
    gcs.inject("POST", r"upload_id=", 400, after=2)
    with pytest.raises(Exception, match="injected fault"):
        publish_file(tmp_path / "v2", dest)

    assert gcs.objects(prefix="nyc/") == {"nyc/lake/big/big.parquet": b"version 1"}
    assert gcs.pending_uploads() == 0  # the upload session was cancelled
    assert not (tmp_path / "v2").exists()


@pytest.mark.usefixtures("fast_gcs_retries")
def test_uploads_retry_throttling_and_server_errors(gcs: GcsEmulator, tmp_path: Path) -> None:
    root = resolve_root(LAKE_URL)
    (tmp_path / "small").write_bytes(b"x" * 1000)
    gcs.inject("POST", UPLOADS, 429, 503, 500)
    publish_file(tmp_path / "small", root / "small")
    assert gcs.requests_to("POST", UPLOADS) == 4

    # A chunk of a resumable upload that fails twice is sent again.
    data = big_file(tmp_path / "big")
    gcs.inject("POST", r"upload_id=", 503, 429)
    publish_file(tmp_path / "big", root / "big")
    assert gcs.objects(prefix="nyc/big") == {"nyc/big": data}

    # gcsfs gives up after 6 tries of one request; the whole upload then starts again.
    (tmp_path / "again").write_bytes(b"y" * 1000)
    gcs.inject("POST", UPLOADS, *[503] * 6)
    before = gcs.requests_to("POST", UPLOADS)
    publish_file(tmp_path / "again", root / "again")
    assert gcs.requests_to("POST", UPLOADS) - before == 7
    assert gcs.objects(prefix="nyc/again") == {"nyc/again": b"y" * 1000}

    # Not transient: no retry, and the error says what happened.
    (tmp_path / "denied").write_bytes(b"z")
    gcs.inject("POST", UPLOADS, 403)
    before = gcs.requests_to("POST", UPLOADS)
    with pytest.raises(OSError, match="Forbidden"):
        publish_file(tmp_path / "denied", root / "denied")
    assert gcs.requests_to("POST", UPLOADS) - before == 1


@pytest.mark.parametrize(
    "url",
    ["gs://", "gs:///prefix", "gs://Upper_Case/x", "gs://b/../x", "gs://bucket//x"],
)
def test_bad_gcs_urls_are_rejected(url: str) -> None:
    with pytest.raises(GcsConfigurationError):
        resolve_root(url)


def test_gcs_roots_and_project(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    root = resolve_root("gcs://taxi-lake/nyc/")
    assert (str(root), root.path, root.protocol) == ("gs://taxi-lake/nyc", "taxi-lake/nyc", "gs")
    assert root.fs.project == gcs_settings.EMULATOR_PROJECT
    monkeypatch.setenv("TAXI_GCP_PROJECT", "nyc-taxi-prod")
    assert resolve_root(LAKE_URL).fs.project == "nyc-taxi-prod"
    assert resolve_root("gs://taxi-lake").path == "taxi-lake/"
    assert lake_check.check(LAKE_URL).startswith("gs://taxi-lake/nyc: reachable and writable")
    with pytest.raises(GcsConfigurationError, match="does not exist"):
        lake_check.check("gs://no-such-bucket/x")
    assert gcs.objects() == {}  # the probe object is gone


def test_credentials_come_from_the_service_account_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.oauth2 import service_account

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("TAXI_GCP_PROJECT", raising=False)
    key_file = tmp_path / "sa.json"
    info = fake_service_account(key_file)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    options = gcs_settings.gcs_storage_options()
    assert isinstance(options["token"], service_account.Credentials)
    assert options["token"].service_account_email == info["client_email"]
    assert options["project"] == "taxi-sa-project"  # from the key file...
    monkeypatch.setenv("TAXI_GCP_PROJECT", "billing-project")
    assert gcs_settings.gcs_storage_options()["project"] == "billing-project"  # ...or configured

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(GcsConfigurationError) as raised:
        gcs_settings.gcs_storage_options()
    assert "missing.json" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
