"""Pool slots of killed runs: `runs slots` finds them, `runs release` gives them back.

A `dagster asset materialize` run is killed (SIGKILL, for real) while its raw step holds a
`downloads` slot: the mirror holds back the file's response, so the step is waiting on it.
Nothing in Dagster frees that slot for a run no daemon launched (test_daemon.py covers the
daemon's own recovery for the runs it launches).
"""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from taxi_assets.run_slots import held_slots
from taxi_assets_tests.faults_support import (
    REPO,
    materialize_command,
    process_group_alive,
    wait_for,
)
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import cli_env

YELLOW = "/yellow/yellow_tripdata_{month}.csv.gz"


@contextmanager
def stalled_raw_run(mirror: FaultyMirror, env: dict, month: str) -> Iterator[subprocess.Popen]:
    """A CLI run of raw/yellow_tripdata for ``month`` whose download the mirror holds back:
    yields its process (a process group) once the step holds its slot and asked for the file."""
    path = YELLOW.format(month=month)
    mirror.inject(path, Fault.delay(300))
    process = subprocess.Popen(
        materialize_command("raw/yellow_tripdata", month),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"the run of {month} to request {path}", lambda: bool(mirror.requests_seen(path)))
        yield process
    finally:
        if process_group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        mirror.clear()


def taxi_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "runs", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_killed_cli_runs_slots_are_found_and_released_and_a_live_runs_are_not(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake")
    with stalled_raw_run(own_mirror, env, "2021-01") as killed:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        wait_for("the killed run's processes to go", lambda: not process_group_alive(killed.pid))
        with stalled_raw_run(own_mirror, env, "2021-02"):
            with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                holding = {held.run_id: held for held in held_slots(instance)}
                assert len(holding) == 2, holding
                (dead,) = [held for held in holding.values() if held.orphaned]
                (live,) = [held for held in holding.values() if not held.orphaned]
                assert (dead.status, dead.process_alive) == ("STARTED", False)
                assert (live.status, live.process_alive) == ("STARTED", True)
                assert dead.steps == live.steps == ("downloads: raw__yellow_tripdata",)

                listed = taxi_cli(env, "slots", "--check")
                assert listed.returncode == 1, listed
                assert f"{dead.run_id}  STARTED  process {dead.pid} is gone  ORPHANED" in (
                    listed.stdout
                )
                assert f"{live.run_id}  STARTED  process {live.pid} runs  in use" in listed.stdout

                refused = taxi_cli(env, "release", live.run_id)
                assert refused.returncode == 1
                assert f"its process {live.pid} still runs on this machine" in refused.stderr

                released = taxi_cli(env, "release", dead.run_id)
                assert released.returncode == 0, released.stderr
                assert "(marked failed): freed downloads: raw__yellow_tripdata" in (released.stdout)
                run = instance.get_run_by_id(dead.run_id)
                assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
                assert [held.run_id for held in held_slots(instance)] == [live.run_id]
                assert taxi_cli(env, "slots", "--check").returncode == 0

                again = taxi_cli(env, "release", dead.run_id)
                assert again.returncode == 1
                assert "holds no pool slot" in again.stderr
