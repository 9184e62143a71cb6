"""The project's command line: ``python -m taxi_assets.cli GROUP COMMAND ...``.

- ``warehouse start|stop [DATA_DIR]``: the embedded PostgreSQL server (``make stop``).
- ``warehouse analyst-role ROLE``: a read-only role on the warehouse (password from
  ``TAXI_ANALYST_PASSWORD``).
- ``warehouse migrate``: convert month tables of an earlier version (plain tables) into
  partitioned ones, month by month, resumable (README, "Upgrading the warehouse").
- ``lake check [URL]``: the lake's bucket (``gs://``, ``s3://``) or container (``az://``)
  is reachable and writable with the configured credentials.
- ``raw list SERVICE [MONTH]``, ``raw pin SERVICE MONTH REVISION``, ``raw unpin SERVICE
  MONTH``: the stored revisions of raw files, and pins (a unique sha256 prefix is enough;
  SERVICE ``zones`` with MONTH ``-`` for the zone lookup; ``--lake URL``, default
  ``$TAXI_LAKE_URL``).
- ``months backfill FIRST [--to LAST]``: every service for one month (or a range), as one
  asset backfill that the daemon runs (each service over its own months).
- ``devdata generate|serve ...``: synthetic TLC months in each upstream's layout, and a
  local HTTP mirror serving them (also ``python -m taxi_assets.devdata ...``).

Each command imports only what it needs: only ``months backfill`` loads the Dagster
definitions (each service's partitions, and ``dagster-graphql`` to submit the backfill).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taxi_assets.pg.ddl import TableLayout


def _warehouse_start(args: argparse.Namespace) -> int:
    from taxi_assets.pg.embedded import embedded_url

    url = embedded_url(args.data_dir)
    print(f"embedded PostgreSQL running for {Path(args.data_dir).resolve()} ({url.split('?')[0]})")
    return 0


def _warehouse_stop(args: argparse.Namespace) -> int:
    from taxi_assets.pg.embedded import stop

    print("stopped" if stop(args.data_dir) else "not running")
    return 0


def _analyst_role(args: argparse.Namespace) -> int:
    from taxi_assets.pg.roles import READ_SCHEMAS, grant_read_only
    from taxi_assets.resources.postgres import PostgresResource

    password = os.environ.get("TAXI_ANALYST_PASSWORD")
    grant_read_only(PostgresResource().engine(), args.role, password)
    print(f"role {args.role} may read schemas {', '.join(READ_SCHEMAS)}")
    return 0


def _project_layouts() -> dict[tuple[str, str], TableLayout]:
    """The layout (partitioning, key, indexes) each known month table gets, as its asset's
    IO manager would create it."""
    from taxi_assets.assets.analytics.stats_columns import (
        ANALYTICS_SCHEMA,
        PRIMARY_KEY,
        STATS_TABLE,
    )
    from taxi_assets.assets.contract_stream import PARTITION_MONTH
    from taxi_assets.assets.trips import warehouse_metadata
    from taxi_assets.io_managers.postgres import table_layout
    from taxi_assets.pg.ddl import TableLayout
    from taxi_assets.services import SERVICES

    layouts = {
        ("warehouse", service.dataset): table_layout(warehouse_metadata(service))
        for service in SERVICES.values()
    }
    layouts[(ANALYTICS_SCHEMA, STATS_TABLE)] = TableLayout(PARTITION_MONTH, primary_key=PRIMARY_KEY)
    return layouts


def _warehouse_migrate(args: argparse.Namespace) -> int:
    from taxi_assets.assets.load_records import LOADS_TABLE
    from taxi_assets.pg.ddl import TableLayout
    from taxi_assets.pg.migrate import (
        convert,
        disk_needed,
        plan,
        server_free_bytes,
        tables_to_convert,
    )
    from taxi_assets.resources.postgres import PostgresResource

    column = "partition_month"
    warehouse = PostgresResource()
    engine = warehouse.engine()
    with engine.connect() as connection:
        # warehouse.loads has partition_month too, but one row per table and month: plain.
        keep = {("warehouse", LOADS_TABLE)}
        found = tables_to_convert(connection, tuple(args.schemas), column, keep_plain=keep)
        if not found:
            print(f"nothing to convert: no plain table with {column} in {', '.join(args.schemas)}")
            return 0
        print(
            f"counting rows per month in {len(found)} tables (one pass over each) ...", flush=True
        )
        pending = [plan(connection, schema, table, column) for schema, table in found]
        folder, free = server_free_bytes(connection)
    for item in pending:
        print(
            f"{item.schema}.{item.table}: {len(item.months)} months, "
            f"{sum(item.months.values()):,} rows, {len(item.done)} months converted already, "
            f"~{item.bytes_to_move / 1e9:.2f} GB to move"
        )
    needed = disk_needed(pending)
    if free is None:
        where = (
            f"data directory {folder}" if folder else "its data directory is not shown to this role"
        )
        if not args.skip_disk_check:
            print(
                f"error: cannot see the server's free disk from here ({where}). Make sure it "
                f"has {needed / 1e9:.2f} GB free, then run again with --skip-disk-check",
                file=sys.stderr,
            )
            return 2
        print(f"free disk not checked (--skip-disk-check); needs about {needed / 1e9:.2f} GB")
    elif free < needed:
        print(
            f"error: the conversion needs about {needed / 1e9:.2f} GB free on the server's "
            f"disk ({folder}); {free / 1e9:.2f} GB free. Nothing was changed",
            file=sys.stderr,
        )
        return 2
    else:
        print(f"free disk: {free / 1e9:.2f} GB on {folder}, about {needed / 1e9:.2f} GB needed")
    if args.dry_run:
        return 0
    layouts = _project_layouts()
    budget = args.max_months
    complete = True
    for item in pending:
        layout = layouts.get((item.schema, item.table), TableLayout(column))
        if budget is not None and budget <= 0:
            complete = False
            break
        complete &= convert(engine, item, layout, max_months=budget, waits=warehouse.lock_waits())
        if budget is not None:
            budget -= min(budget, len(item.remaining))
    engine.dispose()
    print(
        "done: every table converted"
        if complete
        else "stopped early: run the same command again to go on"
    )
    return 0


def _lake_check(args: argparse.Namespace) -> int:
    from taxi_assets.storage.check import check
    from taxi_assets.storage.errors import LakeConfigurationError

    try:
        print(check(args.url))
    except LakeConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _raw_revisions(args: argparse.Namespace) -> int:
    from taxi_assets import raw_commands
    from taxi_assets.storage.revision_manifest import ManifestError
    from taxi_assets.storage.revisions import RevisionError
    from taxi_assets.storage.roots import lake_root

    root = lake_root(args.lake)
    try:
        if args.command == "list":
            lines = raw_commands.list_revisions(root, args.service, args.month)
        elif args.command == "pin":
            lines = raw_commands.pin(root, args.service, args.month, args.revision)
        else:
            lines = raw_commands.unpin(root, args.service, args.month)
    except (RevisionError, ManifestError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


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


def parse_months(spec: str) -> list[str]:
    """'2021-01,2021-03' and '2021-01..2021-03' (and mixes of both)."""
    from taxi_assets.devdata.generate import month_range, parse_month

    months: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if ".." in part:
            first, last = part.split("..", 1)
            months += month_range(first.strip(), last.strip())
        else:
            parse_month(part)
            months.append(part)
    return list(dict.fromkeys(months))  # de-duplicate, keep order


def _csv_list(spec: str, allowed: Sequence[str]) -> list[str]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
    return items


def _devdata_generate(args: argparse.Namespace) -> int:
    from taxi_assets.devdata.generate import generate_mirror

    started = time.perf_counter()
    paths = generate_mirror(
        Path(args.out), months=args.months, services=args.services,
        sources=args.sources, rows=args.rows, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {len(paths)} files under {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def _devdata_serve(args: argparse.Namespace) -> int:
    from taxi_assets.devdata.mirror import MirrorServer

    stop = threading.Event()
    # SIGTERM/SIGINT just set an event; the main thread then shuts down cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url_file = Path(args.url_file) if args.url_file else None
    with MirrorServer(
        Path(args.root), host=args.host, port=args.port, missing_status=args.missing_status
    ) as server:
        print(server.url, flush=True)
        if url_file is not None:
            # Write-then-rename so a poller never reads a half-written URL.
            tmp = url_file.with_name(url_file.name + ".tmp")
            tmp.write_text(server.url + "\n")
            os.replace(tmp, url_file)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            if url_file is not None:
                url_file.unlink(missing_ok=True)  # a stale URL would mislead pollers
    return 0


def build_parser() -> argparse.ArgumentParser:
    from taxi_assets.devdata.generate import SERVICES as DEVDATA_SERVICES
    from taxi_assets.devdata.generate import SOURCES as DEVDATA_SOURCES
    from taxi_assets.pg.embedded import DEFAULT_EMBEDDED_DIR
    from taxi_assets.services import SERVICES as TRIP_SERVICES

    parser = argparse.ArgumentParser(prog="python -m taxi_assets.cli", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)

    warehouse = groups.add_parser("warehouse", help="the PostgreSQL warehouse")
    commands = warehouse.add_subparsers(dest="command", required=True)
    for name, handler, text in (
        ("start", _warehouse_start, "start (or find) the embedded server"),
        ("stop", _warehouse_stop, "stop the embedded server"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("data_dir", nargs="?", default=DEFAULT_EMBEDDED_DIR)
        command.set_defaults(func=handler)
    role = commands.add_parser("analyst-role", help="create or update a read-only role")
    role.add_argument("role")
    role.set_defaults(func=_analyst_role)
    migrate = commands.add_parser(
        "migrate",
        help="convert month tables of an earlier version into partitioned ones (resumable)",
    )
    migrate.add_argument(
        "--schema", dest="schemas", action="append", help="default: warehouse and analytics"
    )
    migrate.add_argument(
        "--max-months", type=int, help="stop after this many months (run again to go on)"
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="show the plan and the disk check only"
    )
    migrate.add_argument(
        "--skip-disk-check",
        action="store_true",
        help="when the server's disk cannot be seen from here (checked by hand)",
    )
    migrate.set_defaults(func=_warehouse_migrate)

    lake = groups.add_parser("lake", help="the data lake")
    lake_commands = lake.add_subparsers(dest="command", required=True)
    check = lake_commands.add_parser(
        "check", help="the bucket or container is reachable and writable"
    )
    check.add_argument("url", nargs="?", default=None, help="default: $TAXI_LAKE_URL")
    check.set_defaults(func=_lake_check)

    raw = groups.add_parser("raw", help="revisions of the raw files, and pins")
    raw_commands = raw.add_subparsers(dest="command", required=True)
    for name, text in (
        ("list", "the revisions of a month (without MONTH: every stored month)"),
        ("pin", "rebuild a month from a stored revision until unpinned"),
        ("unpin", "follow the newest upstream file again"),
    ):
        command = raw_commands.add_parser(name, help=text)
        command.add_argument("service", help="yellow, green, fhv, ... or zones")
        command.add_argument(
            "month", nargs="?" if name == "list" else None, help="YYYY-MM ('-' for zones)"
        )
        if name == "pin":
            command.add_argument("revision", help="a sha256 or a unique prefix of one")
        command.add_argument("--lake", default=None, help="default: $TAXI_LAKE_URL")
        command.set_defaults(func=_raw_revisions)
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
        type=lambda s: _csv_list(s, list(TRIP_SERVICES)),
        help=f"a subset of {','.join(TRIP_SERVICES)} (default: all)",
    )
    backfill.add_argument(
        "--workspace", help="a workspace.yaml (default: the taxi_assets module, -m taxi_assets)"
    )
    backfill.set_defaults(func=_months_backfill)

    devdata = groups.add_parser("devdata", help="generated TLC files and a local mirror")
    devdata_commands = devdata.add_subparsers(dest="command", required=True)
    gen = devdata_commands.add_parser("generate", help="write a synthetic upstream mirror folder")
    gen.add_argument("--out", required=True)
    gen.add_argument(
        "--months", required=True, type=parse_months, help="2021-01,2021-02 or 2021-01..2021-03"
    )
    gen.add_argument(
        "--services",
        default=",".join(DEVDATA_SERVICES),
        type=lambda s: _csv_list(s, DEVDATA_SERVICES),
    )
    gen.add_argument(
        "--sources", default=",".join(DEVDATA_SOURCES), type=lambda s: _csv_list(s, DEVDATA_SOURCES)
    )
    gen.add_argument("--rows", type=int, default=5000, help="rows per month file")
    gen.add_argument("--seed", type=int, default=42)
    gen.set_defaults(func=_devdata_generate)

    serve = devdata_commands.add_parser(
        "serve", help="serve a folder over HTTP until SIGTERM/SIGINT"
    )
    serve.add_argument("--root", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--url-file", help="also write the URL to this file (removed on exit)")
    serve.add_argument(
        "--missing-status",
        type=int,
        choices=(404, 403),
        default=404,
        help="the answer for a missing file: 404 like the course mirror, 403 like TLC's host",
    )
    serve.set_defaults(func=_devdata_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "schemas", ...) is None:
        args.schemas = ["warehouse", "analytics"]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
