"""A run ended by another process (run monitoring's max_runtime, the UI's Terminate) stops
in its own process too, when no run launcher knows that process.

Real components: Dagster's CLI (`dagster asset materialize`) as a process, a real SQLite
instance on disk, the session's real PostgreSQL, whose month lock a session of the test's
holds so that the run's load waits on it for ever, as on a hung server; and a server of
the module's own whose every process is stopped (SIGSTOP) in the middle of the run's
COPY, the hung server itself. The run is ended the way run monitoring ends a run it
cannot terminate (``report_run_canceling``, then ``report_run_failed``:
``dagster._daemon.monitoring.run_monitoring.check_run_timeout``), or marked failed
outright (``report_run_failed``), without waiting for a daemon's max_runtime.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import psutil
import psycopg
import pytest
import yaml

from taxi_assets.devdata import write_month
from taxi_assets.pg.month_swap import month_lock_key
from taxi_assets.pg.partitions import child_name, staging_tables
from taxi_assets.run_slots import held_slots
from taxi_assets_tests import faults_support
from taxi_assets_tests.faults_support import wait_for
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    REPO,
    cli_env,
    engine_for,
    pipeline_resources,
    run,
    warehouse_counts,
    warehouse_loads,
)
from taxi_assets_tests.test_slot_lock_wait import HOLD_THE_FOLDER_AND_STOP, wait_until_stopped

MONTH = "2021-01"
POLL_S = 1  # run_monitoring.cancellation_thread_poll_interval_seconds (10 by default)
DAGSTER = str(Path(sys.executable).parent / "dagster")
SELECT = "raw/yellow_tripdata,lake/yellow_tripdata,warehouse/yellow_tripdata"

# A process that watches a run of the instance at argv[1] as the warehouse resource does,
# then (with argv[3] "stop") stops the watch, and sleeps: what the test sees is how it ends.
WATCHER = """
import sys, time
import dagster as dg
from taxi_assets.run_watch import RunWatch
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    watch = RunWatch(instance, sys.argv[2])
    if sys.argv[3] == "stop":
        watch.stop()
    print("watching", flush=True)
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
"""


# A run executing in a thread of a process (argv[1]: the instance's home) whose resource
# asks for the watch, and which is marked failed while its step goes on for argv[2] s: the
# main thread, waiting for it, must not be interrupted.
IN_A_THREAD = """
import sys, threading, time
import dagster as dg
from taxi_assets.run_watch import watch_run

leases = []

class Watched(dg.ConfigurableResource):
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        leases.append(watch_run(context))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for lease in leases:
            if lease is not None:
                lease.release()

@dg.asset
def ended_elsewhere(context: dg.AssetExecutionContext, watched: Watched) -> None:
    context.instance.report_run_failed(context.run)
    time.sleep(float(sys.argv[2]))

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    def materialize() -> None:
        dg.materialize([ended_elsewhere], resources={"watched": Watched()}, instance=instance,
                       raise_on_error=False)
    thread = threading.Thread(target=materialize)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        print("main thread interrupted", flush=True)
        sys.exit(3)
    print("left alone", flush=True)
"""


def instance_home(folder: Path) -> Path:
    """A DAGSTER_HOME with the repository's dagster.yaml, its watch's interval shortened."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_monitoring"]["cancellation_thread_poll_interval_seconds"] = POLL_S
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    return folder


