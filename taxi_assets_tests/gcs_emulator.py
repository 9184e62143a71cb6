"""A local Google Cloud Storage for tests: ``gcp-storage-emulator`` in this process.

The emulator serves the GCS JSON API on 127.0.0.1 (a free port) from memory, in a thread.
``google-cloud-storage`` and gcsfs reach it through ``STORAGE_EMULATOR_HOST``. One
addition over the stock server: cancelling a resumable upload with DELETE (which real GCS
answers with 499 and gcsfs sends when an upload fails). Faults come from a
:class:`~taxi_assets_tests.fault_proxy.FaultProxy` in front of it, as for S3 and Azure.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import server
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

BUCKET = "taxi-lake"


class _Server(server.HTTPServer):
    request_queue_size = 64

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        import sys

        # Readers that close a range request early (pyarrow reading footers) are normal.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class GcsEmulator:
    """An in-memory GCS on ``127.0.0.1``; ``host`` is the ``STORAGE_EMULATOR_HOST`` value."""

    def __init__(self, buckets: tuple[str, ...] = (BUCKET,), data_dir: Path | None = None) -> None:
        from gcp_storage_emulator.storage import Storage

        # In memory, or on disk under data_dir (objects as plain files: see object_root).
        self.storage = Storage(
            use_memory_fs=data_dir is None, data_dir=str(data_dir) if data_dir else None
        )
        _serialise(self.storage)
        handler = partial(_handler_class(), self)
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self.port = self._httpd.server_address[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        for name in buckets:
            self.create_bucket(name)

    def start(self) -> GcsEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers.buckets import create_bucket

        create_bucket(name, self.storage)

    def objects(self, bucket: str = BUCKET, prefix: str = "") -> dict[str, bytes]:
        """Every stored object under ``prefix``: name -> content."""
        listed, _prefixes = self.storage.get_file_list(bucket, prefix=prefix or None)
        names = [obj["name"] for obj in listed if obj["name"].startswith(prefix)]
        return {name: self.storage.get_file(bucket, name) for name in sorted(names)}

    def pending_uploads(self) -> int:
        """Resumable upload sessions neither finished nor cancelled."""
        return len(self.storage.resumable)


def _serialise(storage: Any) -> None:
    """Make each storage call atomic, as GCS's object writes are.

    The emulator truncates an object's file and then writes it, and its HTTP server runs a
    thread per request, so a reader could get half of an object another request is
    replacing (seen as a torn ``revisions.json`` in test_revision_concurrency.py). Real
    GCS never shows a partial object: one lock around every storage call gives the same.
    """
    lock = threading.RLock()

    def locked(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    for name in dir(storage):
        method = getattr(storage, name)
        if not name.startswith("_") and callable(method):
            setattr(storage, name, locked(method))


def _handler_class() -> type:
    from gcp_storage_emulator.server import RequestHandler

    class Handler(RequestHandler):
        def __init__(self, emulator: GcsEmulator, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            self.emulator = emulator
            super().__init__(emulator.storage, *args, **kwargs)

        def do_DELETE(self) -> None:
            url = urlparse(self.path)
            upload_id = parse_qs(url.query).get("upload_id")
            if url.path.startswith("/upload/") and upload_id:
                self._cancel_upload(upload_id[0])
                return
            super().do_DELETE()

        def _cancel_upload(self, upload_id: str) -> None:
            from gcp_storage_emulator.exceptions import NotFound

            storage = self.emulator.storage
            try:
                storage.delete_resumable_file_obj(upload_id)
                status = 499  # what GCS answers to a cancelled upload
            except NotFound:
                status = 404
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def object_root(data_dir: Path) -> Path:
    """Where an emulator on disk keeps object ``NAME`` of bucket ``B``: ``<root>/B/NAME``."""
    from gcp_storage_emulator.settings import STORAGE_DIR

    return data_dir / STORAGE_DIR


@contextmanager
def emulated_gcs(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path | None = None
) -> Iterator[GcsEmulator]:
    """A running emulator with bucket ``taxi-lake``; this process points at it.

    Tests get it as conftest's ``gcs`` fixture.
    """
    with GcsEmulator(data_dir=data_dir) as emulator:
        point_at(emulator, monkeypatch)
        yield emulator
        forget_filesystems()


def point_at(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.host)
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("TAXI_GCP_PROJECT", raising=False)
    forget_filesystems()


def forget_filesystems() -> None:
    """Drop cached gcsfs instances: each test's emulator is a new server."""
    import gcsfs
    import gcsfs.core

    gcsfs.GCSFileSystem.clear_instance_cache()
    gcsfs.core.GCSFileSystem.clear_instance_cache()


def speed_up_gcs_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """gcsfs's per-request retries and the upload retries, without the waiting."""
    import asyncio
    import types

    import gcsfs.retry

    from taxi_assets.storage import publish

    async def short_sleep(_seconds: float) -> None:
        await asyncio.sleep(0.01)

    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=short_sleep))
    monkeypatch.setattr(publish, "UPLOAD_BACKOFF_SECONDS", 0.01)


def fake_service_account(path: Path, token_uri: str = "http://127.0.0.1:9/token") -> dict:
    """Write a well-formed service-account key file (a fresh RSA key, no real account)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "taxi-sa-project",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": "taxi-lake@taxi-sa-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return info


class FakeTokenServer:
    """Google's OAuth token endpoint, faked: service-account key files exchange their JWT here.

    Hands out ``access_token`` (a credential too) or, with ``fail = True``, refuses the
    key as Google does for a revoked one.
    """

    def __init__(self) -> None:
        self.access_token = f"ya29.fake-{uuid.uuid4().hex}"
        self.fail = False
        self.refusal = "Invalid JWT Signature."  # Google's error_description when failing
        self.exchanges = 0
        token_server = self

        class Handler(server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token_server.exchanges += 1
                body: dict[str, Any]
                if token_server.fail:
                    status = 400
                    body = {"error": "invalid_grant", "error_description": token_server.refusal}
                else:
                    status = 200
                    body = {
                        "access_token": token_server.access_token,
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    }
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeTokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
