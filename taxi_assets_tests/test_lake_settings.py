"""Lake URLs and credentials per store: the URL's scheme picks the store, each provider's
standard environment supplies the credentials, and a bad setting fails before any request
with a message that names the problem (and no secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_assets.storage import gcs as gcs_settings
from taxi_assets.storage import s3 as s3_settings
from taxi_assets.storage.errors import LakeAccessError, LakeConfigurationError
from taxi_assets.storage.gcs import GcsConfigurationError
from taxi_assets.storage.publish import publish_file
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.emulators import REGION, MotoServer
from taxi_assets_tests.gcs_emulator import GcsEmulator, fake_service_account
from taxi_assets_tests.lake_stores import BUCKET, AzureStore, S3Store, forget_filesystems


@pytest.mark.parametrize(
    "url",
    [
        *("gs://", "gs:///prefix", "gs://Upper_Case/x", "gs://b/../x", "gs://bucket/a//x"),
        *("s3://", "s3:///prefix", "s3://ab/x", "s3://Bucket/x", "s3://b_b/x", "s3a://b/./x"),
        *(
            "az://",
            "az://ab/x",
            "az://a--b/x",
            "az://Lake/x",
            "abfs://c@acct.dfs.core.windows.net/x",
        ),
    ],
)
def test_bad_urls_are_rejected_before_any_request(url: str) -> None:
    with pytest.raises(LakeConfigurationError, match="not a valid|must not hold|not a "):
        resolve_root(url)


@pytest.mark.parametrize(
    ("url", "canonical", "filesystem"),
    [
        ("gcs://taxi-lake/nyc/", "gs://taxi-lake/nyc", "GCSFileSystem"),
        ("s3a://taxi-lake/nyc/", "s3://taxi-lake/nyc", "S3FileSystem"),
        ("abfs://taxi-lake/nyc/", "az://taxi-lake/nyc", "AzureBlobFileSystem"),
    ],
)
def test_the_scheme_picks_the_store(
    url: str, canonical: str, filesystem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", AzureStore.example_connection_string)
    root = resolve_root(url)  # no request is sent
    assert (str(root), root.path) == (canonical, "taxi-lake/nyc")
    assert type(root.fs).__name__ == filesystem
    assert root.storage_options["use_listings_cache"] is False  # another process may
    # replace a month: never answer from an old listing


def test_gcs_roots_and_project(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    root = resolve_root("gcs://taxi-lake/nyc/")
    assert root.fs.project == gcs_settings.EMULATOR_PROJECT
    monkeypatch.setenv("TAXI_GCP_PROJECT", "nyc-taxi-prod")
    assert resolve_root("gs://taxi-lake/nyc").fs.project == "nyc-taxi-prod"
    assert resolve_root("gs://taxi-lake").path == "taxi-lake/"


def test_gcs_credentials_come_from_the_service_account_file(
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


# --- S3: botocore's credential chain and endpoint -----------------------------------------


def test_s3_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "endpoint_url" not in s3_settings.s3_storage_options()  # AWS itself
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert s3_settings.s3_storage_options()["endpoint_url"] == "http://127.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001")  # S3's own wins
    assert s3_settings.s3_storage_options()["endpoint_url"] == "http://127.0.0.1:9001"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert "endpoint_url" not in s3_settings.s3_storage_options()


def test_s3_credentials_and_endpoint_from_a_profile(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_PROFILE names a profile of the shared config file, with keys and an endpoint."""
    moto_server.reset()
    s3 = moto_server.client()  # before AWS_PROFILE is set: it has its own keys
    s3.create_bucket(Bucket=BUCKET)
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile lake]\nregion = {REGION}\nendpoint_url = {moto_server.url}\n"
        "aws_access_key_id = AKIAPROFILE000000000\naws_secret_access_key = from-the-profile\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "lake")
    forget_filesystems()
    (tmp_path / "month").write_bytes(b"rows")
    publish_file(tmp_path / "month", resolve_root(f"s3://{BUCKET}/nyc") / "month")
    body = s3.get_object(Bucket=BUCKET, Key="nyc/month")["Body"].read()
    assert body == b"rows"


def test_s3_without_credentials_says_where_they_are_looked_for(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)  # never AWS itself in tests
    forget_filesystems()
    (tmp_path / "month").write_bytes(b"rows")
    with pytest.raises(LakeAccessError, match="no AWS credentials found: set AWS_ACCESS_KEY_ID"):
        publish_file(tmp_path / "month", resolve_root(f"s3://{BUCKET}/nyc") / "month")


# --- Azure: adlfs reads the environment -------------------------------------------------------


def test_azure_account_name_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Account and key give the account's https endpoint (no request is sent)."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "taxilakeprod")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AzureStore.example_key)
    forget_filesystems()
    root = resolve_root("az://taxi-lake/nyc")
    client = root.fs.service_client
    assert (client.account_name, client.primary_hostname) == (
        "taxilakeprod",
        "taxilakeprod.blob.core.windows.net",
    )
    assert client.credential.account_key == AzureStore.example_key


@pytest.mark.parametrize(
    "connection_string", [None, "AccountName=x;AccountKey=not-base64-at-all;Nonsense"]
)
def test_azure_without_usable_credentials_fails_naming_the_variables(
    connection_string: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection_string is not None:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    forget_filesystems()
    with pytest.raises(LakeConfigurationError, match="AZURE_STORAGE_CONNECTION_STRING") as raised:
        resolve_root("az://taxi-lake/nyc")
    assert "not-base64-at-all" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_s3_store_fixture_uses_the_environment(s3_store: S3Store) -> None:
    """The suite's S3 store is configured as production is: only environment variables."""
    root = resolve_root(s3_store.url)
    assert root.storage_options["endpoint_url"] == s3_store.env()["AWS_ENDPOINT_URL"]
    assert "key" not in root.storage_options and "secret" not in root.storage_options
