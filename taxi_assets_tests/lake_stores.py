"""Where a lake can live, as the tests see it: a local folder, GCS, S3 or Azure Blob Storage,
each a real server on 127.0.0.1 behind a :class:`FaultProxy`, configured the production way
(``TAXI_LAKE_URL`` plus the provider's own environment variables).

The fixtures ``lake_store`` (all four) and ``object_store`` (the three object stores) are
parametrized by provider, so one test suite runs against every store. moto_server and
Azurite start once per session (each test gets empty buckets); the GCS emulator runs in
this process, one per test.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taxi_assets_tests.emulators import REGION, Azurite, MotoServer
from taxi_assets_tests.fault_proxy import FaultProxy, wait_for_request
from taxi_assets_tests.http_faults import Fault

BUCKET = "taxi-lake"
PREFIX = "nyc"
# What `lake sweep` needs on S3 (docs/deployment.md), given to moto's user "sweeper".
SWEEP_ACTIONS = [
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
]

S3_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>FAULT</RequestId></Error>"
)
S3_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
S3_BAD_REQUEST = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
    b"<Message>Injected: this part is refused for good.</Message></Error>"
)
AZURE_SERVER_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>Operations per second is over the account limit.</Message></Error>"
)
AZURE_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code>'
    b"<Message>The server encountered an internal error.</Message></Error>"
)
AZURE_BAD_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidBlockId</Code>'
    b"<Message>Injected: this block is refused for good.</Message></Error>"
)


def gcs_fault(status: int) -> Fault:
    body = json.dumps({"error": {"code": status, "message": "injected fault"}}).encode()
    return Fault.status(status, body=body, headers={"Content-Type": "application/json"})


class LakeStore:
    """One store holding the lake at ``<bucket>/nyc``; keys are ``nyc/raw/...``."""

    name = ""
    scheme = ""
    proxy: FaultProxy | None = None
    # (method, pattern) of a request that carries an object's bytes (or a part of them).
    upload_request = ("", "")
    # (method, pattern) of a request carrying one part of a large upload.
    part_request = ("", "")
    throttling: Fault = Fault.status(503)
    server_error: Fault = Fault.status(500)
    refused_part: Fault = Fault.status(400)
    forbidden: Fault = Fault.status(403)
    # Requests a lasting transient failure costs one upload before it gives up.
    upload_attempts = 0
    # A failed upload is cancelled at once (GCS, S3); Azure leaves uncommitted blocks.
    cancels_failed_uploads = True

    @property
    def url(self) -> str:
        """``TAXI_LAKE_URL``."""
        return f"{self.scheme}://{BUCKET}/{PREFIX}"

    def uri(self, key: str) -> str:
        """How metadata names the object ``key``."""
        return f"{self.scheme}://{BUCKET}/{key}"

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every visible object under ``prefix``: key -> bytes."""
        raise NotImplementedError

    def pending_uploads(self) -> int:
        """Started uploads that are neither complete nor cancelled (invisible)."""
        raise NotImplementedError

    def bucket_exists(self, name: str) -> bool:
        raise NotImplementedError

    def inject_upload(self, *faults: Fault, after: int = 0) -> None:
        assert self.proxy is not None
        method, pattern = self.upload_request
        self.proxy.inject(pattern, *faults, methods=(method,), after=after)

    def inject_part(self, *faults: Fault, after: int = 0) -> None:
        assert self.proxy is not None
        method, pattern = self.part_request
        self.proxy.inject(pattern, *faults, methods=(method,), after=after)

    def upload_requests(self) -> int:
        assert self.proxy is not None
        return self.proxy.requests_to(*self.upload_request)

    def settle(self) -> None:
        """Let requests a failed upload sent in parallel finish before looking."""
        if self.proxy is not None:
            self.proxy.wait_idle()


class LocalStore(LakeStore):
    name = "local"

    def __init__(self, base: Path) -> None:
        self.base = base  # holds the "bucket" folder

    @property
    def url(self) -> str:
        return str(self.base / BUCKET / PREFIX)

    def uri(self, key: str) -> str:
        return str(self.base / BUCKET / key)

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        root = self.base / BUCKET
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        found = {str(p.relative_to(root)): p.read_bytes() for p in files}
        return {key: data for key, data in found.items() if key.startswith(prefix)}

    def pending_uploads(self) -> int:
        return sum(1 for key in self.objects() if Path(key).name.startswith("."))

    def bucket_exists(self, name: str) -> bool:
        return (self.base / name).exists()


