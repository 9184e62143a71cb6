"""Contracts, header mapping, and the real TLC samples in ../shared/tlc-samples."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_assets.contracts import (
    CONTRACTS,
    Contract,
    ContractColumn,
    ContractError,
    MalformedRowError,
    MissingColumnsError,
    NonIntegralValueError,
    UnknownColumnsError,
    map_header,
    open_contract_reader,
)
from taxi_assets.contracts.headers import alias_index, header_targets
from taxi_assets.quality import measure

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "tlc-samples"

EXPECTED_COLUMNS = {
    "yellow": [
        "vendor_id",
        "pickup_datetime",
        "dropoff_datetime",
        "passenger_count",
        "trip_distance",
        "ratecode_id",
        "store_and_fwd_flag",
        "pu_location_id",
        "do_location_id",
        "payment_type",
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "total_amount",
        "congestion_surcharge",
        "airport_fee",
        "cbd_congestion_fee",
    ],
    "green": [
        "vendor_id",
        "pickup_datetime",
        "dropoff_datetime",
        "store_and_fwd_flag",
        "ratecode_id",
        "pu_location_id",
        "do_location_id",
        "passenger_count",
        "trip_distance",
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "ehail_fee",
        "improvement_surcharge",
        "total_amount",
        "payment_type",
        "trip_type",
        "congestion_surcharge",
        "cbd_congestion_fee",
    ],
    "fhv": [
        "dispatching_base_num",
        "pickup_datetime",
        "dropoff_datetime",
        "pu_location_id",
        "do_location_id",
        "sr_flag",
        "affiliated_base_number",
    ],
    "fhvhv": [
        "hvfhs_license_num",
        "dispatching_base_num",
        "originating_base_num",
        "request_datetime",
        "on_scene_datetime",
        "pickup_datetime",
        "dropoff_datetime",
        "pu_location_id",
        "do_location_id",
        "trip_miles",
        "trip_time",
        "base_passenger_fare",
        "tolls",
        "bcf",
        "sales_tax",
        "congestion_surcharge",
        "airport_fee",
        "tips",
        "driver_pay",
        "shared_request_flag",
        "shared_match_flag",
        "access_a_ride_flag",
        "wav_request_flag",
        "wav_match_flag",
        "cbd_congestion_fee",
        "sr_flag",
        "affiliated_base_number",
    ],
    "zones": ["location_id", "borough", "zone", "service_zone"],
}
# Optional columns appended for the pre-2016 layouts (see the contract descriptions).
LEGACY_COLUMNS = {
    "yellow": [
        "pickup_longitude",
        "pickup_latitude",
        "dropoff_longitude",
        "dropoff_latitude",
        "vendor_name",
        "payment_type_text",
    ],
    "green": ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"],
    "fhv": [],
    "fhvhv": [],
    "zones": [],
}
INT_COLUMNS = {
    "vendor_id",
    "ratecode_id",
    "payment_type",
    "trip_type",
    "pu_location_id",
    "do_location_id",
    "passenger_count",
    "sr_flag",
    "location_id",
}
TEXT_COLUMNS = {
    "store_and_fwd_flag",
    "dispatching_base_num",
    "affiliated_base_number",
    "borough",
    "zone",
    "service_zone",
    "vendor_name",
    "payment_type_text",
    "hvfhs_license_num",
    "originating_base_num",
    "shared_request_flag",
    "shared_match_flag",
    "access_a_ride_flag",
    "wav_request_flag",
    "wav_match_flag",
}
# Where a contract types a column unlike the tables above: FHVHV keeps trip_time as TLC's
# int64 seconds and SR_Flag as published text (its other flags are text too).
OWN_TYPES = {"fhvhv": {"trip_time": pa.int64(), "sr_flag": pa.string()}}


# --- contracts -------------------------------------------------------------------------


def test_contract_registry() -> None:
    assert set(CONTRACTS) == {"yellow", "green", "fhv", "fhvhv", "zones"}
    for key, contract in CONTRACTS.items():
        assert isinstance(contract, Contract)
        assert contract.name == key
        assert contract.version == "1"
        assert all(isinstance(c, ContractColumn) for c in contract.columns)
    assert CONTRACTS["zones"].time_column is None
    for key in ("yellow", "green", "fhv", "fhvhv"):
        assert CONTRACTS[key].time_column == "pickup_datetime"


@pytest.mark.parametrize("key", sorted(EXPECTED_COLUMNS))
def test_contract_columns_and_types(key: str) -> None:
    contract = CONTRACTS[key]
    assert [c.name for c in contract.columns] == EXPECTED_COLUMNS[key] + LEGACY_COLUMNS[key]
    for col in contract.columns:
        if col.name in OWN_TYPES.get(key, {}):
            assert col.type == OWN_TYPES[key][col.name], col.name
        elif col.name in INT_COLUMNS:
            assert col.type == pa.int32(), col.name
        elif col.name in TEXT_COLUMNS:
            assert col.type == pa.string(), col.name
        elif col.name.endswith("_datetime"):
            assert col.type == pa.timestamp("us"), col.name  # naive: no tz
        else:
            assert col.type == pa.float64(), col.name
        assert col.description


@pytest.mark.parametrize("key", sorted(EXPECTED_COLUMNS))
def test_contract_schema_metadata(key: str) -> None:
    contract = CONTRACTS[key]
    schema = contract.schema
    assert schema.names == [c.name for c in contract.columns]
    assert schema.metadata == {b"contract": key.encode(), b"contract_version": b"1"}
    for field, col in zip(schema, contract.columns, strict=True):
        assert field.type == col.type
        assert field.metadata == {b"description": col.description.encode()}
    alias_index(contract)  # no alias maps to two columns


# --- header mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "header", "column"),
    [
        ("yellow", "VendorID", "vendor_id"),
        ("yellow", "tpep_pickup_datetime", "pickup_datetime"),
        ("yellow", "tpep_dropoff_datetime", "dropoff_datetime"),
        ("yellow", "RatecodeID", "ratecode_id"),
        ("yellow", "RateCodeID", "ratecode_id"),
        ("yellow", "PULocationID", "pu_location_id"),
        ("yellow", "DOLocationID", "do_location_id"),
        ("yellow", "Airport_fee", "airport_fee"),
        ("yellow", "airport_fee", "airport_fee"),
        ("yellow", " total_amount", "total_amount"),  # 2014: space after every comma
        ("yellow", "Trip_Pickup_DateTime", "pickup_datetime"),
        ("yellow", "Start_Lon", "pickup_longitude"),
        ("yellow", "rate_code", "ratecode_id"),
        ("yellow", "Tip_Amt", "tip_amount"),
        ("yellow", "\ufeffVendorID", "vendor_id"),
        ("green", "lpep_pickup_datetime", "pickup_datetime"),
        ("green", "Lpep_dropoff_datetime", "dropoff_datetime"),
        ("green", "Trip_type ", "trip_type"),
        ("green", "Ehail_fee", "ehail_fee"),
        ("green", "Pickup_longitude", "pickup_longitude"),
        ("fhv", "Dispatching_base_num", "dispatching_base_num"),
        ("fhv", "Pickup_date", "pickup_datetime"),
        ("fhv", "dropOff_datetime", "dropoff_datetime"),
        ("fhv", "locationID", "pu_location_id"),
        ("fhv", "PUlocationID", "pu_location_id"),
        ("fhv", "DOlocationID", "do_location_id"),
        ("fhv", "SR_Flag", "sr_flag"),
        ("fhv", "Affiliated_base_number", "affiliated_base_number"),
        ("fhvhv", "PULocationID", "pu_location_id"),
        ("fhvhv", "PUlocationID", "pu_location_id"),
        ("fhvhv", "dropOff_datetime", "dropoff_datetime"),
        ("fhvhv", "SR_Flag", "sr_flag"),
        ("fhvhv", "Affiliated_base_number", "affiliated_base_number"),
        ("fhvhv", "hvfhs_license_num", "hvfhs_license_num"),
        ("zones", "LocationID", "location_id"),
        ("zones", "Borough", "borough"),
        ("zones", "Zone", "zone"),
        ("zones", "service_zone", "service_zone"),
    ],
)
def test_header_aliases(key: str, header: str, column: str) -> None:
    contract = CONTRACTS[key]
    assert map_header(with_required([header], contract), contract, "f.csv")[0] == column


def with_required(header: list[str], contract: Contract) -> list[str]:
    """`header` plus the contract's required columns it lacks (by their contract names)."""
    found, _ = header_targets(header, contract)
    return header + [name for name in contract.required if name not in found]


