"""Local S3 and Azure Blob Storage for tests: ``moto_server`` and Azurite, real servers in
subprocesses on 127.0.0.1 (free ports), started by the tests.

- moto (PyPI ``moto[s3]``): ``moto_server -H 127.0.0.1 -p PORT``, in memory. Any
  credentials are accepted until :meth:`MotoServer.enforce_auth`; then only keys created
  in moto's IAM, with their policies.
- Azurite (npm ``azurite``, installed by ``make azurite`` under ``.cache/node``):
  ``azurite-blob`` in memory, with an account whose key is random (a real secret for the
  secret-scanning tests). ``--skipApiVersionCheck``: the SDK speaks a newer API version
  than Azurite 3.35 knows; ``--disableTelemetry``: nothing leaves the machine.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AZURITE_BLOB = REPO / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"
MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    """Until ``url`` answers at all (any HTTP status), or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer on {url} within {timeout:.0f}s")


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class MotoServer:
    """``moto_server`` on a free port; ``url`` is its endpoint."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(f"{self.url}/moto-api/data.json", self.process, "moto_server")
        except BaseException:
            stop_process(self.process)
            raise

    def stop(self) -> None:
        stop_process(self.process)

    def _post(self, path: str, body: bytes = b"") -> None:
        # text/plain: with a form content type Flask consumes the body (an HTTP 500).
        request = urllib.request.Request(
            f"{self.url}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).read()

    def reset(self) -> None:
        """Forget every bucket, object, upload, IAM user and key."""
        self._post("/moto-api/reset")

    def client(self, service: str = "s3", key: str = "testing", secret: str = "testing") -> Any:
        """A boto3 client talking to moto directly (not through any fault proxy)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def create_user(self, name: str, actions: list[str]) -> tuple[str, str]:
        """An IAM user allowed ``actions`` on everything: ``(access key id, secret)``."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName="lake", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def enforce_auth(self) -> None:
        """From now on every request must be signed by an IAM user's key and allowed."""
        self._post("/moto-api/reset-auth", b"0")


class AzuriteNotInstalled(RuntimeError):
    pass


class Azurite:
    """``azurite-blob`` on a free port, in memory, serving account ``account``."""

    account = "taxilake"

    def __init__(self) -> None:
        if not AZURITE_BLOB.exists():
            raise AzuriteNotInstalled(
                f"Azurite is not installed at {AZURITE_BLOB.relative_to(REPO)}: run `make azurite` "
                "(needs Node.js and npm; `make test` does it)"
            )
        self.key = base64.b64encode(os.urandom(64)).decode()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # Azurite writes a debug log and its state files into its working folder.
        self.workdir = Path(tempfile.mkdtemp(prefix="taxi-azurite-"))
        self.process = subprocess.Popen(
            [
                str(AZURITE_BLOB),
                *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
                *("--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry"),
                "--silent",
            ],
            cwd=self.workdir,
            env={**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.key}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(f"{self.url}/{self.account}?comp=list", self.process, "Azurite")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def connection_string(self, endpoint: str | None = None, key: str | None = None) -> str:
        """How clients reach it (``endpoint``: e.g. a fault proxy in front)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={key or self.key};BlobEndpoint={endpoint or self.url}/{self.account};"
        )

    def client(self) -> Any:
        """A synchronous ``BlobServiceClient`` talking to Azurite directly."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string(), retry_total=0)

    def sas_connection_string(self, container: str, endpoint: str, **permissions: bool) -> str:
        """A connection string holding only a container SAS with ``permissions``
        (``read=True, list=True``...), valid for an hour."""
        from datetime import UTC, datetime, timedelta

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(
            self.account,
            container,
            account_key=self.key,
            permission=ContainerSasPermissions(**permissions),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"BlobEndpoint={endpoint}/{self.account};SharedAccessSignature={sas}"