class GcsStore(LakeStore):
    name = "gcs"
    scheme = "gs"
    upload_request = ("POST", r"^/upload/storage/v1/b/")
    part_request = ("POST", r"upload_id=")
    throttling = gcs_fault(429)
    server_error = gcs_fault(503)
    refused_part = gcs_fault(400)
    forbidden = gcs_fault(403)
    upload_attempts = 6  # gcsfs's own tries per request; upload_file adds none
    cancels_failed_uploads = True

    def __init__(self, emulator: Any, proxy: FaultProxy) -> None:
        self.emulator = emulator
        self.proxy = proxy

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        return dict(self.emulator.objects(prefix=prefix))

    def pending_uploads(self) -> int:
        return int(self.emulator.pending_uploads())

    def bucket_exists(self, name: str) -> bool:
        return name in self.emulator.storage.buckets


class S3Store(LakeStore):
    name = "s3"
    scheme = "s3"
    upload_request = ("PUT", rf"^/{BUCKET}/")
    part_request = ("PUT", r"partNumber=")
    throttling = Fault.status(503, body=S3_SLOW_DOWN)
    server_error = Fault.status(500, body=S3_INTERNAL_ERROR)
    refused_part = Fault.status(400, body=S3_BAD_REQUEST)
    forbidden = Fault.status(
        403, body=b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    )
    upload_attempts = 5  # upload_file's attempts; the upload client makes one per request
    cancels_failed_uploads = True

    def __init__(self, moto: MotoServer, proxy: FaultProxy) -> None:
        self.moto = moto
        self.proxy = proxy
        self.s3 = moto.client()
        self.secret = f"s3-secret-{uuid.uuid4().hex}"  # moto accepts any key until auth is on

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.proxy.url if self.proxy else self.moto.url,
            "AWS_ACCESS_KEY_ID": "AKIATAXILAKETESTING0",
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        keys = sorted(item["Key"] for page in pages for item in page.get("Contents", []))
        return {key: self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}

    def pending_uploads(self) -> int:
        return len(self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))

    def bucket_exists(self, name: str) -> bool:
        return name in {b["Name"] for b in self.s3.list_buckets()["Buckets"]}


class AzureStore(LakeStore):
    name = "azure"
    scheme = "az"
    # A well-formed key and connection string for tests that send no request.
    example_key = base64.b64encode(b"0" * 64).decode()
    example_connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=taxilake;AccountKey={example_key};"
        "BlobEndpoint=http://127.0.0.1:9/taxilake;"
    )
    upload_request = ("PUT", rf"^/{Azurite.account}/{BUCKET}/")
    part_request = ("PUT", r"comp=block(&|$)")
    throttling = Fault.status(
        503, body=AZURE_SERVER_BUSY, headers={"x-ms-error-code": "ServerBusy"}
    )
    server_error = Fault.status(
        500, body=AZURE_INTERNAL_ERROR, headers={"x-ms-error-code": "InternalError"}
    )
    refused_part = Fault.status(
        400, body=AZURE_BAD_REQUEST, headers={"x-ms-error-code": "InvalidBlockId"}
    )
    forbidden = Fault.status(
        403, body=b"", headers={"x-ms-error-code": "AuthorizationPermissionMismatch"}
    )
    upload_attempts = 5  # upload_file's attempts; each request made once (retry_total=0)
    cancels_failed_uploads = False  # blocks stay uncommitted until the next commit

    def __init__(self, azurite: Azurite, proxy: FaultProxy) -> None:
        self.azurite = azurite
        self.proxy = proxy
        self.service = azurite.client()

    def env(self) -> dict[str, str]:
        endpoint = self.proxy.url if self.proxy else self.azurite.url
        return {"AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string(endpoint)}

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        container = self.service.get_container_client(BUCKET)
        names = sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix))
        return {name: container.download_blob(name).readall() for name in names}

    def pending_uploads(self) -> int:
        container = self.service.get_container_client(BUCKET)
        pending = 0
        for blob in container.list_blobs(include=["uncommittedblobs"]):
            _, uncommitted = container.get_blob_client(blob.name).get_block_list("uncommitted")
            pending += bool(uncommitted)
        return pending

    def bucket_exists(self, name: str) -> bool:
        return name in {c.name for c in self.service.list_containers()}

    def reset(self) -> None:
        for container in self.service.list_containers():
            if container.name != BUCKET:
                self.service.delete_container(container.name)
        if not self.bucket_exists(BUCKET):
            self.service.create_container(BUCKET)
        client = self.service.get_container_client(BUCKET)
        for blob in client.list_blobs(include=["uncommittedblobs"]):
            client.delete_blob(blob.name)


def forget_filesystems() -> None:
    """fsspec caches filesystems by their arguments; the environment is not one of them."""
    from adlfs import AzureBlobFileSystem
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()
    AzureBlobFileSystem.clear_instance_cache()


