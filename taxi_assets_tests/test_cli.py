"""The commands the README gives, run for real: `dagster asset materialize`, `dagster job
execute`, `python -m taxi_assets.cli months backfill`, `dg`."""

import datetime
import gzip
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.lake_stores import LakeStore
from taxi_assets_tests.pipeline import cli_env, engine_for, warehouse_counts, warehouse_tables

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
def test_cli_materializes_raw_lake_and_a_service_job(
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
            ["job", "execute", "-m", "taxi_assets", "-j", "taxi_yellow_job", "--tags", tags], env
        )
        expected = {"2021-01": published_rows(mirror, "yellow", "2021-01")}
        assert warehouse_counts(pg_url, "yellow_tripdata") == expected

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
    for service in ("yellow", "fhv", "fhvhv"):
        (Path(own_mirror.root) / service / f"{service}_tripdata_2021-02.csv.gz").unlink()
    env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake", pg_url)
    tags = json.dumps({"dagster/partition": "2021-02"})
    dagster(["job", "execute", "-m", "taxi_assets", "-j", "taxi_green_job", "--tags", tags], env)
    expected = {"2021-02": published_rows(own_mirror, "green", "2021-02")}
    assert warehouse_counts(pg_url, "green_tripdata") == expected
    for service in ("yellow", "fhv", "fhvhv"):
        assert own_mirror.requests_seen(f"/{service}/{service}_tripdata_2021-02.csv.gz") == []


FHVHV_KEYS = "raw/fhvhv_tripdata,lake/fhvhv_tripdata,warehouse/fhvhv_tripdata"


def warehouse_types(pg_url: str, table: str) -> dict[str, str]:
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'warehouse' AND table_name = :t"
            ),
            {"t": table},
        ).all()
    engine.dispose()
    return dict(rows)


@pytest.mark.slow
def test_fhvhv_months_of_every_layout_load_every_row_with_contract_types(
    tmp_path: Path, pg_url: str
) -> None:
    """TLC's Parquet layout of 2021-01 (24 columns, int64 IDs, a null-typed airport_fee)
    and of 2025-01 (25 columns, int32 IDs, large_string flags), each as ONE row group like
    TLC's files, the course's 7-column CSV.gz, and its 2021-06 file in the FHV layout (no
    license number), through `dagster asset materialize`."""
    from taxi_assets.contracts import FHVHV
    from taxi_assets.devdata import write_month, write_zones

    root = tmp_path / "mirror"
    write_zones(root)
    layouts = [
        ("tlc", "2021-01", 24),
        ("tlc", "2025-01", 25),
        ("dtc", "2021-02", 7),
        ("dtc", "2021-06", 7),
    ]
    published = {}
    for source, month, columns in layouts:
        path = write_month(
            root, source=source, service="fhvhv", month=month, rows=3_000 + columns,
            single_row_group=True,
        )  # fmt: skip
        if source == "tlc":
            footer = pq.ParquetFile(path).metadata
            assert (footer.num_columns, footer.num_row_groups) == (columns, 1)
        published[month] = 3_000 + columns
    lake = tmp_path / "lake"
    with FaultyMirror(root, missing_status=403) as mirror:
        for source, month, _ in layouts:
            env = {**cli_env(tmp_path, mirror.url, lake, pg_url), "TAXI_SOURCE": source}
            dagster(
                ["asset", "materialize", "-m", "taxi_assets", "--select", FHVHV_KEYS,
                 "--partition", month],
                env,
            )  # fmt: skip
    assert warehouse_counts(pg_url, "fhvhv_tripdata") == published
    for source, month, _ in layouts:
        folder = lake / "lake" / "fhvhv_tripdata" / f"year={month[:4]}" / f"month={month[5:]}"
        table = pq.read_table(next(folder.glob("*.parquet")))
        assert table.num_rows == published[month]
        assert table.schema.equals(FHVHV.schema), month  # contract types, every layout
        fares = table.column("base_passenger_fare").null_count
        assert fares == (published[month] if source == "dtc" else 0), month
        licenses = table.column("hvfhs_license_num").null_count
        assert licenses == (published[month] if month == "2021-06" else 0), month
    types = warehouse_types(pg_url, "fhvhv_tripdata")
    assert types["pu_location_id"] == "integer" and types["trip_time"] == "bigint"
    assert types["pickup_datetime"] == "timestamp without time zone"
    assert (
        types["shared_match_flag"] == "text" and types["base_passenger_fare"] == "double precision"
    )


