"""``devdata generate|serve ...``: synthetic TLC months in each upstream's layout, and a
local HTTP mirror serving them (also ``python -m taxi_assets.devdata ...``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from taxi_assets.cli.arguments import csv_list, month_list, positive_int
from taxi_assets.devdata.mirror import AS_EACH_HOST


def _devdata_generate(args: argparse.Namespace) -> int:
    from taxi_assets.devdata.generate import generate_mirror

    started = time.perf_counter()
    paths = generate_mirror(
        Path(args.out), months=args.months, services=args.services,
        sources=args.sources, rows=args.rows, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {len(paths)} files under {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def _missing_status(text: str) -> int:
    """'each' (as each file's host answers), 404 or 403."""
    choices = {"each": AS_EACH_HOST, "404": 404, "403": 403}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
    return choices[text]


def _devdata_serve(args: argparse.Namespace) -> int:
    from taxi_assets.devdata.mirror import MirrorServer

    # SIGTERM/SIGINT only set a flag; the main thread then shuts down cleanly. Not a
    # threading.Event: its set() takes a lock that the main thread's own wait() may hold at
    # that instant, and a handler runs on the main thread, so it would wait forever (seen:
    # `make demo-serve` ignoring SIGTERM now and then).
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: signalled.append(number))
    if not Path(args.root).is_dir():
        print(
            f"error: {args.root} is not a folder: generate one first (make demo writes "
            "data/mirror; or devdata generate --out FOLDER ...)",
            file=sys.stderr,
        )
        return 1
    url_file = Path(args.url_file) if args.url_file else None
    server = MirrorServer(
        Path(args.root), host=args.host, port=args.port, missing_status=args.missing_status
    )
    try:
        server.start()
    except (OSError, OverflowError) as error:  # the port is taken, or is no port
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:  # started above, where a port that cannot be had is one line
        print(server.url, flush=True)
        # stderr: the first stdout line stays the URL alone, for scripts that read it.
        print(
            "point the runs at it (then make dev, or dagster/dg commands, in that shell):\n"
            f"  export TAXI_DTC_URL={server.url} TAXI_TLC_URL={server.url} "
            f"TAXI_ZONES_URL={server.url}/misc/taxi_zone_lookup.csv",
            file=sys.stderr,
            flush=True,
        )
        month = month_every_service_has(Path(args.root))
        if month is not None:
            # `source check` alone asks for each service's first month, not served here.
            print(
                f"  check it: python -m taxi_assets.cli source check --month {month}",
                file=sys.stderr,
                flush=True,
            )
        if url_file is not None:
            # Write-then-rename so a poller never reads a half-written URL.
            tmp = url_file.with_name(url_file.name + ".tmp")
            tmp.write_text(server.url + "\n")
            os.replace(tmp, url_file)
        try:
            while not signalled:
                time.sleep(0.5)  # the flag is seen within half a second of the signal
        finally:
            if url_file is not None:
                url_file.unlink(missing_ok=True)  # a stale URL would mislead pollers
    finally:
        server.stop()
    return 0


def month_every_service_has(root: Path) -> str | None:
    """The earliest month of trip files under ``root`` that every service found there has
    (else the earliest month found); None without trip files."""
    import re

    found = re.compile(r"^(?P<dataset>\w+_tripdata)_(?P<month>\d{4}-\d{2})\.")
    months: dict[str, set[str]] = {}
    for path in root.rglob("*_tripdata_*"):
        match = found.match(path.name)
        if match is not None:
            months.setdefault(match["dataset"], set()).add(match["month"])
    if not months:
        return None
    common = set.intersection(*months.values())
    return min(common or set.union(*months.values()))


def add_commands(groups: argparse._SubParsersAction) -> None:
    from taxi_assets.devdata.layouts import SERVICES as DEVDATA_SERVICES
    from taxi_assets.devdata.layouts import SOURCES as DEVDATA_SOURCES

    devdata = groups.add_parser("devdata", help="generated TLC files and a local mirror")
    devdata_commands = devdata.add_subparsers(dest="command", required=True)
    gen = devdata_commands.add_parser("generate", help="write a synthetic upstream mirror folder")
    gen.add_argument("--out", required=True, help="folder to write the mirror into")
    gen.add_argument(
        "--months", required=True, type=month_list, help="2021-01,2021-02 or 2021-01..2021-03"
    )
    gen.add_argument(
        "--services",
        default=",".join(DEVDATA_SERVICES),
        type=lambda s: csv_list(s, DEVDATA_SERVICES),
        help=f"comma-separated, of {', '.join(DEVDATA_SERVICES)} (default: all)",
    )
    gen.add_argument(
        "--sources",
        default=",".join(DEVDATA_SOURCES),
        type=lambda s: csv_list(s, DEVDATA_SOURCES),
        help="comma-separated: dtc writes the course's CSV.gz layout, tlc TLC's Parquet "
        "(default: both)",
    )
    gen.add_argument(
        "--rows", type=positive_int, default=5000, help="rows per month file (default 5000)"
    )
    gen.add_argument(
        "--seed", type=int, default=42, help="the same seed writes the same bytes (default 42)"
    )
    gen.set_defaults(func=_devdata_generate)

    serve = devdata_commands.add_parser(
        "serve", help="serve a folder over HTTP until SIGTERM/SIGINT"
    )
    serve.add_argument(
        "--root", required=True, help="the folder to serve (make demo's: data/mirror)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port; 0 (default) picks a free one")
    serve.add_argument("--url-file", help="also write the URL to this file (removed on exit)")
    serve.add_argument(
        "--missing-status",
        type=_missing_status,
        default=AS_EACH_HOST,
        help="the answer for a missing file: 'each' (default) as its host would, 404 for the "
        "course's (yellow/, green/, fhv/, fhvhv/) like GitHub and 403 for TLC's like its S3; "
        "or 404 or 403 for every file",
    )
    serve.set_defaults(func=_devdata_serve)
