"""The lake on every store: a local folder, Google Cloud Storage, Amazon S3, Azure Blob Storage.

One suite, parametrized by store (``lake_store``: all four; ``object_store``: the three
object stores), against real servers on 127.0.0.1 (the GCS emulator, moto_server,
Azurite) configured the production way: ``TAXI_LAKE_URL`` and the provider's own
environment. Faults are real HTTP answers from a proxy in front of each server.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from taxi_assets.assets.analytics.monthly_zone_stats import write_chart
from taxi_assets.devdata import write_month
from taxi_assets.io_managers.arrow_stats import StreamStats
from taxi_assets.io_managers.lake_files import LakeFileChanged, LakeFileDamaged, LakeFiles
from taxi_assets.io_managers.parquet_lake import arrow_filesystem, write_parquet_stream
from taxi_assets.month_status import Layer, collect
from taxi_assets.resources import LakeResource
from taxi_assets.storage import gcs as gcs_settings
from taxi_assets.storage import publish, read_retries, silent_peers, transient
from taxi_assets.storage import s3 as s3_settings
from taxi_assets.storage.errors import LakeAccessError
from taxi_assets.storage.publish import publish_file
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.faults_support import (
    add_column,
    failure_messages,
    step_failure,
    wait_for,
)
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.lake_stores import (
    BUCKET,
    LakeStore,
    S3Store,
    forget_filesystems,
    kill_an_upload,
)
from taxi_assets_tests.pipeline import (
    materialization_metadata,
    pipeline_resources,
    run,
    warehouse_counts,
)

MONTH = "2021-01"
RAW_MONTH = "nyc/raw/yellow_tripdata/2021-01"  # the month's revisions and their manifest
RAW_MANIFEST = f"{RAW_MONTH}/revisions.json"
LAKE_OBJECT = "nyc/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
CHUNK = 5 * 1024 * 1024  # the smallest part S3 accepts
BIG = 12 * 1024 * 1024  # three parts of CHUNK: a multipart upload, blocks, a resumable upload


def env_resources(mirror_url: str, pg_url: str | None = None, source: str = "dtc") -> dict:
    # The lake from the environment, as in definitions.py.
    return pipeline_resources(mirror_url, None, pg_url, source=source)


def csv_rows(data: bytes) -> int:
    lines = gzip.decompress(data).decode().splitlines()
    return len([line for line in lines if line.strip()]) - 1


def visible(store: LakeStore, prefix: str = "nyc/") -> dict[str, bytes]:
    return store.objects(prefix)


# --- the pipeline on every store ------------------------------------------------------------


def test_raw_lake_and_warehouse(
    lake_store: LakeStore, mirror: FaultyMirror, pg_url: str, instance: dg.DagsterInstance
) -> None:
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    result = run(keys, env_resources(mirror.url, pg_url), instance, MONTH)
    assert result.success

    raw_meta = materialization_metadata(result, "raw/yellow_tripdata")
    raw_object = f"{RAW_MONTH}/{raw_meta['sha256']}/yellow_tripdata_2021-01.csv.gz"
    stored = visible(lake_store)
    # Nothing staged, nothing hidden: the raw revision, its manifest, the lake file.
    assert sorted(stored) == sorted([LAKE_OBJECT, RAW_MANIFEST, raw_object])
    upstream = (Path(mirror.root) / "yellow" / "yellow_tripdata_2021-01.csv.gz").read_bytes()
    assert stored[raw_object] == upstream  # byte for byte
    assert json.loads(stored[RAW_MANIFEST])["current"] == raw_meta["sha256"]
    rows = csv_rows(upstream)
    parquet = pq.ParquetFile(io.BytesIO(stored[LAKE_OBJECT]))
    assert parquet.metadata.num_rows == rows
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"

    assert raw_meta["path"] == lake_store.uri(raw_object)
    lake_meta = materialization_metadata(result, "lake/yellow_tripdata")
    assert lake_meta["path"] == lake_store.uri(LAKE_OBJECT)
    assert lake_meta["dagster/partition_row_count"] == rows
    # The checks read the lake file back through the store (rows_match_raw, the schema...).
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} >= {"rows_match_raw", "schema_matches_contract"}
    assert all(e.passed for e in evaluations), [(e.check_name, e.passed) for e in evaluations]
    # The warehouse loaded from the lake (pyarrow through the store's filesystem).
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: rows}
    assert lake_store.pending_uploads() == 0

    # What DuckDB, Spark or an external table see: one Hive-partitioned dataset under lake/.
    folder = resolve_root(lake_store.url) / "lake" / "yellow_tripdata"
    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(folder.fs))
    dataset = pads.dataset(
        folder.path, format="parquet", partitioning="hive", filesystem=filesystem
    )
    assert dataset.count_rows() == rows
    assert {"year", "month"} <= set(dataset.schema.names)

    # `months status` finds the month from one listing of the store (its paths' form is
    # the store's own) and reads the raw manifest and the lake footer through it.
    (status,) = collect(resolve_root(lake_store.url), {}, ["yellow"])
    assert (status.month, status.raw, status.lake) == (
        MONTH,
        Layer(raw_meta["sha256"], rows),
        Layer(raw_meta["sha256"], rows),
    )
    assert status.state == "warehouse missing"  # no load log passed here


def test_replacing_a_month(
    lake_store: LakeStore, own_mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata"]
    resources = env_resources(own_mirror.url)
    assert run(keys, resources, instance, MONTH).success

    # Unchanged upstream: the stored object is found in the store and kept.
    again = run(keys, resources, instance, MONTH)
    assert materialization_metadata(again, "raw/yellow_tripdata")["download"] == (
        "skipped: upstream unchanged"
    )

    write_month(
        Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=1234, seed=7
    )
    third = run(keys, resources, instance, MONTH)
    assert materialization_metadata(third, "raw/yellow_tripdata")["download"] == "downloaded"
    stored = visible(lake_store, "nyc/lake/")
    assert list(stored) == [LAKE_OBJECT]  # the same object, replaced
    assert pq.ParquetFile(io.BytesIO(stored[LAKE_OBJECT])).metadata.num_rows == 1234


def test_switching_source_keeps_both_raw_objects_as_revisions(
    lake_store: LakeStore, mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    assert run("raw/green_tripdata", env_resources(mirror.url), instance, MONTH).success
    assert run("raw/green_tripdata", env_resources(mirror.url, source="tlc"), instance, MONTH)
    objects = visible(lake_store, "nyc/raw/green_tripdata/")
    names = sorted(name.rsplit("/", 1)[1] for name in objects)
    assert names == [
        "green_tripdata_2021-01.csv.gz",
        "green_tripdata_2021-01.parquet",
        "revisions.json",
    ]
    manifest = json.loads(objects["nyc/raw/green_tripdata/2021-01/revisions.json"])
    (current,) = [r for r in manifest["revisions"] if r["sha256"] == manifest["current"]]
    assert current["name"] == "green_tripdata_2021-01.parquet"


def test_a_rejected_month_leaves_nothing_in_the_lake(
    lake_store: LakeStore, own_mirror: FaultyMirror, instance: dg.DagsterInstance
) -> None:
    target = Path(own_mirror.root) / "green" / "green_tripdata_2021-01.csv.gz"
    add_column(target, "mystery_fee", "1.5")
    result = run(
        ["raw/green_tripdata", "lake/green_tripdata"],
        env_resources(own_mirror.url),
        instance,
        MONTH,
        raise_on_error=False,
    )
    assert not result.success
    assert "mystery_fee" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert visible(lake_store, "nyc/lake/") == {}
    assert lake_store.pending_uploads() == 0


def test_the_analytics_chart_lands_in_the_lake(lake_store: LakeStore) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    dest = write_chart(LakeResource(), MONTH, png)
    key = "nyc/analytics/monthly_zone_stats/2021-01.png"
    assert str(dest) == lake_store.uri(key)
    assert visible(lake_store) == {key: png}


def test_a_missing_bucket_fails_clearly_and_is_not_created(
    object_store: LakeStore,
    mirror: FaultyMirror,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake_store = object_store
    url = lake_store.url.replace(BUCKET, "no-such-bucket")
    monkeypatch.setenv("TAXI_LAKE_URL", url)
    result = run("raw/yellow_tripdata", env_resources(mirror.url), instance, MONTH, False)
    assert not result.success
    step, chain = step_failure(result)
    assert step == "raw__yellow_tripdata"
    assert "LakeAccessError" in {e.cls_name for e in chain}
    word = "container" if lake_store.name == "azure" else "bucket"
    assert f"{word} 'no-such-bucket' does not exist" in failure_messages(result)
    assert not lake_store.bucket_exists("no-such-bucket")  # never created on the way
    # The steps that read first: "no stored file ... materialize it first" before.
    for step in ("lake/yellow_tripdata", "warehouse/yellow_tripdata"):
        resources = env_resources(mirror.url, pg_url)
        said = failure_messages(run(step, resources, instance, MONTH, False))
        assert f"{word} 'no-such-bucket' does not exist" in said, said
        assert "materialize" not in said, said


# --- faults: throttling, server errors, uploads failing midway --------------------------------


def test_throttling_and_server_errors_are_retried(object_store: LakeStore, tmp_path: Path) -> None:
    root = resolve_root(object_store.url)
    (tmp_path / "small").write_bytes(b"x" * 1000)
    reset = Fault.reset_after(100)
    object_store.inject_upload(object_store.throttling, object_store.server_error, reset)
    publish_file(tmp_path / "small", root / "small")
    assert object_store.upload_requests() == 4  # three failures, one success
    assert visible(object_store) == {"nyc/small": b"x" * 1000}


def test_an_upload_whose_answer_does_not_come_is_given_up_and_sent_again(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's answer to an upload held 60 s by the proxy, as a dropped connection or
    a partition leaves a request. gcsfs sends its requests with no timeout and aiohttp
    then waits for ever: the upload sat out the whole 60 s. With a read bound (300 s in
    the product, 2 s here) the request is given up and sent again. S3's and Azure's
    clients had bounds of their own, s3fs's 15 s and Azure Storage's 60 s, which cut
    uploads still being sent on a slow link (the wait for the answer starts once the
    body's last bytes are in the kernel's send buffer): their uploads now wait as long as
    GCS's requests (``silent_peers.UPLOAD_ANSWER_S``)."""
    monkeypatch.setattr(gcs_settings, "REQUEST_READ_S", 2.0)
    monkeypatch.setattr(silent_peers, "UPLOAD_ANSWER_S", 2.0)
    root = resolve_root(object_store.url)
    (tmp_path / "small").write_bytes(b"x" * 1000)
    method, pattern = object_store.upload_request
    object_store.inject_upload(Fault.delay(60))
    started = time.monotonic()
    publish_file(tmp_path / "small", root / "small")
    took = time.monotonic() - started
    assert visible(object_store) == {"nyc/small": b"x" * 1000}
    assert object_store.proxy is not None
    assert object_store.proxy.arrivals(method, pattern) == 2  # held, then sent again
    assert took < 10, took  # given up at the bound, not at s3fs's 15 s or Azure's 60 s


