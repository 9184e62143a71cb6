"""The commands the README gives, run for real: `dagster asset materialize`, `dagster job execute`."""

import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.lake_stores import LakeStore
from taxi_assets_tests.pipeline import cli_env, warehouse_counts, warehouse_tables

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def dagster(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"dagster {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result


def published_rows(mirror: FaultyMirror, service: str, month: str) -> int:
    path = Path(mirror.root) / service / f"{service}_tripdata_{month}.csv.gz"
    return sum(1 for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()) - 1


@pytest.mark.slow
def test_cli_materializes_raw_lake_and_the_monthly_job(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    lake = tmp_path / "lake"
    select = "raw/yellow_tripdata,lake/yellow_tripdata"
    dagster(
        ["asset", "materialize", "-m", "taxi_assets", "--select", select, "--partition", "2021-01"],
        cli_env(tmp_path, mirror.url, lake),
    )
    month_dir = lake / "lake" / "yellow_tripdata" / "year=2021" / "month=01"
    table = pq.read_table(next(month_dir.glob("*.parquet")))
    assert table.num_rows == published_rows(mirror, "yellow", "2021-01")
    assert table.schema.field("passenger_count").type == pa.int32()
    assert table.schema.field("pickup_datetime").type == pa.timestamp("us")

    env = cli_env(tmp_path, mirror.url, lake, pg_url)  # the same DAGSTER_HOME, and a warehouse
    tags = json.dumps({"dagster/partition": "2021-01"})
    for _ in range(2):  # a second run leaves the same rows
        dagster(
            ["job", "execute", "-m", "taxi_assets", "-j", "taxi_monthly_job", "--tags", tags], env
        )
        for service in ("yellow", "green", "fhv"):
            expected = {"2021-01": published_rows(mirror, service, "2021-01")}
            assert warehouse_counts(pg_url, f"{service}_tripdata") == expected

    dagster(
        [
            "asset",
            "materialize",
            "-m",
            "taxi_assets",
            "--select",
            "warehouse/yellow_tripdata",
            "--partition",
            "2021-01",
        ],
        env,
    )
    assert warehouse_counts(pg_url, "yellow_tripdata") == {"2021-01": table.num_rows}


@pytest.mark.slow
def test_a_service_job_loads_that_service_where_others_are_not_published(
    own_mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    """`taxi_green_job` (the job a one-service backfill uses) for a month only green has."""
    for service in ("yellow", "fhv"):
        (Path(own_mirror.root) / service / f"{service}_tripdata_2021-02.csv.gz").unlink()
    env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake", pg_url)
    tags = json.dumps({"dagster/partition": "2021-02"})
    dagster(["job", "execute", "-m", "taxi_assets", "-j", "taxi_green_job", "--tags", tags], env)
    expected = {"2021-02": published_rows(own_mirror, "green", "2021-02")}
    assert warehouse_counts(pg_url, "green_tripdata") == expected
    for service in ("yellow", "fhv"):
        assert own_mirror.requests_seen(f"/{service}/{service}_tripdata_2021-02.csv.gz") == []


def test_make_stop_stops_the_embedded_warehouse(tmp_path: Path) -> None:
    """The README's `make stop`, against an embedded server in a temporary folder."""
    import psycopg

    from taxi_assets.pg.embedded import embedded_url, stop

    folder = tmp_path / "warehouse"
    url = embedded_url(folder)
    try:
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)

        def make_stop() -> str:
            result = subprocess.run(
                # --no-print-directory: under `make test` a nested make would add
                # "Entering/Leaving directory" lines.
                [
                    "make",
                    "--no-print-directory",
                    "-o",
                    "install",
                    "stop",
                    f"VENV={sys.prefix}",
                    f"WAREHOUSE_DIR={folder}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            return result.stdout.strip().splitlines()[-1]

        assert make_stop() == "stopped"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=3).close()
        assert make_stop() == "not running"
    finally:
        stop(folder)


DG = str(Path(sys.executable).parent / "dg")


def dg(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``dg`` as the README runs it: from the repository, with this venv active."""
    active = {**env, "VIRTUAL_ENV": sys.prefix, "PATH": f"{Path(DG).parent}:{env['PATH']}"}
    return subprocess.run(
        [DG, *args], cwd=REPO, env=active, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_dg_checks_the_definitions_and_launches_by_tag_group_and_kind(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    env = cli_env(tmp_path, mirror.url, tmp_path / "lake", pg_url)
    checked = dg(["check", "defs"], env)
    assert checked.returncode == 0, checked.stderr[-4000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    # The README's selections: a service's three layers by tag, then one layer by kind.
    launched = dg(["launch", "--assets", "tag:service=green", "--partition", "2021-01"], env)
    assert launched.returncode == 0, launched.stderr[-4000:]
    expected = {"2021-01": published_rows(mirror, "green", "2021-01")}
    assert warehouse_counts(pg_url, "green_tripdata") == expected
    assert warehouse_tables(pg_url) == ["green_tripdata"]  # only what was selected
    warehouse_only = "kind:postgres and tag:service=green"
    again = dg(["launch", "--assets", warehouse_only, "--partition", "2021-01"], env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "lake__green_tripdata" not in again.stdout + again.stderr  # the lake was not redone
    assert warehouse_counts(pg_url, "green_tripdata") == expected

    # A range of one-month-per-run assets: refused; `dagster job backfill` queues it instead.
    ranged = dg(
        ["launch", "--assets", "tag:service=green", "--partition-range", "2021-01...2021-02"],
        env,
    )
    assert ranged.returncode != 0
    assert "BackfillPolicy.single_run()" in ranged.stdout + ranged.stderr


@pytest.mark.slow
@pytest.mark.parametrize("object_store", ["s3", "azure"], indirect=True)
def test_cli_materializes_raw_lake_and_warehouse_on_s3_and_azure(
    object_store: LakeStore, mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    """The README's command with ``TAXI_LAKE_URL=s3://...`` (moto_server) and
    ``TAXI_LAKE_URL=az://...`` (Azurite); credentials and endpoint from the environment."""
    env = cli_env(tmp_path, mirror.url, object_store.url, pg_url)
    assert env["TAXI_LAKE_URL"] == f"{object_store.scheme}://taxi-lake/nyc"
    select = "raw/yellow_tripdata,lake/yellow_tripdata,warehouse/yellow_tripdata"
    dagster(
        ["asset", "materialize", "-m", "taxi_assets", "--select", select, "--partition", "2021-01"],
        env,
    )
    upstream = (Path(mirror.root) / "yellow" / "yellow_tripdata_2021-01.csv.gz").read_bytes()
    month = "nyc/raw/yellow_tripdata/2021-01"
    raw = f"{month}/{hashlib.sha256(upstream).hexdigest()}/yellow_tripdata_2021-01.csv.gz"
    lake = "nyc/lake/yellow_tripdata/year=2021/month=01/yellow_tripdata_2021-01.parquet"
    stored = object_store.objects("nyc/")
    # The documented keys, nothing else: the raw revision, its manifest, the lake file.
    assert sorted(stored) == sorted([lake, raw, f"{month}/revisions.json"])
    assert stored[raw] == upstream
    rows = published_rows(mirror, "yellow", "2021-01")
    assert pq.ParquetFile(io.BytesIO(stored[lake])).metadata.num_rows == rows
    assert warehouse_counts(pg_url, "yellow_tripdata") == {"2021-01": rows}
    assert object_store.pending_uploads() == 0
