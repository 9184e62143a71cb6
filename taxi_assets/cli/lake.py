"""``lake check [URL]``: the lake's bucket (``gs://``, ``s3://``), container (``az://``)
or local folder is reachable and writable with the configured credentials.

``lake sweep [URL] [--dry-run]``: remove what killed runs left behind, untouched for 3
hours: hidden staging files and download folders, in a local lake and the temporary
folder; in an object store's bucket under the lake's prefix, S3 multipart uploads and
Azure blobs of uncommitted blocks; ``lake check`` probes, anywhere. Exits 1 when the
bucket cannot be listed or a leftover could not be removed.
"""

from __future__ import annotations

import argparse
import sys

from taxi_assets.storage.errors import LakeConfigurationError


def _lake_check(args: argparse.Namespace) -> int:
    from taxi_assets.storage.check import check

    try:
        print(check(args.url))
    except LakeConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _lake_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from taxi_assets.cli.lake_errors import usable_lake_root
    from taxi_assets.storage.check import explain
    from taxi_assets.storage.leftovers import STALE_AFTER_SECONDS, sweep, sweep_bucket
    from taxi_assets.storage.roots import is_local
    from taxi_assets.storage.stores import store_for
    from taxi_assets.storage.urls import bucket_of

    try:
        # A URL that is neither a folder nor an object store: refused, as `lake check` does
        # (it swept the temporary folder only, and said nothing of the URL).
        root = usable_lake_root(args.url)
    except LakeConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    store = None if is_local(root) else store_for(root.protocol)
    # Object-store writes stage in the temporary folder, swept either way.
    roots = [Path(root.path)] if is_local(root) else []
    swept = sweep(roots, dry_run=args.dry_run, log=print)
    if store is not None:
        try:
            swept = swept.add(sweep_bucket(root, store, dry_run=args.dry_run, log=print))
        except LakeConfigurationError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except Exception as error:
            explained = explain(store, error, bucket_of(root.path))
            if explained is None:
                raise
            print(
                f"error: cannot list what killed runs left in {root}: {explained}", file=sys.stderr
            )
            return 1
    places = [str(r) for r in roots] or ([str(root)] if store is not None else [])
    where = " and ".join([*places, "the temporary folder"])
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(swept.removed)} leftover(s) of killed runs, {swept.bytes / 1e6:,.1f} MB, "
        f"in {where} (untouched for {STALE_AFTER_SECONDS // 3600} h or more)"
    )
    if swept.kept:
        print(
            f"kept {swept.kept} more in {where}, touched within {STALE_AFTER_SECONDS // 3600} "
            "h: writes that may still be in progress"
        )
    if store is not None and store.unsweepable:
        print(f"not swept ({store.label}): {store.unsweepable}")
    if swept.failed:
        print(
            f"error: {swept.failed} leftover(s) could not be removed (see above)", file=sys.stderr
        )
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
    sweep = lake_commands.add_parser(
        "sweep",
        help="remove what killed runs left (staging files, download folders, S3 multipart "
        "uploads, Azure uncommitted blobs), untouched for 3 h",
    )
    sweep.add_argument(
        "url", nargs="?", default=None, help="default: $TAXI_LAKE_URL, else ./data/lake"
    )
    sweep.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    sweep.set_defaults(func=_lake_sweep)
