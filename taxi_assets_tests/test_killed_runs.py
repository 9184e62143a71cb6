"""What killed runs leave behind, and who cleans it up.

A `dagster asset materialize` run is killed (SIGKILL, for real) while its raw step holds a
`downloads` slot: the mirror holds back the file's response, so the step is waiting on it.
Nothing in Dagster frees that slot for a run no daemon launched (test_daemon.py covers the
daemon's own recovery for the runs it launches): `runs slots` finds it, `runs release`
gives it back. The killed download's folder is removed by a later download once stale;
staging files beside lake files likewise by the next write of the same file.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.concurrency import ConcurrencySlotStatus
from upath import UPath

from taxi_assets.run_slots import RUN_HOST_TAG, held_slots, pool_use, release, this_host
from taxi_assets.storage.leftovers import (
    STALE_AFTER_SECONDS,
    probe_name,
    remove_stale_downloads,
    remove_stale_staging,
)
from taxi_assets.storage.publish import local_staging_dir, staging_name
from taxi_assets_tests.faults_support import (
    REPO,
    materialize_command,
    process_group,
    process_group_alive,
    wait_for,
)
from taxi_assets_tests.http_faults import Fault, FaultyMirror
from taxi_assets_tests.pipeline import cli_env

YELLOW = "/yellow/yellow_tripdata_{month}.csv.gz"


def cli_run(selection: str, month: str, env: dict) -> AbstractContextManager[subprocess.Popen]:
    """`dagster asset materialize` of ``selection`` for ``month``, killed if still running
    at the end."""
    return process_group(materialize_command(selection, month), env)


@contextmanager
def stalled_raw_run(mirror: FaultyMirror, env: dict, month: str) -> Iterator[subprocess.Popen]:
    """A CLI run of raw/yellow_tripdata for ``month`` whose download the mirror holds back:
    yields its process (a process group) once the step holds its slot and asked for the file."""
    path = YELLOW.format(month=month)
    mirror.inject(path, Fault.delay(300), methods=["GET"])  # the download, not a HEAD
    try:
        with cli_run("raw/yellow_tripdata", month, env) as process:
            wait_for(
                f"the run of {month} to request {path}",
                lambda: "GET" in mirror.requests_seen(path),
            )
            yield process
    finally:
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
            with (
                dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
                ExitStack() as stack,
            ):
                holding = {held.run_id: held for held in held_slots(instance)}
                assert len(holding) == 2, holding
                (dead,) = [held for held in holding.values() if held.orphaned]
                (live,) = [held for held in holding.values() if not held.orphaned]
                assert (dead.status, dead.process_alive) == ("STARTED", False)
                assert (live.status, live.process_alive) == ("STARTED", True)
                assert dead.steps == live.steps == ("downloads: raw__yellow_tripdata",)

                # The pool of two is full: a third run waits, for good while nothing
                # frees the dead run's slot.
                third = stack.enter_context(cli_run("raw/yellow_tripdata", "2021-01", env))
                wait_for(
                    "the third run to wait for a downloads slot",
                    lambda: pool_use(instance)[0].waiting == 1,
                    timeout=120,
                )
                listed = taxi_cli(env, "slots", "--check")
                assert listed.returncode == 1, listed
                assert "pool downloads: 2 of 2 slots taken, 1 step(s) waiting" in listed.stdout
                assert f"{dead.run_id}  STARTED  process {dead.pid} is gone  ORPHANED" in (
                    listed.stdout
                )
                assert f"{live.run_id}  STARTED  process {live.pid} runs  in use" in listed.stdout

                refused = taxi_cli(env, "release", live.run_id)
                assert refused.returncode == 1
                assert f"its process {live.pid} still runs on this machine" in refused.stderr

                # Seen from another container or machine (as if the run had tagged another
                # host): its process cannot be looked at, so it is no orphan without --force.
                elsewhere = "other-host boot 0 pid:[1]"
                instance.add_run_tags(dead.run_id, {RUN_HOST_TAG: elsewhere})
                listed = taxi_cli(env, "slots")
                assert f"process {dead.pid} elsewhere ({elsewhere})  in use" in listed.stdout
                refused = taxi_cli(env, "release", dead.run_id)
                assert refused.returncode == 1
                assert f"ran on {elsewhere}, not here" in refused.stderr
                instance.add_run_tags(dead.run_id, {RUN_HOST_TAG: this_host()})

                released = taxi_cli(env, "release", dead.run_id)
                assert released.returncode == 0, released.stderr
                assert "(marked failed): freed downloads: raw__yellow_tripdata" in (released.stdout)
                run = instance.get_run_by_id(dead.run_id)
                assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
                # The freed slot goes to the waiting run, which downloads and ends.
                assert third.wait(timeout=180) == 0
                assert [held.run_id for held in held_slots(instance)] == [live.run_id]
                assert taxi_cli(env, "slots", "--check").returncode == 0

                again = taxi_cli(env, "release", dead.run_id)
                assert again.returncode == 1
                assert "holds no pool slot" in again.stderr


def test_a_run_killed_while_its_step_waited_for_a_slot_is_listed_and_released(
    instance: dg.DagsterInstance,
) -> None:
    """A run killed while its step is queued for a slot leaves the queue entry: the slot
    freed next is assigned to it, and nothing claims it, for good. `runs slots` counted
    that slot free and did not list the run; `runs release` refused it ("holds no pool
    slot"). The run here records no process (as one started elsewhere): it is never
    claimed, as a killed run's step is not; the queue is Dagster's own, in SQLite."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots("warehouse", 2)
    runs = {}
    for name in ("a", "b", "killed", "later"):
        runs[name] = str(uuid.uuid4())
        instance.add_run(
            dg.DagsterRun(
                job_name="__ASSET_JOB", run_id=runs[name], status=dg.DagsterRunStatus.STARTED
            )
        )
    for name in ("a", "b", "killed"):
        storage.claim_concurrency_slot("warehouse", runs[name], f"{name}_step")
    storage.free_concurrency_slot_for_step(runs["a"], "a_step")  # the slot goes to "killed"
    later = storage.claim_concurrency_slot("warehouse", runs["later"], "later_step")
    assert later.slot_status == ConcurrencySlotStatus.BLOCKED

    (use,) = pool_use(instance)
    assert (use.taken, use.waiting) == (2, 1)
    holding = {held.run_id: held.steps for held in held_slots(instance)}
    assert holding[runs["killed"]] == ("warehouse: killed_step (slot assigned, not claimed)",)
    assert holding[runs["later"]] == ("warehouse: later_step (waiting)",)

    release(instance, runs["killed"], force=True)
    run = instance.get_run_by_id(runs["killed"])
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    later = storage.claim_concurrency_slot("warehouse", runs["later"], "later_step")
    assert later.slot_status == ConcurrencySlotStatus.CLAIMED


def backdate(path: Path, seconds: float) -> None:
    """Every file and folder under ``path`` last written ``seconds`` ago."""
    when = time.time() - seconds
    for each in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(each, (when, when))


def test_a_killed_downloads_folder_is_removed_by_a_later_download_once_stale(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, own_mirror.url, tmp_path / "lake")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env["TMPDIR"] = str(temporary)
    with stalled_raw_run(own_mirror, env, "2021-01") as killed:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    (left,) = temporary.glob("taxi-raw-*")

    def download(month: str) -> str:
        done = subprocess.run(
            materialize_command("raw/yellow_tripdata", month),
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    # Recent: it could be a download still running in another process; kept.
    download("2021-02")
    assert left.exists()
    backdate(left, STALE_AFTER_SECONDS + 60)
    log = download("2021-02")
    assert not left.exists()
    assert f"removed {left}, left by a killed run" in log
    assert list(temporary.glob("taxi-raw-*")) == []  # and the downloads' own are gone


def test_stale_staging_files_of_the_same_file_are_removed_before_the_next_write(
    tmp_path: Path,
) -> None:
    month = tmp_path / "lake" / "yellow_tripdata" / "year=2021" / "month=01"
    month.mkdir(parents=True)
    dest = UPath(str(month / "yellow_tripdata_2021-01.parquet"))
    stale, fresh = (month / staging_name(dest) for _ in range(2))
    other = month / staging_name(UPath(str(month / "other.parquet")))
    look_alike = month / ".yellow_tripdata_2021-01.parquet.not-ours.tmp"
    for path in (stale, fresh, other, look_alike):
        path.write_bytes(b"PAR1 half a month")
    for path in (stale, other, look_alike):
        backdate(path, STALE_AFTER_SECONDS + 60)
    said: list[str] = []
    assert remove_stale_staging(month, dest.name, said.append) == [stale]
    assert said == [f"removed {stale}, left by a killed run (untouched for 3.0 h)"]
    assert sorted(p.name for p in month.iterdir()) == sorted(
        p.name for p in (fresh, other, look_alike)
    )
    # Every write stages through local_staging_dir: it cleans before handing the folder.
    backdate(fresh, STALE_AFTER_SECONDS + 60)
    assert local_staging_dir(dest) == month
    assert not fresh.exists() and other.exists()


def test_only_our_own_stale_download_folders_are_removed(tmp_path: Path) -> None:
    """The temporary folder is shared: a look-alike name, a link or another program's
    folder stays, and nothing there fails the cleanup."""
    ours = tmp_path / "taxi-raw-ab12cd_9"  # tempfile.mkdtemp's shape
    ours.mkdir()
    (ours / ".yellow_tripdata_2021-01.csv.gz.part").write_bytes(b"half")
    look_alike = tmp_path / "taxi-raw-exports-for-analysis"
    look_alike.mkdir()
    (look_alike / "notes.csv").write_text("a,b\n")
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "taxi-raw-linkxxxx"
    link.symlink_to(target, target_is_directory=True)
    for path in (ours, look_alike, target):
        backdate(path, STALE_AFTER_SECONDS + 60)
    said: list[str] = []
    assert remove_stale_downloads(tmp_path, said.append) == [ours]
    assert look_alike.exists() and link.is_symlink() and target.exists()
    assert len(said) == 1


def test_lake_sweep_removes_every_stale_leftover_of_a_local_lake_and_the_temporary_folder(
    tmp_path: Path,
) -> None:
    """A month never written again keeps its killed write's staging file until a sweep."""
    lake, temporary = tmp_path / "lake", tmp_path / "tmp"
    january = lake / "yellow_tripdata" / "year=2021" / "month=01"
    raw = lake / "raw" / "yellow_tripdata"
    for folder in (january, raw, temporary):
        folder.mkdir(parents=True)
    published = january / "yellow_tripdata_2021-01.parquet"
    published.write_bytes(b"PAR1 a whole month")
    dest = UPath(str(published))
    stale_lake = january / staging_name(dest)
    stale_raw = raw / staging_name(UPath(str(raw / "yellow_tripdata_2021-01.csv.gz")))
    fresh = january / staging_name(dest)
    look_alike = january / ".notes.tmp"
    stale_upload = temporary / staging_name(UPath("gs://bucket/lake/fhvhv_2025-01.parquet"))
    download = temporary / "taxi-raw-ab12cd_9"
    download.mkdir()
    for path in (stale_lake, stale_raw, fresh, look_alike, stale_upload):
        path.write_bytes(b"x" * 1_000_000)
    (download / "fhvhv_tripdata_2025-01.parquet").write_bytes(b"x" * 500_000)
    probe = lake / probe_name()  # a `lake check` killed between its write and its delete
    probe.write_bytes(b"probe")
    not_a_probe = lake / ".taxi-probe-notes"
    not_a_probe.write_bytes(b"notes")
    old = (published, stale_lake, stale_raw, look_alike, stale_upload, download, probe, not_a_probe)
    for path in old:
        backdate(path, STALE_AFTER_SECONDS + 60)
    stale = [stale_lake, stale_raw, stale_upload, download, probe]
    env = {**os.environ, "TMPDIR": str(temporary), "TAXI_LAKE_URL": str(lake)}

    def sweep(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "taxi_assets.cli", "lake", "sweep", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    dry = sweep("--dry-run")
    assert all(f"would remove {path}," in dry for path in stale), dry
    assert "would remove 5 leftover(s) of killed runs, 3.5 MB" in dry
    assert all(path.exists() for path in stale)
    said = sweep()
    assert all(f"removed {path}, left by a killed run" in said for path in stale), said
    assert f"removed 5 leftover(s) of killed runs, 3.5 MB, in {lake} and the temporary" in said
    # The fresh one may be a write in progress: said, as for a bucket (it was not).
    assert f"kept 1 more in {lake} and the temporary folder, touched within 3 h" in said
    assert not any(path.exists() for path in stale)
    assert published.exists() and fresh.exists() and look_alike.exists()
    assert not_a_probe.exists()  # not a probe's name
    assert "removed 0 leftover(s)" in sweep()


def test_lake_sweep_fails_when_a_local_leftover_cannot_be_removed(tmp_path: Path) -> None:
    """An immutable stale staging file (chattr +i, which even root cannot remove): the
    sweep said it could not, then exited 0 (only a bucket's failures counted)."""
    lake = tmp_path / "lake"
    january = lake / "yellow_tripdata" / "year=2021" / "month=01"
    january.mkdir(parents=True)
    dest = UPath(str(january / "yellow_tripdata_2021-01.parquet"))
    stuck = january / staging_name(dest)
    stuck.write_bytes(b"x" * 1000)
    backdate(stuck, STALE_AFTER_SECONDS + 60)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(stuck)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (needs ext4-like storage and root)")
    try:
        env = {**os.environ, "TMPDIR": str(tmp_path), "TAXI_LAKE_URL": str(lake)}
        done = subprocess.run(
            [sys.executable, "-m", "taxi_assets.cli", "lake", "sweep"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        subprocess.run([chattr, "-i", str(stuck)], check=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"could not remove {stuck}, left by a killed run" in done.stdout
    assert "error: 1 leftover(s) could not be removed (see above)" in done.stderr
