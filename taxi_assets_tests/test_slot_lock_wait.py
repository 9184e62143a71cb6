"""A process hung while holding a raw month's folder lock holds the others up for a
bounded time only.

Real processes: the holder takes the lock as a run does (``flock`` on the month's folder)
and stops itself (SIGSTOP, as Ctrl-Z does); the commands and the run are the project's CLI
and Dagster's, each a process of its own with a time limit, so a hang fails the test.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.storage.revision_manifest import Revision, read_manifest, utc_now
from taxi_assets.storage.revision_updates import PinChange, make_current
from taxi_assets.storage.revisions import slot_for
from taxi_assets.storage.roots import resolve_root
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import REPO, cli_env

MONTH = "2021-01"
NAME = "yellow_tripdata_2021-01.parquet"
DAGSTER = str(Path(sys.executable).parent / "dagster")
# The lock as slot_lock takes it (flock on the folder), then the holder stops itself.
HOLD_THE_FOLDER_AND_STOP = """
import fcntl, os, signal, sys
descriptor = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def store_revisions(lake: Path, *contents: bytes) -> list[str]:
    """Revisions of the month, the last one current; their sha256s."""
    slot = slot_for(resolve_root(str(lake)), ("raw", "yellow_tripdata"), MONTH)
    shas = []
    for n, content in enumerate(contents):
        staged = lake.parent / f"staged-{n}" / NAME
        staged.parent.mkdir(parents=True)
        staged.write_bytes(content)
        sha256 = hashlib.sha256(content).hexdigest()
        revision = Revision(sha256, NAME, len(content), utc_now(), "download", rows=1)
        make_current(slot, revision, staged, PinChange.KEEP, None, lambda _: None)
        shas.append(sha256)
    return shas


def wait_until_stopped(pid: int) -> None:
    import psutil

    deadline = time.monotonic() + 30
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.01)


@pytest.fixture
def month_folder(tmp_path: Path) -> Path:
    return tmp_path / "lake" / "raw" / "yellow_tripdata" / MONTH


@pytest.fixture
def hung_holder(month_folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process holding the month's folder lock, stopped; killed at the end whatever
    happened."""
    month_folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FOLDER_AND_STOP, str(month_folder)])
    try:
        wait_until_stopped(holder.pid)
        yield holder
    finally:
        holder.kill()
        holder.wait()


def raw_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAXI_RAW_LOCK_WAIT_S": "1"}
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "raw", *args, "--lake", str(tmp_path / "lake")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_hung_holder_of_a_months_folder_times_pin_and_unpin_out_naming_it(
    tmp_path: Path, month_folder: Path
) -> None:
    """``raw pin`` and ``raw unpin`` waited for ever for a hung run of the month; they give
    up after ``TAXI_RAW_LOCK_WAIT_S``, naming the month, the folder and the stopped
    process, and change nothing. Let go on, the holder releases the lock and they work."""
    older, _ = store_revisions(tmp_path / "lake", b"first\n", b"second\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FOLDER_AND_STOP, str(month_folder)])
    try:
        wait_until_stopped(holder.pid)
        for args, doing in (
            (("pin", "yellow", MONTH, older[:12]), "pinning"),
            (("unpin", "yellow", MONTH), "unpinning"),
        ):
            began = time.monotonic()
            done = raw_command(tmp_path, *args)
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert done.stderr.startswith(
                f"error: {doing} yellow_tripdata {MONTH}: gave up after waiting 1 s for the "
                f"lock {month_folder}, held by process {holder.pid} (stopped: "
            ), done.stderr
            assert f"kill -CONT {holder.pid}" in done.stderr
            assert "TAXI_RAW_LOCK_WAIT_S sets how long to wait" in done.stderr
            assert "Traceback" not in done.stderr
            assert time.monotonic() - began < 20
        manifest = read_manifest(
            slot_for(
                resolve_root(str(tmp_path / "lake")), ("raw", "yellow_tripdata"), MONTH
            ).manifest_path
        )
        assert manifest is not None and manifest.pinned is None

        os.kill(holder.pid, signal.SIGCONT)  # the holder goes on, ends, and the lock is free
        holder.wait(timeout=30)
        pinned = raw_command(tmp_path, "pin", "yellow", MONTH, older[:12])
        assert pinned.returncode == 0, pinned.stderr
        assert f"pinned to revision {older}" in pinned.stdout
    finally:
        holder.kill()
        holder.wait()


def test_a_bad_wait_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from taxi_assets.storage.slot_lock import DEFAULT_WAIT_S, wait_s

    monkeypatch.delenv("TAXI_RAW_LOCK_WAIT_S", raising=False)
    assert wait_s() == DEFAULT_WAIT_S == 600
    for bad in ("later", "-5", "nan"):
        monkeypatch.setenv("TAXI_RAW_LOCK_WAIT_S", bad)
        with pytest.raises(ValueError, match=f"TAXI_RAW_LOCK_WAIT_S='{bad}': not a number"):
            wait_s()


@pytest.mark.slow
def test_a_run_of_a_month_held_by_a_hung_run_fails_its_step_naming_the_holder(
    mirror: FaultyMirror,
    tmp_path: Path,
    month_folder: Path,
    hung_holder: subprocess.Popen[bytes],
) -> None:
    """A run storing the month while another run of it hangs holding the folder (its
    process stopped mid-write) waited for ever. It downloads, waits the bound, and fails
    its step saying which month, folder and process; the run is not retried (an asset
    failure: ``retry_on_asset_or_op_failure`` is false in dagster.yaml)."""
    env = {**cli_env(tmp_path, mirror.url, tmp_path / "lake"), "TAXI_RAW_LOCK_WAIT_S": "2"}
    command = [DAGSTER, "asset", "materialize", "-m", "taxi_assets",
               "--select", "raw/yellow_tripdata", "--partition", MONTH]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert (
        "LockWaitTimeout: storing revision " in said
        and f" of yellow_tripdata {MONTH}: gave up after waiting 2 s for the lock "
        f"{month_folder}, held by process {hung_holder.pid} (stopped: "
        in said
    ), said

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert run.tags.get("dagster/failure_reason") == "STEP_FAILURE"
        assert run.tags.get("dagster/will_retry") == "false"
        failures = [
            event.dagster_event
            for event in instance.all_logs(run.run_id)
            if event.dagster_event and event.dagster_event.is_step_failure
        ]
        assert len(failures) == 1
        error = failures[0].step_failure_data.error
        assert error is not None
        assert f"held by process {hung_holder.pid}" in str(error.to_string())
    assert not (month_folder / "revisions.json").exists()  # nothing stored
