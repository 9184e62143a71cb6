"""Is a month's replace independent of the table's size? ``python -m benchmarks.month_replace``.

One generated yellow month (``--rows``, default 500,000; the course's CSV.gz layout, read
through the yellow contract) is loaded with the project's own routine
(:func:`taxi_assets.pg.month_swap.replace_months`) into two tables of the warehouse's
layout (one child per month, BRIN on the pickup time): as the
only month of one, and as each of ``--months`` (default 36) months of the other. Then the
same month is replaced three times in each table, alternately (so the machine's load
drifts over both alike), each time after a CHECKPOINT. For each replace: the swap
transaction's duration (its locks are held that long), the whole replace's time and its
parts; after them, each table's size and the dead tuples of its other months
(``pg_stat_user_tables``). A throwaway embedded PostgreSQL unless ``--database-url``.

Writes ``benchmarks/results/month_replace.json`` with ``month_replace_ratio_36_vs_1``,
``swap_lock_ms_1`` and ``swap_lock_ms_36`` (medians); the target (within 1.2x, no dead
tuples) is judged there, never in a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchmarks.runner import (
    DEFAULT_DATA_DIR,
    ROOT,
    _round,
    database_server,
    ensure_month,
    fresh_database,
    log,
    machine,
    write_json,
)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "month_replace.json"
QUICK_OUT = ROOT / "data" / "bench" / "month_replace-quick.json"
DEFAULT_ROWS, DEFAULT_MONTHS = 500_000, 36
QUICK_ROWS, QUICK_MONTHS = 5_000, 4
RELOADS = 3
FIRST_MONTH = "2019-01"
TARGET_RATIO = 1.2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.month_replace",
        description="Time a month's replace with 1 and with N months loaded; write JSON.",
    )
    parser.add_argument("--quick", action="store_true", help="4 months x 5,000 rows, no target")
    parser.add_argument("--rows", type=int, help=f"rows per month (default {DEFAULT_ROWS:,})")
    parser.add_argument("--months", type=int, help=f"months loaded (default {DEFAULT_MONTHS})")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--database-url", help="an existing server (default: embedded)")
    args = parser.parse_args(argv)
    args.rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    args.months = args.months or (QUICK_MONTHS if args.quick else DEFAULT_MONTHS)
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="taxi-bench-replace-"))
    scratch.chmod(0o755)
    try:
        with database_server(args.database_url, scratch) as server_url:
            with fresh_database(server_url, prefix="bench", checkpoint=True) as url:
                report = measure(url, args)
            report["machine"] = machine(server_url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["command"] = "python -m benchmarks.month_replace " + " ".join(argv)
    print(render(report))
    write_json(report, args.out)
    print(f"\nwrote {args.out}")
    return 0


def month_table(data_dir: Path, rows: int) -> Any:
    """The generated month through the yellow contract, with the warehouse's columns."""
    import pyarrow as pa

    from taxi_assets.assets.contract_stream import warehouse_schema
    from taxi_assets.contracts import CONTRACTS, open_contract_reader

    raw = ensure_month(data_dir, rows, "2021-01")
    contract = CONTRACTS["yellow"]
    with open(raw, "rb") as handle:
        table = pa.Table.from_batches(
            open_contract_reader(handle, file_name=raw.name, contract=contract)
        )
    schema = warehouse_schema(contract)
    return table.append_column(
        schema.field("partition_month"), pa.nulls(table.num_rows, pa.date32())
    ).append_column(schema.field("source_file"), pa.array([raw.name] * table.num_rows))


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa
    import sqlalchemy as sa

    from taxi_assets.assets.trips import warehouse_metadata
    from taxi_assets.io_managers.postgres import table_layout
    from taxi_assets.partitions import add_months
    from taxi_assets.pg.copy_in import copy_arrow, without_constant_columns
    from taxi_assets.pg.ddl import driver_cursor, ensure_table
    from taxi_assets.pg.month_swap import MonthBounds, Staging, replace_months
    from taxi_assets.pg.partitions import tree_bytes
    from taxi_assets.resources.postgres import PostgresResource
    from taxi_assets.services import SERVICES

    started = time.perf_counter()
    data = month_table(args.data_dir, args.rows)
    generation_s = time.perf_counter() - started
    rows = data.num_rows
    engine = PostgresResource(url=url).engine()
    # Two tables of the warehouse's layout: one holds 1 month, the other all of them. Their
    # reloads alternate, so that the machine's load drifts over both alike.
    tables = {1: "yellow_1_month", args.months: f"yellow_{args.months}_months"}
    for table in tables.values():
        ensure_table(
            engine,
            "warehouse",
            table,
            data.schema,
            table_layout(warehouse_metadata(SERVICES["yellow"])),
        )
    keys = [add_months(FIRST_MONTH, i) for i in range(args.months)]

    def replace(table: str, key: str) -> dict[str, Any]:
        first = date.fromisoformat(f"{key}-01")
        end = date.fromisoformat(f"{add_months(key, 1)}-01")
        month_data = data.set_column(
            data.schema.get_field_index("partition_month"),
            data.schema.field("partition_month"),
            pa.repeat(pa.scalar(first, pa.date32()), rows),
        )

        # As the warehouse asset loads a month from one file: the lineage and the columns
        # null in every row are constants, not sent and not stored in each row.
        constants: dict[str, Any] = {
            name: None for name in month_data.column_names if month_data[name].null_count == rows
        }
        constants.update(partition_month=first, source_file=month_data["source_file"][0].as_py())

        def fill(connection: sa.Connection, staging: Staging) -> int:
            reader = month_data.to_reader(max_chunksize=64 * 1024)
            return copy_arrow(
                driver_cursor(connection),
                staging.target,
                without_constant_columns(reader, constants, staging.target),
                freeze=staging.freeze,
            )

        done = replace_months(
            engine, "warehouse", table, "partition_month",
            [MonthBounds(key, first, end)], fill, expected_rows=rows, constants=constants,
        )  # fmt: skip
        return {
            "month": key,
            "total_s": done.total_s,
            "copy_s": done.fill_s,
            "index_s": done.index_s,
            "analyze_s": done.analyze_s,
            "swap_lock_ms": done.swap_lock_ms,
            "swap_attempts": done.swap_attempts,
            "rows_replaced": done.rows_replaced,
        }

    def summary(loaded: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
        table = tables[loaded]
        with engine.connect() as connection:
            size = tree_bytes(connection, "warehouse", table)
        return {
            "months_loaded": loaded,
            "table": f"warehouse.{table}",
            "replaced_month": keys[0],
            "reloads": runs,
            "total_s_median": _round(statistics.median(r["total_s"] for r in runs)),
            "swap_lock_ms_median": _round(statistics.median(r["swap_lock_ms"] for r in runs), 2),
            "swap_lock_ms_max": _round(max(r["swap_lock_ms"] for r in runs), 2),
            "table_bytes_after_reloads": size,
            "table_bytes_per_month": int(size / loaded),
            "dead_tuples_other_months": dead_tuples(engine, table, exclude=keys[0]),
        }

    load_started = time.perf_counter()
    log(f"loading 1 + {args.months} months of {rows:,} rows ...")
    replace(tables[1], keys[0])
    for key in keys:
        replace(tables[args.months], key)
    runs: dict[int, list[dict[str, Any]]] = {loaded: [] for loaded in tables}
    for _ in range(RELOADS):
        for loaded, table in tables.items():
            with engine.connect() as connection:
                connection.exec_driver_sql("CHECKPOINT")
                connection.commit()
            result = replace(table, keys[0])
            result["load_average_before"] = _load()
            runs[loaded].append(result)
            log(
                f"{loaded} months loaded: replace of {keys[0]} {result['total_s']:.2f} s, "
                f"swap {result['swap_lock_ms']:.1f} ms"
            )
    one, many = summary(1, runs[1]), summary(args.months, runs[args.months])
    sizes_one = one["table_bytes_after_reloads"]
    load_s = time.perf_counter() - load_started
    engine.dispose()
    ratio = many["total_s_median"] / one["total_s_median"]
    lock_ratio = many["swap_lock_ms_median"] / one["swap_lock_ms_median"]
    judged = not args.quick
    return {
        "schema_version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "month_rows": rows,
        "months": args.months,
        "month_source": f"one generated yellow month of {rows:,} rows (course CSV.gz layout), "
        "loaded as every month",
        "layout": "warehouse.yellow_tripdata's, as the warehouse asset creates it: partitioned "
        "by partition_month, BRIN on pickup_datetime",
        "method": f"two such tables, one holding 1 month and one {args.months}; the same month "
        f"replaced {RELOADS} times in each, alternately, each after a CHECKPOINT",
        "generation_s": _round(generation_s),
        "benchmark_s": _round(load_s),
        "at_1": one,
        f"at_{args.months}": many,
        f"month_replace_ratio_{args.months}_vs_1": _round(ratio, 3),
        "month_replace_ratio_36_vs_1": _round(ratio, 3) if args.months == 36 else None,
        "swap_lock_ms_1": one["swap_lock_ms_median"],
        f"swap_lock_ms_{args.months}": many["swap_lock_ms_median"],
        "swap_lock_ms_36": many["swap_lock_ms_median"] if args.months == 36 else None,
        "swap_lock_ratio": _round(lock_ratio, 3),
        "table_bytes_per_month_1": int(sizes_one),
        f"table_bytes_per_month_{args.months}": many["table_bytes_per_month"],
        "targets": [
            _target(f"replace at {args.months} months / at 1 (<= {TARGET_RATIO}x)", ratio, judged),
            _target(
                f"swap lock at {args.months} months / at 1 (<= {TARGET_RATIO}x)", lock_ratio, judged
            ),
            {
                "target": "dead tuples in the other months after 3 reloads (= 0)",
                "measured": many["dead_tuples_other_months"],
                "met": many["dead_tuples_other_months"] == 0 if judged else None,
            },
        ],
    }


def _target(name: str, value: float, judged: bool) -> dict[str, Any]:
    return {
        "target": name,
        "measured": _round(value, 3),
        "met": value <= TARGET_RATIO if judged else None,
    }


def dead_tuples(engine: Any, table: str, exclude: str) -> int:
    """Dead tuples of every month of ``table`` but ``exclude``, once the statistics
    collector has them (a backend reports its counts within about a second of going idle)."""
    import sqlalchemy as sa

    from taxi_assets.pg.partitions import child_name, partitions

    skip = child_name(table, exclude)
    query = sa.text(
        "SELECT relname, n_tup_ins, n_dead_tup FROM pg_stat_user_tables "
        "WHERE schemaname = 'warehouse' AND relname = ANY(:children)"
    )
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as connection:
            children = partitions(connection, "warehouse", table)
            rows = connection.execute(query, {"children": children}).all()
        if all(inserted > 0 for _, inserted, _ in rows) or time.monotonic() > deadline:
            return sum(int(dead) for name, _, dead in rows if name != skip)
        time.sleep(0.5)


def _load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def render(report: dict[str, Any]) -> str:
    months = report["months"]
    lines = [
        f"Month replace, {report['month_rows']:,}-row months ({report['layout']}):",
        "",
        "| months loaded | replace s (median of 3) | swap lock ms (median / max) | "
        "copy s | index s | analyze s | table MB per month | dead tuples, other months |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for state in (report["at_1"], report[f"at_{months}"]):
        runs = state["reloads"]
        lines.append(
            f"| {state['months_loaded']} | {state['total_s_median']:.2f} | "
            f"{state['swap_lock_ms_median']:.1f} / {state['swap_lock_ms_max']:.1f} | "
            f"{statistics.median(r['copy_s'] for r in runs):.2f} | "
            f"{statistics.median(r['index_s'] for r in runs):.2f} | "
            f"{statistics.median(r['analyze_s'] for r in runs):.2f} | "
            f"{state['table_bytes_per_month'] / 1e6:.1f} | {state['dead_tuples_other_months']} |"
        )
    lines.append("")
    for target in report["targets"]:
        state = {True: "met", False: "MISSED", None: "not judged (--quick)"}[target["met"]]
        lines.append(f"- {target['target']}: {target['measured']} -> {state}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
