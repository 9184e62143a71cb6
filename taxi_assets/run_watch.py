"""A run's work in this process stops when somebody else ends the run.

Run monitoring (``max_runtime_seconds``) and the UI's Terminate end a run by marking it
CANCELING, asking the run launcher to stop its process, and marking it FAILURE or
CANCELED. A run started by ``dagster asset materialize`` (or ``materialize()`` in a
script) has no launcher that knows its process: it is only marked, and its process goes
on waiting on a hung warehouse server, or even loads the month later, after its run was
reported failed and its pool slots were handed to other runs. Dagster's own watch of
this kind (``run_cancellation_thread``) is off in Dagster OSS
(``should_start_background_run_thread``).

:class:`RunWatch` polls the run's status every
``run_monitoring.cancellation_thread_poll_interval_seconds`` (the instance's setting for
Dagster's thread, 10 s unless set) and interrupts the process (SIGINT, as a launcher's
terminate does; the warehouse's statements then end at once, ``pg.interrupts``) when the
run has stayed ended for a whole interval: a launcher that stops the process itself has
done so by then, so a launched run is not interrupted twice while it cleans up. The
resources a run's steps use (the raw files' IO manager, the warehouse) each ask for the
watch while set up; they share one per run (:func:`watch_run`). A run executing off the
main thread is not watched: the interruption would land in the main thread's work.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading

import dagster as dg

logger = logging.getLogger(__name__)

ENDED_ELSEWHERE = frozenset(
    {dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE}
)


def interrupt_this_process() -> None:
    """What a run launcher's terminate does to a run's process."""
    if sys.platform == "win32":
        _thread.interrupt_main()  # a KeyboardInterrupt in the main thread
    else:
        os.kill(os.getpid(), signal.SIGINT)


class RunWatch:
    """Watches ``run_id`` in ``instance`` from a thread of its own until :meth:`stop`.

    After :meth:`stop` returns, the watch interrupts nothing (the check and the interrupt
    happen under the lock :meth:`stop` takes)."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str) -> None:
        self.run_id = run_id
        self.every_s = float(instance.cancellation_thread_poll_interval_seconds)
        # Its own instance, as Dagster's thread has: storages are not shared across threads.
        self._instance_ref = instance.get_ref()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="run-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()

    def _watch(self) -> None:
        with dg.DagsterInstance.from_ref(self._instance_ref) as instance:
            seen_ended: dg.DagsterRunStatus | None = None
            while not self._stopped.wait(self.every_s):
                try:
                    run = instance.get_run_by_id(self.run_id)
                except Exception:  # the instance's database unreachable for a moment
                    logger.warning(
                        "run %s: could not read its status (tried again in %.0f s)",
                        self.run_id,
                        self.every_s,
                        exc_info=True,
                    )
                    continue
                status = run.status if run is not None else None
                if status not in ENDED_ELSEWHERE:
                    seen_ended = None
                    continue
                if seen_ended is None:
                    seen_ended = status  # a launcher stopping the process has an interval
                    continue
                with self._lock:
                    if self._stopped.is_set():
                        return
                    logger.warning(
                        "run %s was marked %s by another process (run monitoring's "
                        "max_runtime, or Terminate) and is still running here: interrupting "
                        "it",
                        self.run_id,
                        status.value,
                    )
                    interrupt_this_process()
                    return


# One watch per run in a process, shared by the resources that ask for one (the lake, the
# warehouse): each would otherwise interrupt the process once.
_WATCHES: dict[str, tuple[RunWatch, int]] = {}
_WATCHES_LOCK = threading.Lock()


class RunWatchLease:
    """A resource's share of its run's :class:`RunWatch`: :meth:`release` it at teardown;
    the watch stops with the last share."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._released = False

    def release(self) -> None:
        with _WATCHES_LOCK:
            if self._released:
                return
            self._released = True
            watch, shares = _WATCHES[self.run_id]
            if shares > 1:
                _WATCHES[self.run_id] = (watch, shares - 1)
                return
            del _WATCHES[self.run_id]
        watch.stop()


def watch_run(context: dg.InitResourceContext) -> RunWatchLease | None:
    """A share of the :class:`RunWatch` of the run a resource is set up for; None outside
    a run, for an ephemeral instance (nobody else can end its runs), or off the main
    thread."""
    instance, run = context.instance, context.run
    if instance is None or run is None or instance.is_ephemeral:
        return None
    if threading.current_thread() is not threading.main_thread():
        # A run executing in another thread (materialize() in a thread of a script or a
        # test): SIGINT reaches the main thread only, which runs something else, and
        # Dagster raises an interruption in a step only on the main thread.
        return None
    with _WATCHES_LOCK:
        watch, shares = _WATCHES.get(run.run_id, (None, 0))
        if watch is None:
            watch = RunWatch(instance, run.run_id)
        _WATCHES[run.run_id] = (watch, shares + 1)
    return RunWatchLease(run.run_id)
