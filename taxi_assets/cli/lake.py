"""``lake check [URL]``: the lake's bucket (``gs://``, ``s3://``), container (``az://``)
or local folder is reachable and writable with the configured credentials.

``lake sweep [URL] [--dry-run]``: remove what killed runs left behind (hidden staging
files, download folders) untouched for 3 hours, in a local lake and the temporary folder.
"""

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


def _lake_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from taxi_assets.storage.leftovers import STALE_AFTER_SECONDS, sweep
    from taxi_assets.storage.roots import is_local, lake_root

    root = lake_root(args.url)
    # An object store holds no staging objects (an upload becomes one object, or none):
    # its writes stage in the temporary folder, which is swept either way.
    roots = [Path(root.path)] if is_local(root) else []
    swept = sweep(roots, dry_run=args.dry_run, log=print)
    where = " and ".join([*(str(r) for r in roots), "the temporary folder"])
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(swept.paths)} leftover(s) of killed runs, {swept.bytes / 1e6:,.1f} MB, "
        f"in {where} (untouched for {STALE_AFTER_SECONDS // 3600} h or more)"
    )
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
    sweep = lake_commands.add_parser(
        "sweep",
        help="remove the staging files and download folders of killed runs, untouched for 3 h",
    )
    sweep.add_argument(
        "url", nargs="?", default=None, help="default: $TAXI_LAKE_URL, else ./data/lake"
    )
    sweep.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    sweep.set_defaults(func=_lake_sweep)
