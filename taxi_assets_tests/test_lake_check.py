"""``python -m taxi_assets.cli lake check [URL]`` on every object store: reachable and
writable, or a clear message for a missing bucket, refused credentials, or a missing
permission (moto with IAM enforced, Azurite with a wrong key and a read-only SAS, GCS
with a refused service-account key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taxi_assets import cli
from taxi_assets_tests.emulators import REPO, MotoServer
from taxi_assets_tests.gcs_emulator import FakeTokenServer, fake_service_account
from taxi_assets_tests.lake_stores import BUCKET, AzureStore, LakeStore, forget_filesystems


def lake_check(capsys: pytest.CaptureFixture[str], *url: str) -> tuple[int, str]:
    """The CLI in this process: (exit status, what it printed)."""
    status = cli.main(["lake", "check", *url])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


def test_a_usable_bucket_passes_and_the_probe_is_removed(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    status, printed = lake_check(capsys)  # the URL from TAXI_LAKE_URL
    assert status == 0, printed
    assert printed.startswith(f"{object_store.uri('nyc')}: reachable and writable")
    assert object_store.objects() == {}  # the probe object is gone
    assert object_store.pending_uploads() == 0


@pytest.mark.parametrize("object_store", ["s3"], indirect=True)
def test_a_small_temporary_folder_is_noted(
    object_store: LakeStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs on an object-store lake stage each file in the temporary folder before the
    upload (an FHVHV month ~0.6 GB): a real 64 MiB tmpfs there is noted, not an error."""
    import shutil
    import tempfile

    from taxi_assets.storage.check import STAGING_ROOM_BYTES
    from taxi_assets_tests.faults_support import tiny_tmpfs

    status, printed = lake_check(capsys)
    roomy = shutil.disk_usage(tempfile.gettempdir()).free >= STAGING_ROOM_BYTES
    assert status == 0 and ("temporary folder" not in printed) == roomy, printed
    with tiny_tmpfs(tmp_path / "tmp", size="64m") as small:
        monkeypatch.setattr(tempfile, "tempdir", str(small))
        status, printed = lake_check(capsys)
    assert status == 0, printed
    (note,) = [line for line in printed.splitlines() if "temporary folder" in line]
    assert note.startswith(f"note: the temporary folder {small} has 0.0") and "TMPDIR" in note


