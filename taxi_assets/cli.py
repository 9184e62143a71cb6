"""The project's command line: ``python -m taxi_assets.cli GROUP COMMAND ...``.

- ``warehouse start|stop [DATA_DIR]``: the embedded PostgreSQL server (``make stop``).
- ``warehouse analyst-role ROLE``: a read-only role on the warehouse (password from
  ``TAXI_ANALYST_PASSWORD``).
- ``lake check [gs://BUCKET/PREFIX]``: the lake bucket is reachable and writable.

Each command imports only what it needs: none loads the Dagster definitions.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


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


def _lake_check(args: argparse.Namespace) -> int:
    from taxi_assets.storage.check import check
    from taxi_assets.storage.gcs import GcsConfigurationError

    try:
        print(check(args.url))
    except GcsConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from taxi_assets.pg.embedded import DEFAULT_EMBEDDED_DIR

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

    lake = groups.add_parser("lake", help="the data lake")
    lake_commands = lake.add_subparsers(dest="command", required=True)
    check = lake_commands.add_parser("check", help="the bucket is reachable and writable")
    check.add_argument("url", nargs="?", default=None, help="default: $TAXI_LAKE_URL")
    check.set_defaults(func=_lake_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
