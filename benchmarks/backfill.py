"""A single-service backfill of generated months through the real Dagster daemon.

``python -m benchmarks.backfill`` (and the ``backfill`` section of ``python -m benchmarks``):
12 consecutive generated months of one service, served by the devdata mirror on
127.0.0.1, loaded raw -> lake -> warehouse by ``dagster-daemon run`` into PostgreSQL,
with the repository's ``dagster.yaml`` in a temporary DAGSTER_HOME.

How the backfill is submitted: an *asset* backfill of the service's three assets, which
is what the UI's "Materialize -> Launch backfill" submits (and, for every service at
once, ``python -m taxi_assets.cli months backfill``); here the same
``launchPartitionBackfill`` mutation goes through the ``dagster-graphql`` CLI (no
webserver). ``dagster job backfill -j taxi_yellow_job`` would do the same months as a job
backfill. The daemon's backfill loop then queues one run per month (the assets'
backfill policy) and the queued run coordinator starts them within
``concurrency.runs.max_concurrent_runs``.

Timeline: the backfill is submitted before the daemon starts (so the daemon's first
backfill iteration picks it up, instead of a phase-dependent 0-30 s wait for its next
one); wall time runs from the submit command's start to the end of the last run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.runner import (
    ROOT,
    _child_env,
    _fmt,
    _round,
    database_server,
    ensure_month,
    fresh_database,
    log,
    machine,
    write_json,
)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "backfill.json"
QUICK_OUT = ROOT / "data" / "bench" / "backfill-quick.json"
DEFAULT_DATA_DIR = ROOT / "data" / "bench" / "months"
FULL_MONTHS, FULL_ROWS = 12, 1_370_000
QUICK_MONTHS, QUICK_ROWS = 3, 20_000
DEFAULT_FIRST = "2020-01"
TARGET_WALL_S = 300.0
BIN = Path(sys.executable).parent
POLL_S = 1.0

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backfill",
        description=(
            "Time a single-service backfill of generated months through dagster-daemon "
            "(real HTTP mirror, real PostgreSQL); print a table and write a JSON report."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="3 months x 20,000 rows, no target")
    parser.add_argument("--months", type=int, help=f"consecutive months (default {FULL_MONTHS})")
    parser.add_argument("--rows", type=int, help=f"rows per month (default {FULL_ROWS:,})")
    parser.add_argument("--service", default="yellow", choices=["yellow", "green", "fhv"])
    parser.add_argument("--first", default=DEFAULT_FIRST, help="first month, YYYY-MM")
    parser.add_argument(
        "--max-concurrent-runs",
        type=lambda text: [None if part == "default" else int(part) for part in text.split(",")],
        help="override concurrency.runs.max_concurrent_runs in the temporary DAGSTER_HOME, "
        "comma-separated, one backfill per value, the first is the headline ('default': "
        "dagster.yaml's value), e.g. default,1,3; default: dagster.yaml's value only",
    )
    parser.add_argument(
        "--dequeue-interval-seconds",
        type=int,
        help="override the queued run coordinator's dequeue interval (Dagster's default 5 s) "
        "in the temporary DAGSTER_HOME, for every backfill of this invocation",
    )
    parser.add_argument("--out", type=Path, help=f"JSON report (default {DEFAULT_OUT})")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TAXI_BENCH_DATABASE_URL"),
        help="an existing PostgreSQL server (a fresh database is created on it); "
        "default: a throwaway embedded server",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    if args.months is None:
        args.months = QUICK_MONTHS if args.quick else FULL_MONTHS
    if args.rows is None:
        args.rows = QUICK_ROWS if args.quick else FULL_ROWS
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="taxi-bench-backfill-"))
    scratch.chmod(0o755)  # the embedded server runs as its own user when we are root
    try:
        with database_server(args.database_url, scratch) as server_url:
            section = run_backfill_benchmark(
                server_url,
                scratch,
                service=args.service,
                first=args.first,
                months=args.months,
                rows=args.rows,
                data_dir=args.data_dir,
                quick=args.quick,
                concurrency=args.max_concurrent_runs,
                dequeue_interval_s=args.dequeue_interval_seconds,
                timeout=args.timeout,
            )
            report = {
                "schema_version": 1,
                "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "python -m benchmarks.backfill " + " ".join(argv),
                "quick": bool(args.quick),
                "machine": machine(server_url),
                "backfill": section,
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(render_table(section))
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return 0


def run_backfill_benchmark(
    server_url: str,
    scratch: Path,
    *,
    service: str = "yellow",
    first: str = DEFAULT_FIRST,
    months: int = FULL_MONTHS,
    rows: int = FULL_ROWS,
    data_dir: Path = DEFAULT_DATA_DIR,
    quick: bool = False,
    concurrency: list[int | None] | None = None,
    dequeue_interval_s: int | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Every requested concurrency on the same cached months; the first is the headline."""
    load_at_start = _load()
    month_keys = consecutive_months(first, months)
    mirror_root = ensure_mirror(data_dir, service, month_keys, rows)
    measured: list[dict[str, Any]] = []
    for limit in concurrency or [None]:
        work = scratch / f"backfill-{len(measured)}"
        work.mkdir()
        work.chmod(0o755)
        with fresh_database(server_url, prefix="bench", checkpoint=True) as url:
            result = measure_backfill(
                work,
                url,
                mirror_root,
                service,
                month_keys,
                rows,
                limit,
                dequeue_interval_s,
                timeout,
            )
        shutil.rmtree(work, ignore_errors=True)
        measured.append(result)
    section = dict(measured[0])
    section["load_average_at_start"] = load_at_start
    section["alternatives"] = measured[1:]
    # Only the size is judged: other sizes and --quick are smoke runs.
    judged = not quick and months == FULL_MONTHS and rows == FULL_ROWS
    name = f"{months}-month single-service backfill of {rows:,}-row months through the daemon"
    section["target"] = {
        "target": f"{name} (< {TARGET_WALL_S:.0f} s)"
        if judged
        else f"{name} (target judged on {FULL_MONTHS} x {FULL_ROWS:,} only)",
        "limit_s": TARGET_WALL_S,
        "measured_s": section["wall_s"],
        "met": (section["wall_s"] < TARGET_WALL_S) if judged else None,
    }
    return section


