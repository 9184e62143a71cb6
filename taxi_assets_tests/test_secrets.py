"""No secret reaches Dagster's records: not the warehouse password, not the GCP key file,
not an AWS secret access key, an Azure account key or a SAS signature.

Secrets enter only through the environment (``TAXI_WAREHOUSE_URL`` with a password, a
service-account key file named by ``GOOGLE_APPLICATION_CREDENTIALS``, the AWS and Azure
credential variables). Materializations
that succeed and that fail are scanned: every event log entry (messages, metadata,
errors with their causes and stack traces), the run and its job snapshot, Python log
records and everything printed.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from taxi_assets.definitions import build_resources
from taxi_assets.resources import LakeResource, PostgresResource, TaxiSourceResource
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets.storage import read_retries
from taxi_assets.storage.revision_manifest import read_manifest
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.emulators import MotoServer
from taxi_assets_tests.gcs_emulator import (
    FakeTokenServer,
    GcsEmulator,
    fake_service_account,
    speed_up_gcs_retries,
)
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.lake_stores import BUCKET, AzureStore, forget_filesystems
from taxi_assets_tests.pipeline import pipeline_resources, run

MONTH = "2021-01"
KEYS = ["raw/yellow_tripdata", "lake/yellow_tripdata", "warehouse/yellow_tripdata"]


@pytest.fixture
def token_server() -> Iterator[FakeTokenServer]:
    with FakeTokenServer() as server:
        yield server


@pytest.fixture
def password_url(pg_server_url: str) -> Iterator[tuple[str, str]]:
    """A role with a password and its own database: ``(url with the password, password)``."""
    role = f"taxi_{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    admin = sa.create_engine(sqlalchemy_url(pg_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        connection.exec_driver_sql(f"CREATE DATABASE {role} OWNER {role}")
    url = (
        sa.make_url(pg_server_url)
        .set(username=role, password=password, database=role)
        .render_as_string(hide_password=False)
    )
    try:
        yield url, password
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def env_resources(mirror_url: str) -> dict[str, Any]:
    """The production wiring: every location and credential from the environment."""
    return build_resources(source=pipeline_resources(mirror_url, None)["source"])


def records_of(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    parts = [serialize_value(entry) for entry in instance.all_logs(run_id)]
    parts.append(serialize_value(run))
    if run.job_snapshot_id:
        parts.append(serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
    return "\n".join(parts)


def secret_fragments(password: str, key_info: dict, access_token: str) -> list[str]:
    key_lines = [
        line
        for line in key_info["private_key"].splitlines()
        if line and not line.startswith("-----")
    ]
    return [password, key_info["private_key_id"], access_token, *key_lines]


def test_no_secret_in_records_logs_or_errors(
    gcs: GcsEmulator,
    mirror: FaultyMirror,
    password_url: tuple[str, str],
    token_server: FakeTokenServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    speed_up_gcs_retries(monkeypatch)
    url, password = password_url
    key_info = fake_service_account(tmp_path / "sa.json", token_uri=token_server.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "sa.json"))
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", url)
    monkeypatch.setenv("TAXI_LAKE_URL", "gs://taxi-lake/nyc")
    resources = env_resources(mirror.url)
    runs: list[dg.ExecuteInProcessResult] = []

    # 1. Succeeds: raw and lake on GCS (the emulator), the warehouse with the password.
    runs.append(run(KEYS, resources, instance, MONTH))
    assert runs[-1].success

    # 2. Fails in the warehouse: same password, a database that does not exist.
    bad_db = sa.make_url(url).set(database="no_such_db").render_as_string(hide_password=False)
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", bad_db)
    runs.append(run(KEYS[2:], resources, instance, MONTH, raise_on_error=False))
    assert not runs[-1].success

    # 3. Fails on GCS: real GCS (no emulator) with the key file, which Google refuses.
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", url)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    token_server.fail = True
    runs.append(run(KEYS[1:2], resources, instance, MONTH, raise_on_error=False))
    assert not runs[-1].success
    errors = [str(e.step_failure_data.error) for r in runs for e in r.get_step_failure_events()]
    assert any("no_such_db" in error for error in errors), errors
    assert any("Invalid Credentials" in error for error in errors), errors
    assert len(errors) == 2

    scanned = "\n".join(records_of(instance, r.run_id) for r in runs)
    scanned += "\n".join(record.getMessage() for record in caplog.records)
    printed = capfd.readouterr()
    scanned += printed.out + printed.err
    assert "warehouse" in scanned and "yellow_tripdata" in scanned  # the scan sees content
    assert token_server.exchanges > 0  # the key file was used
    for secret in secret_fragments(password, key_info, token_server.access_token):
        assert secret not in scanned, f"a secret leaked: {secret[:6]}..."


def test_a_secret_bound_with_envvar_is_recorded_by_name_only(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In code, secrets go through ``dg.EnvVar``: Dagster then records the variable's name.

    (A literal ``PostgresResource(url="postgresql://u:pw@...")`` would be stored in the job
    snapshot in Dagster's database and shown in the UI.)
    """
    password = f"Pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("TAXI_TEST_SECRET_URL", f"postgresql://u:{password}@127.0.0.1:9/db")

    @dg.asset
    def needs_database(warehouse: PostgresResource) -> str:
        return warehouse.describe()

    resources = {"warehouse": PostgresResource(url=dg.EnvVar("TAXI_TEST_SECRET_URL"))}
    result = dg.materialize([needs_database], resources=resources, instance=instance)
    assert result.output_for_node("needs_database") == "postgresql://127.0.0.1:9/db"
    scanned = records_of(instance, result.run_id)
    assert "TAXI_TEST_SECRET_URL" in scanned
    assert password not in scanned


