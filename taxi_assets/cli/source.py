"""``source check [--month YYYY-MM]``: this machine can fetch the published files (one HEAD
per service and the zone lookup, as a run would meet them). Exits 1 on a problem."""

from __future__ import annotations

import argparse
import sys


def _source_check(args: argparse.Namespace) -> int:
    from taxi_assets.partitions import first_partition_month, parse_month
    from taxi_assets.resources.source import TaxiSourceResource
    from taxi_assets.upstream.check import check_source
    from taxi_assets.upstream.shown_url import shown_url

    source = TaxiSourceResource()
    try:
        if args.month is not None:
            parse_month(args.month)
        first = first_partition_month()
        layout = source.layout()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # A private mirror's URL may carry its password: shown as *** like every other URL.
    tlc, dtc = shown_url(layout.tlc_url), shown_url(layout.dtc_url)
    print(f"source {layout.source}: TLC {tlc}, course mirror {dtc}")
    probed = check_source(source, first, args.month)
    for each in probed:
        print(each.line())
    problems = sum(each.problem is not None for each in probed)
    if problems:
        print(f"error: {problems} of {len(probed)} file(s) could not be fetched", file=sys.stderr)
        return 1
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:
    source = groups.add_parser("source", help="where the trip files come from")
    commands = source.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="each service's file (and the zone lookup) can be fetched from here: one HEAD each",
    )
    check.add_argument(
        "--month",
        default=None,
        help="YYYY-MM to look for (default: each service's first month, long published)",
    )
    check.set_defaults(func=_source_check)