def consecutive_months(first: str, count: int) -> list[str]:
    from taxi_assets.devdata import month_range
    from taxi_assets.partitions import add_months

    return month_range(first, add_months(first, count - 1))


def ensure_mirror(data_dir: Path, service: str, months: list[str], rows: int) -> Path:
    """The mirror folder: the months (cached, shared with the other benchmark cases,
    whose cache already has the dtc mirror's layout) and the zone lookup."""
    from taxi_assets.devdata import write_zones

    for month in months:
        ensure_month(data_dir, rows, month, service)
    root = data_dir / f"rows-{rows}"
    write_zones(root)  # unchanged bytes leave the file (and its ETag) alone
    return root


def measure_backfill(
    work: Path,
    url: str,
    mirror_root: Path,
    service: str,
    months: list[str],
    rows: int,
    max_concurrent_runs: int | None,
    dequeue_interval_s: int | None,
    timeout: float,
) -> dict[str, Any]:
    import dagster as dg

    home = work / "dagster_home"
    home.mkdir()
    instance_info = write_dagster_yaml(home, max_concurrent_runs, dequeue_interval_s)
    workspace = work / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: taxi_assets\n"
        f"      working_directory: {ROOT}\n"
    )
    with serve_mirror(mirror_root, work) as mirror_url:
        env = _child_env()
        env.update(
            {
                "DAGSTER_HOME": str(home),
                "TAXI_SOURCE": "dtc",
                "TAXI_DTC_URL": mirror_url,
                "TAXI_TLC_URL": mirror_url,
                "TAXI_ZONES_URL": f"{mirror_url}/misc/taxi_zone_lookup.csv",
                "TAXI_LAKE_URL": str(work / "lake"),
                "TAXI_WAREHOUSE_URL": url,
                "TAXI_FIRST_MONTH": first_partition(months[0]),
            }
        )
        # A CLI call creates the SQLite schema before the daemon starts: the daemon and a
        # CLI creating a fresh DAGSTER_HOME at once race on it.
        _cli([str(BIN / "dagster"), "instance", "info"], env, work / "instance-info.log")
        stop_automation(env, workspace, work)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance_info.update(describe_instance(instance))
            log(
                f"backfill: {len(months)} x {rows:,} {service} rows ({months[0]}..{months[-1]}), "
                f"max_concurrent_runs {instance_info['max_concurrent_runs']}"
            )
            load_before = _load()
            submitted_at = time.time()
            backfill_id = submit_asset_backfill(env, workspace, service, months, work)
            submit_s = time.time() - submitted_at
            log(f"backfill {backfill_id} submitted in {submit_s:.1f} s; starting the daemon")
            daemon_log = work / "daemon.log"
            daemon_started = time.time()
            with run_daemon(env, workspace, daemon_log) as daemon:
                watched = wait_for_backfill(
                    instance, daemon, backfill_id, months, submitted_at, timeout, daemon_log
                )
                daemon_stop = stop_daemon(daemon)
            load_after = _load()
            result = summarize(instance, backfill_id, months, watched, submitted_at, daemon_started)
    counts = warehouse_counts(url, service)
    check_counts(counts, months, rows)
    total = rows * len(months)
    result.update(
        {
            "service": service,
            "months": months,
            "rows_per_month": rows,
            "total_rows": total,
            "rows_loaded": counts,
            "rows_per_s": _round(total / result["wall_s"], 0),
            "method": (
                f"asset backfill of raw/lake/warehouse {service}_tripdata "
                "(launchPartitionBackfill through the dagster-graphql CLI, as the UI's "
                "Launch backfill), run by dagster-daemon"
            ),
            "instance": instance_info,
            "taxi_first_month": env["TAXI_FIRST_MONTH"],
            "backfill_id": backfill_id,
            "submit_s": _round(submit_s),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "daemon_stop": daemon_stop,
        }
    )
    log(
        f"backfill done: wall {result['wall_s']:.1f} s, run median "
        f"{result['run_s']['median']:.1f} s, concurrency {result['effective_concurrency']}"
    )
    return result


