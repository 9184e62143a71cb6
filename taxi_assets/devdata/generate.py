"""Deterministic synthetic NYC TLC trip months in each upstream's exact layout.

Rows are generated in fixed-size chunks, each from its own RNG stream keyed by
(seed, service, month, chunk index), so a 7.8M-row month never has to sit in
memory and the same (service, month, rows, seed) always yields the same rows.
Both sources ("dtc" CSV.gz and "tlc" Parquet) are written from the same rows,
so cross-source tests can compare values.

Everything is vectorised with numpy / pyarrow.compute; there is no per-row
Python code, which keeps a 1.37M-row month at a few seconds.
"""

from __future__ import annotations

import calendar
import filecmp
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taxi_assets.devdata import fhvhv
from taxi_assets.devdata.arrays import pick as _pick
from taxi_assets.devdata.arrays import timestamps as _timestamps
from taxi_assets.devdata.one_row_group import write_one_row_group
from taxi_assets.devdata.tlc_writer import TLC_PARQUET_WRITER_OPTIONS
from taxi_assets.devdata.zones import AIRPORT_IDS, N_ZONES, write_zones, zone_weights

SERVICES = ("yellow", "green", "fhv", "fhvhv")
SOURCES = ("dtc", "tlc")
DTC_FIRST_MONTH, DTC_LAST_MONTH = "2019-01", "2021-07"
DEFAULT_ROWS = 5000
CHUNK_ROWS = 500_000
# gzip's default (9) is ~8x slower than 5 for ~5% smaller files, and 6 is 2x slower
# for ~3%: 5 keeps a 1.37M-row month at a few seconds.
GZIP_LEVEL = 5
_SERVICE_CODE = {"yellow": 1, "green": 2, "fhv": 3, "fhvhv": 4}  # stable, unlike hash()
_PLAN_STREAM = 1_000_000  # RNG stream id for month-level parameters

DTC_HEADERS: dict[str, list[str]] = {
    "yellow": (
        "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,"
        "trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,"
        "payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,"
        "improvement_surcharge,total_amount,congestion_surcharge"
    ).split(","),
    "green": (
        "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,"
        "RatecodeID,PULocationID,DOLocationID,passenger_count,trip_distance,"
        "fare_amount,extra,mta_tax,tip_amount,tolls_amount,ehail_fee,"
        "improvement_surcharge,total_amount,payment_type,trip_type,"
        "congestion_surcharge"
    ).split(","),
    "fhv": (
        "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,"
        "DOlocationID,SR_Flag,Affiliated_base_number"
    ).split(","),
    "fhvhv": fhvhv.DTC_HEADER,  # 2021-06: fhvhv.FHV_LAYOUT_HEADER (see dtc_header)
}
# Integer codes TLC sometimes writes as floats ("1.0" in CSV, double in Parquet).
CODE_COLUMNS = ("passenger_count", "RatecodeID", "payment_type", "trip_type")
_MONEY = (
    "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "ehail_fee",
    "improvement_surcharge", "total_amount", "congestion_surcharge",
    "airport_fee", "Airport_fee", "cbd_congestion_fee",
)  # fmt: skip

# Demand shape: Monday..Sunday, then hour of day 0..23.
_WEEKDAY_W = np.array([1.0, 1.03, 1.06, 1.1, 1.15, 1.05, 0.85])
_HOUR_W = np.array(
    [2.2, 1.5, 1.0, 0.7, 0.6, 0.8, 1.8, 3.2, 4.2, 4.3, 4.2, 4.4,
     4.7, 4.8, 5.1, 5.3, 5.4, 5.9, 6.3, 6.0, 5.4, 5.0, 4.4, 3.3]
)  # fmt: skip
_HOUR_P = _HOUR_W / _HOUR_W.sum()


# --------------------------------------------------------------------------
# Months, paths and per-month conventions
# --------------------------------------------------------------------------

