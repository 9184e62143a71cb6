"""The ingest core on months in TLC's own layout: Parquet, the whole month in ONE row group.

A reader's memory follows the row group unless it streams column chunks (see
``contracts/parquet_reader.py``), so these cases measure the lake + warehouse steps (the
``core`` case of ``benchmarks/cases.py``) on generated TLC-layout months:

- FHVHV, 25 columns (a 2025 month): a 1M-row month and a ~20M-row month (2026's size);
- yellow: a 1M-row month and a 7.8M-row month (2019's size), as TLC publishes it.

Reported: ``fhvhv_rows_per_s``, ``fhvhv_peak_rss_mb`` and ``tlc_parquet_peak_rss_mb`` (the
yellow 7.8M-row month), judged against the 1M-row months of the same layout (peak within
10%), yellow's measured peak on the course's CSV months (+ 50 MB at most) and the 7.8M-row
yellow CSV month's throughput.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

FULL = {"fhvhv": (1_000_000, 20_000_000), "yellow": (1_000_000, 7_800_000)}
QUICK = {"fhvhv": (20_000, 200_000), "yellow": (20_000, 100_000)}
MONTHS = {"fhvhv": "2025-01", "yellow": "2019-03"}  # 2025: FHVHV's 25 columns
RSS_FLAT_SHARE = 0.10  # the big month's peak within 10% of the 1M-row month's
RSS_MARGIN_MB = 50.0  # and at most yellow's measured peak + 50 MB


def ensure_tlc_month(data_dir: Path, service: str, rows: int) -> Path:
    """A generated month in TLC's Parquet layout, one row group (cached across runs)."""
    from benchmarks.runner import log
    from taxi_assets.devdata import relpath, write_month
    from taxi_assets.devdata.tlc_writer import TLC_LAYOUT_TAG

    month = MONTHS[service]
    root = data_dir / f"tlc-one-row-group-{TLC_LAYOUT_TAG}-{rows}"
    path = root / relpath("tlc", service, month)
    if not path.exists():
        log(f"generating {rows:,} {service} rows for {month} (TLC layout, one row group) ...")
        started = time.perf_counter()
        write_month(
            root, source="tlc", service=service, month=month, rows=rows, single_row_group=True
        )
        log(f"  done in {time.perf_counter() - started:.1f} s ({path.stat().st_size:,} bytes)")
    return path


def run_tlc_layout(
    data_dir: Path,
    server_url: str,
    scratch: Path,
    runs: int,
    quick: bool,
    paired_csv: tuple[Path, str, int],
) -> dict[str, Any]:
    """Every TLC-layout month through the core case, ``runs`` times each.

    ``paired_csv`` (the yellow CSV month FHVHV's rows/s is judged against: path, month,
    rows) is run again after each run of the big FHVHV month, so that the two rates come
    from the same minutes: this machine's speed drifts by 20-40% within an hour. So is the
    big yellow TLC-layout month: the issue's "the 7.8M-row yellow month" can also be read
    as that one, and both comparisons are reported.
    """
    import pyarrow.parquet as pq

    from benchmarks.runner import Measured, log, run_case

    months: list[dict[str, Any]] = []
    paired = Measured("core")
    paired_tlc = Measured("core")
    sizes_by_service = QUICK if quick else FULL
    yellow_rows = max(sizes_by_service["yellow"])
    yellow_tlc = ensure_tlc_month(data_dir, "yellow", yellow_rows)
    for service, sizes in sizes_by_service.items():
        for rows in sizes:
            raw = ensure_tlc_month(data_dir, service, rows)
            footer = pq.ParquetFile(raw).metadata
            measured = Measured("core")
            for index in range(runs):
                result = run_case(
                    "core", raw, MONTHS[service], rows, server_url, scratch, service=service
                )
                measured.runs.append(result)
                log(
                    f"{rows:>10,} {service} rows (TLC layout) core run {index + 1}/{runs}: "
                    f"wall {result['wall_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB"
                )
                if service == "fhvhv" and rows == max(sizes):
                    csv_path, csv_month, csv_rows = paired_csv
                    csv_run = run_case("core", csv_path, csv_month, csv_rows, server_url, scratch)
                    paired.runs.append(csv_run)
                    log(
                        f"{csv_rows:>10,} yellow CSV rows, paired run {index + 1}/{runs}: "
                        f"wall {csv_run['wall_s']:.2f} s"
                    )
                    tlc_run = run_case(
                        "core", yellow_tlc, MONTHS["yellow"], yellow_rows, server_url, scratch
                    )
                    paired_tlc.runs.append(tlc_run)
                    log(
                        f"{yellow_rows:>10,} yellow rows (TLC layout), paired run "
                        f"{index + 1}/{runs}: wall {tlc_run['wall_s']:.2f} s"
                    )
            wall = measured.median("wall_s")
            months.append(
                {
                    "service": service,
                    "rows": rows,
                    "month": MONTHS[service],
                    "raw_file": raw.name,
                    "raw_bytes": raw.stat().st_size,
                    "columns": footer.num_columns,
                    "row_groups": footer.num_row_groups,
                    "core": measured.summary(),
                    "rows_per_s": round(rows / wall) if wall else None,
                    "peak_rss_mb": measured.max("peak_rss_mb"),
                }
            )
    section: dict[str, Any] = {"months": months}
    for key, measured, (path, rows) in (
        ("paired_yellow_csv", paired, (paired_csv[0], paired_csv[2])),
        ("paired_yellow_tlc", paired_tlc, (yellow_tlc, yellow_rows)),
    ):
        if measured.runs:
            wall = measured.median("wall_s")
            section[key] = {
                "rows": rows,
                "raw_file": path.name,
                "core": measured.summary(),
                "rows_per_s": round(rows / wall) if wall else None,
            }
    section["per_column"] = per_column(section)
    return section


