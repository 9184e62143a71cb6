"""``months status``: the rule that says whether raw, lake and warehouse agree, and the
command on months loaded for real (HTTP mirror, lake folder, PostgreSQL)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from taxi_assets import cli, definitions
from taxi_assets.contracts import CONTRACTS
from taxi_assets.io_managers.parquet_lake import ParquetLakeIOManager, month_file
from taxi_assets.month_status import IN_STEP, Layer, MonthStatus, collect, judge
from taxi_assets_tests.faults_support import garbled_footer
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import pipeline_resources, run

A, B = "a" * 64, "b" * 64


def status(
    raw: Layer | None, lake: Layer | None, warehouse: Layer | None, problems: tuple[str, ...] = ()
) -> MonthStatus:
    return MonthStatus("yellow", "2021-01", raw, False, lake, warehouse, problems)


@pytest.mark.parametrize(
    ("raw", "lake", "warehouse", "expected"),
    [
        (Layer(A, 10), Layer(A, 10), Layer(A, 10), IN_STEP),
        (Layer(A, None), Layer(A, 10), Layer(A, 10), IN_STEP),  # raw rows not counted
        (None, None, None, "no raw file"),
        (None, Layer(A, 10), None, "raw file missing"),
        (Layer(A, 10), None, Layer(A, 10), "lake missing"),
        (Layer(B, 10), Layer(A, 10), Layer(A, 10), "lake built from another revision"),
        (Layer(A, 11), Layer(A, 10), Layer(A, 10), "lake has 10 rows, the raw file 11"),
        (Layer(A, 10), Layer(A, 10), None, "warehouse missing"),
        (Layer(A, 10), Layer(A, 10), Layer(None, 10), "warehouse loaded from another"),
        (Layer(A, 10), Layer(A, 10), Layer(A, 9), "warehouse has 9 rows, the lake 10"),
    ],
)
def test_the_first_layer_out_of_step_is_named(
    raw: Layer | None, lake: Layer | None, warehouse: Layer | None, expected: str
) -> None:
    assert judge(status(raw, lake, warehouse)).startswith(expected)


def test_a_lake_month_of_an_older_contract_is_out_of_step(tmp_path: Path) -> None:
    """After a contract bump the UI marks the lake months it did not write stale, but not
    the warehouse months built from them: the status says it, from the lake file's footer."""
    same = Layer(A, 10)
    current = CONTRACTS["yellow"].version
    old = MonthStatus("yellow", "2021-01", same, False, same, same, lake_contract="0")
    assert judge(old) == f"lake written by contract v0, the current is v{current}"
    assert judge(replace(old, lake_contract=current)) == IN_STEP
    path = month_file(UPath(tmp_path) / "lake" / "yellow_tripdata", "2021-01")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"n": [1]}).replace_schema_metadata({b"contract_version": b"0"})
    pq.write_table(table, path)
    (found,) = collect(UPath(tmp_path), {}, ["yellow"])
    assert found.lake_contract == "0"


def test_a_raw_slot_with_problems_comes_first() -> None:
    same = Layer(A, 10)
    said = judge(status(same, same, same, ("revision file missing",)))
    assert said == "raw revisions need attention (raw list yellow 2021-01)"


def test_an_unreadable_lake_file_is_the_months_state() -> None:
    same = Layer(A, 10)
    unreadable = MonthStatus(
        "yellow", "2021-01", same, False, Layer(None, None), same, lake_problem="f: not Parquet"
    )
    assert judge(unreadable) == "lake file unreadable: f: not Parquet"


