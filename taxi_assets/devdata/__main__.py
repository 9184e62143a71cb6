"""CLI: ``python -m taxi_assets.devdata generate|serve ...``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from taxi_assets.devdata.generate import (
    SERVICES,
    SOURCES,
    generate_mirror,
    month_range,
    parse_month,
)
from taxi_assets.devdata.mirror import MirrorServer


def parse_months(spec: str) -> list[str]:
    """'2021-01,2021-03' and '2021-01..2021-03' (and mixes of both)."""
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


def _cmd_generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    paths = generate_mirror(
        Path(args.out), months=args.months, services=args.services,
        sources=args.sources, rows=args.rows, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {len(paths)} files under {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    # SIGTERM/SIGINT just set an event; the main thread then shuts down cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url_file = Path(args.url_file) if args.url_file else None
    with MirrorServer(Path(args.root), host=args.host, port=args.port) as server:
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
    parser = argparse.ArgumentParser(prog="python -m taxi_assets.devdata", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic upstream mirror folder")
    gen.add_argument("--out", required=True)
    gen.add_argument(
        "--months", required=True, type=parse_months, help="2021-01,2021-02 or 2021-01..2021-03"
    )
    gen.add_argument(
        "--services", default=",".join(SERVICES), type=lambda s: _csv_list(s, SERVICES)
    )
    gen.add_argument("--sources", default=",".join(SOURCES), type=lambda s: _csv_list(s, SOURCES))
    gen.add_argument("--rows", type=int, default=5000, help="rows per month file")
    gen.add_argument("--seed", type=int, default=42)
    gen.set_defaults(func=_cmd_generate)

    serve = sub.add_parser("serve", help="serve a folder over HTTP until SIGTERM/SIGINT")
    serve.add_argument("--root", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--url-file", help="also write the URL to this file (removed on exit)")
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
