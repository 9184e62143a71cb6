"""``lake sweep`` on the object stores: what a killed write leaves in the bucket, and what the
sweep removes of it, against the real emulators (moto_server, Azurite, the GCS emulator).

Each test kills a real upload (a subprocess, SIGKILL, while the proxy holds its second
part) and sweeps with the real command. Leftovers are seconds old, so the tests that
remove them set ``STALE_AFTER_SECONDS`` to 0: a clock cannot be moved on a server.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taxi_assets import cli
from taxi_assets.storage import leftovers, publish
from taxi_assets.storage.leftovers import probe_name
from taxi_assets.storage.publish import publish_bytes, publish_file
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.emulators import MotoServer
from taxi_assets_tests.faults_support import wait_for
from taxi_assets_tests.lake_stores import BUCKET, AzureStore, LakeStore, S3Store, kill_an_upload

CHUNK = 5 * 1024 * 1024  # the smallest part S3 accepts
BIG = 12 * 1024 * 1024  # three parts: a multipart upload, blocks, a resumable upload
KILLED_KEY = "nyc/lake/big/big.parquet"


def kill_an_upload_of(store: LakeStore, key: str, folder: Path) -> None:
    """Upload BIG bytes to ``key``, killed once one part is stored and the next is held by
    the proxy; then let the held part go."""
    assert store.proxy is not None
    store.proxy.clear()  # the requests counted are this upload's alone
    (folder / "killed").write_bytes(os.urandom(BIG))
    kill_an_upload(store, folder / "killed", f"{store.scheme}://{BUCKET}/{key}", CHUNK)
    store.proxy.clear()


def lake_sweep(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["lake", "sweep", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def pending_bytes(store: LakeStore) -> int:
    """The bytes a killed upload left in the store's pending uploads (S3 parts, Azure
    uncommitted blocks), as the store itself reports them."""
    if isinstance(store, S3Store):
        uploads = store.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return sum(
            part["Size"]
            for upload in uploads
            for part in store.s3.list_parts(
                Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            ).get("Parts", [])
        )
    assert isinstance(store, AzureStore)
    container = store.service.get_container_client(BUCKET)
    return sum(
        block.size
        for blob in container.list_blobs(include=["uncommittedblobs"])
        for block in container.get_blob_client(blob.name).get_block_list("uncommitted")[1]
    )


@pytest.fixture(autouse=True)
def own_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The sweep also clears the temporary folder, which the suite's other tests share (and
    use at the same time, in the suite's second process): with STALE_AFTER_SECONDS at 0 it
    would count, and remove, their downloads in progress. Each test gets its own."""
    folder = tmp_path / "temporary"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


@pytest.fixture
def killed_write(object_store: LakeStore, tmp_path: Path) -> Iterator[LakeStore]:
    """The lake on ``object_store`` with a published month, a killed upload of a new
    month, a killed ``lake check``'s probe and, beside them, what is not a leftover."""
    root = resolve_root(object_store.url)
    publish_bytes(b"a whole month", root / "lake" / "month.parquet")
    publish_bytes(b"probe", root / probe_name())  # a check killed before its delete
    publish_bytes(b"notes", root / ".taxi-probe-notes")  # a look-alike: not ours
    kill_an_upload_of(object_store, KILLED_KEY, tmp_path)
    # The killed upload's parts may still be on their way to the server.
    wait_for("the killed upload's parts", lambda: object_store.pending_uploads() == 1, 10)
    yield object_store