def end_as_run_monitoring_does(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    instance.report_run_canceling(run, message="Canceling due to exceeding maximum runtime.")
    instance.report_run_failed(run, "Exceeded maximum runtime of 1 seconds.")


def started_run(home: Path) -> tuple[dg.DagsterInstance, dg.DagsterRun]:
    instance = dg.DagsterInstance.from_config(str(home))
    run = instance.create_run_for_job(
        dg.GraphDefinition("nothing").to_job(), run_id=None, status=dg.DagsterRunStatus.STARTED
    )
    return instance, run


@pytest.mark.parametrize("stopped", [False, True])
def test_a_watch_interrupts_its_process_once_the_run_stays_ended_and_not_after_stop(
    tmp_path: Path, stopped: bool
) -> None:
    """Interrupted (SIGINT, as a launcher's terminate) within two polls of the run being
    ended elsewhere; a watch stopped (its step over) interrupts nothing."""
    home = instance_home(tmp_path / "home")
    instance, run = started_run(home)
    with instance:
        watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER, str(home), run.run_id, "stop" if stopped else "go"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None and watcher.stdout.readline() == "watching\n"
            time.sleep(POLL_S * 1.5)
            assert watcher.poll() is None  # a run going on is left alone
            end_as_run_monitoring_does(instance, run)
            ended = time.monotonic()
            try:
                watcher.wait(timeout=2 * POLL_S + 5)
            except subprocess.TimeoutExpired:
                assert stopped, "the process went on after its run was ended elsewhere"
                return
            assert not stopped, "a stopped watch interrupted its process"
            assert watcher.stdout.read() == "interrupted\n"
            assert watcher.returncode == 3
            assert time.monotonic() - ended < 2 * POLL_S + 5
        finally:
            watcher.kill()
            watcher.wait()


def test_a_run_in_a_thread_is_not_watched_and_its_process_main_thread_not_interrupted(
    tmp_path: Path,
) -> None:
    """SIGINT reaches a process's main thread, and Dagster raises it in a step only there:
    for a run executing in another thread (``materialize()`` in a thread of a script or a
    test) the watch would interrupt whatever the main thread does, not the run. Such a run
    is not watched; before, the main thread was interrupted within two polls."""
    home = instance_home(tmp_path / "home")
    step_s = 2 * POLL_S + 3
    said = subprocess.run(
        [sys.executable, "-c", IN_A_THREAD, str(home), str(step_s)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=step_s + 60,
    )
    assert (said.returncode, said.stdout) == (0, "left alone\n"), said.stderr[-3000:]


def test_a_cli_run_waiting_on_the_warehouse_stops_when_marked_failed_elsewhere(
    mirror: FaultyMirror, tmp_path: Path, pg_url: str
) -> None:
    """`dagster asset materialize` of a month whose load waits for the month's lock (held
    here, as by a hung run or server): the run is marked failed as run monitoring marks a
    run it cannot terminate. Before, its process waited on for ever and would have loaded
    the month once the lock was free, after its run was reported failed. Now it stops
    within two polls; its session leaves the server and nothing is loaded."""
    env = {
        **cli_env(tmp_path, mirror.url, tmp_path / "lake", pg_url),
        "PGAPPNAME": "watched-run",
    }
    home = instance_home(Path(env["DAGSTER_HOME"]))
    lock = month_lock_key("warehouse", "yellow_tripdata", MONTH)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lock,))
        cli = subprocess.Popen(
            [DAGSTER, "asset", "materialize", "-m", "taxi_assets", "--select", SELECT,
             "--partition", MONTH],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:

            def waiting_sessions() -> int:
                row = holder.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                    "AND datname = current_database()"
                ).fetchone()
                return int(row[0]) if row else 0

            deadline = time.monotonic() + 120
            while waiting_sessions() == 0:
                assert cli.poll() is None, cli.stdout.read() if cli.stdout else ""
                assert time.monotonic() < deadline, "the run's load never waited for the lock"
                time.sleep(0.1)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                (run,) = instance.get_runs()
                assert run.status == dg.DagsterRunStatus.STARTED
                end_as_run_monitoring_does(instance, run)
                ended = time.monotonic()
                said, _ = cli.communicate(timeout=2 * POLL_S + 20)
                took = time.monotonic() - ended
                assert cli.returncode != 0, said
                assert took < 2 * POLL_S + 10, took
                assert "interrupting it" in said and run.run_id in said, said
                assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
            assert waiting_sessions() == 0
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lock,))
    # Nothing loaded: the month was never in the warehouse, and is not now.
    assert ("warehouse.yellow_tripdata", MONTH) not in warehouse_loads(pg_url)


