"""``raw list SERVICE [MONTH]``, ``raw pin SERVICE MONTH REVISION``, ``raw unpin SERVICE
MONTH``: the stored revisions of raw files, and pins."""

from __future__ import annotations

import argparse
import sys


def _raw_revisions(args: argparse.Namespace) -> int:
    from taxi_assets import raw_commands
    from taxi_assets.bounded_lock import LockWaitTimeout
    from taxi_assets.cli.lake_errors import explained, usable_lake_root
    from taxi_assets.storage.errors import LakeConfigurationError
    from taxi_assets.storage.revision_manifest import ManifestError
    from taxi_assets.storage.revisions import RevisionError

    try:
        root = usable_lake_root(args.lake)
        if args.command == "list":
            lines = explained(
                root, lambda: raw_commands.list_revisions(root, args.service, args.month)
            )
        elif args.command == "pin":
            lines = explained(
                root, lambda: raw_commands.pin(root, args.service, args.month, args.revision)
            )
        else:
            lines = explained(root, lambda: raw_commands.unpin(root, args.service, args.month))
    # LockWaitTimeout: another process held the month's folder past the bound (it is named).
    except (
        RevisionError,
        ManifestError,
        ValueError,
        LockWaitTimeout,
        LakeConfigurationError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def add_commands(groups: argparse._SubParsersAction) -> None:
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
        command.add_argument(
            "--lake", default=None, help="default: $TAXI_LAKE_URL, else ./data/lake"
        )
        command.set_defaults(func=_raw_revisions)
