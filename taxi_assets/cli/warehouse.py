"""``warehouse start|stop [DATA_DIR]``, ``warehouse check``, ``warehouse analyst-role
ROLE``, ``warehouse migrate``: the embedded PostgreSQL server, whether the warehouse is
ready for the loads, a read-only role, and the conversion of month tables of an earlier
version into partitioned ones."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from taxi_assets.cli.arguments import positive_int

if TYPE_CHECKING:
    from taxi_assets.pg.ddl import TableLayout

DEFAULT_SCHEMAS = ("warehouse", "analytics")


def plain_by_design_tables() -> set[tuple[str, str]]:
    """Tables with partition_month that are plain by design, not of an earlier version:
    warehouse.loads has one row per table and month."""
    from taxi_assets.assets.load_records import LOADS_TABLE

    return {("warehouse", LOADS_TABLE)}


def _one_line_errors(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """A server that cannot be reached or refuses the login, a URL that is not one, a
    statement refused (a role that may not do it): one line and exit 1, not a traceback.
    psycopg's words hold no password; the statement is not shown, as `analyst-role`'s
    holds one."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import DBAPIError, OperationalError

        from taxi_assets.pg.embedded import EMBEDDED_SERVER_ERRORS

        try:
            return command(args)
        except OperationalError as error:
            print(f"error: cannot use the warehouse: {error.orig}".rstrip(), file=sys.stderr)
        except DBAPIError as error:
            words = str(error.orig).strip().splitlines() or [type(error.orig).__name__]
            code = getattr(error.orig, "sqlstate", None)
            # No statement: the connection's own settings (a URL parameter libpq refuses).
            what = (
                "cannot use the warehouse"
                if error.statement is None
                else ("the warehouse refused a statement")
            )
            print(
                f"error: {what}: {words[0]}" + (f" (SQLSTATE {code})" if code else ""),
                file=sys.stderr,
            )
        except (ValueError, *EMBEDDED_SERVER_ERRORS) as error:
            print(f"error: {error}", file=sys.stderr)
        return 1

    return run


def _folder(text: str) -> str:
    """A data folder argument: an existing file is refused (a traceback before)."""
    if Path(text).expanduser().exists() and not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def _role_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a role needs a name")
    return text


def _names_bigquery() -> bool:
    """TAXI_WAREHOUSE_URL names BigQuery (the PostgreSQL-only commands refuse it)."""
    from taxi_assets.resources.bigquery import WAREHOUSE_URL_ENV
    from taxi_assets.warehouse_engine import BIGQUERY, engine_for_url

    return engine_for_url(os.environ.get(WAREHOUSE_URL_ENV)) is BIGQUERY


def _warehouse_start(args: argparse.Namespace) -> int:
    from taxi_assets.pg.embedded import EMBEDDED_SERVER_ERRORS, embedded_url, psql_command

    try:
        url = embedded_url(args.data_dir)
    except (ValueError, *EMBEDDED_SERVER_ERRORS) as error:  # ValueError: a bad bound
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"embedded PostgreSQL running for {Path(args.data_dir).resolve()}")
    # A local socket and no password (only this machine's users can reach it): the URL
    # holds no secret.
    print(f"  URL:  {url}")
    print(f"  psql: {psql_command(url)}")
    return 0