def first_partition(first_month: str) -> str:
    """The project's default first partition, or earlier if the backfill starts earlier:
    a user's default deployment, whose partitions cover the months."""
    from taxi_assets.partitions import DEFAULT_FIRST_MONTH

    return min(DEFAULT_FIRST_MONTH, first_month)


def write_dagster_yaml(
    home: Path, max_concurrent_runs: int | None, dequeue_interval_s: int | None
) -> dict[str, Any]:
    """The repository's dagster.yaml; a setting is replaced only when asked, and said so."""
    import yaml

    source = ROOT / "dagster.yaml"
    if max_concurrent_runs is None and dequeue_interval_s is None:
        shutil.copyfile(source, home / "dagster.yaml")
        return {"dagster_yaml": "repository dagster.yaml, unchanged"}
    config = yaml.safe_load(source.read_text())
    overrides = []
    if max_concurrent_runs is not None:
        config.setdefault("concurrency", {}).setdefault("runs", {})
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
        overrides.append(f"concurrency.runs.max_concurrent_runs: {max_concurrent_runs}")
    if dequeue_interval_s is not None:
        coordinator = config.setdefault(
            "run_coordinator",
            {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        )
        coordinator.setdefault("config", {})["dequeue_interval_seconds"] = dequeue_interval_s
        overrides.append(f"run_coordinator.config.dequeue_interval_seconds: {dequeue_interval_s}")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return {
        "dagster_yaml": "repository dagster.yaml with benchmark overrides: " + "; ".join(overrides)
    }


def describe_instance(instance: Any) -> dict[str, Any]:
    queue = instance.get_concurrency_config().run_queue_config
    pools = instance.get_concurrency_config().pool_config
    return {
        "run_coordinator": type(instance.run_coordinator).__name__,
        "run_launcher": type(instance.run_launcher).__name__,
        # How often the daemon starts queued runs (Dagster's default: 5 s).
        "dequeue_interval_seconds": getattr(
            instance.run_coordinator, "dequeue_interval_seconds", None
        ),
        "max_concurrent_runs": queue.max_concurrent_runs if queue else None,
        "tag_concurrency_limits": list(queue.tag_concurrency_limits) if queue else None,
        "pool_default_limit": pools.default_pool_limit if pools else None,
        "executor": "in_process (taxi_assets.definitions)",
    }


@contextmanager
def serve_mirror(root: Path, work: Path) -> Iterator[str]:
    """``python -m taxi_assets.devdata serve`` in its own process, as a user would run it:
    the mirror's request threads then share no GIL with this process's polling."""
    url_file = work / "mirror.url"
    process = subprocess.Popen(
        [sys.executable, "-m", "taxi_assets.devdata", "serve", "--root", str(root),
         "--url-file", str(url_file)],
        cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL,
        stderr=open(work / "mirror.log", "wb"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the mirror did not start:\n" + (work / "mirror.log").read_text()[-2000:]
                )
            time.sleep(0.1)
        yield url_file.read_text().strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_automation(env: dict[str, str], workspace: Path, work: Path) -> None:
    """The backfills alone are measured: the automation sensor (running by default) would
    fetch the never-loaded zone lookup in a run of its own meanwhile, and then compute the
    analytics of every month loaded."""
    command = [str(BIN / "dagster"), "sensor", "stop", "taxi_automation_sensor"]
    _cli([*command, "-w", str(workspace)], env, work / "sensor-stop.log")


def _cli(command: list[str], env: dict[str, str], log_path: Path) -> None:
    with open(log_path, "wb") as output:
        done = subprocess.run(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=300
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])} failed (exit {done.returncode}):\n"
            + log_path.read_text(errors="replace")[-3000:]
        )


