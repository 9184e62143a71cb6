"""``lake check [URL]``: the lake's bucket (``gs://``, ``s3://``), container (``az://``)
or local folder is reachable and writable with the configured credentials."""

from __future__ import annotations

import argparse
import sys


def _lake_check(args: argparse.Namespace) -> int:
    from taxi_assets.storage.check import check
    from taxi_assets.storage.errors import LakeConfigurationError

    try:
        print(check(args.url))
    except LakeConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:
    lake = groups.add_parser("lake", help="the data lake")
    lake_commands = lake.add_subparsers(dest="command", required=True)
    check = lake_commands.add_parser(
        "check", help="the lake's folder, bucket or container is reachable and writable"
    )
    check.add_argument(
        "url", nargs="?", default=None, help="default: $TAXI_LAKE_URL, else ./data/lake"
    )
    check.set_defaults(func=_lake_check)
