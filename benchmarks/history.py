"""``make bench-history``: the whole history at scale, through the real daemon.

``python -m benchmarks.history [--quick] [--keep] [--fhvhv]`` (docs/performance.md):

1. Checks the free disk of the work folder (about 40 GB for the full run).
2. Generates the months at their real row counts (benchmarks/history_data.py: the
   course's yellow 2019 files, 84,399,019 rows, and three more months), cached in the
   work folder with ``--keep``; the generation time is reported apart.
3. Serves them over HTTP on 127.0.0.1 as the upstream does (``python -m
   taxi_assets.devdata serve``) and loads them raw -> lake -> warehouse with an asset
   backfill per service, run by ``dagster-daemon run`` with the repository's
   ``dagster.yaml`` into an embedded PostgreSQL (benchmarks/backfill.py's machinery).
4. Checks every month's row count in the warehouse, then reports the sustained
   throughput (all rows / wall time from the first run's start to the last run's end),
   the per-run fixed overhead, the peak RSS of each run process, the disk each layer
   uses, and extrapolations to the full TLC history and to the course dataset; runs the
   month-replace benchmark (benchmarks/month_replace.py) for its figures.
5. Removes what it generated (months, lake, database) unless ``--keep``.

Writes ``benchmarks/results/history.json`` (``--quick``: ``data/bench/history-quick.json``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import backfill as bf
from benchmarks.history_data import (
    Month,
    ensure_months,
    planned_months,
    require_service,
    row_groups,
)
from benchmarks.runner import (
    ROOT,
    _child_env,
    _round,
    database_server,
    fresh_database,
    log,
    machine,
    write_json,
)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "history.json"
QUICK_OUT = ROOT / "data" / "bench" / "history-quick.json"
DEFAULT_WORK = ROOT / "data" / "bench" / "history"
# Bytes per row on disk, measured on generated yellow months (benchmarks/results): the
# published CSV.gz (source, and raw: the same bytes), the lake's Parquet, the warehouse
# (heap, TOAST, BRIN; 205 measured at 500k rows a month) and WAL in flight; what the free-disk check asks for.
BYTES_PER_ROW = {"source": 19, "raw": 19, "lake": 15, "warehouse": 210, "wal_and_staging": 40}
FULL_HISTORY_ROWS = 3_900_000_000  # TLC's whole record, all services, through 2024
COURSE_ROWS = 199_000_000  # yellow, green and FHV of 2019-01..2021-07
TARGET_ROWS_PER_S = 450_000
TARGET_RUN_RSS_MB = 650


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="4 months of a thousandth of the rows")
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated months, lake and database"
    )
    parser.add_argument(
        "--fhvhv", action="store_true", help="3 FHVHV-sized months instead of 3 yellow stand-ins"
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--generate-workers", type=int, default=2)
    parser.add_argument("--skip-disk-check", action="store_true")
    parser.add_argument(
        "--no-month-replace", action="store_true", help="skip benchmarks.month_replace"
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        help="override dagster.yaml's concurrency.runs.max_concurrent_runs (default: as committed)",
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600.0)
    args = parser.parse_args(argv)
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    if args.quick and args.work_dir == DEFAULT_WORK:
        args.work_dir = DEFAULT_WORK.with_name(DEFAULT_WORK.name + "-quick")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    months = planned_months(quick=args.quick, fhvhv=args.fhvhv)
    if args.fhvhv:
        require_service("fhvhv")
    total = sum(m.rows for m in months)
    log(
        f"{len(months)} months, {total:,} rows: "
        + ", ".join(f"{m.service} {m.month} {m.rows:,}" for m in months)
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    disk = check_disk(args.work_dir, total, skip=args.skip_disk_check)
    source_root = args.work_dir / "months"
    run_dir = args.work_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    run_dir.chmod(0o755)  # the embedded server runs as its own user when we are root
    try:
        generation = ensure_months(source_root, months, args.generate_workers)
        with database_server(None, run_dir) as server_url:
            with fresh_database(server_url, prefix="history", checkpoint=True) as url:
                section = load_history(
                    run_dir, url, source_root, months, args.timeout, args.max_concurrent_runs
                )
                section["disk_bytes"] = disk_use(source_root, run_dir, url, months)
            report = build_report(args, argv, months, generation, disk, section, server_url)
        if not args.no_month_replace:
            report.update(month_replace_figures(args))
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(source_root, ignore_errors=True)
    write_json(report, args.out)
    print(render(report))
    print(f"\nwrote {args.out}")
    return 0


def check_disk(folder: Path, rows: int, *, skip: bool) -> dict[str, Any]:
    needed = rows * sum(BYTES_PER_ROW.values())
    free = shutil.disk_usage(folder).free
    state = {"folder": str(folder), "free_bytes": free, "needed_bytes": needed}
    if free < needed and not skip:
        raise SystemExit(
            f"bench-history needs about {needed / 1e9:.1f} GB free in {folder}; "
            f"{free / 1e9:.1f} GB are (--skip-disk-check to try anyway)"
        )
    log(f"free disk {free / 1e9:.1f} GB in {folder}, about {needed / 1e9:.1f} GB needed")
    return state


def load_history(
    work: Path,
    url: str,
    mirror_root: Path,
    months: list[Month],
    timeout: float,
    max_concurrent_runs: int | None = None,
) -> dict[str, Any]:
    """One asset backfill per service, submitted before the daemon starts; wait for all."""
    import dagster as dg

    home = work / "dagster_home"
    home.mkdir()
    instance_info = bf.write_dagster_yaml(home, max_concurrent_runs, None)
    workspace = work / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: taxi_assets\n"
        f"      working_directory: {ROOT}\n"
    )
    by_service: dict[str, list[str]] = {}
    for month in months:
        by_service.setdefault(month.service, []).append(month.month)
    with bf.serve_mirror(mirror_root, work) as mirror_url:
        env = _child_env()
        env.update(
            {
                "DAGSTER_HOME": str(home),
                "TAXI_SOURCE": "auto",
                "TAXI_DTC_URL": mirror_url,
                "TAXI_TLC_URL": mirror_url,
                "TAXI_ZONES_URL": f"{mirror_url}/misc/taxi_zone_lookup.csv",
                "TAXI_LAKE_URL": str(work / "lake"),
                "TAXI_WAREHOUSE_URL": url,
                "TAXI_FIRST_MONTH": "2019-01",
            }
        )
        bf._cli([str(bf.BIN / "dagster"), "instance", "info"], env, work / "instance-info.log")
        bf.stop_automation(env, workspace, work)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance_info.update(bf.describe_instance(instance))
            load_before = bf._load()
            submitted_at = time.time()
            backfills = {
                bf.submit_asset_backfill(env, workspace, service, keys, work): service
                for service, keys in by_service.items()
            }
            daemon_log = work / "daemon.log"
            with bf.run_daemon(env, workspace, daemon_log) as daemon:
                watched = watch(instance, daemon, backfills, months, timeout, daemon_log)
                daemon_stop = bf.stop_daemon(daemon)
            runs = run_summaries(instance, backfills, submitted_at)
    counts = {service: bf.warehouse_counts(url, service) for service in by_service}
    expected = {s: {m.month: m.rows for m in months if m.service == s} for s in by_service}
    if counts != expected:
        raise RuntimeError(
            f"warehouse rows per month differ from the generated rows: {counts} != {expected}"
        )
    return {
        "instance": instance_info,
        "load_average_before": load_before,
        "load_average_after": bf._load(),
        "daemon_stop": daemon_stop,
        "rows_loaded": counts,
        **watched,
        **runs,
    }


def watch(
    instance: Any,
    daemon: Any,
    backfills: dict[str, str],
    months: list[Month],
    timeout: float,
    daemon_log: Path,
) -> dict[str, Any]:
    """Poll until every backfill's months have a successful run; sample memory meanwhile:
    the daemon group's total, and each run process's own peak (VmHWM, kept by the kernel)."""
    from dagster import RunsFilter

    wanted = {(m.service, m.month) for m in months}
    peak_group_mb = 0.0
    run_peaks: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while True:
        members = bf._group_members(daemon.pid)
        peak_group_mb = max(peak_group_mb, sum(bf._rss_mb(pid) for pid in members))
        for pid in members:
            # Run workers: the code server starts each run in a process of its own, with
            # multiprocessing's "spawn" (its command line names spawn_main).
            if "spawn_main" in bf._cmdline(pid):
                run_peaks[pid] = max(run_peaks.get(pid, 0.0), _peak_mb(pid))
        done, in_flight = set(), 0
        for backfill_id, service in backfills.items():
            runs = [
                r.dagster_run
                for r in instance.get_run_records(
                    RunsFilter(tags={"dagster/backfill": backfill_id})
                )
            ]
            finished = {(service, bf._run_month(run)) for run in runs if run.is_success}
            busy = sum(1 for run in runs if not run.is_finished)
            backfill = instance.get_backfill(backfill_id)
            ended = backfill is not None and backfill.status.value not in (
                "REQUESTED", "CANCELING", "FAILING"
            )  # fmt: skip
            missing = {m for s, m in wanted if s == service} - {m for _, m in finished}
            if ended and not busy and missing:
                raise RuntimeError(
                    f"backfill {backfill_id} ({service}) ended {backfill.status.value} with "
                    f"{sorted(missing)} not loaded:\n" + bf.failures(instance, runs)
                )
            done |= finished
            in_flight += busy
        if done >= wanted and not in_flight:
            break
        if daemon.poll() is not None:
            raise RuntimeError(
                "dagster-daemon exited early:\n" + daemon_log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"unfinished after {timeout:.0f} s: {len(done)}/{len(wanted)} months"
            )
        time.sleep(bf.POLL_S)
    return {
        "peak_rss_daemon_group_mb": _round(peak_group_mb, 0),
        "peak_rss_run_mb": _round(max(run_peaks.values(), default=0.0), 0),
        "peak_rss_run_mb_median": _round(statistics.median(run_peaks.values()), 0)
        if run_peaks
        else None,
        "run_processes_sampled": len(run_peaks),
    }


def _peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_summaries(instance: Any, backfills: dict[str, str], submitted_at: float) -> dict[str, Any]:
    from dagster import RunsFilter

    per_run = []
    for backfill_id, service in backfills.items():
        for run in [
            r.dagster_run
            for r in instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        ]:
            stats = instance.get_run_stats(run.run_id)
            steps = {
                s.step_key: s.end_time - s.start_time
                for s in instance.get_run_step_stats(run.run_id)
                if s.start_time and s.end_time
            }
            if not (stats.start_time and stats.end_time and stats.launch_time):
                continue
            duration = stats.end_time - stats.start_time
            per_run.append(
                {
                    "service": service,
                    "month": bf._run_month(run),
                    "status": run.status.value,
                    "launched_at_s": _round(stats.launch_time - submitted_at),
                    "started_at_s": _round(stats.start_time - submitted_at),
                    "ended_at_s": _round(stats.end_time - submitted_at),
                    "duration_s": _round(duration),
                    "launch_to_start_s": _round(stats.start_time - stats.launch_time),
                    # What a run costs besides its steps: process start and imports, and
                    # Dagster's bookkeeping between steps.
                    "fixed_overhead_s": _round(
                        stats.start_time - stats.launch_time + duration - sum(steps.values())
                    ),
                    "steps_s": {k: _round(v) for k, v in sorted(steps.items())},
                }
            )
    per_run.sort(key=lambda r: r["started_at_s"])
    ok = [r for r in per_run if r["status"] == "SUCCESS"]
    first_start = min(r["started_at_s"] for r in per_run)
    last_end = max(r["ended_at_s"] for r in per_run)
    step_keys = sorted({k for r in ok for k in r["steps_s"]})
    return {
        "runs": len(per_run),
        "failed_runs": len(per_run) - len(ok),
        "first_run_started_at_s": first_start,
        "wall_s": _round(last_end - first_start),
        "wall_from_submit_s": _round(last_end),
        "run_s_median": _round(statistics.median(r["duration_s"] for r in ok)),
        "fixed_overhead_s_median": _round(statistics.median(r["fixed_overhead_s"] for r in ok)),
        "launch_to_start_s_median": _round(statistics.median(r["launch_to_start_s"] for r in ok)),
        "step_s_median": {
            k: _round(statistics.median(r["steps_s"][k] for r in ok if k in r["steps_s"]))
            for k in step_keys
        },
        "effective_concurrency": _round(
            sum(r["duration_s"] for r in per_run) / (last_end - first_start), 2
        ),
        "max_overlapping_runs": bf.max_overlap(per_run),
        "per_run": per_run,
    }


def disk_use(source_root: Path, work: Path, url: str, months: list[Month]) -> dict[str, int]:

    from taxi_assets.pg.partitions import tree_bytes
    from taxi_assets.resources.postgres import PostgresResource
    from taxi_assets.services import SERVICES

    engine = PostgresResource(url=url).engine()
    with engine.connect() as connection:
        warehouse = sum(
            tree_bytes(connection, "warehouse", SERVICES[s].dataset)
            for s in {m.service for m in months}
        )
        database = connection.exec_driver_sql(
            "SELECT pg_database_size(current_database())"
        ).scalar()
    engine.dispose()
    return {
        "source": sum((source_root / m.relpath).stat().st_size for m in months),
        "raw": _folder_bytes(work / "lake" / "raw"),
        "lake": _folder_bytes(work / "lake" / "lake"),
        "warehouse": warehouse,
        "database": int(database or 0),
    }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def month_replace_figures(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks.month_replace in a process of its own (its keys go into this report)."""
    import json
    import subprocess

    out = args.work_dir / "month_replace.json"
    command = [sys.executable, "-m", "benchmarks.month_replace", "--out", str(out)]
    if args.quick:
        command += ["--quick", "--data-dir", str(args.work_dir / "replace-months")]
    done = subprocess.run(command, cwd=ROOT, env=_child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("benchmarks.month_replace failed:\n" + done.stderr[-3000:])
    replace = json.loads(out.read_text())
    keys = ("month_replace_ratio_36_vs_1", "swap_lock_ms_1", "swap_lock_ms_36")
    return {**{k: replace.get(k) for k in keys}, "month_replace": replace}


def build_report(
    args: argparse.Namespace,
    argv: list[str],
    months: list[Month],
    generation: dict[str, Any],
    disk: dict[str, Any],
    section: dict[str, Any],
    server_url: str,
) -> dict[str, Any]:
    rows = sum(m.rows for m in months)
    rate = rows / section["wall_s"]
    used = section["disk_bytes"]
    per_row = {layer: used[layer] / rows for layer in ("source", "raw", "lake", "warehouse")}

    def extrapolate(total: int) -> dict[str, Any]:
        return {
            "rows": total,
            "hours_at_sustained_rate": _round(total / rate / 3600, 1),
            "disk_gb": {layer: _round(b * total / 1e9, 0) for layer, b in per_row.items()},
        }

    judged = not args.quick
    report = {
        "schema_version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.history " + " ".join(argv),
        "quick": bool(args.quick),
        "months": [
            {
                "service": m.service,
                "month": m.month,
                "rows": m.rows,
                "source_layout": m.source,
                "source_row_groups": row_groups(args.work_dir / "months" / m.relpath)
                if (args.work_dir / "months" / m.relpath).exists()
                else None,
            }
            for m in months
        ],  # fmt: skip
        "rows_total": rows,
        "rows_loaded": section["rows_loaded"],
        "generation": generation,
        "disk_check": disk,
        "sustained_rows_per_s": _round(rate, 0),
        "per_run_fixed_overhead_s": section["fixed_overhead_s_median"],
        "peak_rss_run_mb": section["peak_rss_run_mb"],
        "bytes_per_row": {k: _round(v, 1) for k, v in per_row.items()},
        "extrapolation_full_history": extrapolate(FULL_HISTORY_ROWS),
        "extrapolation_course_dataset": extrapolate(COURSE_ROWS),
        "backfill": section,
        "machine": machine(server_url),
        "targets": [
            {
                "target": f"sustained rows/s >= {TARGET_ROWS_PER_S:,}",
                "measured": _round(rate, 0),
                "met": rate >= TARGET_ROWS_PER_S if judged else None,
            },
            {
                "target": f"run process peak RSS <= {TARGET_RUN_RSS_MB} MB",
                "measured": section["peak_rss_run_mb"],
                "met": section["peak_rss_run_mb"] <= TARGET_RUN_RSS_MB if judged else None,
            },
        ],  # fmt: skip
    }
    return report


def render(report: dict[str, Any]) -> str:
    section = report["backfill"]
    disk = section["disk_bytes"]
    full, course = report["extrapolation_full_history"], report["extrapolation_course_dataset"]
    lines = [
        f"History benchmark: {len(report['months'])} months, {report['rows_total']:,} rows "
        f"({'quick' if report['quick'] else 'full size'}); data generated in "
        f"{report['generation']['generation_s']} s ({report['generation']['cached_months']} months cached)",
        f"- sustained: {report['sustained_rows_per_s']:,.0f} rows/s over {section['wall_s']} s "
        f"(first run start to last run end), {section['runs']} runs, median run "
        f"{section['run_s_median']} s, concurrency {section['effective_concurrency']}",
        f"- per-run fixed overhead (median): {report['per_run_fixed_overhead_s']} s; launch to "
        f"start {section['launch_to_start_s_median']} s",
        f"- peak RSS of a run process: {report['peak_rss_run_mb']} MB (median "
        f"{section['peak_rss_run_mb_median']} MB); daemon group {section['peak_rss_daemon_group_mb']} MB",
        f"- disk: source {disk['source'] / 1e9:.2f} GB, raw {disk['raw'] / 1e9:.2f} GB, lake "
        f"{disk['lake'] / 1e9:.2f} GB, warehouse {disk['warehouse'] / 1e9:.2f} GB "
        f"(database {disk['database'] / 1e9:.2f} GB)",
        f"- median step times s: {', '.join(f'{k} {v}' for k, v in section['step_s_median'].items())}",
        f"- full history ({full['rows'] / 1e9:.1f} B rows): {full['hours_at_sustained_rate']} h, "
        f"warehouse {full['disk_gb']['warehouse']} GB; course dataset ({course['rows'] / 1e6:.0f}M "
        f"rows): {course['hours_at_sustained_rate']} h, warehouse {course['disk_gb']['warehouse']} GB",
    ]
    if report.get("month_replace"):
        lines.append(
            f"- month replace at 36 vs 1 months: {report['month_replace_ratio_36_vs_1']}x; swap lock "
            f"{report['swap_lock_ms_1']} ms / {report['swap_lock_ms_36']} ms"
        )
    for target in report["targets"]:
        state = {True: "met", False: "MISSED", None: "not judged (--quick)"}[target["met"]]
        lines.append(f"- target {target['target']}: {target['measured']} -> {state}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