def test_legacy_yellow_text_codes_go_to_text_columns() -> None:
    header = ["vendor_id", "pickup_datetime", "dropoff_datetime", "payment_type", "surcharge"]
    assert map_header(header, CONTRACTS["yellow"], "f.csv") == [
        "vendor_name",
        "pickup_datetime",
        "dropoff_datetime",
        "payment_type_text",
        "extra",
    ]
    modern = ["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "payment_type", "extra"]
    assert map_header(modern, CONTRACTS["yellow"], "f.csv") == [
        "vendor_id",
        "pickup_datetime",
        "dropoff_datetime",
        "payment_type",
        "extra",
    ]


def test_unknown_header_lists_unknown_and_expected() -> None:
    with pytest.raises(UnknownColumnsError) as info:
        map_header(["VendorID", "mystery_fee"], CONTRACTS["yellow"], "yellow_tripdata_2031-01.csv")
    message = str(info.value)
    assert "yellow_tripdata_2031-01.csv" in message
    assert "mystery_fee" in message
    assert "vendor_id" in message and "airport_fee" in message
    assert info.value.unknown == ["mystery_fee"]
    assert isinstance(info.value, ValueError)


def test_duplicate_mapping_is_an_error() -> None:
    with pytest.raises(ContractError, match="both map to contract column 'airport_fee'"):
        map_header(["airport_fee", "Airport_fee"], CONTRACTS["yellow"], "f.csv")


# Pickup time for every service; drop-off where every real layout carries it (FHV 2015-2016
# files have none); the zone lookup's one layout entire. See the contracts' comments.
REQUIRED = {
    "yellow": ("pickup_datetime", "dropoff_datetime"),
    "green": ("pickup_datetime", "dropoff_datetime"),
    "fhv": ("pickup_datetime",),
    "fhvhv": ("pickup_datetime", "dropoff_datetime"),
    "zones": ("location_id", "borough", "zone", "service_zone"),
}


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_required_columns(key: str) -> None:
    assert CONTRACTS[key].required == REQUIRED[key]


@pytest.mark.parametrize(
    ("key", "drop"),
    [
        ("yellow", "tpep_pickup_datetime"),
        ("yellow", "tpep_dropoff_datetime"),
        ("green", "lpep_pickup_datetime"),
        ("fhv", "Pickup_date"),
        ("zones", "Zone"),
    ],
)
def test_missing_required_column_names_file_missing_and_found(key: str, drop: str) -> None:
    full = {
        "yellow": ["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "fare_amount"],
        "green": ["VendorID", "lpep_pickup_datetime", "lpep_dropoff_datetime", "fare_amount"],
        "fhv": ["Dispatching_base_num", "Pickup_date", "locationID"],
        "zones": ["LocationID", "Borough", "Zone", "service_zone"],
    }[key]
    header = [h for h in full if h != drop]
    name = f"{key}_tripdata_2031-01.csv"
    with pytest.raises(MissingColumnsError) as info:
        map_header(header, CONTRACTS[key], name)
    target = alias_index(CONTRACTS[key])[drop.lower()]
    assert info.value.missing == [target]
    assert info.value.found == header
    assert drop.lower() in [spelling.lower() for spelling in info.value.accepted]
    message = str(info.value)
    assert message.startswith(f"{name}: missing required column(s) [{target!r}]")
    assert f"the file's columns are {header!r}" in message


def test_error_hierarchy() -> None:
    for error in (
        UnknownColumnsError,
        MissingColumnsError,
        MalformedRowError,
        NonIntegralValueError,
    ):
        assert issubclass(error, ContractError)
    assert issubclass(ContractError, ValueError)


# --- real TLC samples ------------------------------------------------------------------


def _sample(name: str) -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real TLC samples not found at {SAMPLES} (shared/tlc-samples is absent)")
    return SAMPLES / name


def _read_sample(name: str, key: str, warnings: list[str] | None = None) -> pa.Table:
    path = _sample(name)
    sink = warnings if warnings is not None else []
    table = open_contract_reader(
        path, file_name=name, contract=CONTRACTS[key], warn=sink.append
    ).read_all()
    assert table.schema.equals(CONTRACTS[key].schema, check_metadata=True)
    return table


def test_sample_yellow_2021_01() -> None:
    table = _read_sample("yellow_tripdata_2021-01.head20k.csv", "yellow")
    assert table.num_rows == 20_000
    new_year = pa.scalar(dt.datetime(2021, 1, 1), pa.timestamp("us"))
    early = pc.less(table["pickup_datetime"], new_year)
    assert pc.sum(early).as_py() == 16
    assert table["trip_distance"][1].as_py() == 0.2  # `.20` in the file
    assert pc.sum(pc.equal(table["ratecode_id"], 99)).as_py() >= 1
    assert table["pickup_datetime"][0].as_py() == dt.datetime(2021, 1, 1, 0, 30, 10)


def test_sample_yellow_2020_01_crlf_null_block() -> None:
    table = _read_sample("yellow_tripdata_2020-01.head999.csv", "yellow")
    assert table.num_rows == 999
    for column in (
        "vendor_id",
        "passenger_count",
        "ratecode_id",
        "store_and_fwd_flag",
        "payment_type",
    ):
        assert table[column].null_count == 500, column
    assert table["pickup_datetime"].null_count == 0


def test_sample_green_2019_01() -> None:
    table = _read_sample("green_tripdata_2019-01.head1000.csv", "green")
    assert table.num_rows == 1_000
    assert table["ehail_fee"].null_count == 1_000
    assert table["trip_type"].null_count < 1_000


def test_sample_green_2024_01_parquet() -> None:
    name = "green_tripdata_2024-01.parquet"
    table = _read_sample(name, "green")
    assert table.num_rows == 56_551
    raw = pq.read_table(_sample(name))
    assert table["pickup_datetime"].equals(raw["lpep_pickup_datetime"])  # unchanged
    assert table["passenger_count"].null_count == 3_415
    assert pc.max(table["trip_distance"]).as_py() == 201_421.68
    # The null block of a Parquet month: the vendor named, the dispatch codes missing.
    assert table["vendor_id"].null_count == 0
    assert measure(table.to_batches(), None).counts["null_block"] == 3_415


def test_sample_fhv_dtc_layout() -> None:
    table = _read_sample("fhvhv_tripdata_2021-06.dtc-fhv-layout.head100.csv", "fhv")
    assert table.num_rows == 100
    assert table["affiliated_base_number"].null_count == 34
    assert table["sr_flag"].to_pylist() == [0] * 100  # `N` in this mirror
    assert table["pu_location_id"].null_count == 0


def test_sample_fhvhv_in_the_course_fhv_layout() -> None:
    """The course mirror's FHVHV 2021-06 file has the FHV layout: no license number."""
    table = _read_sample("fhvhv_tripdata_2021-06.dtc-fhv-layout.head100.csv", "fhvhv")
    assert table.num_rows == 100
    assert table["hvfhs_license_num"].null_count == 100  # kept, with a null license
    assert table["affiliated_base_number"].null_count == 34
    assert table["sr_flag"].to_pylist() == ["N"] * 100  # as published
    assert table["dispatching_base_num"][0].as_py() == "B02764"
    assert table["pickup_datetime"][0].as_py() == dt.datetime(2021, 6, 1, 0, 2, 41)
    assert table["pu_location_id"].to_pylist()[:2] == [174, 32]
    for column in ("base_passenger_fare", "trip_miles", "trip_time", "request_datetime"):
        assert table[column].null_count == 100, column  # not in this layout


def test_sample_fhv_2015_02() -> None:
    table = _read_sample("fhv_tripdata_2015-02.head1000.csv", "fhv")
    assert table.num_rows == 1_000
    assert table["pickup_datetime"].null_count == 0
    assert table["pu_location_id"].null_count == 1_000  # locationID empty everywhere
    assert table["dropoff_datetime"].null_count == 1_000  # no such column in 2015


def test_sample_zone_lookup() -> None:
    table = _read_sample("taxi+_zone_lookup.csv", "zones")
    assert table.num_rows == 265
    rows = {r["location_id"]: r for r in table.to_pylist()}
    assert rows[264] == {
        "location_id": 264,
        "borough": "Unknown",
        "zone": "NV",
        "service_zone": "N/A",
    }
    assert rows[265] == {
        "location_id": 265,
        "borough": "Unknown",
        "zone": "NA",
        "service_zone": "N/A",
    }
    assert all(table[c].null_count == 0 for c in table.column_names)


def test_zone_lookup_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    """The real lookup (every header quoted) as a spreadsheet program saves it."""
    sample = _sample("taxi+_zone_lookup.csv")
    if not sample.exists():
        pytest.skip(f"{sample} not found")
    path = tmp_path / "taxi_zone_lookup.csv"
    path.write_bytes(b"\xef\xbb\xbf" + sample.read_bytes())
    table = open_contract_reader(path, file_name=path.name, contract=CONTRACTS["zones"]).read_all()
    assert table.equals(_read_sample("taxi+_zone_lookup.csv", "zones"))


def _sample_headers() -> list[tuple[str, str, list[str]]]:
    """(contract, file, header) of every real sample: the layouts the required columns
    were chosen from."""
    found = []
    for path in sorted(_sample("schema_heads").glob("*.csv")) + sorted(SAMPLES.glob("*.csv")):
        key = "zones" if path.name.startswith("taxi+") else path.name.split("_", 1)[0]
        key = "fhvhv" if "dtc-fhv-layout" in path.name else key
        with path.open(newline="", encoding="latin-1") as handle:
            found.append((key, path.name, next(csv.reader(handle))))
    for path in sorted(SAMPLES.glob("*.parquet")):
        found.append((path.name.split("_", 1)[0], path.name, pq.read_schema(path).names))
    return found


def test_every_real_layout_carries_the_required_columns() -> None:
    headers = _sample_headers()
    assert {key for key, _, _ in headers} == set(REQUIRED)  # every contract has samples
    for key, name, header in headers:
        targets = map_header(header, CONTRACTS[key], name)  # raises if one is missing
        assert set(REQUIRED[key]) <= set(targets), name
    fhv = [header for key, _, header in headers if key == "fhv"]
    # Why FHV requires no drop-off: its 2015 layout has none.
    assert any("Pickup_date" in h and "dropOff_datetime" not in h for h in fhv)


def _schema_heads() -> list[str]:
    folder = SAMPLES / "schema_heads"
    return sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []


@pytest.mark.parametrize("name", _schema_heads() or ["(schema_heads missing)"])
def test_schema_heads_parse_onto_contract(name: str) -> None:
    path = _sample(f"schema_heads/{name}")
    if not path.exists():
        pytest.skip(f"{path} not found")
    with path.open(newline="", encoding="latin-1") as handle:
        expected_rows = sum(1 for row in csv.reader(handle) if row) - 1
    key = name.split("_", 1)[0]
    table = open_contract_reader(path, file_name=name, contract=CONTRACTS[key]).read_all()
    assert table.schema.equals(CONTRACTS[key].schema, check_metadata=True)
    assert table.num_rows == expected_rows
    assert table["pickup_datetime"].null_count == 0
    assert table["total_amount"].null_count == 0
    year = int(name.split("_")[2][:4])
    if key == "yellow" and year <= 2014:
        assert table["vendor_name"].null_count == 0  # text vendor kept as text
        assert table["vendor_id"].null_count == table.num_rows
    else:
        assert table["vendor_id"].null_count == 0
    # Every row names its vendor (by code or, before 2015, by name): no quality warning.
    assert measure(table.to_batches(), None).counts["null_block"] == 0