def test_collect_lists_each_lake_month_in_order_and_names_a_corrupt_file(tmp_path: Path) -> None:
    """Months are read concurrently; the answer keeps the services' and months' order, and a
    file that is not Parquet is that month's state, with its path, not the command's end."""
    months = [f"{year}-{month:02d}" for year in (2019, 2020) for month in range(1, 13)]
    for service in ("green", "yellow"):
        for month in months:
            path = month_file(UPath(tmp_path) / "lake" / f"{service}_tripdata", month)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"n": list(range(int(month[-2:])))}), path)
    corrupt = month_file(UPath(tmp_path) / "lake" / "yellow_tripdata", "2020-05")
    corrupt.write_bytes(b"not a parquet file")
    # A footer whose bytes do not decode: pyarrow's plain OSError, not ArrowInvalid.
    garbled = month_file(UPath(tmp_path) / "lake" / "green_tripdata", "2019-03")
    garbled.write_bytes(garbled_footer(garbled.read_bytes()))
    # Not lake months: another file type, a folder outside the year=/month= layout.
    (corrupt.parent / "notes.txt").write_text("")
    (tmp_path / "lake" / "yellow_tripdata" / "tmp").mkdir()
    (tmp_path / "lake" / "yellow_tripdata" / "tmp" / "x.parquet").write_bytes(b"")
    # ... nor a copy of a month's folder nested deeper (it would show as a month 2018-01).
    nested = tmp_path / "lake" / "yellow_tripdata" / "backup" / "year=2018" / "month=01"
    nested.mkdir(parents=True)
    (nested / "yellow_tripdata_2018-01.parquet").write_bytes(b"")

    statuses = collect(UPath(tmp_path), {}, ["yellow", "green"])
    assert [(s.service, s.month) for s in statuses] == [
        (service, month) for service in ("yellow", "green") for month in months
    ]
    rows = {(s.service, s.month): s.lake for s in statuses}
    assert rows[("green", "2019-07")] == Layer(None, 7)
    assert rows[("yellow", "2020-05")] == Layer(None, None)
    broken, unreadable = [s for s in statuses if s.lake_problem is not None]
    assert (broken.service, broken.month) == ("yellow", "2020-05")
    assert broken.lake_problem is not None and broken.lake_problem.startswith(f"{corrupt}: ")
    assert "Parquet magic bytes not found" in broken.lake_problem
    assert (unreadable.service, unreadable.month) == ("green", "2019-03")
    assert (
        unreadable.lake_problem
        == f"{garbled}: Couldn't deserialize thrift: "
        + (unreadable.lake_problem or "").split("Couldn't deserialize thrift: ", 1)[1]
    )


