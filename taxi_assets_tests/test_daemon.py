"""The real daemon: downstream automation, the new-month sensor, the CLI's backfill of
every service and the redelivery of a refused alert; and automation that follows data
versions.

Each test runs its phases in order against a temporary DAGSTER_HOME, the local HTTP mirror
and a real PostgreSQL. The daemon and the CLI run as subprocesses, as a user would run them.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import dagster._check as check
import psutil
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorTick,
    TickStatus,
)

from taxi_assets import defs
from taxi_assets.automation import alert_outbox
from taxi_assets.automation.alerts import REDELIVERY_SENSOR_NAME
from taxi_assets.automation.run_partitions import run_month_range
from taxi_assets.devdata import write_month
from taxi_assets.instance_reads import latest_metadata, run_check_evaluations, runs
from taxi_assets.pg.partitions import child_name, staging_tables
from taxi_assets.run_slots import held_slots
from taxi_assets_tests import faults_support, retry_location
from taxi_assets_tests.faults_support import other_backends, restartable_server
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import (
    cli_env,
    engine_for,
    pipeline_resources,
    run,
    warehouse_counts,
    warehouse_loads,
)
from taxi_assets_tests.webhook_receiver import Receiver, posted_runs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVICES = ("yellow", "green", "fhv", "fhvhv")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180) -> None:
    # Every 2 s: each check opens the SQLite instance or PostgreSQL, which the daemon's
    # processes are writing to; an error there (table not created yet) means "not yet".
    faults_support.wait_for(what, check, timeout, every=2, tolerate=(Exception,))


def sensor_state(instance: dg.DagsterInstance, name: str) -> InstigatorState | None:
    return next((s for s in instance.all_instigator_state() if s.instigator_name == name), None)


def sensor_ticks(instance: dg.DagsterInstance, name: str, limit: int) -> list[InstigatorTick]:
    """The sensor's newest ticks, newest first (none before its state is stored)."""
    state = sensor_state(instance, name)
    if state is None:
        return []
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit))


def has_ticked(instance: dg.DagsterInstance, name: str) -> bool:
    return bool(sensor_ticks(instance, name, limit=1))


def service_layers(service: str) -> list[str]:
    return [f"{layer}/{service}_tripdata" for layer in ("raw", "lake", "warehouse")]


def counts(pg_url: str, service: str) -> dict[str, int]:
    try:
        return warehouse_counts(pg_url, f"{service}_tripdata")
    except Exception:  # noqa: BLE001 - not created yet
        return {}


@pytest.fixture
def home(tmp_path: Path, own_mirror: FaultyMirror, pg_url: str) -> Iterator[tuple[Path, dict]]:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: taxi_assets\n"
        f"      working_directory: {REPO}\n"
    )
    env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake", pg_url)
    # Load-time settings (read by the code server the daemon starts): the new-month sensor
    # ticks every 5 s here instead of every 300 s, the automation sensor instead of 30 s.
    env["TAXI_SENSOR_INTERVAL_SECONDS"] = "5"
    env["TAXI_AUTOMATION_INTERVAL_SECONDS"] = "5"
    yield workspace, env


def running_daemon(workspace: Path, env: dict) -> AbstractContextManager[subprocess.Popen]:
    """`dagster-daemon run`, stopped with SIGTERM at the end (SIGKILL after 30 s)."""
    command = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
    return faults_support.process_group(command, env, stop=signal.SIGTERM)


