"""Before/after: the ingest core of two source trees, run alternately on the same months.

``python -m benchmarks.compare --before /tmp/old-tree [--after .] [--rows 1370000] [--runs 3]``

A tree is a folder holding ``taxi_assets`` and ``benchmarks`` (e.g. ``git archive`` of an
older commit); each case process runs with that folder first on its path. Alternating
the trees run by run spreads the machine's noise over both. Writes a JSON report.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=runner.ROOT)
    parser.add_argument(
        "--rows", type=lambda text: [int(part) for part in text.split(",")], default=[1_370_000]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=runner.DEFAULT_DATA_DIR)
    parser.add_argument(
        "--out",
        type=Path,
        default=runner.ROOT / "benchmarks" / "results" / "core_before_after.json",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    months = dict(runner.FULL_MONTHS)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="taxi-bench-compare-"))
    scratch.chmod(0o755)
    results: dict[str, dict[int, runner.Measured]] = {name: {} for name in trees}
    try:
        with runner.database_server(None, scratch) as url:
            machine = runner.machine(url)
            for rows in args.rows:
                month = months.get(rows, "2021-01")
                raw = runner.ensure_month(args.data_dir, rows, month)
                for index in range(args.runs):
                    for name, tree in trees.items():
                        runner.ROOT = tree
                        result = runner.run_case("core", raw, month, rows, url, scratch)
                        results[name].setdefault(rows, runner.Measured("core")).runs.append(result)
                        runner.log(
                            f"{rows:>10,} rows  {name:<6} run {index + 1}/{args.runs}: "
                            f"wall {result['wall_s']:.2f} s, work {result['work_s']:.2f} s, "
                            f"peak RSS {result['peak_rss_mb']:.0f} MB"
                        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report: dict[str, Any] = {
        "trees": {name: str(tree) for name, tree in trees.items()},
        "machine": machine,
        "results": {
            name: {str(rows): measured.summary() for rows, measured in by_rows.items()}
            for name, by_rows in results.items()
        },
    }
    lines = [
        "| rows | tree | wall s | lake s | warehouse s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for rows in args.rows:
        for name in trees:
            measured = results[name][rows]
            lines.append(
                f"| {rows:,} | {name} | {measured.median('wall_s'):.2f} | "
                f"{measured.median('lake_s'):.2f} | {measured.median('warehouse_s'):.2f} | "
                f"{measured.max('peak_rss_mb'):.0f} |"
            )
    print("\n".join(lines))
    runner.write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
