"""What each upstream publishes, month by month: the services and sources, file paths,
the course mirror's months and headers, TLC's Parquet schemas, and the per-month
conventions of TLC's files (integer codes as floats, CRLF, the airport fee's spelling,
the CBD congestion fee from 2025-01)."""

from __future__ import annotations

import re

import pyarrow as pa

from taxi_assets.devdata import fhvhv

SERVICES = ("yellow", "green", "fhv", "fhvhv")
SOURCES = ("dtc", "tlc")
DTC_FIRST_MONTH, DTC_LAST_MONTH = "2019-01", "2021-07"

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


def month_index(month: str) -> int:
    y, m = parse_month(month)
    return y * 12 + m - 1


def relpath(source: str, service: str, month: str) -> str:
    """Path of a month file relative to the mirror root, per upstream layout."""
    check_known(source=source, service=service)
    parse_month(month)
    if source == "dtc":
        return f"{service}/{service}_tripdata_{month}.csv.gz"
    return f"{service}_tripdata_{month}.parquet"


def dtc_has_month(month: str, service: str | None = None) -> bool:
    """The course mirror only ever published 2019-01..2021-07 (FHVHV from 2019-02)."""
    first = fhvhv.FIRST_MONTH if service == "fhvhv" else DTC_FIRST_MONTH
    return month_index(first) <= month_index(month) <= month_index(DTC_LAST_MONTH)


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
    """CSV line endings as the real files have them: green always CRLF, yellow CRLF
    through 2020-06 (every yellow header sample in ``tlc-samples/schema_heads``, 2009-01
    to 2020-06, and ``yellow_tripdata_2020-01.head999.csv``) and LF after (the course's
    2021-01 file), FHV and FHVHV LF."""
    if source != "dtc":
        return False
    return service == "green" or (service == "yellow" and parse_month(month) <= (2020, 6))


def airport_fee_column(month: str) -> str:
    """TLC renamed the column back and forth; 2022-2024 use the lowercase one."""
    return "airport_fee" if 2022 <= parse_month(month)[0] <= 2024 else "Airport_fee"


def has_cbd_fee(month: str) -> bool:
    return month_index(month) >= month_index("2025-01")


def tlc_schema(service: str, month: str, *, float_codes: bool = False) -> pa.Schema:
    """The Arrow schema of TLC's Parquet file for this service and month."""
    check_known(service=service)
    if service == "fhvhv":
        return fhvhv.tlc_schema(month)
    code = pa.float64() if float_codes else pa.int64()
    ts = pa.timestamp("us")
    f64, i32, s = pa.float64(), pa.int32(), pa.string()
    # The real green 2024-01 file types its flag large_string; the month TLC's writer
    # changed is inferred from FHVHV's (2023-02), no earlier sample showing it.
    flag = pa.large_string() if month >= "2023-02" else s
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
            ("store_and_fwd_flag", flag), ("PULocationID", i32), ("DOLocationID", i32),
            ("payment_type", code), *money, ("improvement_surcharge", f64),
            ("total_amount", f64), ("congestion_surcharge", f64),
            (airport_fee_column(month), f64),
        ]  # fmt: skip
    else:
        fields = [
            ("VendorID", i32), ("lpep_pickup_datetime", ts), ("lpep_dropoff_datetime", ts),
            ("store_and_fwd_flag", flag), ("RatecodeID", code), ("PULocationID", i32),
            ("DOLocationID", i32), ("passenger_count", code), ("trip_distance", f64),
            *money, ("ehail_fee", f64), ("improvement_surcharge", f64),
            ("total_amount", f64), ("payment_type", code), ("trip_type", code),
            ("congestion_surcharge", f64),
        ]  # fmt: skip
    if has_cbd_fee(month):
        fields.append(("cbd_congestion_fee", f64))
    return pa.schema(fields)


def check_known(*, source: str | None = None, service: str | None = None) -> None:
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    if service is not None and service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")