# A process that publishes a file part by part (``argv``: file, URL, part size), to kill.
KILLED_UPLOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from taxi_assets.storage import publish
    from taxi_assets.storage.roots import resolve_root

    publish.UPLOAD_CHUNK_BYTES = int(sys.argv[3])
    publish.publish_file(Path(sys.argv[1]), resolve_root(sys.argv[2]))
    """
)


def kill_an_upload(store: LakeStore, source: Path, url: str, chunk: int) -> None:
    """Upload ``source`` to ``url`` in ``chunk``-byte parts in a subprocess, SIGKILLed
    once one part is stored and the next is held by the proxy (held until the caller
    clears the proxy)."""
    from taxi_assets_tests.faults_support import wait_for

    method, part = store.part_request
    assert store.proxy is not None
    proxy = store.proxy
    store.inject_part(Fault.delay(60), after=1)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOAD, str(source), url, str(chunk)],
        env=os.environ.copy(),
    )
    try:
        wait_for_request(proxy, method, part, count=2)
        wait_for("a stored part", lambda: proxy.requests_to(method, part) >= 1, 60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


# --- fixtures (imported by conftest) ------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_with_auth() -> Iterator[tuple[MotoServer, dict[str, tuple[str, str]]]]:
    """A moto_server of its own that checks signatures and IAM policies, with bucket
    ``taxi-lake`` and four users: ``admin`` (s3:*), ``reader`` (GetObject, ListBucket),
    ``sweeper`` (:data:`SWEEP_ACTIONS`) and ``lister`` (those but s3:AbortMultipartUpload)."""
    server = MotoServer()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        keys = {
            "admin": server.create_user("admin", ["s3:*"]),
            "reader": server.create_user("reader", ["s3:GetObject", "s3:ListBucket"]),
            "sweeper": server.create_user("sweeper", SWEEP_ACTIONS),
            "lister": server.create_user(
                "lister", [a for a in SWEEP_ACTIONS if a != "s3:AbortMultipartUpload"]
            ),
        }
        server.enforce_auth()
        yield server, keys
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[Azurite]:
    server = Azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azure_proxy(azurite_server: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite_server.url) as proxy:
        yield proxy


def _local(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LakeStore:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return LocalStore(tmp_path / "store")


def _gcs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LakeStore:
    from taxi_assets_tests.gcs_emulator import forget_filesystems as forget_gcs
    from taxi_assets_tests.gcs_emulator import speed_up_gcs_retries

    emulator = request.getfixturevalue("gcs")
    proxy = FaultProxy(emulator.host).start()
    request.addfinalizer(proxy.stop)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    forget_gcs()
    speed_up_gcs_retries(monkeypatch)
    return GcsStore(emulator, proxy)


def _s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LakeStore:
    moto: MotoServer = request.getfixturevalue("moto_server")
    proxy: FaultProxy = request.getfixturevalue("s3_proxy")
    proxy.clear()
    moto.reset()
    store = S3Store(moto, proxy)
    store.s3.create_bucket(Bucket=BUCKET)
    for name, value in store.env().items():
        monkeypatch.setenv(name, value)
    return store


def _azure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LakeStore:
    azurite: Azurite = request.getfixturevalue("azurite_server")
    proxy: FaultProxy = request.getfixturevalue("azure_proxy")
    proxy.clear()
    store = AzureStore(azurite, proxy)
    store.reset()
    for name, value in store.env().items():
        monkeypatch.setenv(name, value)
    return store


_STORES = {"local": _local, "gcs": _gcs, "s3": _s3, "azure": _azure}
OBJECT_STORES = ["gcs", "s3", "azure"]


def _store(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakeStore]:
    from taxi_assets.storage import publish

    monkeypatch.setattr(publish, "UPLOAD_BACKOFF_SECONDS", 0.01)
    forget_filesystems()
    store = _STORES[name](request, monkeypatch)
    monkeypatch.setenv("TAXI_LAKE_URL", store.url)
    yield store
    if store.proxy is not None:
        store.proxy.clear()
    forget_filesystems()


@pytest.fixture(params=list(_STORES))
def lake_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakeStore]:
    """The lake on each store in turn, as ``TAXI_LAKE_URL`` and the provider's environment."""
    yield from _store(request.param, request, monkeypatch)


@pytest.fixture(params=OBJECT_STORES)
def object_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakeStore]:
    """The lake on GCS, S3 and Azure in turn (what a local folder has no equivalent of)."""
    yield from _store(request.param, request, monkeypatch)


@pytest.fixture
def s3_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    for store in _store("s3", request, monkeypatch):
        assert isinstance(store, S3Store)
        yield store


@pytest.fixture
def azure_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AzureStore]:
    for store in _store("azure", request, monkeypatch):
        assert isinstance(store, AzureStore)
        yield store