def _warehouse_stop(args: argparse.Namespace) -> int:
    from taxi_assets.pg.embedded import EMBEDDED_SERVER_ERRORS, in_use, is_running, stop

    try:
        if not args.force and in_use(args.data_dir) and is_running(args.data_dir):
            print(
                "error: the embedded warehouse is in use: a run or command that connected to "
                "it still runs, and stopping the server would fail it (its load rolled back). "
                "Let it end, or stop the server anyway with `warehouse stop --force`",
                file=sys.stderr,
            )
            return 1
        stopped = stop(args.data_dir)
    except (ValueError, *EMBEDDED_SERVER_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("stopped" if stopped else "not running")
    return 0


BIGQUERY_CHECKED_ELSEWHERE = (
    "error: warehouse check reads a PostgreSQL server, and TAXI_WAREHOUSE_URL names "
    "BigQuery: its datasets and permissions are checked by the first load (docs/deployment.md, "
    "'BigQuery: set-up and credentials')"
)


@_one_line_errors
def _warehouse_check(args: argparse.Namespace) -> int:
    from taxi_assets.pg import embedded
    from taxi_assets.pg.server_check import check_server
    from taxi_assets.resources.postgres import PostgresResource

    if _names_bigquery():
        print(BIGQUERY_CHECKED_ELSEWHERE, file=sys.stderr)
        return 2
    warehouse = PostgresResource()
    embedded_only = not os.environ.get("TAXI_WAREHOUSE_URL")
    if embedded_only and not embedded.exists(warehouse.embedded_dir):
        # A check reads only: it creates no server (run from another folder, it made a new
        # empty one there and called it ready).
        folder = Path(warehouse.embedded_dir).expanduser().resolve()
        print(
            f"ok: no embedded warehouse at {folder} yet (TAXI_WAREHOUSE_URL is not set): the "
            "first load creates it; nothing was created"
        )
        print("ready for loads")
        return 0
    # The embedded warehouse is left as it was found, as `months status` leaves it: a check
    # that started a stopped server stops it again (unless a run began using it meanwhile).
    started_here = embedded_only and not embedded.is_running()
    engine = warehouse.engine()
    try:
        findings = check_server(
            engine, warehouse.describe(), DEFAULT_SCHEMAS, plain_by_design=plain_by_design_tables()
        )
    finally:
        engine.dispose()
        if started_here:
            embedded.stop_if_unused()
    for finding in findings:
        print(finding)
    problems = [f for f in findings if f.level == "problem"]
    print(f"{len(problems)} problem(s)" if problems else "ready for loads")
    return 1 if problems else 0


BIGQUERY_READERS = (
    "error: analyst-role creates a PostgreSQL role, and TAXI_WAREHOUSE_URL names BigQuery, "
    "where readers get IAM roles instead: roles/bigquery.dataViewer on the datasets "
    "warehouse and analytics (the view analytics.trips reads the warehouse tables with the "
    "reader's own access) and roles/bigquery.jobUser on the project to run queries "
    "(docs/deployment.md, 'BigQuery: set-up and credentials')"
)


@_one_line_errors
def _analyst_role(args: argparse.Namespace) -> int:
    from taxi_assets.pg.roles import READ_SCHEMAS, grant_read_only
    from taxi_assets.resources.postgres import PostgresResource

    if _names_bigquery():
        print(BIGQUERY_READERS, file=sys.stderr)
        return 2
    from taxi_assets.pg.ddl import ident

    password = os.environ.get("TAXI_ANALYST_PASSWORD")
    created = grant_read_only(PostgresResource().engine(), args.role, password)
    print(f"role {args.role} may read schemas {', '.join(READ_SCHEMAS)}")
    if not password and created:
        print(
            f"role {args.role} cannot log in (TAXI_ANALYST_PASSWORD is not set): grant it to "
            f"users (GRANT {ident(args.role)} TO alice), or run again with "
            "TAXI_ANALYST_PASSWORD set to make it a login role"
        )
    elif not password:
        print(f"role {args.role} existed: its login and password are as they were")
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


@_one_line_errors
def _warehouse_migrate(args: argparse.Namespace) -> int:
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
    schemas = tuple(args.schemas or DEFAULT_SCHEMAS)
    warehouse = PostgresResource()
    engine = warehouse.engine()
    with engine.connect() as connection:
        found = tables_to_convert(connection, schemas, column, keep_plain=plain_by_design_tables())
        if not found:
            print(f"nothing to convert: no plain table with {column} in {', '.join(schemas)}")
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


def add_commands(groups: argparse._SubParsersAction) -> None:
    from taxi_assets.pg.embedded import DEFAULT_EMBEDDED_DIR

    warehouse = groups.add_parser("warehouse", help="the PostgreSQL warehouse")
    commands = warehouse.add_subparsers(dest="command", required=True)
    for name, handler, text in (
        ("start", _warehouse_start, "start (or find) the embedded server"),
        ("stop", _warehouse_stop, "stop the embedded server"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("data_dir", nargs="?", default=DEFAULT_EMBEDDED_DIR, type=_folder)
        command.set_defaults(func=handler)
        if name == "stop":
            command.add_argument(
                "--force",
                action="store_true",
                help="stop it even while a run or command that connected to it still runs",
            )
    check = commands.add_parser(
        "check",
        help="whether the warehouse is ready for loads: writable, privileges, limits (reads only)",
    )
    check.set_defaults(func=_warehouse_check)
    role = commands.add_parser(
        "analyst-role",
        help="create or update a read-only role (a login role with TAXI_ANALYST_PASSWORD set, else a group role)",
    )
    role.add_argument("role", type=_role_name)
    role.set_defaults(func=_analyst_role)
    migrate = commands.add_parser(
        "migrate",
        help="convert month tables of an earlier version into partitioned ones (resumable)",
    )
    migrate.add_argument(
        "--schema", dest="schemas", action="append", help="default: warehouse and analytics"
    )
    migrate.add_argument(
        "--max-months",
        type=positive_int,
        help="stop after this many months (run again to go on)",
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