def test_a_recent_leftover_is_kept(
    killed_write: LakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seconds old, a pending upload may be another run's write in progress: kept."""
    store = killed_write
    code, said = lake_sweep(capsys)
    assert code == 0, said
    assert f"removed 0 leftover(s) of killed runs, 0.0 MB, in {store.url} and the temp" in said
    # The probe everywhere; the pending upload where the store can list it.
    kept = 1 if store.name == "gcs" else 2
    assert f"kept {kept} more in {store.url} and the temporary folder, touched within 3 h" in said
    assert store.pending_uploads() == 1
    assert len([key for key in store.objects("nyc/") if key.startswith("nyc/.taxi-probe-")]) == 2


@pytest.mark.parametrize("object_store", ["s3", "azure"], indirect=True)
def test_a_stale_pending_upload_and_probe_are_swept(
    killed_write: LakeStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """S3: the killed multipart upload is aborted; Azure: the blob of uncommitted blocks
    is deleted. Both with their size said, a dry run first. The published month, the
    look-alike probe and, on S3, an upload outside the lake's prefix stay."""
    store = killed_write
    if isinstance(store, S3Store):  # another application's upload in the same bucket
        other = store.s3.create_multipart_upload(Bucket=BUCKET, Key="nyc2/export.csv")
        store.s3.upload_part(
            Bucket=BUCKET, Key="nyc2/export.csv", UploadId=other["UploadId"],
            PartNumber=1, Body=b"not the lake's",
        )  # fmt: skip
    left = pending_bytes(store) - (len(b"not the lake's") if isinstance(store, S3Store) else 0)
    assert left >= CHUNK
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    kind = "multipart upload of" if store.name == "s3" else "uncommitted blocks of"
    upload = rf"{kind} {store.scheme}://{BUCKET}/{KILLED_KEY}\b[^,]*, {left / 1e6:.1f} MB"
    probe = rf"probe object {store.scheme}://{BUCKET}/nyc/\.taxi-probe-[0-9a-f]{{12}}, 0\.0 MB"
    mb = (left + len(b"probe")) / 1e6

    code, said = lake_sweep(capsys, "--dry-run")
    assert code == 0, said
    assert re.search(rf"would remove {upload}, left by a killed run", said), said
    assert re.search(rf"would remove {probe}, left by a killed run", said), said
    assert f"would remove 2 leftover(s) of killed runs, {mb:.1f} MB, in {store.url}" in said
    assert store.pending_uploads() == 1 + isinstance(store, S3Store)

    code, said = lake_sweep(capsys)
    assert code == 0, said
    assert re.search(rf"removed {upload}, left by a killed run", said), said
    assert f"removed 2 leftover(s) of killed runs, {mb:.1f} MB, in {store.url}" in said
    assert "not swept" not in said if store.name == "s3" else "not swept (Azure" in said
    assert sorted(store.objects("nyc/")) == ["nyc/.taxi-probe-notes", "nyc/lake/month.parquet"]
    if isinstance(store, S3Store):
        [kept] = store.s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
        assert kept["Key"] == "nyc2/export.csv"
    else:
        assert store.pending_uploads() == 0
    code, said = lake_sweep(capsys)
    assert code == 0 and "removed 0 leftover(s)" in said

    # The month the killed run was writing publishes as if nothing had happened.
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", CHUNK)
    data = os.urandom(BIG)
    (tmp_path / "again").write_bytes(data)
    publish_file(tmp_path / "again", resolve_root(f"{store.url}/lake/big/big.parquet"))
    assert store.objects(KILLED_KEY) == {KILLED_KEY: data}


@pytest.mark.parametrize("object_store", ["gcs"], indirect=True)
def test_a_killed_gcs_upload_leaves_a_session_no_sweep_can_list(
    killed_write: LakeStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCS keeps a killed resumable upload's session (with the chunks sent) and no object;
    its API lists no sessions, so the sweep removes the probe and says what it leaves."""
    store = killed_write
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    code, said = lake_sweep(capsys)
    assert code == 0, said
    assert re.search(r"removed probe object gs://taxi-lake/nyc/\.taxi-probe-[0-9a-f]{12},", said)
    assert f"removed 1 leftover(s) of killed runs, 0.0 MB, in {store.url}" in said
    assert "not swept (Google Cloud Storage): a killed upload's resumable session" in said
    assert store.pending_uploads() == 1  # GCS ends it a week after it began
    assert sorted(store.objects("nyc/")) == ["nyc/.taxi-probe-notes", "nyc/lake/month.parquet"]


@pytest.mark.parametrize("object_store", ["azure"], indirect=True)
def test_uncommitted_blocks_of_a_published_blob_are_left_to_its_next_upload(
    object_store: LakeStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A killed replacement of a published month leaves blocks beside the committed blob:
    deleting them would delete the month, so the sweep leaves them (and says so)."""
    monkeypatch.setattr(publish, "UPLOAD_CHUNK_BYTES", CHUNK)
    month = os.urandom(BIG)
    (tmp_path / "v1").write_bytes(month)
    publish_file(tmp_path / "v1", resolve_root(f"{object_store.url}/lake/big/big.parquet"))
    kill_an_upload_of(object_store, KILLED_KEY, tmp_path)
    wait_for("the killed upload's blocks", lambda: object_store.pending_uploads() == 1, 10)
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    code, said = lake_sweep(capsys)
    assert code == 0, said
    assert "removed 0 leftover(s)" in said
    assert "not swept (Azure Blob Storage): uncommitted blocks of a published blob" in said
    assert object_store.objects(KILLED_KEY) == {KILLED_KEY: month}
    assert object_store.pending_uploads() == 1


@pytest.mark.parametrize("object_store", ["azure"], indirect=True)
def test_blocks_staged_on_a_published_empty_blob_leave_the_blob(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob written in one request (Put Blob: small files, an empty one) has no committed
    blocks. Empty, it lists as empty; a replacement's blocks staged beside it must not make
    it look like a blob of uncommitted blocks alone: deleting it would delete the file."""
    assert isinstance(object_store, AzureStore)
    key = "nyc/raw/empty.csv"
    blob = object_store.service.get_blob_client(BUCKET, key)
    blob.upload_blob(b"")  # one Put Blob: committed, no block list
    blob.stage_block("YmxvY2sx", b"part of a replacement")
    assert blob.get_block_list("all")[0] == []  # what the sweep saw as "uncommitted only"
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    code, said = lake_sweep(capsys)
    assert code == 0, said
    assert "removed 0 leftover(s)" in said, said
    assert object_store.objects(key) == {key: b""}


def test_the_documented_s3_permissions_suffice_and_a_missing_one_is_named(
    moto_with_auth: tuple[MotoServer, dict[str, tuple[str, str]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/deployment.md's IAM actions for ``lake sweep``, against moto's IAM."""
    server, keys = moto_with_auth
    admin = server.client(key=keys["admin"][0], secret=keys["admin"][1])
    key = f"nyc/lake/{os.urandom(4).hex()}.parquet"
    upload = admin.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    admin.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"part")
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("TAXI_LAKE_URL", f"s3://{BUCKET}/nyc")

    def as_user(name: str) -> tuple[int, str]:
        from s3fs import S3FileSystem

        S3FileSystem.clear_instance_cache()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[name][0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[name][1])
        return lake_sweep(capsys)

    code, said = as_user("reader")
    assert code == 1
    assert "error: cannot list what killed runs left in s3://taxi-lake/nyc: access denied" in said
    assert [u["UploadId"] for u in admin.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [
        upload
    ]
    code, said = as_user("lister")  # may list, not abort: said, exit 1, the sweep goes on
    assert code == 1
    assert f"could not remove multipart upload of s3://{BUCKET}/{key}" in said
    assert "access denied (AccessDenied)" in said
    assert "error: 1 leftover(s) could not be removed (see above)" in said
    code, said = as_user("sweeper")
    assert code == 0, said
    assert f"removed multipart upload of s3://{BUCKET}/{key}" in said
    assert admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_empty_lake_sweeps_and_a_missing_bucket_is_named(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, said = lake_sweep(capsys, f"{object_store.scheme}://{BUCKET}/nothing-yet")
    assert code == 0, said
    assert "removed 0 leftover(s) of killed runs, 0.0 MB" in said
    code, said = lake_sweep(capsys, f"{object_store.scheme}://no-such-bucket/nyc")
    assert code == 1
    assert re.search(r"error: .*'no-such-bucket' does not exist", said), said


def _pending_upload(store: LakeStore, key: str) -> None:
    """An upload of ``key`` begun and never finished, as a killed writer leaves it."""
    if isinstance(store, S3Store):
        upload = store.s3.create_multipart_upload(Bucket=BUCKET, Key=key)
        store.s3.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"part"
        )
        return
    assert isinstance(store, AzureStore)
    blob = store.service.get_container_client(BUCKET).get_blob_client(key)
    blob.stage_block(block_id="YmxvY2stMQ==", data=b"block")


@pytest.mark.parametrize("object_store", ["s3", "azure"], indirect=True)
def test_a_lake_at_the_bucket_root_sweeps_only_its_own_folders(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lake at a bucket's root may share the bucket with other applications: their
    uploads in progress (at the root, in folders of their own) are not the lake's to
    abort, whatever their age; the lake's own (under raw/, lake/, analytics/) are."""
    store = object_store
    for key in ("export.csv", "backups/db.dump", "lake/yellow_tripdata/x.parquet"):
        _pending_upload(store, key)
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    code, said = lake_sweep(capsys, f"{store.scheme}://{BUCKET}")
    assert code == 0, said
    assert "removed 1 leftover(s) of killed runs" in said, said
    assert f"{store.scheme}://{BUCKET}/lake/yellow_tripdata/x.parquet" in said
    assert "export.csv" not in said and "backups" not in said
    if isinstance(store, S3Store):
        uploads = store.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        assert sorted(u["Key"] for u in uploads) == ["backups/db.dump", "export.csv"]
    else:
        assert store.pending_uploads() == 2


@pytest.mark.parametrize("object_store", ["s3"], indirect=True)
def test_probes_past_one_listing_page_are_all_found(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 answers a listing with 1,000 keys at most: probes on the second page are found
    too (real objects in moto, which pages as S3 does; a dry run, since removing them is
    one request each, as tested above)."""
    assert isinstance(object_store, S3Store)
    probes = 1001

    def put(index: int) -> None:
        object_store.s3.put_object(Bucket=BUCKET, Key=f"nyc/.taxi-probe-{index:012x}", Body=b"")

    with ThreadPoolExecutor(8) as pool:  # boto3 clients are thread-safe
        list(pool.map(put, range(probes)))
    monkeypatch.setattr(leftovers, "STALE_AFTER_SECONDS", 0)
    code, said = lake_sweep(capsys, "--dry-run")
    assert code == 0, said
    assert f"would remove {probes} leftover(s) of killed runs" in said, said[-500:]
    pages = object_store.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="nyc/")
    assert sum(len(page["Contents"]) for page in pages) == probes  # nothing removed