def cli(args: list[str], env: dict, workspace: Path | None = None) -> str:
    command = [str(BIN / "dagster"), *args]
    if workspace is not None:
        command += ["-w", str(workspace)]
    started = time.time()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # When each command ran, beside the ticks' and runs' times if the test fails.
    print(f"{_clock(started)}-{_clock(time.time())} dagster {' '.join(args)}")
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def months_backfill(workspace: Path, env: dict, *args: str) -> None:
    """`python -m taxi_assets.cli months backfill ARGS`, submitted to the daemon."""
    submitted = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "months", "backfill", *args,
         "--workspace", str(workspace)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr[-3000:]


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_daemon_sensor_automation_and_backfill(
    home: tuple[Path, dict], own_mirror: FaultyMirror, pg_url: str
) -> None:
    workspace, env = home
    root = Path(own_mirror.root)
    (root / "yellow" / "yellow_tripdata_2021-02.csv.gz").unlink()  # not published yet
    for service in SERVICES:
        write_month(root, source="dtc", service=service, month="2021-03", rows=500)
    (root / "yellow" / "yellow_tripdata_2021-03.csv.gz").unlink()

    # Initialise the instance before the daemon starts (they would race on the SQLite
    # schema) by starting the new-month sensor (stopped by default).
    cli(["sensor", "start", "taxi_new_month_sensor"], env, workspace)
    # The README's other operations commands, run as written there.
    cli(["instance", "concurrency", "set", "downloads", "2"], env)
    cli(["schedule", "start", "taxi_yellow_schedule"], env, workspace)
    # A failure alert the webhook refused before the daemon started, kept on its run as
    # the failure sensor keeps it: the redelivery sensor (on by default) posts it under the
    # daemon, its first tick refused (3 attempts), a tick a minute later accepted. The
    # test's other phases outlast that minute: the wait at the end took 0 s when measured.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as setup:
        refused = retry_location.failing_job.execute_in_process(
            instance=setup, raise_on_error=False
        ).run_id
        alert_outbox.mark(setup, refused, alert_outbox.UNDELIVERED, "HTTP 500")
    hook = Receiver([500] * 3)
    env["TAXI_ALERT_WEBHOOK_URL"] = hook.url
    with hook, running_daemon(workspace, env):
        # Downstream automation: once the automation sensor has looked at the assets, a raw
        # file loaded by hand is followed by its lake and warehouse partitions.
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        wait_for(
            "the automation sensor's first tick",
            lambda: has_ticked(instance, "taxi_automation_sensor"),
            120,
        )
        cli(
            [
                "asset",
                "materialize",
                "-m",
                "taxi_assets",
                "--select",
                "raw/yellow_tripdata",
                "--partition",
                "2021-01",
            ],
            env,
        )
        wait_for("yellow 2021-01 in the warehouse", lambda: "2021-01" in counts(pg_url, "yellow"))

        # The sensor: drop the next month into the mirror; it reaches Postgres by itself.
        write_month(root, source="dtc", service="yellow", month="2021-02", rows=400)
        wait_for(
            "yellow 2021-02 in the warehouse",
            lambda: counts(pg_url, "yellow").get("2021-02") == 400,
        )
        # The sensor's run names its assets (so the automation sensor leaves their months
        # to it) and still runs their checks (the warehouse's after its rows are in).
        sensor_runs = dg.RunsFilter(tags={"dagster/sensor_name": "taxi_new_month_sensor"})
        wait_for(
            "the sensor's run to finish",
            lambda: all(run.is_finished for run in runs(instance, sensor_runs)),
        )
        (sensor_run,) = runs(instance, sensor_runs)
        assert selection(sensor_run) == set(service_layers("yellow"))
        checked = {e.asset_check_key for e in run_check_evaluations(instance, sensor_run.run_id)}
        yellow_checks = dg.AssetSelection.checks_for_assets(
            *(dg.AssetKey.from_user_string(key) for key in service_layers("yellow"))
        ).resolve_checks(defs.resolve_asset_graph())
        assert yellow_checks and checked == yellow_checks, checked

        # Every service for three months: one asset backfill from the project's CLI.
        months_backfill(workspace, env, "2021-01", "--to", "2021-03")
        wait_for(
            "green, fhv and fhvhv 2021-01..2021-03 in the warehouse",
            lambda: all(
                set(counts(pg_url, s)) == {"2021-01", "2021-02", "2021-03"}
                for s in ("green", "fhv", "fhvhv")
            ),
            timeout=300,
        )
        wait_for(
            "all backfill runs to finish",
            lambda: all(run.is_finished for run in runs(instance)),
            timeout=300,
        )
        every_run = runs(instance)
        summary = "\n".join(
            f"{r.status.value} {r.job_name} {r.tags.get('dagster/partition')} "
            f"{r.tags.get('dagster/sensor_name', '')} {r.tags.get('dagster/run_key', '')} "
            f"{r.tags.get('dagster/backfill', '')}"
            for r in every_run
        )
        print(summary)
        failed = [
            r.run_id
            for r in every_run
            if r.is_finished and not r.is_success and r.run_id != refused
        ]
        # yellow 2021-03 is not published: the backfill run holding it fails clearly, the
        # others succeed.
        assert len(failed) == 1, summary
        error_text = " ".join(
            str(e.dagster_event.step_failure_data.error)
            for e in instance.all_logs(failed[0])
            if e.dagster_event is not None and e.dagster_event.is_step_failure
        )
        assert "yellow_tripdata_2021-03.csv.gz is not published at" in error_text
        # No second runs: lake/yellow 2021-02 was materialized by the sensor's run and by
        # the backfill, not also by the automation sensor.
        lake_runs = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["lake", "yellow_tripdata"]), asset_partitions=["2021-02"]
            ),
            limit=10,
        ).records
        lake_run_ids = {record.run_id for record in lake_runs}
        made_by = "\n".join(
            f"{run.run_id} {run.job_name} {run.tags.get('dagster/sensor_name', '')} "
            f"{run.tags.get('dagster/backfill', '')} {sorted(selection(run))}"
            for run in every_run
            if run.run_id in lake_run_ids
        )
        assert len(lake_run_ids) == 2, f"lake/yellow_tripdata 2021-02 made by:\n{made_by}"

        # The refused alert, posted by the redelivery sensor's ticks under the daemon.
        def alert_state() -> str | None:
            run = instance.get_run_by_id(refused)
            return run.tags.get(alert_outbox.ALERT_TAG) if run else None

        waited = time.time()
        wait_for("the refused alert's redelivery", lambda: alert_state() == "delivered", 120)
        print(f"waited {time.time() - waited:.1f} s for the redelivery")
        posted = posted_runs(hook.bodies)
        assert posted[:3] == [refused[:8]] * 3, posted  # the first tick's attempts, refused
        assert posted[3:].count(refused[:8]) == 1, posted
        ticks = sensor_ticks(instance, REDELIVERY_SENSOR_NAME, limit=100)
        # A tick's error is Dagster's SensorExecutionError, caused by the sensor's own.
        failures = [
            t.error.to_string() for t in ticks if t.status == TickStatus.FAILURE and t.error
        ]
        assert any(f"alert for run {refused} still undelivered" in m for m in failures), failures
        assert any((t.skip_reason or "").endswith("undelivered alert(s) posted") for t in ticks), [
            t.skip_reason for t in ticks
        ]


