"""``months backfill FIRST [--to LAST]``: every service for one month (or a range), as
one asset backfill that the daemon runs (each service over its own months)."""

from __future__ import annotations

import argparse
import sys

from taxi_assets.cli.arguments import csv_list


def _months_backfill(args: argparse.Namespace) -> int:
    from taxi_assets.automation.month_backfill import (
        BackfillError,
        backfill_params,
        service_ranges,
        submit_backfill,
    )
    from taxi_assets.definitions import first_partition_month

    last = args.to or args.first
    try:
        ranges, skipped = service_ranges(args.first, last, first_partition_month(), args.services)
        if not ranges:
            raise BackfillError("no service has a partition in that range: " + "; ".join(skipped))
        where = ["-w", args.workspace] if args.workspace else ["-m", "taxi_assets"]
        span = args.first if last == args.first else f"{args.first}..{last}"
        title = (
            f"every service, {span}" if not args.services else f"{', '.join(args.services)}, {span}"
        )
        backfill_id = submit_backfill(backfill_params(ranges, title), where)
    except (BackfillError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"backfill {backfill_id} submitted ({title}); the daemon runs it:")
    for r in ranges:
        months = r.first if r.first == r.last else f"{r.first}..{r.last}"
        print(f"  {r.service}: raw, lake, warehouse for {months}")
    for reason in skipped:
        print(f"  left out: {reason}")
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:
    from taxi_assets.services import SERVICES as TRIP_SERVICES

    months = groups.add_parser("months", help="load months of every service")
    months_commands = months.add_subparsers(dest="command", required=True)
    backfill = months_commands.add_parser(
        "backfill",
        help="every service for one month (or --to a last month): one asset backfill, run "
        "by the daemon; a service is left out of months before its first one",
    )
    backfill.add_argument("first", help="the month, YYYY-MM")
    backfill.add_argument("--to", help="the last month of a range (default: the same month)")
    backfill.add_argument(
        "--services",
        type=lambda s: csv_list(s, list(TRIP_SERVICES)),
        help=f"a subset of {','.join(TRIP_SERVICES)} (default: all)",
    )
    backfill.add_argument(
        "--workspace", help="a workspace.yaml (default: the taxi_assets module, -m taxi_assets)"
    )
    backfill.set_defaults(func=_months_backfill)