def per_column(section: dict[str, Any]) -> dict[str, Any] | None:
    """The big FHVHV month against the yellow TLC-layout month run alternately with it,
    per column of their files (rows/s x columns): information, not a target. The issue
    judges rows/s, and an FHVHV row has more columns to decode, send and store than a
    yellow one (docs/performance.md, "TLC's layout")."""
    fhvhv = _month(section, "fhvhv", big=True)
    yellow = _month(section, "yellow", big=True)
    paired = section.get("paired_yellow_tlc")
    if not fhvhv or not yellow or not paired or not fhvhv["rows_per_s"] or not paired["rows_per_s"]:
        return None
    fhvhv_rate = fhvhv["rows_per_s"] * fhvhv["columns"]
    yellow_rate = paired["rows_per_s"] * yellow["columns"]
    return {
        "fhvhv_columns": fhvhv["columns"],
        "yellow_columns": yellow["columns"],
        "fhvhv_values_per_s": fhvhv_rate,
        "yellow_tlc_values_per_s": yellow_rate,
        "ratio": round(fhvhv_rate / yellow_rate, 3),
    }


def render_per_column(section: dict[str, Any]) -> str | None:
    """One line comparing the two services per column (None when not measured)."""
    compared = section.get("per_column")
    if not compared:
        return None
    return (
        f"Per column (information, not a target): FHVHV {compared['fhvhv_values_per_s'] / 1e6:.1f}M "
        f"values/s ({compared['fhvhv_columns']} columns), the yellow TLC-layout month run "
        f"alternately with it {compared['yellow_tlc_values_per_s'] / 1e6:.1f}M values/s "
        f"({compared['yellow_columns']} columns): {compared['ratio']:.2f}"
    )


def _month(section: dict[str, Any], service: str, big: bool) -> dict[str, Any] | None:
    candidates = sorted(
        (m for m in section["months"] if m["service"] == service), key=lambda m: m["rows"]
    )
    if not candidates:
        return None
    return candidates[-1] if big else candidates[0]