_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH_RE.match(month)
    if not m:
        raise ValueError(f"month must look like 2021-01, got {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_range(first: str, last: str) -> list[str]:
    """Inclusive list of months, e.g. month_range('2021-11', '2022-01')."""
    y, m = parse_month(first)
    end = parse_month(last)
    out = []
    while (y, m) <= end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _ym(month: str) -> int:
    y, m = parse_month(month)
    return y * 12 + m - 1


def relpath(source: str, service: str, month: str) -> str:
    """Path of a month file relative to the mirror root, per upstream layout."""
    _check(source=source, service=service)
    parse_month(month)
    if source == "dtc":
        return f"{service}/{service}_tripdata_{month}.csv.gz"
    return f"{service}_tripdata_{month}.parquet"


def dtc_has_month(month: str, service: str | None = None) -> bool:
    """The course mirror only ever published 2019-01..2021-07 (FHVHV from 2019-02)."""
    first = fhvhv.FIRST_MONTH if service == "fhvhv" else DTC_FIRST_MONTH
    return _ym(first) <= _ym(month) <= _ym(DTC_LAST_MONTH)


def dtc_header(service: str, month: str) -> list[str]:
    """The course file's header: the service's, except FHVHV 2021-06 (FHV layout)."""
    return fhvhv.dtc_header(month) if service == "fhvhv" else DTC_HEADERS[service]


def default_float_codes(month: str) -> bool:
    """Months whose integer codes are written as floats ('1.0' / double).

    Real TLC files flip between int and float codes from month to month; we
    pick Feb/May/Aug/Nov so any run of a few months contains both variants.
    """
    return parse_month(month)[1] in (2, 5, 8, 11)


def default_crlf(source: str, service: str, month: str) -> bool:
    """CSV line endings: green always CRLF, yellow CRLF in 2019, fhv LF."""
    if source != "dtc":
        return False
    return service == "green" or (service == "yellow" and parse_month(month)[0] == 2019)


def airport_fee_column(month: str) -> str:
    """TLC renamed the column back and forth; 2022-2024 use the lowercase one."""
    return "airport_fee" if 2022 <= parse_month(month)[0] <= 2024 else "Airport_fee"


def has_cbd_fee(month: str) -> bool:
    return _ym(month) >= _ym("2025-01")


def tlc_schema(service: str, month: str, *, float_codes: bool = False) -> pa.Schema:
    """The Arrow schema of TLC's Parquet file for this service and month."""
    _check(service=service)
    if service == "fhvhv":
        return fhvhv.tlc_schema(month)
    code = pa.float64() if float_codes else pa.int64()
    ts = pa.timestamp("us")
    f64, i32, s = pa.float64(), pa.int32(), pa.string()
    if service == "fhv":
        return pa.schema([
            ("dispatching_base_num", s), ("pickup_datetime", ts),
            ("dropOff_datetime", ts), ("PUlocationID", f64), ("DOlocationID", f64),
            ("SR_Flag", f64), ("Affiliated_base_number", s),
        ])  # fmt: skip
    money = [
        (name, f64) for name in ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount")
    ]
    if service == "yellow":
        fields = [
            ("VendorID", i32), ("tpep_pickup_datetime", ts), ("tpep_dropoff_datetime", ts),
            ("passenger_count", code), ("trip_distance", f64), ("RatecodeID", code),
            ("store_and_fwd_flag", s), ("PULocationID", i32), ("DOLocationID", i32),
            ("payment_type", code), *money, ("improvement_surcharge", f64),
            ("total_amount", f64), ("congestion_surcharge", f64),
            (airport_fee_column(month), f64),
        ]  # fmt: skip
    else:
        fields = [
            ("VendorID", i32), ("lpep_pickup_datetime", ts), ("lpep_dropoff_datetime", ts),
            ("store_and_fwd_flag", s), ("RatecodeID", code), ("PULocationID", i32),
            ("DOLocationID", i32), ("passenger_count", code), ("trip_distance", f64),
            *money, ("ehail_fee", f64), ("improvement_surcharge", f64),
            ("total_amount", f64), ("payment_type", code), ("trip_type", code),
            ("congestion_surcharge", f64),
        ]  # fmt: skip
    if has_cbd_fee(month):
        fields.append(("cbd_congestion_fee", f64))
    return pa.schema(fields)


def _check(*, source: str | None = None, service: str | None = None) -> None:
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    if service is not None and service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")


# --------------------------------------------------------------------------
# Row generation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Month-level quotas, fixed before chunking so totals are exact."""

    service: str
    month: str
    rows: int
    seed: int
    null_rows: int  # trailing "null block" (yellow/green)
    prev_rows: int  # pickups in the previous month
    next_rows: int  # pickups in the next month
    backwards_rows: int  # dropoff before pickup
    refund_rows: int  # negative amounts
    rate99_rows: int  # RatecodeID 99


def _rng(seed: int, service: str, month: str, stream: int) -> np.random.Generator:
    if seed < 0:
        raise ValueError("seed must be >= 0")
    y, m = parse_month(month)
    return np.random.default_rng(
        np.random.SeedSequence([seed, _SERVICE_CODE[service], y, m, stream])
    )


def _quota(rows: int, share: float) -> int:
    """At least one quirky row in any month of >= 10 rows, never > 10%."""
    if rows < 10:
        return 0
    return min(max(1, round(rows * share)), rows // 10)


def _plan(service: str, month: str, rows: int, seed: int) -> _Plan:
    _check(service=service)
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = _rng(seed, service, month, _PLAN_STREAM)
    cab = service in ("yellow", "green")  # the null block and rate code 99 are cab quirks
    null_share = float(rng.uniform(0.01, 0.03)) if cab else 0.0
    return _Plan(
        service=service, month=month, rows=rows, seed=seed,
        null_rows=_quota(rows, null_share) if cab else 0,
        prev_rows=_quota(rows, 0.001), next_rows=_quota(rows, 0.0002),
        backwards_rows=_quota(rows, 0.0002), refund_rows=_quota(rows, 0.001),
        rate99_rows=_quota(rows, 0.0005) if cab else 0,
    )  # fmt: skip


def _month_bounds(month: str) -> tuple[int, int, int]:
    """(start epoch seconds, end epoch seconds, days in month)."""
    y, m = parse_month(month)
    days = calendar.monthrange(y, m)[1]
    start = int(np.datetime64(f"{month}-01", "s").astype(np.int64))
    return start, start + days * 86400, days


def _in_month_pickups(rng: np.random.Generator, month: str, n: int) -> np.ndarray:
    start, _, days = _month_bounds(month)
    weekday = (start // 86400 + np.arange(days) + 3) % 7  # 1970-01-01 was a Thursday
    day_p = _WEEKDAY_W[weekday] / _WEEKDAY_W[weekday].sum()
    day = rng.choice(days, size=n, p=day_p)
    hour = rng.choice(24, size=n, p=_HOUR_P)
    return start + day * 86400 + hour * 3600 + rng.integers(0, 3600, n)


def _share(total: int, start: int, stop: int, rows: int) -> int:
    """The part of a quota spread over rows [0, rows) that falls in [start, stop);
    the parts of consecutive chunks sum exactly to total."""
    return total * stop // rows - total * start // rows if rows else 0


def _chunk(plan: _Plan, index: int, start: int, stop: int) -> pa.Table:
    rng = _rng(plan.seed, plan.service, plan.month, index)
    n = stop - start
    null_from = plan.rows - plan.null_rows  # global index where the null block starts
    n_norm = n - max(0, stop - max(start, null_from))
    mstart, mend, _ = _month_bounds(plan.month)

    pickup = _in_month_pickups(rng, plan.month, n)
    pickup[:n_norm].sort()  # files are roughly time-ordered; null block is not

    # Quirk quotas are spread over the normal rows only (not the null block).
    def share(total: int) -> int:
        return _share(total, start, start + n_norm, null_from)

    # Out-of-month pickups scattered among the normal rows, as in real files.
    k_prev, k_next = share(plan.prev_rows), share(plan.next_rows)
    idx = _pick(rng, n_norm, k_prev + k_next)
    pickup[idx[:k_prev]] = mstart - rng.integers(60, 3 * 86400, len(idx[:k_prev]))
    pickup[idx[k_prev:]] = mend + rng.integers(0, 2 * 86400, len(idx[k_prev:]))

    quotas = {
        "backwards": share(plan.backwards_rows),
        "refund": share(plan.refund_rows),
        "rate99": share(plan.rate99_rows),
    }
    if plan.service == "fhv":
        return _fhv_chunk(plan, rng, pickup, quotas)
    if plan.service == "fhvhv":
        return fhvhv.chunk(rng, plan.month, pickup, quotas)
    return _cab_chunk(plan, rng, pickup, n_norm, quotas)


def _codes(values: np.ndarray, null: np.ndarray | None) -> pa.Array:
    return pa.array(values.astype(np.int64), type=pa.int64(), mask=null)


def _money(cents: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(cents / 100.0, type=pa.float64(), mask=null)


def _cab_chunk(
    plan: _Plan, rng: np.random.Generator, pickup: np.ndarray, n_norm: int, quotas: dict[str, int]
) -> pa.Table:
    svc, month = plan.service, plan.month
    n = len(pickup)
    ym = _ym(month)
    is_null = np.zeros(n, dtype=bool)
    is_null[n_norm:] = True
    yellow = svc == "yellow"

    # Distance (miles, 2 decimals) and a speed-based duration.
    dist = rng.lognormal(np.log(1.7 if yellow else 2.3), 0.85, n).clip(0.01, 60.0)
    dist[rng.random(n) < 0.015] = 0.0
    dist_c = np.rint(dist * 100).astype(np.int64)
    speed = rng.normal(11.0, 3.0, n).clip(4.0, 35.0)
    duration = (dist_c / 100.0 / speed * 3600).astype(np.int64) + rng.integers(20, 400, n)
    dropoff = pickup + duration
    back = _pick(rng, n_norm, quotas["backwards"])
    dropoff[back] = pickup[back] - rng.integers(60, 7200, len(back))

    w = zone_weights(svc)
    pu = rng.choice(N_ZONES, size=n, p=w).astype(np.int32) + 1
    do = rng.choice(N_ZONES, size=n, p=w).astype(np.int32) + 1

    vendor = rng.choice([1, 2], size=n, p=[0.3, 0.7])
    passengers = rng.choice(7, size=n, p=[0.02, 0.7, 0.14, 0.04, 0.02, 0.05, 0.03])
    ratecode = rng.choice([1, 2, 3, 4, 5, 6], size=n, p=[0.962, 0.02, 0.003, 0.004, 0.01, 0.001])
    ratecode[_pick(rng, n_norm, quotas["rate99"])] = 99
    pay_p = [0.72, 0.26, 0.01, 0.01] if yellow else [0.55, 0.43, 0.01, 0.01]
    payment = rng.choice([1, 2, 3, 4], size=n, p=pay_p)
    flag_idx = (rng.random(n) < 0.005).astype(np.int64)  # 0 -> "N", 1 -> "Y"

    # Fares in integer cents so every amount has at most 2 decimals.
    minutes = np.maximum(duration, 0) / 60.0
    if ym >= _ym("2022-12"):  # the 2022-12 fare increase
        fare = 300 + 350 * dist_c / 100.0 + 35 * minutes
        fare = np.rint(fare / 10) * 10
        jfk, surcharge = 7000, 100
    else:
        fare = 250 + 250 * dist_c / 100.0 + 25 * minutes
        fare = np.rint(fare / 50) * 50
        jfk, surcharge = 5200, 30
    fare = np.where(ratecode == 2, jfk, fare)
    fare = np.where(ratecode == 5, np.rint(rng.uniform(10, 100, n)) * 100, fare).astype(np.int64)
    hour = (pickup // 3600) % 24
    weekday = (pickup // 86400 + 3) % 7
    extra = np.where((hour >= 20) | (hour < 6), 50, 0)
    extra = np.where((weekday < 5) & (hour >= 16) & (hour < 20), 100, extra)
    mta = np.full(n, 50)
    improvement = np.full(n, surcharge)
    tip_pct = rng.choice(
        [0.0, 0.1, 0.15, 0.2, 0.25, 0.3], size=n, p=[0.15, 0.05, 0.2, 0.35, 0.15, 0.1]
    )
    tip = np.where(payment == 1, np.rint(fare * tip_pct), 0).astype(np.int64)
    toll_cents = 612 if ym < _ym("2021-04") else 655
    tolls = np.where(
        (rng.random(n) < 0.05) | ((ratecode == 2) & (rng.random(n) < 0.5)), toll_cents, 0
    )
    if ym < _ym("2019-02"):  # congestion surcharge did not exist yet: empty column
        congestion = np.zeros(n, dtype=np.int64)
        congestion_null: np.ndarray | None = np.ones(n, dtype=bool)
    else:
        share, amount = (0.9, 250) if yellow else (0.3, 275)
        congestion = np.where(rng.random(n) < share, amount, 0)
        congestion_null = None
    parts = [fare, extra, mta, tip, tolls, improvement, congestion]
    extra_cols: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if yellow:
        if ym < _ym("2021-01"):  # the column exists in TLC's re-exports, but empty
            airport, airport_null = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        else:
            fee = 125 if ym < _ym("2023-01") else 175
            airport, airport_null = np.where(np.isin(pu, AIRPORT_IDS), fee, 0), None
        extra_cols[airport_fee_column(month)] = (airport, airport_null)
        parts.append(airport)
    else:
        trip_type = rng.choice([1, 2], size=n, p=[0.97, 0.03])  # street hail / dispatch
    if has_cbd_fee(month):
        cbd = np.where(rng.random(n) < (0.6 if yellow else 0.1), 75, 0)
        extra_cols["cbd_congestion_fee"] = (cbd, None)
        parts.append(cbd)

    # Refunds: every amount negated, paid as "no charge"/"dispute".
    refund = _pick(rng, n_norm, quotas["refund"])
    tip[refund] = 0
    tolls[refund] = 0
    total = np.sum(parts, axis=0)
    sign = np.ones(n, dtype=np.int64)
    sign[refund] = -1
    payment[refund] = rng.choice([3, 4], size=len(refund))

    ts_prefix = "tpep" if yellow else "lpep"
    cols: dict[str, pa.Array] = {
        "VendorID": pa.array(vendor.astype(np.int32), type=pa.int32(), mask=is_null),
        f"{ts_prefix}_pickup_datetime": _timestamps(pickup),
        f"{ts_prefix}_dropoff_datetime": _timestamps(dropoff),
        "passenger_count": _codes(passengers, is_null),
        "trip_distance": pa.array(dist_c / 100.0, type=pa.float64()),
        "RatecodeID": _codes(ratecode, is_null),
        "store_and_fwd_flag": pc.take(pa.array(["N", "Y"]), pa.array(flag_idx, mask=is_null)),
        "PULocationID": pa.array(pu, type=pa.int32()),
        "DOLocationID": pa.array(do, type=pa.int32()),
        "payment_type": _codes(payment, is_null),
        "fare_amount": _money(sign * fare),
        "extra": _money(sign * extra),
        "mta_tax": _money(sign * mta),
        "tip_amount": _money(tip),
        "tolls_amount": _money(tolls),
        "ehail_fee": pa.nulls(n, pa.float64()),
        "improvement_surcharge": _money(sign * improvement),
        "total_amount": _money(sign * total),
        "congestion_surcharge": _money(sign * congestion, congestion_null),
    }
    if not yellow:
        cols["trip_type"] = _codes(trip_type, is_null)
    for name, (cents, null) in extra_cols.items():
        cols[name] = _money(sign * cents, null)
    schema = tlc_schema(svc, month)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


# A fixed set of ~400 base licence numbers with Zipf-like popularity.
_BASES = np.array([f"B{1 + (k * 7919) % 3500:05d}" for k in range(400)])
_BASE_P = 1.0 / np.arange(1, 401) ** 1.1
_BASE_P /= _BASE_P.sum()


def _fhv_chunk(
    plan: _Plan, rng: np.random.Generator, pickup: np.ndarray, quotas: dict[str, int]
) -> pa.Table:
    n = len(pickup)
    duration = rng.lognormal(np.log(17 * 60), 0.6, n).astype(np.int64).clip(60, 4 * 3600)
    dropoff = pickup + duration
    back = _pick(rng, n, quotas["backwards"])
    dropoff[back] = pickup[back] - rng.integers(60, 7200, len(back))
    w = zone_weights("fhv")
    pu = (rng.choice(N_ZONES, size=n, p=w) + 1).astype(np.float64)
    do = (rng.choice(N_ZONES, size=n, p=w) + 1).astype(np.float64)
    base_idx = rng.choice(len(_BASES), size=n, p=_BASE_P)
    # Affiliated base: usually the dispatching base, sometimes another, sometimes empty.
    aff_kind = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    aff_idx = np.where(aff_kind == 1, rng.choice(len(_BASES), size=n, p=_BASE_P), base_idx)
    bases = pa.array(_BASES)
    cols = [
        pc.take(bases, pa.array(base_idx)),
        _timestamps(pickup),
        _timestamps(dropoff),
        pa.array(pu, mask=rng.random(n) < 0.01),  # FHV location ids are sometimes missing
        pa.array(do, mask=rng.random(n) < 0.01),
        pa.array(np.ones(n), mask=rng.random(n) >= 0.03),  # SR_Flag: mostly empty, else 1
        pc.take(bases, pa.array(aff_idx, mask=aff_kind == 2)),
    ]
    return pa.Table.from_arrays(cols, schema=tlc_schema("fhv", plan.month))


def iter_trip_chunks(
    service: str, month: str, rows: int, seed: int = 42, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pa.Table]:
    """The month's rows as consecutive tables of <= chunk_rows rows.

    chunk_rows is part of the identity of the data (each chunk has its own RNG
    stream); keep the default unless you also pass it everywhere else.
    """
    plan = _plan(service, month, rows, seed)
    if rows == 0:
        yield tlc_schema(service, month).empty_table()
        return
    for index, start in enumerate(range(0, rows, chunk_rows)):
        yield _chunk(plan, index, start, min(rows, start + chunk_rows))


def trip_table(service: str, month: str, rows: int, seed: int = 42) -> pa.Table:
    """All generated rows of a month, with TLC's Parquet column names and types
    (integer codes as int64; the float-code variant is only a writing choice)."""
    return pa.concat_tables(iter_trip_chunks(service, month, rows, seed))


# --------------------------------------------------------------------------
# Formatting and writing
# --------------------------------------------------------------------------


def _fmt_distance(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """2.10 / .20 / .00: fixed two decimals without the leading zero, like TLC."""
    cents = np.rint(arr.to_numpy(zero_copy_only=False) * 100).astype(np.int64)
    whole, frac = pa.array(cents // 100), pa.array(cents % 100)
    whole_s = pc.if_else(pc.equal(whole, 0), "", pc.cast(whole, pa.string()))
    frac_s = pc.utf8_lpad(pc.cast(frac, pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole_s, frac_s, ".")


def _fmt_column(name: str, arr: pa.ChunkedArray, float_codes: bool) -> pa.Array | pa.ChunkedArray:
    t = arr.type
    if pa.types.is_timestamp(t):  # "2021-01-01 00:30:10"
        return pc.cast(pc.cast(arr, pa.timestamp("s")), pa.string())
    if name == "trip_distance":
        return _fmt_distance(arr)
    if name in CODE_COLUMNS:
        s = pc.cast(arr, pa.string())
        return pc.binary_join_element_wise(s, ".0", "") if float_codes else s
    if pa.types.is_floating(t) and name not in _MONEY:
        # FHV location ids / SR_Flag are doubles in Parquet but "264" / "1" in CSV.
        return pc.cast(pc.cast(arr, pa.int64()), pa.string())
    # Money: shortest repr of a 2-decimal double gives "8", "0.5", "11.8", "1.65".
    return pc.cast(arr, pa.string())


def csv_chunk_bytes(
    table: pa.Table, header: Sequence[str], *, float_codes: bool, eol: str
) -> memoryview:
    """The CSV body (no header) for a chunk, built as one Arrow string buffer."""
    if table.num_rows == 0:
        return memoryview(b"")
    cols = [_fmt_column(name, table.column(name), float_codes) for name in header]
    line = pc.binary_join_element_wise(*cols, ",", null_handling="replace", null_replacement="")
    line = pc.binary_join_element_wise(line, eol, "")
    if isinstance(line, pa.ChunkedArray):
        line = line.combine_chunks()
    offsets = np.frombuffer(
        line.buffers()[1], dtype=np.int32, count=len(line) + 1, offset=line.offset * 4
    )
    return memoryview(line.buffers()[2])[offsets[0] : offsets[-1]]


def _tmp_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _commit(tmp: Path, dest: Path) -> Path:
    """Atomically publish tmp as dest, unless dest already has identical bytes:
    then the old file (and its mtime, hence the mirror's ETag) is kept."""
    if (
        dest.exists()
        and dest.stat().st_size == tmp.stat().st_size
        and filecmp.cmp(tmp, dest, shallow=False)
    ):
        tmp.unlink()
    else:
        os.replace(tmp, dest)
    return dest


def write_if_changed(dest: Path, data: bytes) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dest)
    tmp.write_bytes(data)
    return _commit(tmp, dest)


class _ParallelGzip:
    """A single-member gzip stream deflated in parallel pieces, like pigz.

    Each piece is raw-deflated with the previous piece's tail as dictionary and
    ends with a sync flush, so the pieces concatenate into one valid stream with
    nearly gzip's ratio; zlib releases the GIL, so this uses every core and
    overlaps with generating the next chunk. Output depends only on the bytes
    written, not on thread timing.
    """

    PIECE = 4 << 20
    WINDOW = 32 << 10

    def __init__(self, raw: BinaryIO, inner_name: str, level: int = GZIP_LEVEL) -> None:
        self._raw, self._level = raw, level
        self._workers = max(1, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=self._workers)
        self._pending: deque[Future[bytes]] = deque()
        self._crc, self._size, self._tail = 0, 0, b""
        # magic, deflate, FNAME flag, mtime 0 (reproducible), xfl 0, OS 255.
        raw.write(
            b"\x1f\x8b\x08\x08" + b"\x00" * 4 + b"\x00\xff" + inner_name.encode("latin-1") + b"\x00"
        )

    def _deflate(self, piece: memoryview, zdict: bytes) -> bytes:
        # wbits -15: raw deflate; gzip framing is written by this class.
        if zdict:
            comp = zlib.compressobj(
                self._level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict
            )
        else:
            comp = zlib.compressobj(self._level, zlib.DEFLATED, -15)
        return comp.compress(piece) + comp.flush(zlib.Z_SYNC_FLUSH)

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._crc = zlib.crc32(view, self._crc)
        self._size += len(view)
        for pos in range(0, len(view), self.PIECE):
            piece = view[pos : pos + self.PIECE]
            self._pending.append(self._pool.submit(self._deflate, piece, self._tail))
            self._tail = (self._tail + bytes(piece[-self.WINDOW :]))[-self.WINDOW :]
            while len(self._pending) > 2 * self._workers:  # bound memory
                self._raw.write(self._pending.popleft().result())

    def close(self) -> None:
        try:
            while self._pending:
                self._raw.write(self._pending.popleft().result())
            self._raw.write(zlib.compressobj(self._level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
            self._raw.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(cancel_futures=True)


def _write_csv_gz(
    dest: Path, chunks: Iterable[pa.Table], header: list[str], *, float_codes: bool, crlf: bool
) -> None:
    eol = "\r\n" if crlf else "\n"
    tmp = _tmp_path(dest)
    try:
        with open(tmp, "wb") as raw:
            # mtime 0 and a fixed inner name make the gzip bytes reproducible.
            gz = _ParallelGzip(raw, inner_name=dest.name.removesuffix(".gz"))
            gz.write((",".join(header) + eol).encode())
            for table in chunks:
                gz.write(csv_chunk_bytes(table, header, float_codes=float_codes, eol=eol))
            gz.close()
        _commit(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(
    dest: Path, chunks: Iterable[pa.Table], schema: pa.Schema, *, single_row_group: bool = False
) -> None:
    tmp = _tmp_path(dest)
    try:
        if single_row_group:
            write_one_row_group(tmp, chunks, schema)
        else:
            with pq.ParquetWriter(tmp, schema, **TLC_PARQUET_WRITER_OPTIONS) as writer:
                for table in chunks:
                    writer.write_table(table.cast(schema), row_group_size=CHUNK_ROWS)
        _commit(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_month(
    root: Path,
    *,
    source: str,
    service: str,
    month: str,
    rows: int,
    seed: int = 42,
    float_codes: bool | None = None,
    crlf: bool | None = None,
    single_row_group: bool = False,
) -> Path:
    """Write one month file in the source's layout under root; returns its path.

    float_codes / crlf default to the per-month conventions
    (default_float_codes / default_crlf). Unlike generate_mirror this writes
    dtc months outside 2019-01..2021-07 too, if asked explicitly.
    ``single_row_group`` writes a tlc Parquet file as ONE row group, TLC's real layout
    (otherwise one row group per 500,000-row chunk), in bounded memory (one_row_group.py).
    """
    _check(source=source, service=service)
    dest = Path(root) / relpath(source, service, month)
    dest.parent.mkdir(parents=True, exist_ok=True)
    floats = default_float_codes(month) if float_codes is None else float_codes
    chunks = iter_trip_chunks(service, month, rows, seed)
    if source == "dtc":
        eol_crlf = default_crlf(source, service, month) if crlf is None else crlf
        if service == "fhvhv":
            chunks = (fhvhv.dtc_table(month, table) for table in chunks)
        header = dtc_header(service, month)
        _write_csv_gz(dest, chunks, header, float_codes=floats, crlf=eol_crlf)
    else:
        codes_as_floats = floats and service in ("yellow", "green")
        _write_parquet(
            dest,
            chunks,
            tlc_schema(service, month, float_codes=codes_as_floats),
            single_row_group=single_row_group,
        )
    return dest


def generate_mirror(
    root: Path,
    *,
    months: list[str],
    services: Sequence[str] = SERVICES,
    sources: Sequence[str] = SOURCES,
    rows: int | Mapping[str, int] = DEFAULT_ROWS,
    seed: int = 42,
) -> list[Path]:
    """Write every (source, service, month) file plus the zone lookup.

    dtc files are only written for months the course mirror has
    (2019-01..2021-07), like the real upstream. rows may be a per-service dict
    (missing services get DEFAULT_ROWS). Re-running is byte-identical and
    leaves unchanged files (and their mtimes) untouched.
    """
    for source in sources:
        _check(source=source)
    for service in services:
        _check(service=service)
    for month in months:
        parse_month(month)
    root = Path(root)
    written = [write_zones(root)]
    for source in sources:
        for service in services:
            n = rows if isinstance(rows, int) else int(rows.get(service, DEFAULT_ROWS))
            for month in months:
                if source == "dtc" and not dtc_has_month(month, service):
                    continue
                written.append(
                    write_month(
                        root, source=source, service=service, month=month, rows=n, seed=seed
                    )
                )
    return written