def test_downloads_cut_short_are_read_again_and_the_month_loads_whole(
    object_store: LakeStore,
    mirror: FaultyMirror,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's answers to reads of the raw revisions' manifest, the raw file and the
    lake file are each cut short twice (the whole Content-Length
    announced, 100 bytes of the body sent, the connection closed), as a dropped connection
    leaves a download. gcsfs and Azure's client read the range again themselves; on S3
    the read failed the step ("Response payload is not completed"), since botocore retries
    a request only until its answer's headers and s3fs's own retries are off. Reads are now
    tried again from where they stopped (storage/read_retries.py): the month loads whole."""
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)
    assert object_store.proxy is not None
    cut = Fault.truncate(100)
    # The objects' own reads (GCS: ?alt=media), not listings naming them in a query.
    for name in (
        r"revisions\.json",
        r"yellow_tripdata_2021-01\.csv\.gz",
        r"yellow_tripdata_2021-01\.parquet",
    ):
        read = rf"^[^?]*(/|%2F){name}(\?alt=media)?$"
        object_store.proxy.inject(read, cut, cut, methods=("GET",))
    keys = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]
    result = run(keys, env_resources(mirror.url, pg_url), instance, MONTH)
    assert result.success
    cuts = [target for method, target, outcome in object_store.proxy.log if outcome == "cut short"]
    assert len(cuts) == 6, object_store.proxy.log  # each fault met a real read
    # Where the project read again (not gcsfs, which does it itself), the run's own log
    # says so: the UI shows it (dagster.yaml's python_logs).
    said = [entry.user_message for entry in instance.all_logs(result.run_id)]
    again = [message for message in said if message.startswith("a read of ")]
    assert bool(again) == (object_store.name != "gcs"), again
    assert all("attempt 2 of 5" in message or "attempt 3 of 5" in message for message in again)
    rows = csv_rows((Path(mirror.root) / "yellow" / "yellow_tripdata_2021-01.csv.gz").read_bytes())
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: rows}


@pytest.mark.parametrize("object_store", ["gcs", "s3"], indirect=True)
def test_a_download_that_stalls_is_given_up_and_read_again(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's answer to a lake file's read stops after 100 bytes, the connection held
    open (a stalled server or network). Each read's bound (GCS 300 s, S3 15 s in the
    product; 2 s here) gives it up, and it is read again: gcsfs itself, S3 through
    storage/read_retries.py; every row comes. (Azure's bound is its client's 60 s, not
    the project's to shorten: not run here.)"""
    monkeypatch.setattr(gcs_settings, "REQUEST_READ_S", 2.0)
    monkeypatch.setattr(s3_settings, "READ_S", 2.0)
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)
    forget_filesystems()  # the clients are made with the bounds above
    dest = resolve_root(object_store.url) / "lake" / "month.parquet"
    lake_month_file(tmp_path / "month.parquet", 0)
    publish_file(tmp_path / "month.parquet", dest)
    filesystem, native = arrow_filesystem(dest)
    month = LakeFiles.at(filesystem, native)
    assert object_store.proxy is not None
    object_store.proxy.inject(
        r"^[^?]*(/|%2F)month\.parquet(\?alt=media)?$",
        Fault.stall_answer_after(100),
        methods=("GET",),
    )
    started = time.monotonic()
    try:
        rows = [v for batch in month.to_batches() for v in batch["trip"].to_pylist()]
        stalled = [outcome for _, _, outcome in object_store.proxy.log if outcome == "stalled"]
    finally:
        object_store.proxy.clear()  # lets the held answer go
    assert rows == list(range(3000))
    assert stalled == ["stalled"]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("object_store", ["s3"], indirect=True)