AUTOMATION = "taxi_automation_sensor"
MONTH, NEXT = "2021-01", "2021-02"
ZONES = ["raw/taxi_zone_lookup", "lake/taxi_zones", "warehouse/taxi_zones"]
STATS = "analytics/monthly_zone_stats"
FOLLOWERS = {"lake/yellow_tripdata", "warehouse/yellow_tripdata", STATS}


def finished_ticks_since(instance: dg.DagsterInstance, name: str, since: float) -> int:
    """Ticks of sensor ``name`` that started after ``since`` and have ended."""
    return sum(
        1
        for t in sensor_ticks(instance, name, limit=50)
        if t.timestamp > since and t.status.value in ("SUCCESS", "SKIPPED")
    )


def stop_automation(instance: dg.DagsterInstance, env: dict, workspace: Path) -> None:
    """``dagster sensor stop``, until it holds. The stop and a tick's end both read the
    sensor's stored state and write it back (the stop with its new status, the tick with
    its new cursor: Dagster 1.13.27's ``_daemon/asset_daemon.py``, docs/revisions.md): a
    tick ending as the stop is written can put the old status back, and the sensor runs on
    (seen once: a tick 5 s after the stop). So: once no tick is in flight, the status is
    checked, and the stop sent again if it did not hold."""
    for _ in range(3):
        cli(["sensor", "stop", AUTOMATION], env, workspace)
        wait_for(
            "no automation tick in flight",
            lambda: all(t.status.value != "STARTED" for t in sensor_ticks(instance, AUTOMATION, 1)),
            60,
        )
        state = sensor_state(instance, AUTOMATION)
        if state is not None and state.status == InstigatorStatus.STOPPED:
            return
        print(f"{_clock(time.time())} the stop did not hold: sent again")
    raise AssertionError(f"{AUTOMATION} still runs after three stops")