def submit_asset_backfill(
    env: dict[str, str], workspace: Path, service: str, months: list[str], work: Path
) -> str:
    from taxi_assets.services import SERVICES

    params = {
        "assetSelection": [{"path": key.path} for key in SERVICES[service].keys()],
        "partitionNames": months,
        "title": f"benchmark: {service} {months[0]}..{months[-1]}",
    }
    response_path = work / "launch-backfill.json"
    _cli(
        [
            str(BIN / "dagster-graphql"),
            "-w", str(workspace),
            "-t", LAUNCH_BACKFILL,
            "-v", json.dumps({"params": params}),
            "-o", str(response_path),
        ],
        env,
        work / "launch-backfill.log",
    )  # fmt: skip
    response = json.loads(response_path.read_text())
    launched = (response.get("data") or {}).get("launchPartitionBackfill") or {}
    if launched.get("__typename") != "LaunchBackfillSuccess":
        raise RuntimeError(f"the backfill was not launched: {json.dumps(response)[:3000]}")
    return str(launched["backfillId"])


@contextmanager
def run_daemon(env: dict[str, str], workspace: Path, log_path: Path) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as output:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own process group: the code server and run workers it starts are in it,
            # so a timeout can take them all down without touching anything else.
            start_new_session=True,
        )
        try:
            yield daemon
        finally:
            if daemon.poll() is None:
                stop_daemon(daemon)