def headline(section: dict[str, Any]) -> dict[str, Any]:
    """``fhvhv_rows_per_s``, ``fhvhv_peak_rss_mb``, ``tlc_parquet_peak_rss_mb``."""
    fhvhv = _month(section, "fhvhv", big=True)
    yellow = _month(section, "yellow", big=True)
    return {
        "fhvhv_rows": fhvhv["rows"] if fhvhv else None,
        "fhvhv_rows_per_s": fhvhv["rows_per_s"] if fhvhv else None,
        "fhvhv_peak_rss_mb": fhvhv["peak_rss_mb"] if fhvhv else None,
        "tlc_parquet_rows": yellow["rows"] if yellow else None,
        "tlc_parquet_peak_rss_mb": yellow["peak_rss_mb"] if yellow else None,
    }


def targets(section: dict[str, Any], yellow_csv_peak_mb: float | None) -> list[dict[str, Any]]:
    """The issue's targets for the TLC-layout months (None: not measured in this run)."""

    def check(name: str, value: float | None, limit: float | None, higher: bool) -> dict:
        met = None
        if value is not None and limit is not None:
            met = value >= limit if higher else value <= limit
        return {"target": name, "measured": value, "limit": limit, "met": met}

    result = []
    for service, label in (("fhvhv", "FHVHV"), ("yellow", "yellow TLC-layout")):
        small, big = _month(section, service, False), _month(section, service, True)
        if not small or not big or small is big:
            continue
        flat = round(small["peak_rss_mb"] * (1 + RSS_FLAT_SHARE), 1)
        result.append(
            check(
                f"{label} {big['rows']:,}-row month in one row group: peak RSS within 10% "
                f"of the {small['rows']:,}-row month's",
                big["peak_rss_mb"],
                flat,
                False,
            )
        )
        result.append(
            check(
                f"{label} {big['rows']:,}-row month: peak RSS <= yellow's measured peak + 50 MB",
                big["peak_rss_mb"],
                None
                if yellow_csv_peak_mb is None
                else round(yellow_csv_peak_mb + RSS_MARGIN_MB, 1),
                False,
            )
        )
    fhvhv = _month(section, "fhvhv", True)
    if fhvhv:
        # Judged against the yellow months' runs made alternately with FHVHV's own: the CSV
        # month (the reading the README judges by) and the TLC-layout month (the other one).
        for key, label in (
            ("paired_yellow_csv", "yellow CSV month's"),
            ("paired_yellow_tlc", "yellow TLC-layout month's (the issue's other reading)"),
        ):
            paired = section.get(key)
            if paired is None:
                continue
            result.append(
                check(
                    f"FHVHV {fhvhv['rows']:,}-row month: rows/s >= the {paired['rows']:,}-row "
                    f"{label}, run alternately with it",
                    fhvhv["rows_per_s"],
                    paired["rows_per_s"],
                    True,
                )
            )
    return result


def render_table(section: dict[str, Any]) -> str:
    from tabulate import tabulate

    rows = []
    listed = list(section["months"])
    # The yellow months run alternately with the big FHVHV month (see run_tlc_layout).
    for key, columns, groups in (
        ("paired_yellow_csv", "course CSV", "-"),
        ("paired_yellow_tlc", "TLC layout", 1),
    ):
        paired = section.get(key)
        if paired:
            listed.append(
                {**paired, "service": "yellow, paired", "columns": columns, "row_groups": groups,
                 "peak_rss_mb": paired["core"]["max"].get("peak_rss_mb", 0)}
            )  # fmt: skip
    for month in listed:
        median, low, high = (month["core"][k] for k in ("median", "min", "max"))
        rows.append(
            [
                month["service"],
                f"{month['rows']:,}",
                f"{month['columns']} / {month['row_groups']}",
                f"{median.get('wall_s', 0):.2f}",
                f"{low.get('wall_s', 0):.2f}-{high.get('wall_s', 0):.2f}",
                f"lake {median.get('lake_s', 0):.2f} + warehouse {median.get('warehouse_s', 0):.2f}",
                f"{month['peak_rss_mb']:.0f}",
                f"{month['rows_per_s']:,}" if month["rows_per_s"] else "-",
                f"{median.get('load_average_before', 0):.1f}",
            ]
        )
    headers = [
        "service",
        "rows",
        "columns / row groups",
        "wall s (median)",
        "min-max",
        "in-process phases, s",
        "peak RSS MB (max)",
        "rows/s",
        "load avg",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
