"""Ctrl-C to a CLI command reading Dagster's instance storage on PostgreSQL (production's
``deploy/dagster.yaml``: psycopg2 through dagster-postgres) while the storage's server
answers nothing, or answers but holds the read up.

All real, as in ``test_ctrl_c_reads``: a server of this module's own holding the instance's
storage, a session of the test locking the table the command reads, every server process
stopped with SIGSTOP, a real SIGINT to ``python -m taxi_assets.cli`` as a process of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets_tests.faults_support import REPO
from taxi_assets_tests.pipeline import dagster_home, engine_for
from taxi_assets_tests.test_copy_interrupts import (
    ctrl_c_to_a_process,
    held,
    wait_until_only,
    waits_for_a_lock,
)
from taxi_assets_tests.test_production_instance import PRODUCTION_YAML, storage_url

# Every command opening the instance (``DagsterInstance.get()``): both read the pools'
# slots first (``concurrency_slots``), where the test's lock holds them up.
COMMANDS = {
    "runs slots": ["runs", "slots"],
    "runs release": ["runs", "release", "0d3c2b1a-0000-4000-8000-000000000000"],
}
LOCKED = "concurrency_slots"


def storage_env(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment, this test's and its CLI process's, of an instance keeping its
    storage on ``url``'s database (its tables made here, as ``dagster instance migrate``
    would)."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(tmp_path, PRODUCTION_YAML)))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url(url))
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / "compute-logs"))
    with dg.DagsterInstance.get():
        pass
    return dict(os.environ)


@pytest.mark.parametrize("state", ["stopped", "answering"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_ctrl_c_ends_a_command_reading_dagsters_postgres_storage_at_once(
    stoppable_database: tuple[str, Path],
    command: str,
    state: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``runs slots`` / ``runs release`` waiting for the pools' slots (a lock of the
    test's), Ctrl-C: the command ends within ``BOUND_S``, by SIGINT, saying so in one line,
    no traceback. A server that answers gets the read cancelled: its session ends within
    ``CANCELLED_WITHIN_S`` though the lock is still held. Before, psycopg2's blocking libpq
    call ran no Python signal handler until the statement ended: against a stopped server
    the command waited for ever."""
    url, data = stoppable_database
    env = storage_env(url, tmp_path, monkeypatch)
    engine = engine_for(url)
    try:
        with held(url, f"LOCK TABLE {LOCKED} IN ACCESS EXCLUSIVE MODE") as holder:
            ended = ctrl_c_to_a_process(
                url,
                data,
                ["-m", "taxi_assets.cli", *COMMANDS[command]],
                lambda e: waits_for_a_lock(e, LOCKED),
                env=env,
                stop=state == "stopped",
            )
            if state == "answering":
                wait_until_only(holder, engine, url, "the interrupted read's session")
    finally:
        engine.dispose()
    assert ended.returncode == -signal.SIGINT, ended.stderr
    assert ended.stderr == "interrupted\n", ended.stderr


def test_the_commands_read_and_free_slots_on_dagsters_postgres_storage(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the wait callback the commands still work on PostgreSQL storage: ``runs
    slots`` lists a run holding a slot (a run the instance does not know: a slot claimed
    and its run deleted), ``runs release --force`` frees it (a write), and the slot is
    gone."""
    env = storage_env(pg_url, tmp_path, monkeypatch)
    run_id = COMMANDS["runs release"][-1]
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("downloads", 2)
        assert storage.claim_concurrency_slot("downloads", run_id, "raw__yellow").is_claimed

    def runs(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taxi_assets.cli", "runs", *arguments],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = runs("slots")
    assert listed.returncode == 0, listed.stderr
    assert "pool downloads: 1 of 2 slots taken" in listed.stdout, listed.stdout
    assert f"{run_id}  unknown" in listed.stdout, listed.stdout
    # The 8 characters the UI shows name the run (before: "holds no pool slot").
    released = runs("release", "--force", run_id[:8])
    assert released.returncode == 0, released.stderr
    assert f"run {run_id}: freed downloads: raw__yellow" in released.stdout
    assert "no run holds a pool slot" in runs("slots").stdout
    del env["DAGSTER_HOME"]
    homeless = runs("slots")
    assert homeless.returncode == 1 and "Traceback" not in homeless.stderr, homeless.stderr
    assert homeless.stderr.startswith("error: DAGSTER_HOME is not set"), homeless.stderr