def stop_daemon(daemon: subprocess.Popen, grace_s: float = 60.0) -> dict[str, Any]:
    """SIGTERM to the daemon's process group (the daemon and the code server it started,
    which otherwise lingers until its 20 s heartbeat timeout), then SIGKILL whatever is
    still there after the grace period."""
    if daemon.poll() is not None:
        return {"clean": daemon.returncode == 0, "exit_code": daemon.returncode, "stop_s": 0.0}
    started = time.perf_counter()
    _kill_group(daemon.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        daemon.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    while _group_members(daemon.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = [_cmdline(pid) for pid in _group_members(daemon.pid)]
    if killed or daemon.poll() is None:
        log(f"still running {grace_s:.0f} s after SIGTERM, killed: {killed}")
        _kill_group(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
    return {
        "clean": not killed,
        "exit_code": daemon.returncode,
        "stop_s": _round(time.perf_counter() - started),
        "killed_after_grace": killed,
    }


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_members(pgid: int) -> list[int]:
    """Live processes of the group (zombies hold no memory and cannot be signalled)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return str(pid)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_for_backfill(
    instance: Any,
    daemon: subprocess.Popen,
    backfill_id: str,
    months: list[str],
    submitted_at: float,
    timeout: float,
    daemon_log: Path,
) -> dict[str, Any]:
    """Poll until every month has a successful run and none is in flight. Fails when the
    daemon dies, the backfill ends with months missing, or the timeout passes."""
    from dagster import RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus

    peak_group_mb = 0.0
    peak_process_mb = 0.0
    samples = 0
    deadline = time.monotonic() + timeout
    while True:
        members = _group_members(daemon.pid)
        sizes = [_rss_mb(pid) for pid in members]
        peak_group_mb = max(peak_group_mb, sum(sizes))
        peak_process_mb = max([peak_process_mb, *sizes])
        samples += 1
        runs = [
            r.dagster_run
            for r in instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        ]
        done = {_run_month(run) for run in runs if run.is_success}
        in_flight = [run for run in runs if not run.is_finished]
        if done >= set(months) and not in_flight:
            break
        backfill = instance.get_backfill(backfill_id)
        ended = backfill is not None and backfill.status not in (
            BulkActionStatus.REQUESTED,
            BulkActionStatus.CANCELING,
            BulkActionStatus.FAILING,
        )
        if ended and not in_flight:
            raise RuntimeError(
                f"backfill {backfill_id} ended {backfill.status.value} with months "
                f"{sorted(set(months) - done)} not loaded:\n" + failures(instance, runs)
            )
        if daemon.poll() is not None:
            raise RuntimeError(
                f"dagster-daemon exited ({daemon.returncode}) before the backfill finished:\n"
                + daemon_log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"backfill {backfill_id} unfinished after {timeout:.0f} s: "
                f"{len(done)}/{len(months)} months done, {len(in_flight)} runs in flight\n"
                + daemon_log.read_text(errors="replace")[-3000:]
            )
        time.sleep(POLL_S)
    log(f"all {len(months)} months loaded, {time.time() - submitted_at:.1f} s after submitting")
    return {
        "peak_rss_daemon_group_mb": _round(peak_group_mb, 0),
        "peak_rss_one_process_mb": _round(peak_process_mb, 0),
        "rss_samples": samples,
    }


def _run_month(run: Any) -> str | None:
    """The one month a run loads (a backfill run of this benchmark loads one)."""
    from taxi_assets.automation.run_partitions import run_month_range

    bounds = run_month_range(run.tags)
    return bounds[0] if bounds is not None and bounds[0] == bounds[1] else None


def failures(instance: Any, runs: list[Any]) -> str:
    lines = []
    for run in runs:
        if run.is_success:
            continue
        lines.append(f"run {run.run_id} ({_run_month(run)}): {run.status.value}")
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is not None and event.is_step_failure:
                error = event.event_specific_data.error
                lines.append(f"  {event.step_key}: {error.message.strip()[:500] if error else ''}")
    return "\n".join(lines)


def summarize(
    instance: Any,
    backfill_id: str,
    months: list[str],
    watched: dict[str, Any],
    submitted_at: float,
    daemon_started: float,
) -> dict[str, Any]:
    from dagster import RunsFilter

    runs = [
        r.dagster_run
        for r in instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
    ]
    per_run = []
    steps: dict[str, list[float]] = {}
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        record = instance.get_run_record_by_id(run.run_id)
        queued = record.create_timestamp.timestamp() if record else None
        per_run.append(
            {
                "month": _run_month(run),
                "run_id": run.run_id,
                "status": run.status.value,
                "retry_of": run.tags.get("dagster/parent_run_id"),
                "queued_at_s": _round(queued - submitted_at) if queued else None,
                "launched_at_s": _since(stats.launch_time, submitted_at),
                "started_at_s": _since(stats.start_time, submitted_at),
                "ended_at_s": _since(stats.end_time, submitted_at),
                "duration_s": _round(stats.end_time - stats.start_time)
                if stats.start_time and stats.end_time
                else None,
                # Process start and imports of the run worker, before its first event.
                "launch_to_start_s": _round(stats.start_time - stats.launch_time)
                if stats.start_time and stats.launch_time
                else None,
            }
        )
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                steps.setdefault(step.step_key, []).append(step.end_time - step.start_time)
    per_run.sort(key=lambda r: r["started_at_s"] or 0.0)
    successful = [r for r in per_run if r["status"] == "SUCCESS"]
    durations = [r["duration_s"] for r in successful if r["duration_s"] is not None]
    launches = [r["launch_to_start_s"] for r in successful if r["launch_to_start_s"] is not None]
    last_end = max(r["ended_at_s"] for r in per_run if r["ended_at_s"] is not None)
    first_start = min(r["started_at_s"] for r in per_run if r["started_at_s"] is not None)
    first_queued = min(r["queued_at_s"] for r in per_run if r["queued_at_s"] is not None)
    all_durations = [r["duration_s"] for r in per_run if r["duration_s"] is not None]
    busy = sum(all_durations)
    backfill_runs = {r["run_id"] for r in per_run}
    others = [
        {"run_id": run.run_id, "job": run.job_name, "status": run.status.value,
         "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")}}
        for run in [r.dagster_run for r in instance.get_run_records()]
        if run.run_id not in backfill_runs
    ]  # fmt: skip
    return {
        "wall_s": _round(last_end),
        "daemon_started_at_s": _round(daemon_started - submitted_at),
        "first_run_queued_at_s": _round(first_queued),
        "first_run_started_at_s": _round(first_start),
        "runs": len(per_run),
        "failed_runs": len(per_run) - len(successful),
        "run_s": {
            "median": _round(statistics.median(durations)),
            "min": _round(min(durations)),
            "max": _round(max(durations)),
        },
        "launch_to_start_s": {
            "median": _round(statistics.median(launches)) if launches else None,
            "max": _round(max(launches)) if launches else None,
        },
        "step_s_median": {key: _round(statistics.median(v)) for key, v in sorted(steps.items())},
        "effective_concurrency": _round(busy / last_end, 2),
        "concurrency_while_running": _round(busy / (last_end - first_start), 2),
        "max_overlapping_runs": max_overlap(per_run),
        "other_runs_during_benchmark": others,
        **watched,
        "per_run": per_run,
    }


def _since(timestamp: float | None, origin: float) -> float | None:
    return None if timestamp is None else _round(timestamp - origin)


def max_overlap(per_run: list[dict[str, Any]]) -> int:
    edges = []
    for run in per_run:
        if run["started_at_s"] is not None and run["ended_at_s"] is not None:
            edges += [(run["started_at_s"], 1), (run["ended_at_s"], -1)]
    # Ends sort before starts at the same instant: back-to-back runs do not overlap.
    edges.sort(key=lambda edge: (edge[0], edge[1]))
    current = peak = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return peak


def warehouse_counts(url: str, service: str) -> dict[str, int]:

    from taxi_assets.pg.inspect import month_counts
    from taxi_assets.resources.postgres import PostgresResource
    from taxi_assets.services import SERVICES

    engine = PostgresResource(url=url).engine()
    try:
        return month_counts(engine, "warehouse", SERVICES[service].dataset)
    finally:
        engine.dispose()


def check_counts(counts: dict[str, int], months: list[str], rows: int) -> None:
    expected = dict.fromkeys(months, rows)
    if counts != expected:
        wrong = {
            month: (counts.get(month), expected.get(month))
            for month in sorted(set(counts) | set(expected))
            if counts.get(month) != expected.get(month)
        }
        raise RuntimeError(f"warehouse rows per month differ from the generated rows: {wrong}")


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def render_table(section: dict[str, Any]) -> str:
    from tabulate import tabulate

    def row(result: dict[str, Any]) -> list[str]:
        return [
            str(result["instance"]["max_concurrent_runs"]),
            str(result["instance"]["dequeue_interval_seconds"]),
            f"{len(result['months'])} x {result['rows_per_month']:,}",
            _fmt(result["wall_s"], 1),
            _fmt(result["first_run_started_at_s"], 1),
            f"{_fmt(result['run_s']['median'], 1)} / {_fmt(result['run_s']['max'], 1)}",
            _fmt(result["launch_to_start_s"]["median"], 1),
            _fmt(result["effective_concurrency"], 2),
            f"{result['rows_per_s']:,.0f}",
            _fmt(result["peak_rss_daemon_group_mb"], 0),
            _fmt(result["load_average_before"][0], 1),
        ]

    headers = [
        "max runs",
        "dequeue s",
        "months x rows",
        "wall s",
        "1st run start s",
        "run s median / max",
        "launch s",
        "concurrency",
        "rows/s",
        "peak RSS MB",
        "load avg",
    ]
    results = [section, *section.get("alternatives", [])]
    table = tabulate(
        [row(r) for r in results], headers=headers, tablefmt="github", disable_numparse=True
    )
    steps = ", ".join(f"{k} {v:.2f}" for k, v in section["step_s_median"].items())
    target = section["target"]
    state = {True: "met", False: "MISSED", None: "not judged (not the full-size backfill)"}
    notes = [
        f"- {section['method']}",
        f"- wall: from submitting the backfill to the end of the last run; daemon started "
        f"{section['daemon_started_at_s']:.1f} s after submitting (submit CLI "
        f"{section['submit_s']:.1f} s); first run queued at {section['first_run_queued_at_s']} s",
        f"- median step times s: {steps}",
        f"- at most {section['max_overlapping_runs']} runs overlapped; "
        f"{len(section['other_runs_during_benchmark'])} other runs during the benchmark; "
        f"peak RSS is the daemon's process group (daemon, code server, run workers), "
        f"sampled every {POLL_S:.0f} s",
        f"- rows per month in the warehouse: all {len(section['months'])} months = "
        f"{section['rows_per_month']:,}",
        f"- target {target['target']}: {target['measured_s']} s -> {state[target['met']]}",
    ]
    return table + "\n\n" + "\n".join(notes)


if __name__ == "__main__":
    sys.exit(main())
