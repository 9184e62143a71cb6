"""Deterministic synthetic trips: a month's rows in fixed-size chunks, each from its own
RNG stream keyed by (seed, service, month, chunk index), so a 7.8M-row month never sits
in memory and the same (service, month, rows, seed) always yields the same rows, with
TLC's Parquet column names and types (``layouts.tlc_schema``). Each month carries the
quirks of the real files in exact quotas: a null block (cabs), pickups outside the month,
dropoffs before pickups, refunds, rate code 99.

Everything is vectorised with numpy / pyarrow.compute; there is no per-row Python code.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.devdata import fhvhv
from taxi_assets.devdata.arrays import pick as _pick
from taxi_assets.devdata.arrays import timestamps as _timestamps
from taxi_assets.devdata.layouts import (
    airport_fee_column,
    check_known,
    has_cbd_fee,
    month_index,
    parse_month,
    tlc_schema,
)
from taxi_assets.devdata.zones import AIRPORT_IDS, N_ZONES, zone_weights

CHUNK_ROWS = 500_000
_SERVICE_CODE = {"yellow": 1, "green": 2, "fhv": 3, "fhvhv": 4}  # stable, unlike hash()
_PLAN_STREAM = 1_000_000  # RNG stream id for month-level parameters

# Demand shape: Monday..Sunday, then hour of day 0..23.
_WEEKDAY_W = np.array([1.0, 1.03, 1.06, 1.1, 1.15, 1.05, 0.85])
_HOUR_W = np.array(
    [2.2, 1.5, 1.0, 0.7, 0.6, 0.8, 1.8, 3.2, 4.2, 4.3, 4.2, 4.4,
     4.7, 4.8, 5.1, 5.3, 5.4, 5.9, 6.3, 6.0, 5.4, 5.0, 4.4, 3.3]
)  # fmt: skip
_HOUR_P = _HOUR_W / _HOUR_W.sum()


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
    check_known(service=service)
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
    ym = month_index(month)
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
    if ym >= month_index("2022-12"):  # the 2022-12 fare increase
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
    toll_cents = 612 if ym < month_index("2021-04") else 655
    tolls = np.where(
        (rng.random(n) < 0.05) | ((ratecode == 2) & (rng.random(n) < 0.5)), toll_cents, 0
    )
    if ym < month_index("2019-02"):  # congestion surcharge did not exist yet: empty column
        congestion = np.zeros(n, dtype=np.int64)
        congestion_null: np.ndarray | None = np.ones(n, dtype=bool)
    else:
        share, amount = (0.9, 250) if yellow else (0.3, 275)
        congestion = np.where(rng.random(n) < share, amount, 0)
        congestion_null = None
    parts = [fare, extra, mta, tip, tolls, improvement, congestion]
    extra_cols: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if yellow:
        if ym < month_index("2021-01"):  # the column exists in TLC's re-exports, but empty
            airport, airport_null = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        else:
            fee = 125 if ym < month_index("2023-01") else 175
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