# --- S3 and Azure: access keys, account keys, SAS tokens ---------------------------------------


def scan_runs(
    runs: list[dg.ExecuteInProcessResult],
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> str:
    scanned = "\n".join(records_of(instance, r.run_id) for r in runs)
    scanned += "\n".join(record.getMessage() for record in caplog.records)
    printed = capfd.readouterr()
    scanned += printed.out + printed.err
    assert "yellow_tripdata" in scanned  # the scan sees content
    return scanned


def test_no_s3_secret_in_records_logs_or_errors(
    moto_with_auth: tuple[MotoServer, dict[str, tuple[str, str]]],
    mirror: FaultyMirror,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server, keys = moto_with_auth  # moto checks every signature against its IAM keys
    key_id, secret = keys["admin"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("TAXI_LAKE_URL", f"s3://{BUCKET}/secrets")
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    forget_filesystems()
    resources = env_resources(mirror.url)
    runs = [run(KEYS, resources, instance, MONTH)]  # 1. succeeds
    assert runs[-1].success

    wrong = f"wrong-{uuid.uuid4().hex}"  # 2. S3 refuses the signature of a wrong secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    forget_filesystems()
    runs.append(run(KEYS[1:2], resources, instance, MONTH, raise_on_error=False))
    assert not runs[-1].success
    error = str(runs[-1].get_step_failure_events()[0].step_failure_data.error)
    # Said in the store's words, naming what to check (it was botocore's "Forbidden").
    assert f"cannot read the lake at s3://{BUCKET}/secrets" in error, error
    assert "AWS_SECRET_ACCESS_KEY" in error, error

    scanned = scan_runs(runs, instance, caplog, capfd)
    for leaked in (secret, wrong):
        assert leaked not in scanned, f"a secret leaked: {leaked[:6]}..."


def test_no_azure_secret_in_records_logs_or_errors(
    azure_store: AzureStore,
    mirror: FaultyMirror,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    azurite = azure_store.azurite  # an account with a random key, not the well-known one
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    resources = env_resources(mirror.url)
    runs = [run(KEYS, resources, instance, MONTH)]  # 1. succeeds with the account key
    assert runs[-1].success

    # 2. A SAS that may only read: the raw step's upload is refused.
    sas = azurite.sas_connection_string(BUCKET, azurite.url, read=True, list=True)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", sas)
    forget_filesystems()
    runs.append(run(KEYS[:1], resources, instance, "2021-02", raise_on_error=False))
    assert not runs[-1].success
    error = str(runs[-1].get_step_failure_events()[0].step_failure_data.error)
    assert "AuthorizationPermissionMismatch" in error, error

    # 3. A wrong account key: Azure refuses every request.
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string(key=wrong_key))
    forget_filesystems()
    runs.append(run(KEYS[1:2], resources, instance, MONTH, raise_on_error=False))
    assert not runs[-1].success
    error = str(runs[-1].get_step_failure_events()[0].step_failure_data.error)
    assert "cannot read the lake at az://" in error, error  # not ten lines of Azure's XML

    scanned = scan_runs(runs, instance, caplog, capfd)
    signature = parse_qs(sas.split("SharedAccessSignature=", 1)[1])["sig"][0]
    for leaked in (azurite.key, wrong_key, signature):
        assert leaked not in scanned, f"a secret leaked: {leaked[:6]}..."


def test_no_azure_signature_in_a_timeout_its_warnings_or_its_chain(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint that stops answering (its accept queue full: connects hang) fails each
    request with aiohttp's "Connection timeout to host URL", the SAS in the URL's query:
    it was in every retry's warning (the run's log in the UI), the step's error and the
    alert. Azure's own connect timeout (300 s) and retries are cut for the test; ours are
    left, with short pauses."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    signature = f"Sig{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"SharedAccessSignature=sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2030-01-01&sig={signature}",
    )
    monkeypatch.setattr(read_retries, "READ_BACKOFF_SECONDS", 0.01)
    forget_filesystems()
    try:
        root = resolve_root(f"az://{BUCKET}/secrets")
        pipeline = root.fs.service_client._pipeline
        for policy in pipeline._impl_policies:
            if hasattr(policy, "total_retries"):
                policy.total_retries = 0
        pipeline._transport.connection_config.timeout = 1
        with caplog.at_level("WARNING"), pytest.raises(Exception) as raised:
            read_manifest(root / "revisions.json")
    finally:
        queued.close()
        listener.close()
        forget_filesystems()
    chain: list[BaseException] = []
    error: BaseException | None = raised.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    texts = [f"{type(e).__name__}: {e}" for e in chain]
    warnings = [record.getMessage() for record in caplog.records]
    assert "Connection timeout to host" in texts[0] and "?***" in texts[0], texts
    assert len(warnings) == read_retries.READ_ATTEMPTS - 1, warnings
    for text in texts + warnings:
        assert signature not in text, text


def test_a_password_holding_an_unescaped_at_sign_is_not_taken_for_the_host() -> None:
    """``postgresql://u:pa@ss@host/db`` was split at the first "@": the connection then
    failed with "failed to resolve host 'ss@host'", the password's tail in the run's error."""
    for url in (
        "postgresql://taxi:Pw@Tail-Of-Secret@127.0.0.1:9/taxi",
        # Then "/", "?" or "#": the host was "Tail" (looked up in DNS) and the database
        # "Of-Secret@127.0.0.1:9/taxi", both in the errors and describe().
        "postgresql://taxi:Pw@Tail/Of-Secret@127.0.0.1:9/taxi",
        "postgresql://taxi:Pw@Tail?Of-Secret@127.0.0.1:9/taxi",
        "postgresql://taxi:Pw@Tail#Of-Secret@127.0.0.1:9/taxi",
        # A '?' in such a password is no start of parameters: the host was "Tail" again,
        # or the password's end went into an sslmode error.
        "postgresql://taxi:Pw@Tail?k=Of-Secret@db.internal:5432/taxi",
        "postgresql://taxi:Pw@127.0.0.1?sslmode=Of-Secret@db.internal:5432/taxi",
    ):
        resource = PostgresResource(url=url)
        for call in (resource.engine, resource.describe):
            with pytest.raises(ValueError, match="%40") as raised:
                call()
            assert "Tail" not in str(raised.value) and "Secret" not in str(raised.value)
    # An '@' in a parameter's value is the URL's own, not a password's; a '?' in a
    # password with one '@' is the password's.
    url = "postgresql://taxi:pw@db.internal:5432/taxi?application_name=taxi@prod"
    assert PostgresResource(url=url).describe() == "postgresql://db.internal:5432/taxi"
    parsed = sqlalchemy_url("postgresql://taxi:pw?x@db.internal/taxi?application_name=a@b")
    assert (parsed.password, parsed.host, parsed.database) == ("pw?x", "db.internal", "taxi")


# --- Source URLs: a private mirror's basic-auth credentials ---------------------------------


def test_no_source_credentials_in_records_manifests_or_errors(
    mirror: FaultyMirror,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mirror URL may carry credentials (``https://USER:PASSWORD@HOST``, requests sends
    them as basic auth). They went into the raw metadata's ``url``, the raw manifest
    (``revisions.json``, in the lake) and every download error."""
    secret = f"Tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("TAXI_DTC_URL", mirror.url.replace("://", f"://reader:{secret}@"))
    resources = build_resources(
        source=TaxiSourceResource(source="dtc", backoff_seconds=0.01, attempts=3),
        lake=LakeResource(url=str(tmp_path)),
    )
    runs = [run(KEYS[:1], resources, instance, MONTH)]  # downloads
    runs.append(run(KEYS[:1], resources, instance, MONTH))  # upstream unchanged: skipped
    skipped = runs[-1].asset_materializations_for_node("raw__yellow_tripdata")[0]
    assert skipped.metadata["download"].value == "skipped: upstream unchanged"
    assert str(skipped.metadata["url"].value).startswith("http://***@127.0.0.1:")
    runs.append(run(KEYS[:1], resources, instance, "2020-05", raise_on_error=False))  # 404
    error = str(runs[-1].get_step_failure_events()[0].step_failure_data.error)
    assert "not published at http://***@127.0.0.1:" in error, error

    scanned = "\n".join(records_of(instance, r.run_id) for r in runs)
    scanned += "".join(path.read_text() for path in tmp_path.rglob("revisions.json"))
    assert "yellow_tripdata" in scanned  # the scan sees content
    assert secret not in scanned


def test_a_manifest_of_an_earlier_version_holding_the_credentials_does_not_show_them(
    mirror: FaultyMirror,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revision recorded before URLs were shown masked keeps the URL as configured in
    its manifest. Upstream unchanged, the raw step reports that stored revision: its
    ``url`` metadata must not bring the credentials back into the instance."""
    secret = f"Tok-{uuid.uuid4().hex}"
    configured = mirror.url.replace("://", f"://reader:{secret}@")
    monkeypatch.setenv("TAXI_DTC_URL", configured)
    resources = build_resources(
        source=TaxiSourceResource(source="dtc", backoff_seconds=0.01, attempts=3),
        lake=LakeResource(url=str(tmp_path)),
    )
    assert run(KEYS[:1], resources, instance, MONTH).success  # downloads
    (manifest,) = tmp_path.rglob("revisions.json")
    shown = mirror.url.replace("://", "://***@")
    assert shown in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(shown, configured))  # as written before

    skipped = run(KEYS[:1], resources, instance, MONTH)  # upstream unchanged: skipped
    metadata = skipped.asset_materializations_for_node("raw__yellow_tripdata")[0].metadata
    assert metadata["download"].value == "skipped: upstream unchanged"
    assert str(metadata["url"].value).startswith("http://***@127.0.0.1:")
    assert secret not in records_of(instance, skipped.run_id)