def test_a_month_no_layer_holds_between_held_months_is_listed(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a range the months from the first held to the last are checked: a hole (a
    scheduled run that failed before storing its file) was never listed, so `--check`
    passed; and with nothing stored at all (an empty lake, a wrong URL) it passed too."""
    for month in ("2021-01", "2021-03"):
        path = month_file(UPath(tmp_path) / "lake" / "fhv_tripdata", month)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"n": [1]}), path)
    statuses = collect(UPath(tmp_path), {}, ["fhv", "green"])
    assert [(s.service, s.month) for s in statuses] == [
        ("fhv", "2021-01"),
        ("fhv", "2021-02"),
        ("fhv", "2021-03"),
    ]
    assert judge(statuses[1]) == "no raw file"
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["months", "status", "--lake", str(empty), "--check"]) == 1
    assert "nothing stored yet" in capsys.readouterr().out
    # The same for monitoring tools (it printed [] and exited 0).
    assert cli.main(["months", "status", "--lake", str(empty), "--check", "--json"]) == 1
    assert capsys.readouterr().out.strip() == "[]"


def keys(service: str) -> list[str]:
    return [f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")]


def test_status_of_months_loaded_for_real(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    pg_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake, pg_url)
    assert run(keys("yellow"), resources, instance, "2021-01").success
    assert run(keys("yellow"), resources, instance, "2021-02").success
    assert run(keys("green")[:2], resources, instance, "2021-01").success  # no warehouse
    # Upstream republishes yellow 2021-02 (same rows, other bytes); only raw fetches it.
    published = Path(own_mirror.root) / "yellow" / "yellow_tripdata_2021-02.csv.gz"
    published.write_bytes(gzip.compress(gzip.decompress(published.read_bytes()), 1))
    assert run(keys("yellow")[0], resources, instance, "2021-02").success
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", pg_url)
    green_file = Path(own_mirror.root) / "green" / "green_tripdata_2021-01.csv.gz"

    def months_status(*args: str) -> tuple[int, list[str]]:
        code = cli.main(["months", "status", "--lake", str(lake), *args])
        return code, capsys.readouterr().out.splitlines()

    code, lines = months_status()
    assert code == 0
    rows = {tuple(line.split()[:2]): line for line in lines[1:] if line.strip()}
    yellow_01, yellow_02 = rows[("yellow", "2021-01")], rows[("yellow", "2021-02")]
    assert yellow_01.endswith("  in step")
    # raw, lake and warehouse rows: the generated month's 2,000 rows in each layer
    assert yellow_01.split()[3:6] == ["2,000", "2,000", "2,000"]
    assert yellow_02.endswith("lake built from another revision than raw's current")
    assert rows[("green", "2021-01")].endswith("warehouse missing")
    assert rows[("green", "2021-01")].split()[3:6] == ["2,000", "2,000", "-"]
    assert lines[-1] == "1 of 3 month(s) in step"

    assert months_status("--check")[0] == 1
    code, lines = months_status("2021-01", "--services", "yellow", "--check")
    assert code == 0 and lines[-1] == "1 of 1 month(s) in step"
    code, lines = months_status("2021-03", "--services", "fhvhv")
    assert lines[1].split()[:2] == ["fhvhv", "2021-03"] and lines[1].endswith("no raw file")
    code, lines = months_status("--json", "--check", "--services", "green")
    assert code == 1
    assert json.loads("\n".join(lines)) == [
        {
            "service": "green",
            "month": "2021-01",
            "raw_sha256": hashlib.sha256(green_file.read_bytes()).hexdigest(),
            "raw_rows": 2000,
            "pinned": False,
            "lake_sha256": hashlib.sha256(green_file.read_bytes()).hexdigest(),
            "lake_rows": 2000,
            "warehouse_sha256": None,
            "warehouse_rows": None,
            "state": "warehouse missing",
            "in_step": False,
        }
    ]
    assert cli.main(["months", "status", "2021-03", "--to", "2021-01"]) == 1
    assert "--to is before the first month" in capsys.readouterr().err


def test_an_unreachable_warehouse_is_said_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAXI_WAREHOUSE_URL", "postgresql://reader:s3cret-pw@127.0.0.1:9/none")
    assert cli.main(["months", "status", "--lake", str(tmp_path)]) == 1
    said = capsys.readouterr().err
    assert said.startswith("error: cannot read the warehouse's load log: connection failed")
    assert "s3cret-pw" not in said and "Traceback" not in said


def test_the_embedded_warehouse_is_left_as_it_was_found(
    tmp_path: Path,
    embedded_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without ``TAXI_WAREHOUSE_URL`` a status read neither creates the embedded warehouse
    nor leaves a stopped one running."""
    from taxi_assets.pg import embedded

    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    # The embedded warehouse's default folder is ./data/warehouse, here outside pytest's
    # basetemp (see ``embedded_dir``).
    monkeypatch.chdir(embedded_dir.parent)
    folder = embedded_dir.parent / "data" / "warehouse"

    assert cli.main(["months", "status", "--lake", str(tmp_path / "lake")]) == 0
    assert "nothing stored yet" in capsys.readouterr().out
    assert not folder.exists()

    embedded.embedded_url(folder)
    try:
        assert embedded.stop(folder)
        assert cli.main(["months", "status", "--lake", str(tmp_path / "lake")]) == 0
        assert "nothing stored yet" in capsys.readouterr().out
        assert embedded.exists(folder) and not embedded.is_running(folder)
    finally:
        embedded.stop(folder)


def test_warehouse_check_leaves_the_embedded_warehouse_as_it_found_it(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It started a stopped embedded server and left it running."""
    from taxi_assets.pg import embedded

    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(embedded_dir.parent)  # ./data/warehouse, as in the test above
    folder = embedded_dir.parent / "data" / "warehouse"
    embedded.embedded_url(folder)
    try:
        assert embedded.stop(folder)
        assert cli.main(["warehouse", "check"]) == 0
        assert "ready for loads" in capsys.readouterr().out
        assert embedded.exists(folder) and not embedded.is_running(folder)
        embedded.embedded_url(folder)  # running: a check leaves it running
        assert cli.main(["warehouse", "check"]) == 0
        assert embedded.is_running(folder)
    finally:
        embedded.stop(folder)


# A run's warehouse step, as far as the embedded server goes: take its URL the way
# PostgresResource does, connect, say so, then query once told to go on (a line on stdin).
RUN_USING_THE_SERVER = """
import sys
import psycopg
from taxi_assets.pg.embedded import embedded_url
with psycopg.connect(embedded_url(sys.argv[1]), autocommit=True) as connection:
    print("connected", flush=True)
    sys.stdin.readline()
    print(connection.execute("SELECT 41 + 1").fetchone()[0], flush=True)
"""
# The same run between two of its steps: it has the URL, no session open (each step's
# engine is disposed at its end), and connects again for its next step.
RUN_BETWEEN_ITS_STEPS = """
import sys
import psycopg
from taxi_assets.pg.embedded import embedded_url
url = embedded_url(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()
with psycopg.connect(url, autocommit=True) as connection:
    print(connection.execute("SELECT 41 + 1").fetchone()[0], flush=True)
"""


@pytest.mark.parametrize(
    "run_script",
    [RUN_USING_THE_SERVER, RUN_BETWEEN_ITS_STEPS],
    ids=["connected", "between-steps"],
)
def test_a_run_starting_during_a_status_read_keeps_the_embedded_server(
    tmp_path: Path,
    embedded_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    run_script: str,
) -> None:
    """A status read starts a stopped embedded warehouse to read it, then stops it again. A
    run that took the server's URL meanwhile (a real process) must keep its server: the
    read used to stop it under the run ("terminating connection due to administrator
    command"), and the run's later connections found no server. Between two steps the run
    has no session the read could see: only its hold on the in-use lock keeps it."""
    import subprocess
    import sys

    from taxi_assets import month_status
    from taxi_assets.pg import embedded

    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    # The embedded warehouse's default folder is ./data/warehouse, here outside pytest's
    # basetemp (see ``embedded_dir``).
    monkeypatch.chdir(embedded_dir.parent)
    folder = embedded_dir.parent / "data" / "warehouse"
    embedded.embedded_url(folder)
    assert embedded.stop(folder)
    runs: list[subprocess.Popen[str]] = []
    read_loads = month_status.postgres_loads

    def a_run_starts_meanwhile(engine: object) -> object:
        run = subprocess.Popen(
            [sys.executable, "-c", run_script, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        runs.append(run)
        assert run.stdout is not None and run.stdout.readline() == "connected\n"
        return read_loads(engine)

    monkeypatch.setattr(month_status, "postgres_loads", a_run_starts_meanwhile)
    try:
        assert cli.main(["months", "status", "--lake", str(tmp_path / "lake")]) == 0
        assert "nothing stored yet" in capsys.readouterr().out
        (run,) = runs
        assert embedded.is_running(folder)
        out, _ = run.communicate("go on\n", timeout=30)
        assert (run.returncode, out) == (0, "42\n")

        # The run is over: the next read leaves the server as it found it (running).
        monkeypatch.setattr(month_status, "postgres_loads", read_loads)
        assert cli.main(["months", "status", "--lake", str(tmp_path / "lake")]) == 0
        assert embedded.is_running(folder)
    finally:
        for run in runs:
            run.kill()
            run.wait()
        embedded.stop(folder)


def test_an_unreadable_raw_manifest_is_the_months_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One month's unreadable ``revisions.json`` is that month's state in ``months status``
    and one line of ``raw list SERVICE``: both listed every other month too (they ended
    with a traceback, or with only the manifest's error)."""
    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no embedded warehouse there: nothing loaded
    lake = tmp_path / "lake"
    months = lake / "raw" / "yellow_tripdata"
    (months / "2021-01").mkdir(parents=True)
    (months / "2021-01" / "revisions.json").write_text("{not json")
    (months / "2021-02").mkdir()
    empty: dict[str, object] = {"format": 1, "current": None, "pinned": None, "revisions": []}
    (months / "2021-02" / "revisions.json").write_text(json.dumps(empty))

    code = cli.main(["months", "status", "--lake", str(lake), "--check"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    rows = {tuple(line.split()[:2]): line for line in lines[1:] if line.strip()}
    assert rows[("yellow", "2021-01")].endswith(
        "raw revisions need attention (raw list yellow 2021-01)"
    )
    assert rows[("yellow", "2021-02")].endswith("no raw file")

    assert cli.main(["raw", "list", "yellow", "--lake", str(lake)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("2021-01  problem: ") and "not a readable revision" in listed[0]
    assert listed[1].startswith("2021-02  0 revision(s)")


def test_a_month_before_a_service_existed_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """FHVHV starts 2019-02: its 2019-01 can never be loaded, so ``months status 2019-01
    --check`` must not fail on it (it listed "fhvhv 2019-01 ... no raw file", exit 1)."""
    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no embedded warehouse there: nothing loaded
    lake = str(tmp_path / "lake")

    code = cli.main(
        ["months", "status", "2019-01", "--services", "fhvhv", "--check", "--lake", lake]
    )
    assert code == 0
    said = capsys.readouterr().out
    assert said.strip() == "no month of fhvhv in that range: fhvhv before 2019-02 (its first month)"

    code = cli.main(["months", "status", "2019-01", "--to", "2019-02", "--lake", lake])
    lines = capsys.readouterr().out.splitlines()
    listed = [tuple(line.split()[:2]) for line in lines[1:-2] if line.strip()]
    assert ("fhvhv", "2019-01") not in listed and ("fhvhv", "2019-02") in listed
    assert ("yellow", "2019-01") in listed
    assert lines[-1] == "  left out: fhvhv before 2019-02 (its first month)"

    # Nor is a month before TAXI_FIRST_MONTH a partition: left out, and said so.
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2021-01")
    code = cli.main(["months", "status", "2020-12", "--to", "2021-01", "--check", "--lake", lake])
    lines = capsys.readouterr().out.splitlines()
    listed = [tuple(line.split()[:2]) for line in lines[1:-5] if line.strip()]
    assert ("yellow", "2020-12") not in listed and ("yellow", "2021-01") in listed, lines
    assert "  left out: yellow before 2021-01 (TAXI_FIRST_MONTH)" in lines
    assert "  left out: fhvhv before 2021-01 (TAXI_FIRST_MONTH)" in lines
    assert code == 1  # 2021-01 itself is not loaded
    monkeypatch.delenv("TAXI_FIRST_MONTH")

    months = ["2019-01", "2019-02"]
    statuses = collect(UPath(lake), {}, ["fhvhv"], months)
    assert [(s.service, s.month) for s in statuses] == [("fhvhv", "2019-02")]


def test_a_service_named_twice_is_taken_once_and_none_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--services yellow,yellow`` printed yellow twice (backfill: its title and its
    range line, and two copies of yellow's assets in the backfill request). An empty
    ``--services`` (an empty shell variable) meant every service."""
    parser = cli.build_parser()
    for command in (["months", "backfill", "2021-01"], ["months", "status"]):
        args = parser.parse_args([*command, "--services", "yellow,fhv,yellow"])
        assert args.services == ["yellow", "fhv"]
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*command, "--services", " , "])
        assert exited.value.code == 2
        assert "--services: none given; choose from yellow,green,fhv,fhvhv" in (
            capsys.readouterr().err
        )


def test_a_dagster_home_under_the_users_home_written_with_a_tilde_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DAGSTER_HOME=~/dh`` (an env file, systemd's Environment=): Dagster expands it;
    the check refused it as not absolute."""
    from taxi_assets.cli.instance import require_dagster_home

    (tmp_path / "dh").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", "~/dh")
    require_dagster_home("the runs are there")  # no SystemExit


@pytest.mark.parametrize("home", [None, "relative/home", "/no/such/dagster_home"])
def test_a_backfill_without_a_usable_dagster_home_is_one_line(
    home: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster-graphql's 3 KB traceback (unset), or Dagster's (relative, missing): the
    backfill goes to the instance DAGSTER_HOME names, so it must name one."""
    if home is None:
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_HOME", home)
    with pytest.raises(SystemExit) as exited:
        cli.main(["months", "backfill", "2021-01"])
    said = str(exited.value.code)
    assert said.startswith("error: DAGSTER_HOME") and "\n" not in said, said
    assert "make dev" in said


def test_a_raw_file_of_the_flat_layout_is_not_called_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lake of an earlier version keeps ``raw/<dataset>/<published name>``, adopted as a
    revision on first touch. ``months status`` said "nothing stored yet" (or "no raw file"
    for the month asked), and ``raw list SERVICE`` "no revisions", with the file there."""
    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no embedded warehouse there: nothing loaded
    lake = tmp_path / "lake"
    (lake / "raw" / "yellow_tripdata").mkdir(parents=True)
    flat = lake / "raw" / "yellow_tripdata" / "yellow_tripdata_2021-01.csv.gz"
    flat.write_bytes(gzip.compress(b"VendorID\n1\n"))

    for asked in ([], ["2021-01", "--services", "yellow"]):
        assert cli.main(["months", "status", *asked, "--lake", str(lake)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[:2] == ["yellow", "2021-01"]
        assert lines[1].endswith("raw revisions need attention (raw list yellow 2021-01)")
    (status,) = collect(UPath(lake), {}, ["yellow"])
    assert status.problems == (
        "yellow_tripdata_2021-01.csv.gz: a raw file of the flat layout, made a revision when "
        "the month is next materialized",
    )

    assert cli.main(["raw", "list", "yellow", "--lake", str(lake)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2021-01  0 revision(s)  no current revision  1 file(s) of the flat layout, adopted on "
        "first touch"
    ]
    assert flat.exists()  # read, not adopted: the listing changes nothing


def test_a_lake_of_another_hive_format_is_read_where_the_lake_io_manager_wrote_it(
    own_mirror: FaultyMirror,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A deployment whose definitions give the lake IO manager another ``hive_format``
    (``2021/01/`` instead of ``year=2021/month=01/``): ``months status`` looked for the
    default layout only and called every month "lake missing"."""
    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no embedded warehouse there: nothing loaded
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    resources["lake_io_manager"] = ParquetLakeIOManager(lake=resources["lake"], hive_format="%Y/%m")
    assert run(keys("yellow")[:2], resources, instance, "2021-01").success
    folder = lake / "lake" / "yellow_tripdata"
    assert [p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")] == [
        "2021/01/yellow_tripdata_2021-01.parquet"
    ]
    # The deployment's definitions (what `dagster` and the CLI load), with that IO manager.
    monkeypatch.setattr(definitions, "defs", dg.Definitions(resources=resources))

    for asked in ([], ["2021-01", "--services", "yellow"]):
        assert cli.main(["months", "status", *asked, "--lake", str(lake)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[:2] == ["yellow", "2021-01"]
        assert lines[1].split()[3:6] == ["2,000", "2,000", "-"]
        assert lines[1].endswith("warehouse missing")


@pytest.mark.parametrize("hive_format", ["year=%Y/month=%m", "%Y/%m", "%Y%m", "dt=%Y-%m-%d"])
def test_collect_finds_the_months_of_any_hive_format_and_nothing_else(
    tmp_path: Path, hive_format: str
) -> None:
    folder = UPath(tmp_path) / "lake" / "yellow_tripdata"
    for month in ("2019-12", "2020-01"):
        path = month_file(folder, month, hive_format)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"n": list(range(int(month[-2:])))}), path)
    # Not months: a month's file in another month's folder, or nested deeper, or renamed.
    misplaced = (
        month_file(folder, "2019-12", hive_format).parent / "yellow_tripdata_2018-03.parquet"
    )
    nested = folder / "backup" / month_file(folder, "2018-01", hive_format).relative_to(folder)
    for path in (misplaced, nested, folder / "yellow_tripdata_2018-04.parquet.bak"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    statuses = collect(UPath(tmp_path), {}, ["yellow"], hive_format=hive_format)
    assert [(s.month, s.lake) for s in statuses] == [
        ("2019-12", Layer(None, 12)),
        ("2020-01", Layer(None, 1)),
    ]


@pytest.mark.parametrize("command", [["months", "status"], ["raw", "list", "yellow", "2021-01"]])
def test_a_lake_the_commands_cannot_use_is_one_line_not_a_traceback(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As `lake check` says it. Both printed a traceback (an S3 bucket without credentials:
    botocore's NoCredentialsError; a scheme that is no object store: socket.gaierror)."""
    for variable in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.delenv("TAXI_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no embedded warehouse there: nothing loaded
    for lake, said in (
        ("ftp://host/x", "'ftp://host/x' is neither a local folder nor an object store URL"),
        (
            "s3://no-such-bucket/x",
            "cannot read the lake at s3://no-such-bucket/x: no AWS credentials",
        ),
    ):
        assert cli.main([*command, "--lake", lake]) == 1
        printed = capsys.readouterr()
        assert printed.err.startswith(f"error: {said}"), printed.err


def test_a_file_given_for_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lake or data folder argument naming a file: NotADirectoryError's traceback."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert cli.main(["months", "status", "--lake", str(a_file)]) == 1
    assert capsys.readouterr().err == f"error: the lake {a_file} is a file, not a folder\n"
    for command in ("start", "stop"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["warehouse", command, str(a_file)])
        assert exited.value.code == 2
        assert f"{a_file} is a file, not a folder" in capsys.readouterr().err
