"""``runs slots``: the runs holding a slot of the ``downloads`` or ``warehouse`` pool, and
whether anything will free it. ``runs release RUN_ID``: free the slots of a run whose
process is gone (marking the run failed if it still shows STARTED)."""

from __future__ import annotations

import argparse
import sys


def _runs_slots(args: argparse.Namespace) -> int:
    from taxi_assets.cli.instance import dagster_instance
    from taxi_assets.run_slots import held_slots, pool_use

    with dagster_instance() as instance:
        pools = pool_use(instance)
        holding = held_slots(instance)
    for use in pools:
        print(use.line())
    if not holding:
        print("no run holds a pool slot")
        return 0
    for held in holding:
        if held.pid is None:
            process = "no process id recorded"
        elif held.process_alive is None:
            process = f"process {held.pid} elsewhere ({held.host or 'host not recorded'})"
        else:
            process = f"process {held.pid} {'runs' if held.process_alive else 'is gone'}"
        verdict = "ORPHANED: `runs release` frees it" if held.orphaned else "in use"
        print(f"{held.run_id}  {held.status}  {process}  {verdict}")
        for step in held.steps:
            print(f"    {step}")
    return 1 if args.check and any(held.orphaned for held in holding) else 0


def _runs_release(args: argparse.Namespace) -> int:
    import dagster as dg

    from taxi_assets.cli.instance import dagster_instance
    from taxi_assets.run_slots import ReleaseRefused, release

    with dagster_instance() as instance:
        try:
            held = release(instance, args.run_id, force=args.force)
        except ReleaseRefused as refused:
            print(f"error: {refused}", file=sys.stderr)
            return 1
    marked = {
        dg.DagsterRunStatus.STARTED.value: " (marked failed)",
        dg.DagsterRunStatus.CANCELING.value: " (marked canceled)",
    }.get(held.status, "")
    print(f"run {held.run_id}{marked}: freed {', '.join(held.steps)}")
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:
    runs = groups.add_parser("runs", help="Dagster runs holding pool slots ($DAGSTER_HOME)")
    commands = runs.add_subparsers(dest="command", required=True)
    slots = commands.add_parser(
        "slots", help="runs holding a downloads/warehouse pool slot, and orphaned ones"
    )
    slots.add_argument(
        "--check", action="store_true", help="exit 1 when a slot is held by an orphaned run"
    )
    slots.set_defaults(func=_runs_slots)
    free = commands.add_parser("release", help="free the pool slots of a run whose process is gone")
    free.add_argument("run_id")
    free.add_argument(
        "--force",
        action="store_true",
        help="also a STARTED run that recorded no process id (it ran on another machine)",
    )
    free.set_defaults(func=_runs_release)