def test_a_missing_bucket_is_named(
    object_store: LakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    url = object_store.url.replace(BUCKET, "no-such-bucket")
    status, printed = lake_check(capsys, url)
    assert status == 1
    word = "container" if object_store.name == "azure" else "bucket"
    assert f"{word} 'no-such-bucket' does not exist" in printed
    assert not object_store.bucket_exists("no-such-bucket")


def test_the_real_command_line(object_store: LakeStore) -> None:
    """As an operator runs it: a process, the environment, an exit status, no traceback."""
    missing = object_store.url.replace(BUCKET, "no-such-bucket")
    command = [sys.executable, "-m", "taxi_assets.cli", "lake", "check", missing]
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and "does not exist" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_local_lake_folder_is_created_and_probed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "new" / "lake"
    status, printed = lake_check(capsys, str(lake))
    assert status == 0, printed
    assert printed.strip() == f"{lake}: writable (local folder)"
    assert lake.is_dir() and list(lake.iterdir()) == []  # the probe file is gone


def test_a_local_lake_that_cannot_be_a_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    status, printed = lake_check(capsys, f"file://{occupied}/lake")
    assert status == 1
    assert printed.startswith(f"error: {occupied}/lake: the local lake folder is not writable")


def test_neither_a_folder_nor_an_object_store_url(capsys: pytest.CaptureFixture[str]) -> None:
    status, printed = lake_check(capsys, "http://127.0.0.1:9/lake")
    assert status == 1
    assert "neither a local folder nor an object store URL" in printed
    assert "gs://BUCKET/PREFIX, s3://BUCKET/PREFIX or az://CONTAINER/PREFIX" in printed


def test_a_store_that_answers_503_every_time_is_not_said_to_be_silent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An endpoint that answers, with S3's InternalError (503), every time: an outage on
    its side, not a wrong endpoint (a loopback server of the test's own)."""
    import http.server
    import threading

    class Failing(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = b"<Error><Code>InternalError</Code><Message>internal error</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    forget_filesystems()
    try:
        status, printed = lake_check(capsys, f"s3://{BUCKET}/nyc")
    finally:
        server.shutdown()
        forget_filesystems()
    assert status == 1
    assert "the store answered HTTP 503 every time it was asked" in printed
    assert "did not answer" not in printed


def test_runs_refuse_a_lake_url_the_commands_refuse() -> None:
    """`memory://` passed a run (even with TAXI_PRODUCTION=1): its lake was written into
    the run's own memory and gone when the process ended; the commands refused it."""
    from taxi_assets.resources import LakeResource
    from taxi_assets.storage.errors import LakeConfigurationError

    with pytest.raises(LakeConfigurationError, match="neither a local folder nor an object"):
        LakeResource(url="memory://taxi-lake/nyc").root()
    abfss = "abfss://taxi-lake@taxilakeprod.dfs.core.windows.net/nyc"
    with pytest.raises(LakeConfigurationError, match="give an Azure lake as az://CONTAINER"):
        LakeResource(url=abfss).root()


def test_a_store_that_does_not_answer_is_one_line_naming_where_to_look(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong endpoint (nothing listens on port 1): a 103-line traceback before."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    forget_filesystems()
    status, printed = lake_check(capsys, f"s3://{BUCKET}/nyc")
    forget_filesystems()
    assert status == 1
    assert printed.startswith(f"error: s3://{BUCKET}/nyc: cannot list bucket '{BUCKET}': ")
    assert "the store did not answer (EndpointConnectionError" in printed
    assert printed.rstrip().endswith("check where it is (AWS_ENDPOINT_URL) and the network")
    assert "Traceback" not in printed
    status = cli.main(["lake", "sweep", f"s3://{BUCKET}/nyc"])
    swept = capsys.readouterr()
    forget_filesystems()
    assert status == 1
    assert swept.err.startswith(f"error: cannot list what killed runs left in s3://{BUCKET}/nyc")
    assert "the store did not answer" in swept.err


# --- S3: moto with IAM enforced ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("admin", "reachable and writable"),
        (
            "unknown key",
            "cannot list bucket 'taxi-lake': S3 refused the credentials (InvalidAccessKeyId)",
        ),
        ("wrong secret", "S3 refused the credentials (SignatureDoesNotMatch)"),
        ("reader", "cannot write s3://taxi-lake/nyc/.taxi-probe-"),
        ("nobody", "no AWS credentials found"),
    ],
)
def test_s3_credentials_and_permissions(
    who: str,
    expected: str,
    moto_with_auth: tuple[MotoServer, dict[str, tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, keys = moto_with_auth
    key, secret = {
        "admin": keys["admin"],
        "unknown key": ("AKIAUNKNOWN000000000", "an-unknown-secret-value"),
        "wrong secret": (keys["admin"][0], "wrong"),
        "reader": keys["reader"],
        "nobody": (None, None),
    }[who]
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    if key is not None and secret is not None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    forget_filesystems()
    status, printed = lake_check(capsys, f"s3://{BUCKET}/nyc")
    assert status == (0 if who == "admin" else 1), printed
    assert expected in printed
    if who == "reader":
        assert "access denied (AccessDenied)" in printed
        assert "s3:PutObject" in printed
    if secret is not None:
        assert secret not in printed


# --- Azure: a wrong key, a read-only SAS --------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ("wrong key", "cannot list container 'taxi-lake': Azure refused the credentials"),
        ("read-only SAS", "cannot write az://taxi-lake/nyc/.taxi-probe-"),
        ("read-write SAS", "reachable and writable"),
    ],
)
def test_azure_credentials_and_permissions(
    credentials: str,
    expected: str,
    azure_store: AzureStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    azurite, endpoint = azure_store.azurite, azure_store.azurite.url
    if credentials == "wrong key":
        wrong = AzureStore.example_key
        connection = azurite.connection_string(endpoint, key=wrong)
    elif credentials == "read-only SAS":
        connection = azurite.sas_connection_string(BUCKET, endpoint, read=True, list=True)
    else:
        connection = azurite.sas_connection_string(
            BUCKET, endpoint, read=True, list=True, write=True, delete=True
        )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    forget_filesystems()
    status, printed = lake_check(capsys)
    assert status == (0 if credentials == "read-write SAS" else 1), printed
    assert expected in printed
    if credentials == "read-only SAS":
        assert "access denied (AuthorizationPermissionMismatch)" in printed
    assert azurite.key not in printed
    assert "sig=" not in printed  # the SAS signature stays secret
    assert azure_store.objects() == {}


# --- GCS: a service-account key that Google refuses ---------------------------------------------


def test_gcs_refused_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeTokenServer() as token_server:
        token_server.fail = True
        key_info = fake_service_account(tmp_path / "sa.json", token_uri=token_server.url)
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "sa.json"))
        status, printed = lake_check(capsys, f"gs://{BUCKET}/nyc")
    assert status == 1
    assert "cannot list bucket 'taxi-lake': Google refused the credentials" in printed
    assert "(invalid_grant: Invalid JWT Signature.)" in printed  # Google's own words
    assert "check GOOGLE_APPLICATION_CREDENTIALS" in printed and "clock" not in printed
    assert key_info["private_key_id"] not in printed
    assert token_server.exchanges > 0  # the key was tried, and refused


# Google's answer to a token request signed with a clock minutes off (as reported for
# service-account keys; the token server is faked here: Google's cannot be reached).
CLOCK_OFF = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
    "timeframe. Check your iat and exp values in the JWT claim."
)


def test_gcs_credentials_refused_for_a_clock_that_is_off_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good key on a machine whose clock is off is refused like a bad one: the message
    said to check the key; it now says to check the clock."""
    with FakeTokenServer() as token_server:
        token_server.fail = True
        token_server.refusal = CLOCK_OFF
        fake_service_account(tmp_path / "sa.json", token_uri=token_server.url)
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "sa.json"))
        status, printed = lake_check(capsys, f"gs://{BUCKET}/nyc")
    assert status == 1
    assert "Google refused the credentials (invalid_grant: Invalid JWT: Token must" in printed
    assert "this machine's clock is probably off" in printed and "NTP" in printed
