"""`make bench-quick` as a smoke test (no timing assertions), and the fast COPY path's
exactness, on which the benchmark's numbers rely."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from taxi_assets.pg import copy_in as pg_copy
from taxi_assets.pg.ddl import driver_cursor, ensure_table, qualified
from taxi_assets.resources.postgres import sqlalchemy_url

ROOT = Path(__file__).resolve().parents[1]
CASES = ("course", "core", "dagster", "floor")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    # `make bench-quick`, as CI runs it; -o install: the suite's environment is installed already.
    bench_args = f"--out {out} --data-dir {tmp_path / 'months'} --no-backfill"
    completed = subprocess.run(
        ["make", "-o", "install", "bench-quick", f"VENV={sys.prefix}", f"BENCH_ARGS={bench_args}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| case" in completed.stdout  # the table was printed
    report = json.loads(out.read_text())
    for key in (
        "speedup_vs_course",
        "ratio_vs_copy_floor",
        "peak_rss_mb",
        "peak_rss_run_mb",
        "dagster_fixed_overhead_s",
    ):
        assert key in report, key
    for key in ("speedup_vs_course", "ratio_vs_copy_floor", "peak_rss_mb", "peak_rss_run_mb"):
        assert _positive(report[key]), (key, report[key])
    assert isinstance(report["dagster_fixed_overhead_s"], int | float)
    (month,) = report["months"]
    assert set(month["cases"]) == set(CASES)
    for case in ("course", "core", "dagster"):
        median = month["cases"][case]["median"]
        assert _positive(median["wall_s"]) and _positive(median["peak_rss_mb"]), case
        assert month["cases"][case]["rows"] == month["rows"], case
    floor = month["cases"]["floor"]["median"]
    assert _positive(floor["lake_floor_s"]) and _positive(floor["copy_floor_s"])
    assert {t["target"].split(",")[0] for t in report["targets"]} >= {"speedup vs course"}
    assert report["machine"]["cpus"] >= 1
    assert report["backfill"] is None
    # The ingest core on TLC's layout: each month ONE row group, FHVHV with 25 columns.
    for key in ("fhvhv_rows_per_s", "fhvhv_peak_rss_mb", "tlc_parquet_peak_rss_mb"):
        assert _positive(report[key]), (key, report[key])
    tlc_months = report["tlc_layout"]["months"]
    assert {(m["service"], m["row_groups"]) for m in tlc_months} == {("fhvhv", 1), ("yellow", 1)}
    assert {m["columns"] for m in tlc_months if m["service"] == "fhvhv"} == {25}
    for month in tlc_months:
        assert month["core"]["rows"] == month["rows"], month["service"]  # every row loaded
    judged = " ".join(t["target"] for t in report["targets"])
    assert "FHVHV" in judged and "yellow TLC-layout" in judged
    # FHVHV's rows/s is judged against the CSV month run alternately with it, every row loaded.
    paired = report["tlc_layout"]["paired_yellow_csv"]
    assert paired["rows"] == report["months"][0]["rows"] and paired["core"]["runs"] >= 1
    assert paired["core"]["rows"] == paired["rows"] and _positive(paired["rows_per_s"])
    # And against the yellow TLC-layout month, the other reading, also alternately.
    paired_tlc = report["tlc_layout"]["paired_yellow_tlc"]
    assert paired_tlc["core"]["runs"] >= 1 and paired_tlc["core"]["rows"] == paired_tlc["rows"]
    assert paired_tlc["rows"] == max(m["rows"] for m in tlc_months if m["service"] == "yellow")
    rates = [t for t in report["targets"] if "run alternately" in t["target"]]
    assert [t["limit"] for t in rates] == [paired["rows_per_s"], paired_tlc["rows_per_s"]]
    # Per column, as information: each service's rows/s times its file's columns.
    compared = report["tlc_layout"]["per_column"]
    assert compared["fhvhv_values_per_s"] == report["fhvhv_rows_per_s"] * 25
    assert compared["yellow_tlc_values_per_s"] == paired_tlc["rows_per_s"] * 19


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_backfill_benchmark_loads_every_month(tmp_path: Path) -> None:
    """The daemon backfill benchmark on 3 x 20,000 rows: real mirror, daemon, PostgreSQL."""
    out = tmp_path / "backfill.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.backfill",
            "--quick",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "months"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "| max runs" in completed.stdout  # the table was printed
    backfill = json.loads(out.read_text())["backfill"]
    months = ["2020-01", "2020-02", "2020-03"]
    assert backfill["months"] == months and backfill["service"] == "yellow"
    assert backfill["rows_loaded"] == dict.fromkeys(months, 20_000)
    assert backfill["total_rows"] == 60_000
    assert backfill["runs"] == 3 and backfill["failed_runs"] == 0
    assert sorted(run["month"] for run in backfill["per_run"]) == months
    for key in ("wall_s", "first_run_started_at_s", "rows_per_s", "effective_concurrency"):
        assert _positive(backfill[key]), (key, backfill[key])
    assert _positive(backfill["run_s"]["median"]) and _positive(backfill["run_s"]["max"])
    assert all(_positive(run["duration_s"]) for run in backfill["per_run"])
    # Only the service's three assets ran (no green/fhv steps), one month per run.
    steps = set(backfill["step_s_median"])
    assert {"raw__yellow_tripdata", "lake__yellow_tripdata", "warehouse__yellow_tripdata"} <= steps
    assert not any("green" in step or "fhv" in step for step in steps), steps
    assert backfill["instance"]["run_coordinator"] == "QueuedRunCoordinator"
    assert backfill["instance"]["max_concurrent_runs"] == 2  # dagster.yaml
    assert 1 <= backfill["max_overlapping_runs"] <= 2
    assert backfill["other_runs_during_benchmark"] == []
    assert backfill["daemon_stop"]["clean"], backfill["daemon_stop"]
    assert backfill["target"]["met"] is None  # not judged on smoke-test data
    assert len(backfill["load_average_before"]) == 3


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_history_benchmark_loads_every_month_through_the_daemon(
    tmp_path: Path, embedded_dir: Path
) -> None:
    """`make bench-history` on tiny months (a thousandth of the rows), as the lead runs it
    at full size: generation, the daemon, every month's count, the report's keys. Its work
    folder holds its embedded server (``run/``): not under pytest's basetemp, which another
    pytest session starting meanwhile may prune or close (``embedded_dir``)."""
    out = tmp_path / "history.json"
    work = embedded_dir
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.history", "--quick", "--out", str(out),
         "--work-dir", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=230,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "History benchmark: 4 months, 29,518 rows (quick)" in completed.stdout
    report = json.loads(out.read_text())
    expected = {"2019-01": 7_667, "2019-02": 7_019, "2019-03": 7_832, "2020-03": 7_000}
    assert report["rows_loaded"] == {"yellow": expected}
    assert report["rows_total"] == sum(expected.values())
    for key in ("sustained_rows_per_s", "per_run_fixed_overhead_s", "peak_rss_run_mb"):
        assert _positive(report[key]), (key, report[key])
    assert report["backfill"]["runs"] == 4 and report["backfill"]["failed_runs"] == 0
    assert report["backfill"]["instance"]["max_concurrent_runs"] == 2  # dagster.yaml
    for layer in ("source", "raw", "lake", "warehouse"):
        assert _positive(report["backfill"]["disk_bytes"][layer]), layer
    for name in ("extrapolation_full_history", "extrapolation_course_dataset"):
        assert _positive(report[name]["hours_at_sustained_rate"]), name
    assert report["generation"]["generated_months"] and report["generation"]["generation_s"] >= 0
    # The month-replace figures (4 months of 5,000 rows in --quick; 36 at full size).
    replace = report["month_replace"]
    assert _positive(report["swap_lock_ms_1"]) and _positive(replace["month_replace_ratio_4_vs_1"])
    assert replace["at_4"]["dead_tuples_other_months"] == 0
    assert all(target["met"] is None for target in report["targets"])  # not judged on --quick
    assert not (work / "months").exists() and not (work / "run").exists()  # removed (no --keep)


def _all_types(rows: int) -> pa.Table:
    def nullable(values: list, arrow_type: pa.DataType) -> pa.Array:
        return pa.array([None if i % 7 == 3 else v for i, v in enumerate(values)], arrow_type)

    ints = list(range(-rows // 2, rows - rows // 2))
    return pa.table(
        {
            "i8": nullable([i % 100 for i in ints], pa.int8()),
            "i16": nullable([i * 3 for i in ints], pa.int16()),
            "u16": nullable([abs(i) * 7 for i in ints], pa.uint16()),
            "i32": nullable([i * 40_000 for i in ints], pa.int32()),
            "u32": nullable([abs(i) * 2_800_000 for i in ints], pa.uint32()),
            "i64": nullable([i * 10**15 for i in ints], pa.int64()),
            "f32": nullable([i / 3 for i in ints], pa.float32()),
            "f64": nullable(
                [math.nan, math.inf, -math.inf, -0.0] + [i / 7 for i in ints[4:]], pa.float64()
            ),
            "flag": nullable([i % 2 == 0 for i in ints], pa.bool_()),
            "text": nullable(
                ["" if i % 5 == 0 else f'é,"q"\n{i}\\N NA' for i in ints], pa.string()
            ),
            "large": nullable(["x" * (abs(i) % 30) for i in ints], pa.large_string()),
            "ts": nullable([datetime(2021, 1, 1, 0, 0, abs(i) % 60, i % 999_999) for i in ints], pa.timestamp("us")),
            "ts_s": nullable([datetime(1999, 12, 31, 23, 59, abs(i) % 60) for i in ints], pa.timestamp("s")),
            "tz": nullable([datetime(2020, 2, 29, 12, 30, abs(i) % 60) for i in ints], pa.timestamp("us", tz="UTC")),
            "day": nullable([date(1970 + abs(i) % 80, 1 + abs(i) % 12, 1) for i in ints], pa.date32()),
            "empty": pa.nulls(rows, pa.float64()),
            # No nulls: packed into shared records by the encoder.
            "full_i32": pa.array(ints, pa.int32()),
            "full_ts": pa.array([datetime(2019, 3, 1, 8, abs(i) % 60) for i in ints], pa.timestamp("us")),
            "full_code": pa.array(["Y" if i % 2 else "N" for i in ints]),
            "full_blank": pa.array([""] * rows),
            "full_f64": pa.array([i * 0.25 for i in ints], pa.float64()),
            "full_day": pa.array([date(2021, 1, 1)] * rows, pa.date32()),
            "full_text": pa.array([f"v{i}" for i in ints]),
            "full_flag": pa.array([i % 3 == 0 for i in ints]),
        }
    )  # fmt: skip


def test_binary_copy_loads_exactly_what_csv_copy_loads(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _all_types(3_000)
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    loaded: dict[str, list[tuple]] = {}
    formats: dict[str, bool] = {}
    for mode in ("binary", "csv"):
        table = f"types_{mode}"
        ensure_table(engine, "public", table, data.schema)
        if mode == "csv":
            monkeypatch.setattr(pg_copy, "_binary_compatible", lambda *args: False)
        with engine.begin() as connection:
            cursor = driver_cursor(connection)
            formats[mode] = pg_copy._binary_compatible(
                cursor, qualified("public", table), data.schema
            )
            # Odd batch sizes: chunks are sliced and combined on the way.
            reader = data.to_reader(max_chunksize=1_234)
            assert pg_copy.copy_arrow(cursor, qualified("public", table), reader) == 3_000
        with engine.connect() as connection:
            loaded[mode] = [
                tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row)
                for row in connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY full_i32")
            ]
    engine.dispose()
    assert formats == {"binary": True, "csv": False}
    assert loaded["binary"] == loaded["csv"]
    assert len(loaded["binary"]) == 3_000


def test_binary_copy_falls_back_to_csv_when_the_table_types_differ(pg_url: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE loose (n numeric, at text)")
    data = pa.table({"n": pa.array([1, None, 3], pa.int64()), "at": ["a", None, ""]})
    with engine.begin() as connection:
        cursor = driver_cursor(connection)
        assert not pg_copy._binary_compatible(cursor, '"public"."loose"', data.schema)
        assert pg_copy.copy_arrow(cursor, '"public"."loose"', data.to_reader()) == 3
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT n, at FROM loose ORDER BY n").all()
    engine.dispose()
    assert [(None if n is None else int(n), at) for n, at in rows] == [
        (1, "a"),
        (3, ""),
        (None, None),
    ]


def test_lake_write_logs_progress_with_share_and_rate(tmp_path: Path) -> None:
    from taxi_assets.io_managers.arrow_stats import StreamStats
    from taxi_assets.io_managers.parquet_lake import write_parquet_stream

    data = pa.table({"n": list(range(10_000))})
    messages: list[str] = []
    write_parquet_stream(
        data.to_reader(max_chunksize=2_500),
        tmp_path / "out.parquet",
        compression="zstd",
        stats=StreamStats(),
        log=messages.append,
        expected_rows=10_000,
        label="Parquet out",
        progress_every_s=0,
    )
    assert len(messages) == 4
    assert messages[-1].startswith("Parquet out: 10,000 rows (100% of 10,000), ")
    assert messages[-1].endswith(" rows/s")
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 10_000
