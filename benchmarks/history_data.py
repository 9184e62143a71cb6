"""The months ``make bench-history`` loads, generated at their real sizes and cached.

The course's yellow 2019 files, month by month, at their published row counts; then
three more months: FHVHV-sized months in TLC's layout (``--fhvhv``, once the FHVHV
service exists), or until then three yellow stand-ins of 7,000,000 rows each.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.runner import log

# Rows of the course's yellow 2019 files (DataTalksClub mirror), month by month.
YELLOW_2019 = {
    "2019-01": 7_667_792,
    "2019-02": 7_019_375,
    "2019-03": 7_832_545,
    "2019-04": 7_433_139,
    "2019-05": 7_565_261,
    "2019-06": 6_941_024,
    "2019-07": 6_310_419,
    "2019-08": 6_073_357,
    "2019-09": 6_567_788,
    "2019-10": 7_213_891,
    "2019-11": 6_878_111,
    "2019-12": 6_896_317,
}
assert sum(YELLOW_2019.values()) == 84_399_019
# Three more months: FHVHV-sized ones in TLC's Parquet layout (TLC's FHVHV months hold
# about 12-24M trips; 20M stands for them; months after the course mirror's range, so
# TAXI_SOURCE=auto reads them from the TLC layout), or yellow stand-ins until the FHVHV
# service exists.
FHVHV_MONTHS = ("2022-01", "2022-02", "2022-03")
FHVHV_ROWS = 20_000_000
STAND_IN_MONTHS = ("2020-01", "2020-02", "2020-03")
STAND_IN_ROWS = 7_000_000
# --quick: the same months, a thousandth of the rows.
QUICK_DIVISOR = 1000
QUICK_MONTHS = 4


@dataclass(frozen=True)
class Month:
    service: str
    month: str
    rows: int
    source: str  # the upstream layout it is generated in: dtc (CSV.gz) or tlc (Parquet)

    @property
    def relpath(self) -> str:
        from taxi_assets.devdata import relpath

        return relpath(self.source, self.service, self.month)

    @property
    def single_row_group(self) -> bool:
        """TLC publishes a month as ONE row group (tlc_layout.py measures what that costs)."""
        return self.source == "tlc"

    @property
    def recipe(self) -> str:
        """What the cache manifest records: a month made another way is made again."""
        from taxi_assets.devdata.tlc_writer import TLC_LAYOUT_TAG

        layout = f"one row group, {TLC_LAYOUT_TAG}" if self.single_row_group else "course CSV.gz"
        return f"{self.rows} rows, {layout}"


def planned_months(*, quick: bool, fhvhv: bool) -> list[Month]:
    months = [Month("yellow", key, rows, "dtc") for key, rows in YELLOW_2019.items()]
    if fhvhv:
        months += [Month("fhvhv", key, FHVHV_ROWS, "tlc") for key in FHVHV_MONTHS]
    else:
        months += [Month("yellow", key, STAND_IN_ROWS, "dtc") for key in STAND_IN_MONTHS]
    if quick:
        chosen = months[: QUICK_MONTHS - 1] + months[-1:]
        months = [Month(m.service, m.month, m.rows // QUICK_DIVISOR, m.source) for m in chosen]
    return months


def require_service(service: str) -> None:
    from taxi_assets.services import SERVICES

    if service not in SERVICES:
        raise SystemExit(
            f"--fhvhv needs the {service} service (branch fhvhv); this tree has "
            f"{', '.join(SERVICES)}. Run without --fhvhv for three yellow stand-in months."
        )


def ensure_months(root: Path, months: list[Month], workers: int) -> dict[str, object]:
    """Generate the months ``root`` does not hold yet (in parallel processes), with the zone
    lookup; a manifest records each finished file's rows, so a partial file is redone."""
    from taxi_assets.devdata import write_zones

    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    missing = [
        m for m in months if manifest.get(m.relpath) != m.recipe or not (root / m.relpath).exists()
    ]
    started = time.perf_counter()
    if missing:
        log(
            f"generating {len(missing)} months ({sum(m.rows for m in missing):,} rows) in "
            f"{root} with {workers} processes ..."
        )
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_generate, root, m): m for m in missing}
            for future, month in futures.items():
                future.result()
                manifest[month.relpath] = month.recipe
                partial = manifest_path.with_name("manifest.json.tmp")
                partial.write_text(json.dumps(manifest, indent=1, sort_keys=True))
                os.replace(partial, manifest_path)
                log(f"  {month.relpath}: {month.rows:,} rows")
    write_zones(root)
    return {
        "generation_s": round(time.perf_counter() - started, 1),
        "generated_months": [m.relpath for m in missing],
        "cached_months": len(months) - len(missing),
    }


def _generate(root: Path, month: Month) -> str:
    from taxi_assets.devdata import write_month

    path = write_month(
        root, source=month.source, service=month.service, month=month.month, rows=month.rows,
        single_row_group=month.single_row_group,
    )  # fmt: skip
    return str(path)


def row_groups(path: Path) -> int | None:
    """Row groups of a Parquet source file (TLC writes one per month); None for CSV."""
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_row_groups
