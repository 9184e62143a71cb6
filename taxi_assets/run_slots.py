"""Pool slots held by runs whose process is gone, and giving them back.

A step in the ``downloads`` or ``warehouse`` pool claims a slot in Dagster's instance and
frees it when the step ends. A run whose process is killed (SIGKILL, out of memory, a
machine that went down) never frees it: with two such runs a pool of two is full for
good, and every later load waits "blocked by limit for pool warehouse".

Dagster recovers by itself only for runs the daemon launched: the code location server
marks a run failed when its process dies, and the daemon's run monitoring frees the slots
of ended runs (``run_monitoring.free_slots_after_run_end_seconds`` in ``dagster.yaml``).
A run started by ``dagster asset materialize`` has no such watcher and stays STARTED.
:func:`held_slots` finds such runs and :func:`release` ends them and frees their slots;
``python -m taxi_assets.cli runs slots|release`` are the commands.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import psutil

from taxi_assets.instance_reads import run_worker_process

if TYPE_CHECKING:  # what the event log storage's get_concurrency_info returns
    from dagster._utils.concurrency import ConcurrencyKeyInfo, PendingStepInfo

# Statuses after which a run never frees a slot itself; "unknown": the run was deleted.
ENDED = {
    *(status.value for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)),
    dg.DagsterRunStatus.CANCELED.value,
    "unknown",
}


# Where a run's steps execute, as the run tags it (record_run_host): a process id means
# something only on that host and in that PID namespace (a container or pod has its own).
RUN_HOST_TAG = "taxi/run_host"


def this_host() -> str:
    """This machine and PID namespace: host name, boot id and PID namespace (Linux)."""
    parts = [socket.gethostname()]
    try:
        parts.append("boot " + Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:  # not Linux: the host name is all there is
        pass
    return " ".join(parts)


def record_run_host(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Tag ``run`` with :func:`this_host` (once): the steps that take pool slots call it,
    so that `runs slots` can tell a dead run from one running elsewhere."""
    if RUN_HOST_TAG not in run.tags:
        instance.add_run_tags(run.run_id, {RUN_HOST_TAG: this_host()})


@dataclass(frozen=True)
class HeldSlots:
    run_id: str
    status: str  # the run's Dagster status, "unknown" when the run was deleted
    # "pool: step key" for each slot the run holds; a step of it still in a pool's queue
    # adds "(slot assigned, not claimed)" or "(waiting)": a dead run's queued step is
    # given the next free slot, and keeps it for good
    steps: tuple[str, ...]
    pid: int | None  # the run worker's process id, when the run recorded it
    process_alive: bool | None  # None: no pid, or the run ran elsewhere (`host`)
    host: str | None = None  # where the run's steps ran (RUN_HOST_TAG), when recorded

    @property
    def orphaned(self) -> bool:
        """The run holds slots but nothing can free them: it ended, or its process is gone."""
        return self.status in ENDED or self.process_alive is False


def process_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` runs on this machine and is the one that existed at ``since``
    (a Unix time): a process created later merely reuses the id of a dead one."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    return created <= since + 1  # create_time has a resolution of a clock tick


@dataclass(frozen=True)
class PoolUse:
    pool: str
    limit: int | None  # None: no limit set for this pool
    taken: int
    waiting: int  # steps queued for a slot

    def line(self) -> str:
        limit = "no limit" if self.limit is None else f"{self.taken} of {self.limit} slots taken"
        return f"pool {self.pool}: {limit}, {self.waiting} step(s) waiting"


def pool_use(instance: dg.DagsterInstance) -> list[PoolUse]:
    """Each pool's limit, slots taken and steps waiting for one."""
    storage = instance.event_log_storage
    found = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        # A slot assigned to a queued step is taken until that step claims or gives it up.
        taken = len(info.claimed_slots) + len(_assigned_unclaimed(info))
        found.append(PoolUse(pool, info.limit, taken, info.pending_step_count))
    return found


def _assigned_unclaimed(info: ConcurrencyKeyInfo) -> list[PendingStepInfo]:
    """Queued steps a slot was assigned to that have not claimed it (Dagster lists a
    claimed step among its queued steps too, as assigned)."""
    claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
    return [
        step
        for step in info.pending_steps
        if step.assigned_timestamp is not None and (step.run_id, step.step_key) not in claimed
    ]


def held_slots(instance: dg.DagsterInstance) -> list[HeldSlots]:
    """Every run holding a slot in any pool, or with a step in a pool's queue (a run killed
    while its step waited for a slot: the slot freed next goes to that step, for good)."""
    by_run: dict[str, list[str]] = defaultdict(list)
    storage = instance.event_log_storage
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            by_run[slot.run_id].append(f"{pool}: {slot.step_key}")
        for step in info.pending_steps:
            if step.assigned_timestamp is None:
                by_run[step.run_id].append(f"{pool}: {step.step_key} (waiting)")
        for step in _assigned_unclaimed(info):
            by_run[step.run_id].append(f"{pool}: {step.step_key} (slot assigned, not claimed)")
    found = []
    here_host = this_host()
    for run_id, steps in by_run.items():
        run = instance.get_run_by_id(run_id)
        worker = run_worker_process(instance, run_id) if run else None
        host = run.tags.get(RUN_HOST_TAG) if run else None
        here = host == here_host
        found.append(
            HeldSlots(
                run_id=run_id,
                status=run.status.value if run else "unknown",
                steps=tuple(sorted(steps)),
                pid=worker[0] if worker else None,
                process_alive=process_alive(*worker) if worker and here else None,
                host=host,
            )
        )
    return found


class ReleaseRefused(Exception):
    pass


def release(instance: dg.DagsterInstance, run_id: str, force: bool = False) -> HeldSlots:
    """Free the slots ``run_id`` holds; a run still STARTED whose process is gone is
    first marked failed (so the UI, run retries and sensors see it ended).

    Refuses a run whose process still runs here; and, unless ``force``, a run still in
    progress that ran on another machine or container (or recorded none): this cannot see
    whether its process lives. A CANCELING run is marked canceled.
    """
    holding = {held.run_id: held for held in held_slots(instance)}
    # The UI shows a run's first 8 characters: a unique start of an id holding a slot names it.
    matching = [known for known in holding if known.startswith(run_id)] if run_id else []
    if len(matching) > 1:
        raise ReleaseRefused(
            f"{run_id} starts the ids of {len(matching)} runs holding slots: give more of it"
        )
    if not matching:
        raise ReleaseRefused(f"run {run_id} holds no pool slot (`runs slots` lists those that do)")
    run_id = matching[0]
    held = holding[run_id]
    if held.process_alive:
        raise ReleaseRefused(
            f"run {run_id} is {held.status} and its process {held.pid} still runs on this "
            "machine: terminate the run (UI or `dagster run terminate`) instead"
        )
    if not held.orphaned and not force:
        where = f"ran on {held.host}, not here ({this_host()})" if held.host else "recorded no host"
        raise ReleaseRefused(
            f"run {run_id} is {held.status} and {where}: this cannot see whether its "
            "process lives. If it is gone, say so with --force"
        )
    run = instance.get_run_by_id(run_id)
    gone = f"process {held.pid} is gone" if held.process_alive is False else "--force"
    message = (
        f"Ended by `taxi_assets.cli runs release` ({gone}); its pool slots "
        f"({', '.join(held.steps)}) were freed."
    )
    if run is not None and run.status == dg.DagsterRunStatus.STARTED:
        instance.report_run_failed(run, message)
    elif run is not None and run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message)
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return held