def test_a_cli_run_with_no_warehouse_step_stops_too_when_marked_failed_elsewhere(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    """The lake resource watches its run as the warehouse's does (one watch per run,
    shared): `dagster asset materialize` of a raw month whose folder lock a stopped process
    holds (a hung run of the month) waits for it, and stops once its run is marked failed."""
    env = {**cli_env(tmp_path, mirror.url, tmp_path / "lake"), "TAXI_RAW_LOCK_WAIT_S": "120"}
    home = instance_home(Path(env["DAGSTER_HOME"]))
    folder = tmp_path / "lake" / "raw" / "yellow_tripdata" / MONTH
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FOLDER_AND_STOP, str(folder)])
    cli = None
    try:
        wait_until_stopped(holder.pid)
        cli = subprocess.Popen(
            [DAGSTER, "asset", "materialize", "-m", "taxi_assets", "--select",
             "raw/yellow_tripdata", "--partition", MONTH],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 120
            while not any(
                instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
                for run in instance.get_runs()
            ):
                assert cli.poll() is None, cli.stdout.read() if cli.stdout else ""
                assert time.monotonic() < deadline, "the run's step never started"
                time.sleep(0.2)
            time.sleep(2)  # the month's small file downloaded: the step waits for the lock
            (run,) = instance.get_runs()
            assert cli.poll() is None and run.status == dg.DagsterRunStatus.STARTED
            end_as_run_monitoring_does(instance, run)
            said, _ = cli.communicate(timeout=2 * POLL_S + 20)
            assert cli.returncode != 0, said
            assert "interrupting it" in said and run.run_id in said, said
        assert not (folder / "revisions.json").exists()  # nothing stored
    finally:
        for process in (cli, holder):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_a_cli_run_hung_on_a_stopped_warehouse_server_exits_when_marked_failed_elsewhere(
    own_mirror: FaultyMirror, tmp_path: Path, stoppable_database: tuple[str, Path]
) -> None:
    """The hung server itself: every process of the warehouse's server is stopped (SIGSTOP)
    in the middle of a `dagster asset materialize` run's COPY (the month republished with
    more rows), so the run would wait for ever. The run is marked failed (as run
    monitoring's max_runtime does, the process being no launcher's): its process exits
    within two polls, the server still stopped, holding no pool slot; once the server goes
    on, no session of the run is left on it and the month is the one loaded before, whole.
    Before, the process waited on (the server answers nothing; nothing else ends it). The
    run reaches the server over a link of 400 kB/s, so that its COPY (~3.7 MB) is under way
    for seconds when the server is stopped."""
    pg_url, data = stoppable_database
    database = faults_support.database_name(pg_url)
    stopped: list[psutil.Process] = []
    with (
        tempfile.TemporaryDirectory(prefix="slow-pg-") as link_folder,  # socket paths: <108 B
        faults_support.slow_link_to(pg_url, Path(link_folder), 400_000) as slow_url,
    ):
        env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake", slow_url)
        home = instance_home(Path(env["DAGSTER_HOME"]))
        # The month as loaded before (2,000 rows), by a run of the same instance.
        resources = pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert run(SELECT.split(","), resources, instance, MONTH).success
        before = warehouse_loads(pg_url)[("warehouse.yellow_tripdata", MONTH)]
        assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: 2000}
        write_month(Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=20000)

        watcher = engine_for(pg_url)
        output = tmp_path / "cli.log"
        with output.open("w") as out:
            cli = subprocess.Popen(
                [DAGSTER, "asset", "materialize", "-m", "taxi_assets", "--select", SELECT,
                 "--partition", MONTH],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(
                "the run's COPY to be receiving rows",
                lambda: (faults_support.copy_rows_received(watcher, database) or 0) > 0,
                120,
                every=0.1,
            )
            (copy_backend,) = faults_support.copy_progress(watcher, database)
            watcher.dispose()  # its connection would be stopped with the server
            stopped = faults_support.server_processes(data)
            postmaster = stopped[0]
            for process in stopped:
                # A backend ending meanwhile (the watcher's, just disposed of) is gone.
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.suspend()
            with dg.DagsterInstance.from_config(str(home)) as instance:
                (hung,) = instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
                )
                time.sleep(POLL_S)  # the run's watch sees it going on, stopped server or not
                assert cli.poll() is None, output.read_text()
                instance.report_run_failed(hung, "Exceeded maximum runtime of 1 seconds.")
                ended = time.monotonic()
                try:
                    cli.wait(timeout=2 * POLL_S + 20)
                except subprocess.TimeoutExpired:
                    raise AssertionError(
                        "the run's process went on after its run was marked failed"
                    ) from None
                took = time.monotonic() - ended
                said = output.read_text()
                assert cli.returncode != 0, said
                assert took < 2 * POLL_S + 10, took
                assert "interrupting it" in said and hung.run_id in said, said
                # It exited with the server still stopped (not once the server went on).
                still = {
                    process.pid: process.status()
                    for process in stopped
                    if process.pid in (postmaster.pid, copy_backend)
                }
                assert still == {
                    postmaster.pid: psutil.STATUS_STOPPED,
                    copy_backend: psutil.STATUS_STOPPED,
                }
                assert hung.run_id not in {h.run_id for h in held_slots(instance)}
        finally:
            if cli.poll() is None:  # before the server goes on: it would load the month
                cli.kill()
                cli.wait()
            for process in stopped:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()
            watcher.dispose()
    # The server goes on and rolls the run's transaction back: nothing of the run is left,
    # and the month is the one loaded before.
    wait_for(
        "the run's session to leave the server",
        lambda: not faults_support.other_backends(watcher, database),
        30,
    )
    with watcher.connect() as connection:
        assert staging_tables(connection, "warehouse", child_name("yellow_tripdata", MONTH)) == []
    assert faults_support.locks_held(watcher, database) == []
    watcher.dispose()
    assert warehouse_counts(pg_url, "yellow_tripdata") == {MONTH: 2000}
    assert warehouse_loads(pg_url)[("warehouse.yellow_tripdata", MONTH)] == before