@pytest.mark.slow
def test_months_backfill_submits_every_service_as_one_asset_backfill(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    """The README's "every service for one month" command: one asset backfill, each service
    over its own months (the daemon test runs such a backfill to the end)."""
    import dagster as dg

    env = cli_env(tmp_path, mirror.url, tmp_path / "lake")
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "months", "backfill", "2019-01", "--to", "2019-02"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fhvhv: raw, lake, warehouse for 2019-02" in done.stdout
    assert "yellow: raw, lake, warehouse for 2019-01..2019-02" in done.stdout
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (backfill,) = instance.get_backfills()
        assert backfill.asset_backfill_data is not None  # an asset backfill, not a job's
        target = backfill.asset_backfill_data.target_subset
        months = {
            key.to_user_string(): sorted(subset.get_partition_keys())
            for key, subset in target.partitions_subsets_by_asset_key.items()
        }
    assert backfill.title == "every service, 2019-01..2019-02"
    assert months["raw/fhvhv_tripdata"] == months["warehouse/fhvhv_tripdata"] == ["2019-02"]
    for service in ("yellow", "green", "fhv"):
        assert months[f"lake/{service}_tripdata"] == ["2019-01", "2019-02"]
    assert len(months) == 12

    refused = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "months", "backfill", "2019-13"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "not a month in YYYY-MM form" in refused.stderr


def test_a_backfill_range_cut_by_first_months_says_what_it_left_out() -> None:
    """The range asked for, cut to each service's partitions, said: ten years before
    TAXI_FIRST_MONTH were dropped without a line, under a title naming them."""
    from taxi_assets.automation.month_backfill import service_ranges
    from taxi_assets.partitions import add_months

    ranges, skipped = service_ranges("2009-01", "2019-02", "2019-01", ["yellow", "fhvhv"])
    assert [(r.service, r.first, r.last) for r in ranges] == [
        ("yellow", "2019-01", "2019-02"),
        ("fhvhv", "2019-02", "2019-02"),
    ]
    assert skipped == [
        "yellow: 2009-01..2018-12, before 2019-01 (TAXI_FIRST_MONTH)",
        "fhvhv: 2009-01..2019-01, before 2019-02 (its first month)",
    ]
    last = datetime.date.today().strftime("%Y-%m")  # not complete: no partition yet
    (yellow,), (cut,) = service_ranges("2024-01", last, "2019-01", ["yellow"])
    assert yellow.last == add_months(last, -1)
    assert cut == f"yellow: {last}..{last}, after {yellow.last} (the last complete month)"


def test_make_stop_stops_the_embedded_warehouse(embedded_dir: Path) -> None:
    """The README's `make stop`, against an embedded server in a temporary folder."""
    import psycopg

    from taxi_assets.pg.embedded import stop

    folder = embedded_dir
    # A process of its own gets the URL (starting the server) and ends: this one holding
    # the URL would count as a user of the server.
    get_url = (
        f"from taxi_assets.pg.embedded import embedded_url; print(embedded_url({str(folder)!r}))"
    )
    url = subprocess.run(
        [sys.executable, "-c", get_url], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=True,
    ).stdout.strip()  # fmt: skip
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

        # A run still using it (a process that got the URL and runs on): refused, said;
        # --force stops it all the same. `make stop` stopped it under the run's load.
        user = subprocess.Popen(
            [sys.executable, "-c", f"{get_url}; import sys; sys.stdin.read()"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert user.stdout is not None and user.stdout.readline().strip() == url
            stop_command = [sys.executable, "-m", "taxi_assets.cli", "warehouse", "stop"]
            refused = subprocess.run(
                [*stop_command, str(folder)], cwd=REPO, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert refused.returncode == 1
            assert refused.stderr.startswith("error: the embedded warehouse is in use: ")
            with psycopg.connect(url) as connection:
                assert connection.execute("SELECT 1").fetchone() == (1,)
            forced = subprocess.run(
                [*stop_command, str(folder), "--force"], cwd=REPO, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert (forced.returncode, forced.stdout.strip()) == (0, "stopped")
        finally:
            user.communicate("", timeout=60)
        # Started again by a process that has ended: nothing uses it.
        subprocess.run([sys.executable, "-c", get_url], cwd=REPO, timeout=120, check=True)
        assert make_stop() == "stopped"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=3).close()
        assert make_stop() == "not running"
    finally:
        stop(folder)


def test_make_demo_serve_serves_the_mirror_and_says_how_to_use_it(tmp_path: Path) -> None:
    """The README's `make demo-serve`: the URL first, then the exports; SIGTERM ends it."""
    import signal
    import urllib.request

    mirror = tmp_path / "mirror"
    (mirror / "misc").mkdir(parents=True)
    (mirror / "misc" / "taxi_zone_lookup.csv").write_text("LocationID,Borough\n1,EWR\n")
    make = ["make", "--no-print-directory", "-s", "-o", "install", "demo-serve"]
    settings = [f"VENV={sys.prefix}", f"MIRROR_DIR={mirror}", "MIRROR_PORT=0"]
    server = subprocess.Popen(
        [*make, *settings], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stderr is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        zones = f"{url}/misc/taxi_zone_lookup.csv"
        with urllib.request.urlopen(zones, timeout=10) as response:
            assert response.read() == b"LocationID,Borough\n1,EWR\n"
        said = [server.stderr.readline().strip() for _ in range(2)]
        exports = f"export TAXI_DTC_URL={url} TAXI_TLC_URL={url} TAXI_ZONES_URL={zones}"
        assert said[1] == exports
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    missing = subprocess.run(
        [*make, f"VENV={sys.prefix}", f"MIRROR_DIR={tmp_path / 'none'}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0
    assert f"error: {tmp_path / 'none'} is not a folder: generate one first" in missing.stderr


def test_warehouse_start_prints_a_psql_command_that_connects(embedded_dir: Path) -> None:
    """What the README tells a user to run to query the embedded warehouse, run as given:
    without XDG_RUNTIME_DIR (as in containers and CI) and without platformdirs' warning."""
    from taxi_assets.pg.embedded import stop

    folder = embedded_dir
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    command = [sys.executable, "-m", "taxi_assets.cli", "warehouse", "start", str(folder)]
    try:
        started = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert started.returncode == 0, started.stderr[-2000:]
        assert started.stderr == ""
        lines = started.stdout.splitlines()
        assert lines[0] == f"embedded PostgreSQL running for {folder}"
        assert lines[1] == f"  URL:  postgresql://postgres:@/postgres?host={folder}"
        psql = shlex.split(lines[2].removeprefix("  psql: "))
        assert psql[1:] == ["-h", str(folder), "-U", "postgres", "postgres"]
        query = subprocess.run(
            [*psql, "-Atc", "SELECT 40 + 2"], capture_output=True, text=True, timeout=60
        )
        assert query.returncode == 0, query.stderr
        assert query.stdout.strip() == "42"
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
    # Only what was selected, and the log of its loads.
    assert warehouse_tables(pg_url) == ["green_tripdata", "loads"]
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
    # months status reads the same three layers on the object store.
    status = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "months", "status", "--check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("yellow"))
    assert line.split()[:2] == ["yellow", "2021-01"] and line.endswith("in step")
    assert line.split()[3:6] == [f"{rows:,}"] * 3


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["devdata", "generate", "--out", "X", "--months", "2021-02..2021-01"], "holds no month"),
        (["devdata", "generate", "--out", "X", "--months", "2021-01", "--rows", "-5"], "-5 is not"),
        (["warehouse", "migrate", "--max-months", "-1"], "-1 is not 1 or more"),
        (["warehouse", "analyst-role", ""], "a role needs a name"),
    ],
)
def test_arguments_that_would_do_nothing_are_refused(
    arguments: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A backwards range wrote only the zone file and said it had written; --rows -5 was a
    traceback; --max-months -1 said "stopped early: run it again" for ever."""
    from taxi_assets import cli

    monkeypatch.chdir(tmp_path)  # --out X, were it taken

    with pytest.raises(SystemExit) as refused:
        cli.main(arguments)
    assert refused.value.code == 2
    assert said in capsys.readouterr().err


def test_commands_refuse_in_one_line_what_they_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback, a confusing echo, or a sweep of the temporary folder alone."""
    import socket

    from taxi_assets import cli
    from taxi_assets.devdata import generate_mirror

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the sweep's temporary folder: this test's
    assert cli.main(["lake", "sweep", "ftp://host/x", "--dry-run"]) == 1
    assert "'ftp://host/x' is neither a local folder nor" in capsys.readouterr().err

    assert cli.main(["months", "status", "2021-01..2021-02", "--lake", str(tmp_path)]) == 1
    assert "'2021-01..2021-02' is not a month" in capsys.readouterr().err

    generate_mirror(tmp_path / "mirror", months=["2021-01"], rows=10)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        status = cli.main(["devdata", "serve", "--root", str(tmp_path / "mirror"), "--port", port])
    assert status == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: " in capsys.readouterr().err
