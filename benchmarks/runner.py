"""Run every case on the same generated months, several times, and report medians.

Each run of a case is its own process (``python -m benchmarks.cases``) against a fresh
database, after a CHECKPOINT: its wall time is measured from process start to exit
(imports included) and its peak RSS is the OS's: the kernel's high-water mark of the
process (VmHWM, read by the case as it ends; ``ru_maxrss`` from ``os.wait4`` where
/proc is missing, which may include the parent's memory when Python starts the child
with vfork), so one case's memory never hides in another's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.cases import RESULT_PREFIX
from taxi_assets.pg.scratch import fresh_database

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"
QUICK_OUT = ROOT / "data" / "bench" / "quick.json"
DEFAULT_DATA_DIR = ROOT / "data" / "bench" / "months"
# (rows, month): the 2021-01 yellow month of the course, and a 2019-sized month.
FULL_MONTHS = ((1_370_000, "2021-01"), (7_800_000, "2019-03"))
QUICK_MONTHS = ((20_000, "2021-01"),)
TINY_MONTH = (1_000, "2021-02")  # Dagster's fixed cost per run: tiny month, Dagster vs core
COURSE_LIMIT_ROWS = 2_000_000  # above this the course method runs only with --full-course

# Targets of the issue (benchmark results, never unit tests).
TARGET_SPEEDUP = 25.0
TARGET_FLOOR_RATIO = 2.0
TARGET_CORE_RSS_MB = 400.0
TARGET_RUN_RSS_MB = 650.0

CASE_LABELS = {
    "course": "course method (pandas read_csv + to_parquet gzip; to_sql chunks of 100k)",
    "core": "taxi_assets ingest core (IO managers, no Dagster run)",
    "dagster": "taxi_assets through Dagster materialize (lake + warehouse)",
    "floor": "serial floor (bare pyarrow CSV->Parquet + server-side binary COPY)",
}


@dataclass
class Measured:
    """One case's runs on one month."""

    case: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if isinstance(run.get(key), int | float)]
        return statistics.median(values) if values else None

    def spread(self, key: str) -> tuple[float, float] | None:
        values = [run[key] for run in self.runs if isinstance(run.get(key), int | float)]
        return (min(values), max(values)) if values else None

    def max(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if isinstance(run.get(key), int | float)]
        return max(values) if values else None

    def summary(self) -> dict[str, Any]:
        keys = sorted({key for run in self.runs for key in run if key != "rows"})
        return {
            "runs": len(self.runs),
            "rows": self.runs[0].get("rows") if self.runs else None,
            "median": {key: _round(self.median(key)) for key in keys},
            "min": {key: _round((self.spread(key) or (None, None))[0]) for key in keys},
            "max": {key: _round((self.spread(key) or (None, None))[1]) for key in keys},
            "all": self.runs,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Time the course method, the taxi_assets ingest core, the same through Dagster, "
            "and the server-side COPY floor on generated yellow months; print a table and "
            "write a JSON report."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized data, one run each")
    parser.add_argument(
        "--rows",
        type=lambda text: [int(part) for part in text.split(",")],
        help="month sizes (comma-separated rows); default 1370000,7800000 (quick: 20000)",
    )
    parser.add_argument("--runs", type=int, help="runs per case (median); default 3, quick 1")
    parser.add_argument(
        "--full-course",
        action="store_true",
        help=f"also time the course method on months over {COURSE_LIMIT_ROWS:,} rows (~10 min)",
    )
    parser.add_argument(
        "--cases",
        type=lambda text: text.split(","),
        default=["course", "core", "dagster", "floor"],
        help="subset of course,core,dagster,floor",
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the tiny-month runs")
    parser.add_argument(
        "--backfill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time a single-service backfill through dagster-daemon "
        "(benchmarks/backfill.py: 12 x 1.37M-row months, quick 3 x 20,000)",
    )
    parser.add_argument(
        "--tlc-layout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the ingest core on months in TLC's layout, one row group "
        "(benchmarks/tlc_layout.py: FHVHV 1M and 20M rows, yellow 1M and 7.8M; quick: small)",
    )
    parser.add_argument("--out", type=Path, help=f"JSON report (default {DEFAULT_OUT})")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TAXI_BENCH_DATABASE_URL"),
        help="an existing PostgreSQL server (superuser, same machine for the floor); "
        "default: a throwaway embedded server",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    months = QUICK_MONTHS if args.quick else FULL_MONTHS
    if args.rows:
        by_rows = dict(months)
        args.months = [(rows, by_rows.get(rows, "2021-01")) for rows in args.rows]
    else:
        args.months = list(months)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    scratch = Path(tempfile.mkdtemp(prefix="taxi-bench-"))
    scratch.chmod(0o755)  # the floor's binary file must be readable by the server's user
    try:
        with database_server(args.database_url, scratch) as server_url:
            report = run_all(args, server_url, scratch, command)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(render_table(report))
    if report.get("tlc_layout"):
        from benchmarks.tlc_layout import render_per_column
        from benchmarks.tlc_layout import render_table as render_tlc

        print("\nIngest core on TLC's layout (Parquet, the month in ONE row group):\n")
        print(render_tlc(report["tlc_layout"]))
        compared = render_per_column(report["tlc_layout"])
        if compared:
            print(f"\n{compared}")
    if report.get("backfill"):
        from benchmarks.backfill import render_table as render_backfill

        print("\nBackfill through dagster-daemon:\n")
        print(render_backfill(report["backfill"]))
    print()
    print(render_targets(report))
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return 0


@contextmanager
def database_server(url: str | None, scratch: Path) -> Iterator[str]:
    if url:
        yield url
        return
    from taxi_assets.pg.embedded import embedded_url, stop

    folder = scratch / "pg"
    server_url = embedded_url(folder)
    try:
        yield server_url
    finally:
        stop(folder)


def run_all(
    args: argparse.Namespace, server_url: str, scratch: Path, command: str
) -> dict[str, Any]:
    log(f"scratch folder {scratch}; data {args.data_dir}; {args.runs} run(s) per case")
    months: list[dict[str, Any]] = []
    for rows, month in args.months:
        raw = ensure_month(args.data_dir, rows, month)
        cases: dict[str, Measured] = {}
        skipped: dict[str, str] = {}
        for case in args.cases:
            if case == "course" and rows > COURSE_LIMIT_ROWS and not args.full_course:
                skipped[case] = (
                    f"not run on {rows:,} rows (about 10 min at the course's ~70k rows/s); "
                    "pass --full-course to include it"
                )
                continue
            cases[case] = Measured(case)
            for index in range(args.runs):
                result = run_case(case, raw, month, rows, server_url, scratch)
                cases[case].runs.append(result)
                log(
                    f"{rows:>10,} rows  {case:<8} run {index + 1}/{args.runs}: "
                    f"wall {result['wall_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB"
                )
        months.append(month_report(rows, month, raw, cases, skipped))
    overhead = None
    if not args.no_overhead and {"core", "dagster"} <= set(args.cases):
        overhead = fixed_overhead(args, server_url, scratch)
    tlc_layout = None
    if args.tlc_layout:
        from benchmarks.tlc_layout import run_tlc_layout

        # FHVHV's rows/s is judged against the largest yellow CSV month, run alternately.
        csv_rows, csv_month = max(args.months)
        paired_csv = (ensure_month(args.data_dir, csv_rows, csv_month), csv_month, csv_rows)
        tlc_layout = run_tlc_layout(
            args.data_dir, server_url, scratch, args.runs, args.quick, paired_csv
        )
    backfill = None
    if args.backfill:
        from benchmarks import backfill as daemon_backfill

        backfill = daemon_backfill.run_backfill_benchmark(
            server_url,
            scratch,
            months=daemon_backfill.QUICK_MONTHS if args.quick else daemon_backfill.FULL_MONTHS,
            rows=daemon_backfill.QUICK_ROWS if args.quick else daemon_backfill.FULL_ROWS,
            data_dir=args.data_dir,
            quick=args.quick,
        )
    return build_report(args, command, server_url, months, overhead, backfill, tlc_layout)


def ensure_month(data_dir: Path, rows: int, month: str, service: str = "yellow") -> Path:
    """The generated month (cached across runs: same rows and seed give the same bytes),
    in the course mirror's layout, so the folder can also be served as a mirror."""
    from taxi_assets.devdata import relpath, write_month

    root = data_dir / f"rows-{rows}"
    path = root / relpath("dtc", service, month)
    if not path.exists():
        log(f"generating {rows:,} {service} rows for {month} in {root} ...")
        started = time.perf_counter()
        path = write_month(root, source="dtc", service=service, month=month, rows=rows)
        log(f"  done in {time.perf_counter() - started:.1f} s ({path.stat().st_size:,} bytes)")
    return path


def run_case(
    case: str,
    raw: Path,
    month: str,
    rows: int,
    server_url: str,
    scratch: Path,
    service: str = "yellow",
) -> dict[str, Any]:
    """One run in a fresh process and a fresh database; whole-process wall and peak RSS."""
    work = scratch / f"{case}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    work.chmod(0o755)
    with fresh_database(server_url, prefix="bench", checkpoint=True) as url:
        payload = {
            "raw": str(raw),
            "month": month,
            "url": url,
            "work": str(work),
            "public_dir": str(work),
            "expected_rows": rows,
            "service": service,
        }
        command = [sys.executable, "-m", "benchmarks.cases", case, json.dumps(payload)]
        stderr_path = work / "stderr.log"
        load_before = round(os.getloadavg()[0], 2)
        with open(stderr_path, "wb") as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, env=_child_env()
            )
            assert process.stdout is not None
            stdout = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
    try:
        if process.returncode != 0:
            tail = stderr_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"case {case} failed (exit {process.returncode}):\n{tail}")
        result = _parse_result(stdout.decode(errors="replace"), case)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = wall
    result["ru_maxrss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["peak_rss_mb"] = result.pop("vm_hwm_mb", None) or result["ru_maxrss_mb"]
    result["load_average_before"] = load_before
    return result


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _parse_result(stdout: str, case: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"case {case} printed no result line:\n{stdout[-2000:]}")


def fixed_overhead(args: argparse.Namespace, server_url: str, scratch: Path) -> dict[str, Any]:
    """Dagster's cost per run, whatever the data: a tiny month through Dagster and the core."""
    rows, month = TINY_MONTH
    raw = ensure_month(args.data_dir, rows, month)
    measured = {case: Measured(case) for case in ("core", "dagster")}
    for index in range(args.runs):
        for case, series in measured.items():
            result = run_case(case, raw, month, rows, server_url, scratch)
            series.runs.append(result)
            log(
                f"{rows:>10,} rows  {case:<8} run {index + 1}/{args.runs}: {result['wall_s']:.2f} s"
            )
    core_wall = measured["core"].median("wall_s") or 0.0
    dagster_wall = measured["dagster"].median("wall_s") or 0.0
    core_work = measured["core"].median("work_s") or 0.0
    dagster_work = measured["dagster"].median("work_s") or 0.0
    return {
        "rows": rows,
        "core": measured["core"].summary(),
        "dagster": measured["dagster"].summary(),
        "per_run_wall_s": _round(dagster_wall - core_wall),
        "per_run_in_process_s": _round(dagster_work - core_work),
    }


def month_report(
    rows: int, month: str, raw: Path, cases: dict[str, Measured], skipped: dict[str, str]
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "rows": rows,
        "month": month,
        "raw_file": raw.name,
        "raw_bytes": raw.stat().st_size,
        "cases": {name: measured.summary() for name, measured in cases.items()},
        "skipped": skipped,
    }

    def median(case: str, key: str) -> float | None:
        return cases[case].median(key) if case in cases else None

    core_wall, core_work = median("core", "wall_s"), median("core", "work_s")
    course_wall, course_work = median("course", "wall_s"), median("course", "work_s")
    dagster_wall, serial = median("dagster", "wall_s"), median("floor", "serial_floor_s")
    if course_wall and core_wall:
        report["speedup_vs_course"] = _round(course_wall / core_wall, 2)
    if course_work and core_work:
        report["speedup_vs_course_in_process"] = _round(course_work / core_work, 2)
    if course_wall and dagster_wall:
        report["speedup_vs_course_dagster"] = _round(course_wall / dagster_wall, 2)
    if "floor" in cases:
        report["serial_floor_s"] = _round(serial)
        if core_wall and serial:
            report["ratio_vs_copy_floor"] = _round(core_wall / serial, 2)
        if core_work and serial:
            report["ratio_vs_copy_floor_in_process"] = _round(core_work / serial, 2)
    if dagster_wall is not None and core_wall:
        report["dagster_overhead_s"] = _round(dagster_wall - core_wall)
    return report


def build_report(
    args: argparse.Namespace,
    command: str,
    server_url: str,
    months: list[dict[str, Any]],
    overhead: dict[str, Any] | None,
    backfill: dict[str, Any] | None = None,
    tlc_layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    by_size = sorted(months, key=lambda m: m["rows"])
    smallest, largest = by_size[0], by_size[-1]
    core_rss = [
        m["cases"]["core"]["max"].get("peak_rss_mb") for m in months if "core" in m["cases"]
    ]
    run_rss = [
        m["cases"]["dagster"]["max"].get("peak_rss_mb") for m in months if "dagster" in m["cases"]
    ]
    report: dict[str, Any] = {
        "schema_version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": bool(args.quick),
        "runs_per_case": args.runs,
        "machine": machine(server_url),
        "headline_month_rows": smallest["rows"],
        "speedup_vs_course": smallest.get("speedup_vs_course"),
        "ratio_vs_copy_floor": smallest.get("ratio_vs_copy_floor"),
        "peak_rss_mb": largest["cases"].get("core", {}).get("max", {}).get("peak_rss_mb"),
        "peak_rss_mb_month_rows": largest["rows"],
        "peak_rss_mb_by_month": {
            str(m["rows"]): m["cases"].get("core", {}).get("max", {}).get("peak_rss_mb")
            for m in months
        },
        "peak_rss_run_mb": max(filter(None, run_rss), default=None),
        "core_peak_rss_max_mb": max(filter(None, core_rss), default=None),
        "dagster_fixed_overhead_s": overhead["per_run_wall_s"] if overhead else None,
        "dagster_fixed_overhead": overhead,
        "months": months,
        "backfill": backfill,
        "tlc_layout": tlc_layout,
    }
    if tlc_layout is not None:
        from benchmarks import tlc_layout as tlc

        report.update(tlc.headline(tlc_layout))
    report["targets"] = targets(report)
    if args.quick:
        for target in report["targets"]:
            target["met"] = None  # targets are for the full-size months, not CI-sized data
    return report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    def check(name: str, value: float | None, limit: float, higher_is_better: bool) -> dict:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        return {"target": name, "measured": value, "limit": limit, "met": met}

    rows = report["headline_month_rows"]
    big = report["peak_rss_mb_month_rows"]
    result = [
        check(f"speedup vs course, {rows:,} rows (>= 25x)", report["speedup_vs_course"], 25, True),
        check(
            f"e2e / serial floor, {rows:,} rows (<= 2x)", report["ratio_vs_copy_floor"], 2, False
        ),
        check(f"ingest core peak RSS, {big:,} rows (<= 400 MB)", report["peak_rss_mb"], 400, False),
        check("Dagster run process peak RSS (< 650 MB)", report["peak_rss_run_mb"], 650, False),
    ]
    if report.get("tlc_layout"):
        from benchmarks import tlc_layout as tlc

        result += tlc.targets(report["tlc_layout"], report["core_peak_rss_max_mb"])
    backfill = report.get("backfill")
    if backfill:
        target = backfill["target"]
        result.append(
            {
                "target": target["target"],
                "measured": target["measured_s"],
                "limit": target["limit_s"],
                "met": target["met"],
            }
        )
    return result


def machine(server_url: str) -> dict[str, Any]:
    import pyarrow

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
    }
    for module in ("pandas", "dagster", "psycopg", "sqlalchemy"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - informative only
            info[module] = None
    try:
        import psycopg

        with psycopg.connect(server_url) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else None
    except Exception:  # noqa: BLE001
        info["postgresql"] = None
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def render_table(report: dict[str, Any]) -> str:
    from tabulate import tabulate

    rows = []
    for month in report["months"]:
        for case in ("course", "core", "dagster", "floor"):
            if case in month["skipped"]:
                rows.append([f"{month['rows']:,}", case, "skipped", "", "", "", "", ""])
                continue
            summary = month["cases"].get(case)
            if summary is None:
                continue
            median, low, high = summary["median"], summary["min"], summary["max"]
            if case == "floor":
                rows.append(
                    [
                        f"{month['rows']:,}",
                        case,
                        _fmt(median.get("serial_floor_s")),
                        f"{_fmt(low.get('serial_floor_s'))}-{_fmt(high.get('serial_floor_s'))}",
                        f"lake {_fmt(median.get('lake_floor_s'))} + COPY "
                        f"{_fmt(median.get('copy_floor_s'))} (work only)",
                        _fmt(median.get("peak_rss_mb"), 0),
                        "",
                        _fmt(median.get("load_average_before"), 1),
                    ]
                )
                continue
            phases = (
                f"lake {_fmt(median.get('lake_s'))} + warehouse {_fmt(median.get('warehouse_s'))}"
                if "lake_s" in median
                else f"materialize {_fmt(median.get('work_s'))}"
            )
            rows.append(
                [
                    f"{month['rows']:,}",
                    case,
                    _fmt(median.get("wall_s")),
                    f"{_fmt(low.get('wall_s'))}-{_fmt(high.get('wall_s'))}",
                    phases,
                    _fmt(median.get("peak_rss_mb"), 0),
                    _rate(month["rows"], median.get("wall_s")),
                    _fmt(median.get("load_average_before"), 1),
                ]
            )
    headers = [
        "rows",
        "case",
        "wall s (median)",
        "min-max",
        "in-process phases, s",
        "peak RSS MB",
        "rows/s",
        "load avg",
    ]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    notes = []
    for month in report["months"]:
        for case, why in month["skipped"].items():
            notes.append(f"- {month['rows']:,} rows, {case}: {why}")
        ratios = []
        for key, label in (
            ("speedup_vs_course", "speedup vs course"),
            ("speedup_vs_course_dagster", "speedup vs course via Dagster"),
            ("ratio_vs_copy_floor", "core / serial floor"),
            ("dagster_overhead_s", "Dagster overhead s"),
        ):
            if month.get(key) is not None:
                ratios.append(f"{label} {month[key]}")
        if ratios:
            notes.append(f"- {month['rows']:,} rows: " + ", ".join(ratios))
    overhead = report.get("dagster_fixed_overhead")
    if overhead:
        notes.append(
            f"- Dagster fixed overhead per run ({overhead['rows']:,}-row month, Dagster wall - "
            f"core wall): {overhead['per_run_wall_s']} s whole process, "
            f"{overhead['per_run_in_process_s']} s after imports"
        )
    return table + ("\n\n" + "\n".join(notes) if notes else "")


def render_targets(report: dict[str, Any]) -> str:
    lines = ["Targets" + (" (not judged on --quick's CI-sized data):" if report["quick"] else ":")]
    for target in report["targets"]:
        if report["quick"]:
            lines.append(f"- {target['target']}: {target['measured']}")
            continue
        state = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        lines.append(f"- {target['target']}: {target['measured']} -> {state}")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rate(rows: int, seconds: float | None) -> str:
    return "-" if not seconds else f"{rows / seconds:,.0f}"


def write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(partial, out)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