def automation_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs the automation sensor started (directly, or through a backfill it submitted)."""
    return [
        r
        for r in runs(instance)
        if r.tags.get("dagster/sensor_name") == AUTOMATION or "dagster/backfill" in r.tags
    ]


def selection(run: dg.DagsterRun) -> set[str]:
    return {key.to_user_string() for key in run.asset_selection or ()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_daemon_follows_new_revisions_only(
    home: tuple[Path, dict], own_mirror: FaultyMirror, pg_url: str, tmp_path: Path
) -> None:
    """With the daemon running: an unchanged raw month starts nothing downstream; a
    republished one exactly its lake, warehouse and analytics month (one run); two
    months republished between two ticks, one asset backfill."""
    workspace, env = home
    home_dir = env["DAGSTER_HOME"]
    # Everything of 2021-01 (and yellow 2021-02) loaded before the daemon starts, in
    # process, into the instance the daemon will use (which also creates it first).
    resources = pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url)
    with dg.DagsterInstance.from_config(home_dir) as instance:
        assert run(ZONES, resources, instance).success
        for service in SERVICES:
            assert run(service_layers(service), resources, instance, MONTH).success
        assert run(service_layers("yellow"), resources, instance, NEXT).success
        assert run(STATS, resources, instance, MONTH).success
    materialize_raw = [
        "asset", "materialize", "-m", "taxi_assets", "--select", "raw/yellow_tripdata",
        "--partition",
    ]  # fmt: skip

    instance = dg.DagsterInstance.from_config(home_dir)
    with running_daemon(workspace, env):
        wait_for("the automation sensor's first tick", lambda: has_ticked(instance, AUTOMATION))

        # Unchanged upstream: the raw month is materialized again (its data version, the
        # sha256, is the same): after a whole tick that saw it, nothing else has run.
        cli([*materialize_raw, MONTH], env)
        done = time.time()
        wait_for("a tick", lambda: finished_ticks_since(instance, AUTOMATION, done) >= 1)
        assert automation_runs(instance) == []

        # Upstream republishes 2021-01: one run, exactly lake, warehouse and analytics of
        # that month (one month: Dagster launches a run, not a backfill).
        write_month(Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=1500)
        cli([*materialize_raw, MONTH], env)
        wait_for(
            "the automation run of 2021-01",
            lambda: any(r.is_finished for r in automation_runs(instance)),
        )
        done = time.time()
        wait_for("a tick", lambda: finished_ticks_since(instance, AUTOMATION, done) >= 1)
        (followed,) = automation_runs(instance)
        assert followed.is_success and selection(followed) == FOLLOWERS
        assert followed.tags["dagster/partition"] == MONTH
        assert counts(pg_url, "yellow")[MONTH] == 1500
        raw_sha = latest_metadata(instance, dg.AssetKey(["raw", "yellow_tripdata"]), MONTH)[
            "sha256"
        ]
        load = warehouse_loads(pg_url)[("warehouse.yellow_tripdata", MONTH)]
        assert (load["source_sha256"], load["row_count"], load["run_id"]) == (
            raw_sha,
            1500,
            followed.run_id,
        )

        # Two months republished while the sensor is stopped: its next tick sees both and
        # submits ONE asset backfill holding everything that follows them.
        stop_automation(instance, env, workspace)
        for month, rows in ((MONTH, 1400), (NEXT, 900)):
            write_month(
                Path(own_mirror.root), source="dtc", service="yellow", month=month, rows=rows
            )
            cli([*materialize_raw, month], env)
        cli(["sensor", "start", AUTOMATION], env, workspace)
        wait_for(
            "the backfill's runs",
            lambda: (
                {
                    (p, m)
                    for r in automation_runs(instance)
                    if r.is_success and "dagster/backfill" in r.tags
                    for p in selection(r)
                    for m in _months(r)
                }
                >= {(k, MONTH) for k in FOLLOWERS}
                | {("lake/yellow_tripdata", NEXT), ("warehouse/yellow_tripdata", NEXT)}
            ),
            timeout=300,
        )
        done = time.time()
        wait_for("a tick", lambda: finished_ticks_since(instance, AUTOMATION, done) >= 1)
        later = [r for r in automation_runs(instance) if r.run_id != followed.run_id]
        assert len({r.tags.get("dagster/backfill") for r in later}) == 1, [r.tags for r in later]
        assert all(r.is_success for r in later)
        assert counts(pg_url, "yellow") == {MONTH: 1400, NEXT: 900}


def _months(run: dg.DagsterRun) -> set[str]:
    bounds = run_month_range(run.tags)
    return {bounds[0], bounds[1]} if bounds else set()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_run_worker_frees_its_pool_slot_and_the_retry_loads_the_month(
    home: tuple[Path, dict], own_mirror: FaultyMirror, pg_url: str
) -> None:
    """The daemon launched the run; its process is SIGKILLed while the raw step holds a
    `downloads` slot (the mirror holds the file back). The code location server marks the
    run failed, run monitoring frees the slot (`free_slots_after_run_end_seconds`, which
    Dagster leaves unset: without it the slot stays claimed for good) and run retries load
    the month."""
    workspace, env = home
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"]
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    # The repository's values (30 s and 30 s), shortened so the test waits seconds.
    config["run_monitoring"].update(poll_interval_seconds=3, free_slots_after_run_end_seconds=2)
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text(yaml.safe_dump(config))
    path = "/yellow/yellow_tripdata_2021-01.csv.gz"
    own_mirror.inject(path, Fault.delay(300))

    cli(["instance", "info"], env)  # creates the instance's schema before the daemon starts
    with running_daemon(workspace, env):
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        months_backfill(workspace, env, "2021-01", "--services", "yellow")
        wait_for("the run to request the yellow file", lambda: bool(own_mirror.requests_seen(path)))
        (held,) = held_slots(instance)
        assert held.steps == ("downloads: raw__yellow_tripdata",)
        assert held.pid is not None and held.process_alive
        os.kill(held.pid, signal.SIGKILL)

        def killed_run() -> dg.DagsterRun:
            return check.not_none(instance.get_run_by_id(held.run_id))

        wait_for("the killed run to be marked failed", lambda: killed_run().is_finished)
        assert killed_run().status == dg.DagsterRunStatus.FAILURE
        wait_for(
            "the killed run's slot to be freed",
            lambda: held.run_id not in {h.run_id for h in held_slots(instance)},
            timeout=60,
        )
        wait_for("yellow 2021-01 in the warehouse", lambda: "2021-01" in counts(pg_url, "yellow"))

        def retries() -> list[dg.DagsterRun]:
            return runs(instance, dg.RunsFilter(tags={"dagster/parent_run_id": held.run_id}))

        def retried_and_ended() -> bool:
            found = retries()
            return bool(found) and all(run.is_finished for run in found)

        # The month is committed before the run's last steps and its end are recorded.
        wait_for("the retry to end", retried_and_ended)
        assert [run.status for run in retries()] == [dg.DagsterRunStatus.SUCCESS]
        wait_for("every slot to be free", lambda: not held_slots(instance))


def described(process: psutil.Process) -> str:
    """A process's pid, status and command line, for an assertion's message."""
    try:
        return f"{process.pid} {process.status()} {' '.join(process.cmdline())}"
    except psutil.Error as error:
        return f"{process.pid} {type(error).__name__}"


def staging_tables_of(engine: sa.Engine, month: str) -> list[str]:
    """Staging tables of yellow ``month`` in the warehouse (committed, not attached)."""
    with engine.connect() as connection:
        return staging_tables(connection, "warehouse", child_name("yellow_tripdata", month))


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_hung_on_a_stopped_warehouse_is_ended_by_its_max_runtime(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    """The warehouse server's processes are stopped (SIGSTOP) in the middle of a
    daemon-launched run's COPY: the server answers nothing and enforces nothing (its
    statement_timeout included), the connection is open (connect_timeout is past), and
    the run would wait for ever. Run monitoring's max_runtime_seconds ends it: the run is
    marked failed, its process exits though the server is still stopped, its `warehouse`
    pool slot is freed, and once the server goes on the month is the one loaded before,
    whole. The run reaches the server over a link of 400 kB/s, so that its COPY (~3.7 MB)
    is under way for seconds when the server is stopped, most of it still to send."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_monitoring"]["max_runtime_seconds"] >= 1800  # a slow month's run fits
    # The repository's values, shortened so that the test waits seconds; no run retries
    # (a retry of the ended run loads the month once the server is back: the killed-run
    # worker test covers retries).
    # The bound counts from the run's start: its process start-up and the raw and lake
    # steps (~10 s alone, more with the other pytest process beside) must fit before the
    # COPY, or the run ends before the fault is made.
    max_runtime_s = 45
    config["run_monitoring"].update(
        poll_interval_seconds=2,
        free_slots_after_run_end_seconds=2,
        max_runtime_seconds=max_runtime_s,
    )
    config["run_retries"]["enabled"] = False
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: taxi_assets\n"
        f"      working_directory: {REPO}\n"
    )
    stopped: list[psutil.Process] = []
    with (
        # Not under pytest's basetemp, which a concurrent pytest session may prune.
        tempfile.TemporaryDirectory(prefix="taxi-test-pg-hung-") as server_folder,
        restartable_server(Path(server_folder)) as (pg_url, _),
        tempfile.TemporaryDirectory(prefix="slow-pg-") as link_folder,  # socket paths: <108 B
        faults_support.slow_link_to(pg_url, Path(link_folder), 400_000) as slow_url,
    ):
        env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake", slow_url)
        home_dir = env["DAGSTER_HOME"]
        (Path(home_dir) / "dagster.yaml").write_text(yaml.safe_dump(config))
        # The month as loaded before (2,000 rows), in process, into the instance the
        # daemon will use (which also creates it before the daemon starts).
        resources = pipeline_resources(own_mirror.url, tmp_path / "lake", pg_url)
        with dg.DagsterInstance.from_config(home_dir) as instance:
            assert run(service_layers("yellow"), resources, instance, MONTH).success
        before = warehouse_loads(pg_url)[("warehouse.yellow_tripdata", MONTH)]
        assert counts(pg_url, "yellow") == {MONTH: 2000}
        write_month(Path(own_mirror.root), source="dtc", service="yellow", month=MONTH, rows=20000)

        watcher = engine_for(pg_url)
        database = faults_support.database_name(pg_url)
        instance = dg.DagsterInstance.from_config(home_dir)
        try:
            with running_daemon(workspace, env):
                months_backfill(workspace, env, MONTH, "--services", "yellow")
                faults_support.wait_for(
                    "the run's COPY to be receiving rows",
                    lambda: (faults_support.copy_rows_received(watcher, database) or 0) > 0,
                    120,
                    every=0.1,
                )
                (held,) = held_slots(instance)
                assert held.steps == ("warehouse: warehouse__yellow_tripdata",)
                assert held.pid is not None and held.process_alive
                run_pid = held.pid
                (copy_backend,) = faults_support.copy_progress(watcher, database)
                watcher.dispose()  # its connection would be stopped with the server
                stopped = faults_support.server_processes(Path(server_folder) / "pgdata")
                postmaster = stopped[0]
                for process in stopped:
                    # A backend ending meanwhile (the watcher's, just disposed of) is gone.
                    with contextlib.suppress(psutil.NoSuchProcess):
                        process.suspend()

                def the_run() -> dg.DagsterRun:
                    return check.not_none(instance.get_run_by_id(held.run_id))

                wait_for("the run to be ended", lambda: the_run().is_finished, 60)
                assert the_run().status == dg.DagsterRunStatus.FAILURE
                said = " ".join(e.message for e in instance.all_logs(held.run_id))
                assert (
                    f"Canceling due to exceeding maximum runtime of {max_runtime_s} seconds" in said
                ), said
                # Its process ends with it, the server still stopped (it waited for ever
                # on the COPY's blocked send: taxi_assets.pg.interrupts).
                wait_for("the run's process to exit", lambda: not running(run_pid), 20)
                wait_for(
                    "the run's slot to be freed",
                    lambda: held.run_id not in {h.run_id for h in held_slots(instance)},
                    30,
                )
                # The server did not go on meanwhile: its postmaster and the run's backend
                # are still stopped. (Not every process listed: one already exiting when
                # stopped, such as the watcher's backend just disposed of, finishes its
                # exit, since SIGSTOP does not hold a process in exit, and stays a zombie.)
                still = {
                    process.pid: process.status()
                    for process in stopped
                    if process.pid in (postmaster.pid, copy_backend)
                }
                assert still == {
                    postmaster.pid: psutil.STATUS_STOPPED,
                    copy_backend: psutil.STATUS_STOPPED,
                }, [described(process) for process in stopped]
                failure = next(
                    e.dagster_event.step_failure_data.error
                    for e in instance.all_logs(held.run_id)
                    if e.dagster_event is not None and e.dagster_event.is_step_failure
                )
                assert failure is not None
                assert failure.cls_name == "DagsterExecutionInterruptedError", failure
        finally:
            for process in stopped:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()
            watcher.dispose()
        # The server goes on and rolls the run's transaction back: the month is the one
        # loaded before, whole, and nothing of the run is left.
        wait_for("the run's session to end", lambda: not other_backends(watcher, database), 30)
        assert staging_tables_of(watcher, MONTH) == []
        assert faults_support.locks_held(watcher, database) == []
        watcher.dispose()
        assert counts(pg_url, "yellow") == {MONTH: 2000}
        assert warehouse_loads(pg_url)[("warehouse.yellow_tripdata", MONTH)] == before
