"""The issue's "done when", through the real CLI: `dagster asset materialize` with
TAXI_WAREHOUSE_URL=bigquery://test loads the warehouse into BigQuery (bqemulator), and
with TAXI_PRODUCTION=1 a run without TAXI_WAREHOUSE_URL fails naming it."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taxi_assets_tests.bq_emulator import BigQueryEmulator, emulated_project
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import cli_env
from taxi_assets_tests.test_cli import published_rows

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def materialize(
    select: str, env: dict[str, str], partition: str | None = None
) -> subprocess.CompletedProcess:
    args = [DAGSTER, "asset", "materialize", "-m", "taxi_assets", "--select", select]
    if partition:
        args += ["--partition", partition]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def layers(*services: str) -> str:
    return ",".join(
        f"{layer}/{s}_tripdata" for s in services for layer in ("raw", "lake", "warehouse")
    )


def succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_dagster_asset_materialize_loads_bigquery(
    mirror: FaultyMirror,
    tmp_path: Path,
    bq_emulator: BigQueryEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with emulated_project(bq_emulator, monkeypatch, project="test") as bq_project:
        env = {
            **cli_env(tmp_path, mirror.url, tmp_path / "lake", "bigquery://test"),
            **bq_emulator.env(),
        }
        yellow = {"2021-01": published_rows(mirror, "yellow", "2021-01")}
        succeeded(materialize(layers("yellow"), env, "2021-01"))
        assert bq_project.month_counts("yellow_tripdata") == yellow  # every published row

        succeeded(materialize(layers("yellow", "fhv"), env, "2021-01"))  # a re-run, and FHV
        assert bq_project.month_counts("yellow_tripdata") == yellow
        fhv = {"2021-01": published_rows(mirror, "fhv", "2021-01")}
        assert bq_project.month_counts("fhv_tripdata") == fhv

        succeeded(materialize("raw/taxi_zone_lookup,lake/taxi_zones,warehouse/taxi_zones", env))
        assert bq_project.rows("SELECT COUNT(*) AS n FROM `test.warehouse.taxi_zones`") == [
            {"n": 265}
        ]

        tlc = {**env, "TAXI_SOURCE": "tlc"}  # green as TLC publishes it: Parquet
        succeeded(materialize(layers("green"), tlc, "2021-01"))
        green = pq.read_metadata(Path(mirror.root) / "green_tripdata_2021-01.parquet").num_rows
        assert bq_project.month_counts("green_tripdata") == {"2021-01": green}
        files = bq_project.rows("SELECT DISTINCT source_file FROM `test.warehouse.green_tripdata`")
        assert files == [{"source_file": "green_tripdata_2021-01.parquet"}]

        succeeded(materialize("analytics/monthly_zone_stats", env, "2021-01"))
        stats = bq_project.rows(
            "SELECT service, SUM(trips) AS trips FROM `test.analytics.monthly_zone_stats` "
            "WHERE partition_month = DATE '2021-01-01' GROUP BY 1 ORDER BY 1"
        )
        assert stats == [
            {"service": "fhv", "trips": fhv["2021-01"]},
            {"service": "green", "trips": green},
            {"service": "yellow", "trips": yellow["2021-01"]},
        ]


@pytest.mark.slow
def test_production_without_a_warehouse_url_fails_naming_it(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, mirror.url, tmp_path / "lake")
    env.pop("TAXI_WAREHOUSE_URL", None)
    # A lake on an object store, as production has (the run stops before reaching it).
    env.update(
        TAXI_PRODUCTION="1",
        TAXI_LAKE_URL="gs://taxi-lake/nyc",
        STORAGE_EMULATOR_HOST="http://127.0.0.1:9",
    )
    result = materialize(layers("yellow"), env, "2021-01")
    assert result.returncode != 0
    assert "TAXI_WAREHOUSE_URL is not set, and TAXI_PRODUCTION is" in result.stdout + result.stderr
    assert mirror.requests_seen("/yellow/yellow_tripdata_2021-01.csv.gz") == []


def test_analyst_role_with_bigquery_says_which_iam_roles_readers_need(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command makes PostgreSQL roles; pointed at BigQuery it changes nothing and says
    what to grant there, instead of "not a PostgreSQL URL" in a traceback."""
    from taxi_assets.cli import main

    monkeypatch.setenv("TAXI_WAREHOUSE_URL", "bigquery://nyc-taxi-prod")
    assert main(["warehouse", "analyst-role", "analyst"]) == 2
    error = capsys.readouterr().err
    assert "roles/bigquery.dataViewer on the datasets warehouse and analytics" in error
    assert "roles/bigquery.jobUser" in error


def test_months_status_says_in_one_line_why_bigquery_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No credentials: a traceback before; a BigQuery that does not answer: ten silent
    minutes (google's default retry), then a traceback. Now one line each, the second
    after the status read's retries (30 s; 2 s here)."""
    import time

    from taxi_assets import cli, month_status
    from taxi_assets_tests.emulators import free_port

    monkeypatch.setenv("TAXI_WAREHOUSE_URL", "bigquery://some-project")
    monkeypatch.setenv("TAXI_LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server to ask for credentials
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    assert cli.main(["months", "status"]) == 1
    said = capsys.readouterr().err
    assert said.startswith("error: cannot read BigQuery's load log: no usable Google credentials")

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(month_status, "STATUS_RETRY_S", 2.0)  # 30 s: the test waits less
    started = time.monotonic()
    assert cli.main(["months", "status"]) == 1
    said = capsys.readouterr().err
    assert said.startswith("error: cannot read BigQuery's load log: Timeout of 2.0s"), said
    assert time.monotonic() - started < 20
