"""``months backfill FIRST [--to LAST]``: every service for one month (or a range), as
one asset backfill that the daemon runs (each service over its own months).
``months status [FIRST [--to LAST]]``: each month's raw revision and rows in raw, lake and
warehouse, and whether the three layers agree."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from taxi_assets.cli.arguments import csv_list

if TYPE_CHECKING:
    from taxi_assets.month_status import Layer


def _months_backfill(args: argparse.Namespace) -> int:
    from taxi_assets.automation.month_backfill import (
        BackfillError,
        backfill_params,
        service_ranges,
        submit_backfill,
    )
    from taxi_assets.cli.instance import require_dagster_home
    from taxi_assets.partitions import first_partition_month

    require_dagster_home("the backfill is submitted to the Dagster instance it names")
    last = args.to or args.first
    try:
        ranges, skipped = service_ranges(args.first, last, first_partition_month(), args.services)
        if not ranges:
            raise BackfillError("no service has a partition in that range: " + "; ".join(skipped))
        where = ["-w", args.workspace] if args.workspace else ["-m", "taxi_assets"]
        # The months submitted, not those asked for (a range before TAXI_FIRST_MONTH is cut).
        first_in, last_in = min(r.first for r in ranges), max(r.last for r in ranges)
        span = first_in if last_in == first_in else f"{first_in}..{last_in}"
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


def _months_status(args: argparse.Namespace) -> int:
    import os

    from sqlalchemy.exc import OperationalError

    from taxi_assets.cli.arguments import parse_months
    from taxi_assets.cli.lake_errors import explained, usable_lake_root
    from taxi_assets.month_status import IN_STEP, as_record, collect, format_statuses
    from taxi_assets.partitions import first_month_of, first_partition_month, parse_month
    from taxi_assets.pg.embedded import EMBEDDED_SERVER_ERRORS
    from taxi_assets.services import SERVICES
    from taxi_assets.storage.errors import LakeConfigurationError

    months = None
    try:
        if args.first is not None:
            # Each on its own first: "2021-01..2021-02" given as FIRST is not a month, and is
            # not to be read as part of a range built from it.
            for given in (args.first, args.to or args.first):
                parse_month(given)
            months = parse_months(f"{args.first}..{args.to or args.first}")
            if not months:
                raise ValueError(f"--to is before the first month ({args.to} < {args.first})")
        elif args.to is not None:
            raise ValueError("--to needs a first month")
        configured_first = first_partition_month()
        root = usable_lake_root(args.lake)
        hive_format = _lake_hive_format()
        loads = _warehouse_loads(os.environ.get("TAXI_WAREHOUSE_URL"))
        statuses = explained(
            root,
            lambda: collect(
                root, loads, args.services or None, months, hive_format, configured_first
            ),
        )
    except (
        ValueError,
        LakeConfigurationError,
        WarehouseUnreadable,
        *EMBEDDED_SERVER_ERRORS,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:  # the server refused or is unreachable (no secret in it)
        print(f"error: cannot read the warehouse's load log: {error.orig}", file=sys.stderr)
        return 1
    behind = [s for s in statuses if s.state != IN_STEP]
    # Nothing stored at all is no pass: an empty lake, or one at a wrong URL. (A range
    # holding no month of the services is: there is nothing to load in it.)
    nothing_stored = not statuses and not months
    if args.json:
        print(json.dumps([as_record(s) for s in statuses], indent=1))
        return 1 if args.check and (behind or nothing_stored) else 0
    left_out = []
    for name in args.services or SERVICES:
        own_first = SERVICES[name].first_published_month
        first = first_month_of(own_first, configured_first)
        if months and months[0] < first:
            why = "its first month" if first == own_first else "TAXI_FIRST_MONTH"
            left_out.append(f"{name} before {first} ({why})")
    if not statuses:
        print(
            f"no month of {', '.join(args.services or SERVICES)} in that range: "
            + "; ".join(left_out)
            if months
            else "nothing stored yet: no raw file, lake file or warehouse load"
        )
        return 1 if args.check and nothing_stored else 0
    print("\n".join(format_statuses(statuses)))
    print(f"\n{len(statuses) - len(behind)} of {len(statuses)} month(s) in step")
    for reason in left_out:
        print(f"  left out: {reason}")
    return 1 if args.check and behind else 0


def _lake_hive_format() -> str:
    """The lake IO manager's ``hive_format`` in the definitions the code location loads:
    the months' lake folders are where it writes them, whatever a deployment set."""
    from taxi_assets.definitions import defs
    from taxi_assets.io_managers.parquet_lake import ParquetLakeIOManager

    manager = (defs.resources or {}).get("lake_io_manager")
    if not isinstance(manager, ParquetLakeIOManager):
        raise ValueError(
            "the definitions' lake_io_manager is not a ParquetLakeIOManager "
            f"({type(manager).__name__}): cannot tell where the lake keeps its months"
        )
    return manager.hive_format


class WarehouseUnreadable(Exception):
    """The warehouse's load log cannot be read; the message says why (no secret in it)."""


def _warehouse_loads(url: str | None) -> dict[tuple[str, str], Layer]:
    from taxi_assets.month_status import bigquery_loads, postgres_loads
    from taxi_assets.warehouse_engine import BIGQUERY, engine_for_url

    if engine_for_url(url) is BIGQUERY:
        from google.api_core.exceptions import GoogleAPIError, RetryError

        from taxi_assets.bq.client import BigQueryConfigurationError
        from taxi_assets.resources.bigquery import BigQueryWarehouse

        try:
            with BigQueryWarehouse().client() as client:
                return bigquery_loads(client)
        except (BigQueryConfigurationError, GoogleAPIError, RetryError) as error:
            raise WarehouseUnreadable(f"cannot read BigQuery's load log: {error}") from error
    from taxi_assets.pg import embedded
    from taxi_assets.resources.postgres import PostgresResource

    if url:
        return postgres_loads(PostgresResource().engine())
    # The embedded warehouse: a status read leaves it as it found it. Never created: nothing
    # was loaded (no server is created to say so). Stopped: started for the read, then
    # stopped again, unless a run (or another session) began using it meanwhile.
    if not embedded.exists():
        return {}
    started_here = not embedded.is_running()
    # Outside the try: a start that fails (another process hung mid-start) is not retried
    # by a second engine() below, nor followed by a stop that would wait as long again.
    engine = PostgresResource().engine()
    try:
        return postgres_loads(engine)
    finally:
        engine.dispose()
        if started_here:
            embedded.stop_if_unused()


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

    status = months_commands.add_parser(
        "status",
        help="each month's raw revision and its rows in raw, lake and warehouse, and whether "
        "the layers agree (read from the lake and the warehouse, not Dagster's instance)",
    )
    status.add_argument("first", nargs="?", help="a month, YYYY-MM (default: every stored month)")
    status.add_argument("--to", help="the last month of a range")
    status.add_argument(
        "--services",
        type=lambda s: csv_list(s, list(TRIP_SERVICES)),
        help=f"a subset of {','.join(TRIP_SERVICES)} (default: all)",
    )
    status.add_argument("--lake", default=None, help="default: $TAXI_LAKE_URL, else ./data/lake")
    status.add_argument(
        "--check", action="store_true", help="exit 1 when a listed month is not in step"
    )
    status.add_argument(
        "--json",
        action="store_true",
        help="a JSON array of one object per month, for monitoring tools",
    )
    status.set_defaults(func=_months_status)