def test_a_download_cut_short_every_time_fails_after_the_attempts(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)
    dest = resolve_root(object_store.url) / "file"
    (tmp_path / "file").write_bytes(os.urandom(100_000))
    publish_file(tmp_path / "file", dest)
    assert object_store.proxy is not None
    cuts = [Fault.truncate(100)] * (read_retries.READ_ATTEMPTS + 1)
    object_store.proxy.inject(r"/file$", *cuts, methods=("GET",))
    with pytest.raises(Exception, match="payload is not completed"):
        with read_retries.open_for_reading(dest) as handle:
            handle.read()
    assert object_store.proxy.requests_to("GET", r"/file$") == read_retries.READ_ATTEMPTS


def test_an_upload_the_server_stops_taking_is_given_up_and_sent_again(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy reads the first MiB of one part of a large upload, then stops reading,
    holding the connection open: a stalled server, whose kernel acknowledges the client's
    window probes, so TCP never gives up. aiohttp (under gcsfs, s3fs and adlfs) bounds
    each read of an answer, not a send: the upload waited for as long as the proxy held
    it (the test's 120 s). With TCP_USER_TIMEOUT on each socket (300 s in the product,
    2 s here: storage/silent_peers.py) the connection is ended, and the part (gcsfs) or
    the upload (S3, Azure) sent again."""
    monkeypatch.setattr(silent_peers, "SILENCE_S", 2.0)
    monkeypatch.setattr(silent_peers, "_shared", {})  # GCS: a connector with the new bound
    # S3 and Azure: clients of their own, so that no connection an earlier test left open
    # (made with the product's 300 s) carries the stalled part: the test waited out the
    # proxy's 120 s once, on S3, in a full run.
    forget_filesystems()
    # Parts larger than what the sockets' buffers hold: the sender blocks once the proxy
    # stops reading.
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", 16 * 1024 * 1024)
    data = os.urandom(2 * 16 * 1024 * 1024 + 1)
    (tmp_path / "big").write_bytes(data)
    method, part = object_store.part_request
    object_store.inject_part(Fault.stall_after(1024 * 1024))
    assert object_store.proxy is not None
    try:
        started = time.monotonic()
        publish_file(tmp_path / "big", resolve_root(object_store.url) / "big")
        took = time.monotonic() - started
        parts_sent = object_store.proxy.arrivals(method, part)
    finally:
        object_store.proxy.clear()  # lets the stalled request's handler go
    assert visible(object_store) == {"nyc/big": data}
    assert parts_sent > 3, f"{parts_sent} parts: the stalled one was not sent again"
    assert took < 60, took


def test_a_large_upload_survives_failing_parts(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", CHUNK)
    data = os.urandom(BIG)
    (tmp_path / "big").write_bytes(data)
    object_store.inject_part(object_store.throttling, Fault.reset_after(CHUNK // 2), after=1)
    publish_file(tmp_path / "big", resolve_root(object_store.url) / "big")
    assert visible(object_store) == {"nyc/big": data}
    assert object_store.pending_uploads() == 0


def test_a_lasting_transient_failure_gives_up_after_the_attempts(
    object_store: LakeStore, tmp_path: Path
) -> None:
    dest = resolve_root(object_store.url) / "again"
    (tmp_path / "v1").write_bytes(b"version 1")
    publish_file(tmp_path / "v1", dest)
    before = object_store.upload_requests()
    (tmp_path / "v2").write_bytes(b"version 2")
    object_store.inject_upload(*[object_store.server_error] * 10)
    with pytest.raises(Exception) as raised:
        publish_file(tmp_path / "v2", dest)
    assert not isinstance(raised.value, LakeAccessError)  # transient: not explained away
    assert transient.is_transient(raised.value)
    assert object_store.upload_requests() - before == object_store.upload_attempts
    assert visible(object_store) == {"nyc/again": b"version 1"}


def test_a_refused_upload_is_not_retried_and_says_why(
    object_store: LakeStore, tmp_path: Path
) -> None:
    (tmp_path / "denied").write_bytes(b"z")
    object_store.inject_upload(object_store.forbidden)
    with pytest.raises(
        LakeAccessError, match=r"cannot write .*denied.*(403|AccessDenied|Permission)"
    ):
        publish_file(tmp_path / "denied", resolve_root(object_store.url) / "denied")
    assert object_store.upload_requests() == 1
    assert visible(object_store) == {}


# The stores' answers to a write a retention policy, an immutability policy or a hold
# forbids, as the real services send them (GCS's message as its clients report it; Azure's
# error code). The emulators have no such policies: injected, because not causable here.
GCS_RETENTION = json.dumps(
    {
        "error": {
            "code": 403,
            "message": "Object 'taxi-lake/nyc/kept' is subject to bucket's retention policy "
            "and cannot be deleted, overwritten or archived until 2031-09-20T12:18:15.93-07:00",
            "errors": [{"domain": "global", "reason": "forbidden"}],
        }
    }
).encode()
AZURE_IMMUTABLE = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobImmutableDueToPolicy</Code>'
    b"<Message>This operation is not permitted as the blob is immutable due to a policy."
    b"</Message></Error>"
)
KEPT_BY_THE_STORE = {
    "gcs": Fault.status(403, body=GCS_RETENTION, headers={"Content-Type": "application/json"}),
    "azure": Fault.status(
        409, body=AZURE_IMMUTABLE, headers={"x-ms-error-code": "BlobImmutableDueToPolicy"}
    ),
}


@pytest.mark.parametrize("object_store", ["s3"], indirect=True)
def test_a_clock_that_is_off_is_said_to_be_off(object_store: LakeStore, tmp_path: Path) -> None:
    """S3 refuses a request signed with a time more than 15 minutes off (moto does not
    check the time: the proxy answers as S3 does, an injected fault). The error came raw
    (a PermissionError with S3's sentence); it now names the clock, and is not retried."""
    skewed = Fault.status(
        403,
        body=b"<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between "
        b"the request time and the current time is too large.</Message></Error>",
    )
    (tmp_path / "skewed").write_bytes(b"z")
    object_store.inject_upload(skewed)
    with pytest.raises(LakeAccessError, match=r"RequestTimeTooSkewed\): this machine's clock"):
        publish_file(tmp_path / "skewed", resolve_root(object_store.url) / "skewed")
    assert object_store.upload_requests() == 1


@pytest.mark.parametrize("object_store", list(KEPT_BY_THE_STORE), indirect=True)
def test_an_object_the_store_keeps_is_said_so_not_a_missing_permission(
    object_store: LakeStore, tmp_path: Path
) -> None:
    """A lake bucket with a retention policy (GCS) or a container with an immutability
    policy (Azure) refuses to replace an object: a month's second lake file, the revisions
    manifest. GCS's 403 was explained as a missing permission ("grant
    roles/storage.objectAdmin"), which no grant fixes. (S3's Object Lock keeps versions,
    not keys: replacing a key stays allowed.)"""
    (tmp_path / "kept").write_bytes(b"z")
    object_store.inject_upload(KEPT_BY_THE_STORE[object_store.name])
    with pytest.raises(LakeAccessError, match=r"keeps this (object|blob)") as raised:
        publish_file(tmp_path / "kept", resolve_root(object_store.url) / "kept")
    said = str(raised.value)
    assert "without a retention policy" in said or "without immutability policies" in said
    assert "grant" not in said and "Contributor" not in said, said
    assert object_store.upload_requests() == 1  # not retried


def test_an_upload_failing_midway_keeps_the_previous_object(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = resolve_root(object_store.url) / "lake" / "big" / "big.parquet"
    (tmp_path / "v1").write_bytes(b"version 1")
    publish_file(tmp_path / "v1", dest)

    # The third part of a three-part upload is refused for good (a 400: not retried),
    # after the first two were stored. One part at a time: moto answers 500 to an abort
    # that races parts still in flight (S3 itself does not), which would hide the 400.
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(s3_settings, "UPLOAD_CONCURRENCY", 1)
    (tmp_path / "v2").write_bytes(os.urandom(BIG))
    object_store.inject_part(*[object_store.refused_part] * 20, after=2)
    with pytest.raises(Exception, match="(?i)injected|refused|400"):
        publish_file(tmp_path / "v2", dest)
    object_store.settle()

    assert visible(object_store) == {"nyc/lake/big/big.parquet": b"version 1"}
    assert not (tmp_path / "v2").exists()
    if object_store.cancels_failed_uploads:
        assert object_store.pending_uploads() == 0
    else:  # Azure: the staged blocks stay uncommitted and invisible...
        assert object_store.pending_uploads() == 1
    # ...until the next block list of that blob is committed (or a week has passed).
    assert object_store.proxy is not None
    object_store.proxy.clear()  # the store accepts parts again
    data = os.urandom(BIG)
    (tmp_path / "v3").write_bytes(data)
    publish_file(tmp_path / "v3", dest)
    assert visible(object_store) == {"nyc/lake/big/big.parquet": data}
    assert object_store.pending_uploads() == 0


@pytest.mark.parametrize("object_store", ["s3", "azure"], indirect=True)
def test_a_killed_upload_leaves_nothing_the_next_run_cannot_clean(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uploading process dies (SIGKILL) while the second part is on the wire."""
    url = f"{object_store.url}/lake/big/big.parquet"
    (tmp_path / "v1").write_bytes(os.urandom(BIG))
    # One part is stored and the next is held by the proxy: the uploader is killed then.
    kill_an_upload(object_store, tmp_path / "v1", url, CHUNK)
    assert visible(object_store) == {}  # nothing partial became visible
    # What the killed run left: an S3 multipart upload, uncommitted Azure blocks (the
    # parts sent before the kill may still be on their way to the server).
    wait_for("the killed upload's parts", lambda: object_store.pending_uploads() == 1, 10)

    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", CHUNK)
    assert object_store.proxy is not None
    object_store.proxy.clear()  # drops the held part
    data = os.urandom(BIG)
    (tmp_path / "v2").write_bytes(data)
    if object_store.name == "s3":
        # Seconds old, it may be another run's upload in progress: the next run keeps it...
        publish_file(tmp_path / "v2", resolve_root(url))
        assert visible(object_store) == {"nyc/lake/big/big.parquet": data}
        assert object_store.pending_uploads() == 1
        # ...and aborts it once it is stale (nothing touched it for STALE_AFTER_SECONDS).
        monkeypatch.setattr(s3_settings, "STALE_AFTER_SECONDS", 0)
        (tmp_path / "v2").write_bytes(data)
    publish_file(tmp_path / "v2", resolve_root(url))
    assert visible(object_store) == {"nyc/lake/big/big.parquet": data}
    assert object_store.pending_uploads() == 0  # the next run cleaned it


@pytest.mark.parametrize("object_store", ["s3"], indirect=True)
def test_an_upload_of_the_same_key_in_progress_is_not_aborted(
    object_store: LakeStore, tmp_path: Path
) -> None:
    """Two runs write the same month: while one run's multipart upload is still sending
    parts, the other publishes the same key. The second must not abort the first's upload
    (it used to abort every pending upload of the key: the first run then failed with
    NoSuchUpload, "The specified upload does not exist", not retried)."""
    assert isinstance(object_store, S3Store)
    key = "nyc/lake/yellow/2021-01.parquet"
    s3 = object_store.s3
    # The first run's upload, one part sent and the next ones still to come.
    first = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=first, PartNumber=1, Body=b"first run's month"
    )
    # The second run publishes its own copy of the month meanwhile.
    (tmp_path / "month").write_bytes(b"second run's month")
    publish_file(tmp_path / "month", resolve_root(object_store.url) / "lake/yellow/2021-01.parquet")
    assert visible(object_store) == {key: b"second run's month"}

    # The first run completes its upload: the month is its copy, whole.
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=first,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert visible(object_store) == {key: b"first run's month"}
    assert object_store.pending_uploads() == 0


def lake_month_file(path: Path, first_value: int) -> None:
    """A small month of three row groups whose values start at ``first_value``."""
    values = pa.array(range(first_value, first_value + 3000), pa.int64())
    pq.write_table(pa.table({"trip": values}), path, row_group_size=1000)


def test_a_lake_file_replaced_mid_read_fails_the_read_naming_it(
    lake_store: LakeStore, tmp_path: Path
) -> None:
    """The warehouse reads a month in several opens and requests (footers for the expected
    rows and lineage, then row groups). When the month is materialized again meanwhile, the
    load must not go on with rows of the new file against the old footer, or with parts of
    both: the read fails, naming the file, whether the file was replaced between two opens
    or during the read; a read of the new version then succeeds."""
    dest = resolve_root(lake_store.url) / "lake" / "month.parquet"

    def publish_month(first_value: int) -> None:
        lake_month_file(tmp_path / "month.parquet", first_value)
        publish_file(tmp_path / "month.parquet", dest)  # moves the file on local disk

    publish_month(0)
    filesystem, native = arrow_filesystem(dest)

    replaced = "month.parquet was replaced while this run read it"

    month = LakeFiles.at(filesystem, native)
    assert month.count_rows() == 3000  # the footer, as the warehouse's lineage reads it
    publish_month(1_000_000)
    with pytest.raises(LakeFileChanged, match=replaced):
        for _ in month.to_batches():
            pass

    month = LakeFiles.at(filesystem, native)
    batches = month.file_batches(native, batch_size=1000)
    assert next(batches)["trip"][0].as_py() == 1_000_000
    publish_month(0)
    with pytest.raises(LakeFileChanged, match=replaced):
        for _ in batches:
            pass

    again = LakeFiles.at(filesystem, native)
    rows = [v for batch in again.to_batches() for v in batch["trip"].to_pylist()]
    assert rows == list(range(3000))


def test_a_damaged_page_of_a_lake_file_fails_the_read_naming_it(
    lake_store: LakeStore, tmp_path: Path
) -> None:
    """The lake writes a CRC per page; the warehouse's reads verify them. A byte flipped
    inside a page (the footer intact, so the file opens and lists its rows) fails the read
    naming the file, instead of decoding as other values."""
    written = tmp_path / "month.parquet"
    table = pa.table({"trip": pa.array(range(300_000), pa.int64())})
    write_parquet_stream(
        table.to_reader(), written, compression="zstd", stats=StreamStats(None, None)
    )
    chunk = pq.ParquetFile(written).metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    damaged = bytearray(written.read_bytes())
    damaged[start + chunk.total_compressed_size - 8] ^= 0xFF  # the column's last page
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    dest = resolve_root(lake_store.url) / "lake" / "month.parquet"
    publish_file(tmp_path / "damaged.parquet", dest)

    filesystem, native = arrow_filesystem(dest)
    month = LakeFiles.at(filesystem, native)
    assert month.count_rows() == 300_000  # the footer reads fine
    with pytest.raises(LakeFileDamaged, match=r"month\.parquet is damaged \(.*CRC checksum"):
        for _ in month.to_batches():
            pass

    # A damaged page header (the CRC covers the page's data only) is damage too.
    damaged = bytearray(written.read_bytes())
    damaged[start + 2] ^= 0xFF
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    publish_file(tmp_path / "damaged.parquet", dest)
    with pytest.raises(LakeFileDamaged, match=r"month\.parquet is damaged"):
        for _ in LakeFiles.at(filesystem, native).to_batches():
            pass


# GET requests one read of a lake file makes against a store answering every one with its
# throttling error: its client's own retries, once (docs/deployment.md, "Retries").
CLIENT_ATTEMPTS = {"gcs": 6, "s3": 5, "azure": 4}


def test_a_lasting_throttling_of_reads_is_retried_by_the_client_alone(
    object_store: LakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's own read retries (for answers cut short) also retried what the client
    had retried already: 25 GETs on S3, 24 on GCS, 20 on Azure for one read. Azure's
    policy waits 15 s and more between its 3 retries: shortened for the test (same count)."""
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)
    if object_store.name == "azure":
        from azure.storage.blob._shared import policies_async

        original = policies_async.ExponentialRetry.__init__

        def quick(self: Any, **settings: Any) -> None:
            original(self, **{**settings, "initial_backoff": 0.01, "increment_base": 1})

        monkeypatch.setattr(policies_async.ExponentialRetry, "__init__", quick)
        forget_filesystems()
    dest = resolve_root(object_store.url) / "lake" / "month.parquet"
    lake_month_file(tmp_path / "month.parquet", 0)
    publish_file(tmp_path / "month.parquet", dest)
    month = LakeFiles.at(*arrow_filesystem(dest))
    month.count_rows()  # the footer, read before the store starts throttling
    proxy = object_store.proxy
    assert proxy is not None
    proxy.clear()
    # The object's bytes (on GCS ?alt=media; not its metadata, a request of its own).
    read = (
        r"(/|%2F)month\.parquet\?alt=media$" if object_store.name == "gcs" else r"/month\.parquet$"
    )
    proxy.inject(read, *[object_store.throttling] * 100, methods=("GET",))
    with pytest.raises(Exception) as raised:
        sum(batch.num_rows for batch in month.to_batches())
    gets = proxy.requests_to("GET", read)
    proxy.clear()
    assert transient.is_transient(raised.value) or raised.value.__cause__ is not None
    assert gets == CLIENT_ATTEMPTS[object_store.name]
