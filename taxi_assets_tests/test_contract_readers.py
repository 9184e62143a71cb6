"""open_contract_reader on small inputs generated in tmp_path (CSV, CSV.gz, Parquet)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from decimal import Decimal
from pathlib import Path
from typing import IO, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_assets.contracts import (
    CONTRACTS,
    ContractError,
    IncompatibleTypeError,
    InvalidValueError,
    MalformedRowError,
    MissingColumnsError,
    NonIntegralValueError,
    UnknownColumnsError,
    csv_plan,
    csv_reader,
    open_contract_reader,
)
from taxi_assets.contracts.parquet_reader import STRING_DICTIONARY

YELLOW_HEADER = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
    "RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,"
    "mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge"
)
YELLOW_ROW = (
    "1,2021-01-01 00:30:10,2021-01-01 00:36:12,1,2.10,1,N,142,43,2,8,3,0.5,0,0,0.3,11.8,2.5"
)
NULL_BLOCK_ROW = (  # the 2020 "null block": IDs and codes empty
    ",2020-01-31 22:25:53,2020-01-31 22:48:32,,5.49,,,50,42,,27.17,2.75,0,0,0,0.3,30.22,0"
)
# The required columns (pickup and drop-off time) under their Parquet-era names.
YELLOW_TIMES = ("tpep_pickup_datetime", "tpep_dropoff_datetime")
GREEN_TIMES = ("lpep_pickup_datetime", "lpep_dropoff_datetime")


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    data = content.encode() if isinstance(content, str) else content
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def read(
    path: Path, key: str = "yellow", warnings: list[str] | None = None, file_name: str | None = None
) -> pa.Table:
    sink = warnings if warnings is not None else []
    reader = open_contract_reader(
        path, file_name=file_name or path.name, contract=CONTRACTS[key], warn=sink.append
    )
    assert reader.schema.equals(CONTRACTS[key].schema, check_metadata=True)
    table = reader.read_all()
    assert table.schema.equals(CONTRACTS[key].schema, check_metadata=True)
    return table


def yellow_csv(rows: list[str], header: str = YELLOW_HEADER, eol: str = "\n") -> str:
    return eol.join([header, *rows]) + eol


# --- layouts and quirks ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["yellow_tripdata_2021-01.csv", "yellow_tripdata_2021-01.csv.gz"])
def test_csv_and_gzip_read_the_same(tmp_path: Path, name: str) -> None:
    table = read(write(tmp_path, name, yellow_csv([YELLOW_ROW, NULL_BLOCK_ROW])))
    assert table.num_rows == 2
    first = table.slice(0, 1).to_pylist()[0]
    assert first["vendor_id"] == 1 and first["pu_location_id"] == 142
    assert first["pickup_datetime"] == dt.datetime(2021, 1, 1, 0, 30, 10)
    assert first["airport_fee"] is None  # absent column -> all null
    null_block = table.slice(1, 1).to_pylist()[0]
    assert null_block["vendor_id"] is None and null_block["store_and_fwd_flag"] is None
    assert null_block["total_amount"] == 30.22


def test_float_typed_integers_become_int32(tmp_path: Path) -> None:
    row = (
        "1.0,2021-01-01 00:30:10,2021-01-01 00:36:12,2.0,.20,1.0,N,142.0,43,2.0,"
        "8,3,0.5,0,0,0.3,11.8,2.5"
    )
    table = read(write(tmp_path, "y.csv", yellow_csv([row])))
    assert table.schema.field("passenger_count").type == pa.int32()
    values = table.to_pylist()[0]
    assert (
        values["vendor_id"],
        values["passenger_count"],
        values["ratecode_id"],
        values["pu_location_id"],
        values["payment_type"],
    ) == (1, 2, 1, 142, 2)
    assert values["trip_distance"] == 0.2


def test_non_integral_value_names_file_row_and_column(tmp_path: Path) -> None:
    bad = YELLOW_ROW.replace(",1,2.10,", ",1.5,2.10,")
    path = write(tmp_path, "yellow_tripdata_2021-02.csv", yellow_csv([YELLOW_ROW, bad]))
    with pytest.raises(NonIntegralValueError) as info:
        read(path)
    message = str(info.value)
    assert "yellow_tripdata_2021-02.csv" in message
    assert "data row 2" in message and "passenger_count" in message and "1.5" in message
    assert (info.value.row, info.value.column, info.value.value) == (2, "passenger_count", 1.5)


def test_non_integral_row_is_counted_across_batches(tmp_path: Path) -> None:
    rows = [YELLOW_ROW] * 30_000  # ~2.7 MB: several 1 MiB blocks
    rows[25_000] = YELLOW_ROW.replace(",142,43,", ",142,1e10,")  # out of int32 range
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv.gz", yellow_csv(rows)))
    assert (info.value.row, info.value.column) == (25_001, "do_location_id")


def test_text_in_integer_column_names_row(tmp_path: Path) -> None:
    bad = "VTS" + YELLOW_ROW[1:]
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv", yellow_csv([YELLOW_ROW, YELLOW_ROW, bad])))
    assert (info.value.row, info.value.column, info.value.value) == (3, "vendor_id", "VTS")
    assert "y.csv" in str(info.value)


def test_bad_timestamp_names_row(tmp_path: Path) -> None:
    bad = YELLOW_ROW.replace("2021-01-01 00:30:10", "2021-13-01 00:30:10")
    with pytest.raises(InvalidValueError) as info:
        read(write(tmp_path, "y.csv", yellow_csv([YELLOW_ROW, bad])))
    assert (info.value.row, info.value.column) == (2, "pickup_datetime")


@pytest.mark.parametrize("extra", ["", ",,"])
@pytest.mark.parametrize("stamp", ["2021-01-01 00:36:12+01:00", "2021-01-01 00:36:12Z"])
def test_timestamp_with_a_zone_offset_names_row_and_expected_form(
    tmp_path: Path, stamp: str, extra: str
) -> None:
    bad = YELLOW_ROW.replace("2021-01-01 00:36:12", stamp) + extra  # ",,": set aside
    path = write(tmp_path, "yellow_tripdata_2021-01.csv", yellow_csv([YELLOW_ROW, bad]))
    with pytest.raises(InvalidValueError) as info:
        read(path)
    assert (info.value.row, info.value.column, info.value.value) == (2, "dropoff_datetime", stamp)
    message = str(info.value)
    assert message.startswith(
        f"yellow_tripdata_2021-01.csv: data row 2, column 'dropoff_datetime': "
        f"invalid value '{stamp}' (expected a naive local timestamp YYYY-MM-DD HH:MM:SS, "
        "without a zone offset; "
    )
    assert f"expected no zone offset in '{stamp}'" in message  # Arrow's own words


def test_other_arrow_conversion_errors_keep_arrows_text() -> None:
    plan = csv_plan.plan_csv(
        yellow_csv([YELLOW_ROW]).encode(), True, file_name="y.csv", contract=CONTRACTS["yellow"]
    )
    assert plan is not None
    arrow = pa.ArrowInvalid("In CSV column #2: Row #3: CSV conversion error to timestamp[us]: odd")
    error = csv_reader._arrow_error(plan, arrow)
    assert str(error) == f"y.csv: data row 2, column 'dropoff_datetime': {arrow}"
    error = csv_reader._arrow_error(plan, pa.ArrowInvalid("CSV parse error: something else"))
    assert str(error) == "y.csv: cannot read CSV (CSV parse error: something else)"


@pytest.mark.parametrize("spelling", ["Airport_fee", "airport_fee"])
def test_airport_fee_casing(tmp_path: Path, spelling: str) -> None:
    table = read(
        write(
            tmp_path,
            "y.csv",
            yellow_csv([YELLOW_ROW + ",1.25"], header=f"{YELLOW_HEADER},{spelling}"),
        )
    )
    assert table["airport_fee"].to_pylist() == [1.25]


def test_unknown_column_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "yellow_tripdata_2031-01.csv",
        yellow_csv([YELLOW_ROW + ",7"], header=f"{YELLOW_HEADER},robotaxi_fee"),
    )
    with pytest.raises(UnknownColumnsError) as info:
        open_contract_reader(path, file_name=path.name, contract=CONTRACTS["yellow"])
    message = str(info.value)
    assert "yellow_tripdata_2031-01.csv" in message and "robotaxi_fee" in message
    assert "cbd_congestion_fee" in message  # the expected columns are listed


def test_csv_without_pickup_time_is_rejected(tmp_path: Path) -> None:
    """It used to load with pickup_datetime all null."""
    header = YELLOW_HEADER.split(",")
    drop = header.index("tpep_pickup_datetime")
    row = YELLOW_ROW.split(",")
    kept = [h for i, h in enumerate(header) if i != drop]
    text = yellow_csv([",".join(v for i, v in enumerate(row) if i != drop)], header=",".join(kept))
    path = write(tmp_path, "yellow_tripdata_2021-01.csv", text)
    with pytest.raises(MissingColumnsError) as info:
        open_contract_reader(path, file_name=path.name, contract=CONTRACTS["yellow"])
    assert (info.value.file_name, info.value.missing, info.value.found) == (
        path.name,
        ["pickup_datetime"],
        kept,
    )
    assert "tpep_pickup_datetime" in str(info.value)  # the accepted spellings are named


def test_parquet_without_dropoff_time_is_rejected(tmp_path: Path) -> None:
    """It used to load with dropoff_datetime all null."""
    path = tmp_path / "green_tripdata_2024-01.parquet"
    source = _green_parquet_table().drop_columns(["lpep_dropoff_datetime"])
    pq.write_table(source, path)
    with pytest.raises(MissingColumnsError) as info:
        read(path, "green")
    assert (info.value.file_name, info.value.missing, info.value.found) == (
        path.name,
        ["dropoff_datetime"],
        source.column_names,
    )


@pytest.mark.parametrize("dictionary_strings", [False, True])
def test_a_pandas_row_number_column_is_not_loaded_and_a_named_index_is_refused(
    tmp_path: Path, dictionary_strings: bool
) -> None:
    """A file written from a DataFrame whose index is not a plain range (rows filtered)
    stores it as ``__index_level_0__``: refused as an unknown column, the month could not
    be loaded. It is the writer's row number: left out, said. An index with a name is
    data: refused as any unknown column."""
    source = _green_parquet_table()
    frame = source.to_pandas().iloc[[0, 2]]  # rows picked: the index 0, 2, not a range
    path = tmp_path / "green_tripdata_2024-01.parquet"
    frame.to_parquet(path)
    assert "__index_level_0__" in pq.read_schema(path).names
    said: list[str] = []
    reader = open_contract_reader(
        path,
        file_name=path.name,
        contract=CONTRACTS["green"],
        warn=said.append,
        dictionary_strings=dictionary_strings,
    )
    table = reader.read_all()
    assert table.num_rows == len(frame)
    assert said == [
        f"{path.name}: column '__index_level_0__' is the row number pandas wrote the file with "
        "(its 'pandas' metadata names it the index), not a trip column: not loaded"
    ]
    frame.rename_axis("trip_number").to_parquet(path)
    with pytest.raises(UnknownColumnsError, match="trip_number"):
        read(path, "green")


def test_fhv_without_dropoff_time_is_its_2015_layout(tmp_path: Path) -> None:
    text = "Dispatching_base_num,Pickup_date,locationID\nB00001,2015-02-01 00:00:00,\n"
    table = read(write(tmp_path, "fhv_tripdata_2015-02.csv", text), "fhv")
    assert table["dropoff_datetime"].null_count == 1


def test_random_csv_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "yellow_tripdata_2021-01.csv", "name,age\nann,3\n")
    with pytest.raises(UnknownColumnsError, match="'name', 'age'"):
        read(path)


def test_zones_keep_na_text(tmp_path: Path) -> None:
    text = (
        '"LocationID","Borough","Zone","service_zone"\r\n'
        '1,"EWR","Newark Airport","EWR"\r\n'
        '264,"Unknown","NV","N/A"\r\n'
        '265,"Unknown","NA","N/A"\r\n'
        '266,"NULL","nan","Unknown"\r\n'
    )
    table = read(write(tmp_path, "taxi_zone_lookup.csv", text), "zones")
    assert table.to_pylist()[1:] == [
        {"location_id": 264, "borough": "Unknown", "zone": "NV", "service_zone": "N/A"},
        {"location_id": 265, "borough": "Unknown", "zone": "NA", "service_zone": "N/A"},
        {"location_id": 266, "borough": "NULL", "zone": "nan", "service_zone": "Unknown"},
    ]


@pytest.mark.parametrize(
    "content",
    [
        yellow_csv([YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW], eol="\r\n"),  # CRLF
        YELLOW_HEADER + "\n" + "\r\n".join([YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW]) + "\r\n",
        YELLOW_HEADER + "\n\r\n" + "\r\n".join([YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW]) + "\r\n",
        yellow_csv(["", YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW]),  # blank line after header
        yellow_csv([YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW]).replace(",", ", ", 17),  # 2014
        yellow_csv([YELLOW_ROW, NULL_BLOCK_ROW, YELLOW_ROW]).rstrip("\n"),  # no final newline
    ],
    ids=["crlf", "lf-header-crlf-body", "blank-crlf", "blank-line", "spaced-header", "no-eol"],
)
def test_line_ending_and_header_quirks(tmp_path: Path, content: str) -> None:
    table = read(write(tmp_path, "y.csv.gz", content))
    assert table.num_rows == 3
    assert table["total_amount"].to_pylist() == [11.8, 30.22, 11.8]
    assert table["pu_location_id"].to_pylist() == [142, 50, 142]


def test_two_trailing_empty_fields_are_accepted(tmp_path: Path) -> None:
    content = yellow_csv([YELLOW_ROW + ",,", NULL_BLOCK_ROW + ",,", YELLOW_ROW + ",,"], eol="\r\n")
    table = read(write(tmp_path, "yellow_tripdata_2016-07.csv", content))
    assert table.num_rows == 3
    assert table["congestion_surcharge"].to_pylist() == [2.5, 0.0, 2.5]


@pytest.mark.parametrize("first_has_extra", [True, False])
def test_mixed_trailing_layouts_keep_every_row(tmp_path: Path, first_has_extra: bool) -> None:
    rows = [YELLOW_ROW + (",," if (i % 3 == 0) == first_has_extra else "") for i in range(20_000)]
    rows = [r.replace(",142,", f",{i % 263 + 1},", 1) for i, r in enumerate(rows)]
    table = read(write(tmp_path, "y.csv.gz", yellow_csv(rows)))
    assert table.num_rows == 20_000
    assert sorted(table["pu_location_id"].to_pylist()) == sorted(i % 263 + 1 for i in range(20_000))


@pytest.mark.parametrize(
    ("bad", "column", "value"),
    [
        ("VTS" + YELLOW_ROW[1:], "vendor_id", "VTS"),
        (YELLOW_ROW.replace(",1,2.10,", ",1.5,2.10,"), "passenger_count", 1.5),
    ],
)
def test_bad_value_in_set_aside_row_names_its_row(
    tmp_path: Path, bad: str, column: str, value: object
) -> None:
    content = yellow_csv([YELLOW_ROW, YELLOW_ROW, bad + ",,", YELLOW_ROW])
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv", content))
    assert (info.value.row, info.value.column, info.value.value) == (3, column, value)


@pytest.mark.parametrize("first_has_extra", [True, False])
def test_bad_value_after_a_set_aside_row_names_its_row(
    tmp_path: Path, first_has_extra: bool
) -> None:
    # Row 2 has the other layout and is set aside: row 4 is the batch's third row.
    rows = [YELLOW_ROW, YELLOW_ROW + ",,", YELLOW_ROW, YELLOW_ROW.replace(",1,2.10,", ",1.5,2.10,")]
    if first_has_extra:
        rows = [r[:-2] if r.endswith(",,") else r + ",," for r in rows]
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv", yellow_csv(rows)))
    assert (info.value.row, info.value.column, info.value.value) == (4, "passenger_count", 1.5)
    assert "y.csv: data row 4, column 'passenger_count'" in str(info.value)


def test_bad_value_after_set_aside_rows_is_counted_across_batches(tmp_path: Path) -> None:
    rows = [YELLOW_ROW + (",," if i % 3 == 0 else "") for i in range(30_000)]  # several blocks
    rows[24_999] = rows[24_999].replace(",142,43,", ",142,43.5,")  # a main (",,") row
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv.gz", yellow_csv(rows)))
    assert (info.value.row, info.value.column) == (25_000, "do_location_id")


def test_non_empty_trailing_field_after_a_set_aside_row_names_its_row(tmp_path: Path) -> None:
    content = yellow_csv([YELLOW_ROW + ",,", YELLOW_ROW, YELLOW_ROW + ",,", YELLOW_ROW + ",x,"])
    with pytest.raises(MalformedRowError) as info:
        read(write(tmp_path, "y.csv", content))
    assert info.value.row == 4 and "malformed data row 4" in str(info.value)


@pytest.mark.parametrize("bad", ["VTS" + YELLOW_ROW[1:], "VTS" + YELLOW_ROW[1:] + ",,"])
def test_blank_line_before_the_header_is_not_a_data_row(tmp_path: Path, bad: str) -> None:
    content = "\n" + yellow_csv([YELLOW_ROW, bad])
    with pytest.raises(NonIntegralValueError) as info:
        read(write(tmp_path, "y.csv", content))
    assert (info.value.row, info.value.column) == (2, "vendor_id")


@pytest.mark.parametrize("before", ["", "\n", "\n\n\n"])
@pytest.mark.parametrize("between", ["", "\n\n"])
def test_malformed_row_is_named_as_its_data_row_whatever_the_blank_lines(
    tmp_path: Path, before: str, between: str
) -> None:
    short = ",".join(YELLOW_ROW.split(",")[:3])
    content = before + yellow_csv([YELLOW_ROW, YELLOW_ROW]) + between + short + "\n"
    with pytest.raises(MalformedRowError) as info:
        read(write(tmp_path, "y.csv", content))
    assert info.value.row == 3 and "y.csv: malformed data row 3:" in str(info.value)


def test_rows_set_aside_while_earlier_ones_are_conformed_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrow may parse the second block on its own thread while the first block's
    # set-aside rows are conformed; the old code then dropped the second block's ones
    # (in about one read in ten with these sizes): read often enough to catch it.
    monkeypatch.setattr(csv_plan, "CSV_BLOCK_SIZE", 4096)
    rows = [YELLOW_ROW + (",," if i % 2 else "") for i in range(200)]
    rows = [r.replace(",142,", f",{i + 1},", 1) for i, r in enumerate(rows)]
    path = write(tmp_path, "y.csv", yellow_csv(rows))
    for _ in range(150):
        table = read(path)
        assert sorted(table["pu_location_id"].to_pylist()) == list(range(1, 201))


def test_non_empty_trailing_field_is_malformed(tmp_path: Path) -> None:
    content = yellow_csv([YELLOW_ROW + ",,", YELLOW_ROW + ",x,"])
    with pytest.raises(MalformedRowError) as info:
        read(write(tmp_path, "y.csv", content))
    assert info.value.row == 2 and "'x'" in str(info.value)


@pytest.mark.parametrize("extra", [",x,y", ",", ",,,"])
def test_other_extra_fields_are_malformed(tmp_path: Path, extra: str) -> None:
    content = yellow_csv([YELLOW_ROW, YELLOW_ROW, YELLOW_ROW + extra])
    with pytest.raises(MalformedRowError) as info:
        read(write(tmp_path, "y.csv", content))
    assert (info.value.row, info.value.expected) == (3, 18)
    assert info.value.actual == 18 + extra.count(",")


def test_short_row_is_malformed_with_line_number(tmp_path: Path) -> None:
    short = ",".join(YELLOW_ROW.split(",")[:-2])
    content = yellow_csv([YELLOW_ROW, short, YELLOW_ROW])
    path = write(tmp_path, "yellow_tripdata_2019-03.csv", content)
    with pytest.raises(MalformedRowError) as info:
        read(path)
    assert (info.value.row, info.value.expected, info.value.actual) == (2, 18, 16)
    message = str(info.value)
    assert "yellow_tripdata_2019-03.csv: malformed data row 2:" in message
    assert "expected 18 fields, got 16" in message


def test_latin1_file_is_decoded_with_a_warning(tmp_path: Path) -> None:
    text = (
        "dispatching_base_num,pickup_datetime,Affiliated_base_number\n"
        "B00001,2019-01-01 00:01:00,B0000\xe9\nB00002,2019-01-01 00:02:00,\n"
    )
    warnings: list[str] = []
    table = read(
        write(tmp_path, "fhv_tripdata_2019-01.csv", text.encode("latin-1")), "fhv", warnings
    )
    assert table["affiliated_base_number"].to_pylist() == ["B0000\xe9", None]
    assert any("fhv_tripdata_2019-01.csv" in w and "Latin-1" in w for w in warnings)


def test_latin1_late_in_file_does_not_repeat_rows(tmp_path: Path) -> None:
    header = "dispatching_base_num,pickup_datetime,PUlocationID"
    rows = [f"B{i:05d},2019-01-01 00:00:00,{i % 265 + 1}" for i in range(60_000)]
    rows[50_000] = "B\xe9\xe9\xe9,2019-01-01 00:00:00,1"
    path = write(tmp_path, "fhv.csv.gz", "\n".join([header, *rows, ""]).encode("latin-1"))
    warnings: list[str] = []
    table = read(path, "fhv", warnings)
    assert table.num_rows == 60_000
    assert table["dispatching_base_num"].to_pylist()[49_999:50_002] == [
        "B49999",
        "B\xe9\xe9\xe9",
        "B50001",
    ]
    assert len(warnings) == 1


@pytest.mark.parametrize("name", ["y.csv", "y.csv.gz"])
def test_empty_file_gives_zero_rows_and_warning(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    warnings: list[str] = []
    assert read(path, warnings=warnings).num_rows == 0
    assert warnings and name in warnings[0]


def test_header_only_file_gives_zero_rows_and_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = write(tmp_path, "y.csv.gz", YELLOW_HEADER + "\r\n")
    assert read(path, warnings=warnings).num_rows == 0
    assert warnings and "y.csv.gz" in warnings[0]


def test_timestamps_stay_naive_and_unchanged(tmp_path: Path) -> None:
    row = YELLOW_ROW.replace("2021-01-01 00:30:10", "2021-03-14 02:30:00")  # DST gap in NYC
    table = read(write(tmp_path, "y.csv", yellow_csv([row])))
    assert table.schema.field("pickup_datetime").type == pa.timestamp("us")
    assert table["pickup_datetime"].to_pylist() == [dt.datetime(2021, 3, 14, 2, 30)]


# --- FHV SR_Flag -------------------------------------------------------------------------


def test_sr_flag_codes(tmp_path: Path) -> None:
    text = "dispatching_base_num,pickup_datetime,SR_Flag\n" + "".join(
        f"B1,2019-01-01 00:00:00,{v}\n" for v in ["Y", "N", "1", "0", "", "1.0", " y"]
    )
    table = read(write(tmp_path, "fhv.csv", text), "fhv")
    assert table["sr_flag"].to_pylist() == [1, 0, 1, 0, None, 1, 1]


# The bad value in the first data row too: a batch's first row is index 0 of its arrays.
@pytest.mark.parametrize("bad_row", [1, 2])
def test_sr_flag_rejects_other_values(tmp_path: Path, bad_row: int) -> None:
    flags = ["Y", "Y"]
    flags[bad_row - 1] = "maybe"
    text = "dispatching_base_num,pickup_datetime,SR_Flag\n" + "".join(
        f"B1,2019-01-01,{flag}\n" for flag in flags
    )
    with pytest.raises(InvalidValueError) as info:
        read(write(tmp_path, "fhv_tripdata_2019-05.csv", text), "fhv")
    assert (info.value.row, info.value.column, info.value.value) == (bad_row, "sr_flag", "maybe")
    assert "fhv_tripdata_2019-05.csv" in str(info.value)


# --- FHV header layouts ------------------------------------------------------------------

FHV_2017_HEADER = "Dispatching_base_num,Pickup_DateTime,DropOff_datetime,PUlocationID,DOlocationID"
FHV_2018_HEADER = (
    "Pickup_DateTime,DropOff_datetime,PUlocationID,DOlocationID,SR_Flag,"
    "Dispatching_base_number,Dispatching_base_num"
)


def test_fhv_2017_layout(tmp_path: Path) -> None:
    text = f"{FHV_2017_HEADER}\nB00013,2017-06-01 00:01:00,2017-06-01 00:20:00,141,\n"
    table = read(write(tmp_path, "fhv_tripdata_2017-06.csv", text), "fhv")
    assert table.to_pylist() == [
        {
            "dispatching_base_num": "B00013",
            "pickup_datetime": dt.datetime(2017, 6, 1, 0, 1),
            "dropoff_datetime": dt.datetime(2017, 6, 1, 0, 20),
            "pu_location_id": 141,
            "do_location_id": None,
            "sr_flag": None,
            "affiliated_base_number": None,
        }
    ]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_fhv_2018_two_base_number_columns_merge(tmp_path: Path, suffix: str) -> None:
    rows = [
        "2018-03-01 00:00:00,2018-03-01 00:10:00,1,2,,B00111,B00111",  # both, equal
        "2018-03-01 00:01:00,2018-03-01 00:11:00,1,2,,B00222,",  # first only
        "2018-03-01 00:02:00,2018-03-01 00:12:00,1,2,1,,B00333",  # second only
        "2018-03-01 00:03:00,2018-03-01 00:13:00,1,2,,,",  # neither
    ]
    text = "\n".join([FHV_2018_HEADER, *rows]) + "\n"
    table = read(write(tmp_path, f"fhv_tripdata_2018-03{suffix}", text), "fhv")
    assert table["dispatching_base_num"].to_pylist() == ["B00111", "B00222", "B00333", None]
    assert table["sr_flag"].to_pylist() == [None, None, 1, None]


@pytest.mark.parametrize("bad_row", [1, 2])
def test_fhv_2018_disagreeing_base_numbers_name_row_and_columns(
    tmp_path: Path, bad_row: int
) -> None:
    rows = [
        "2018-03-01 00:00:00,2018-03-01 00:10:00,1,2,,B00111,B00111",
        "2018-03-01 00:01:00,2018-03-01 00:11:00,1,2,,B00222,B00111",
    ]
    rows[bad_row - 1] = "2018-03-01 00:01:00,2018-03-01 00:11:00,1,2,,B00222,B00999"
    text = "\n".join([FHV_2018_HEADER, *rows]) + "\n"
    with pytest.raises(InvalidValueError) as info:
        read(write(tmp_path, "fhv_tripdata_2018-03.csv", text), "fhv")
    assert (info.value.row, info.value.column, info.value.value) == (
        bad_row,
        "dispatching_base_num",
        "B00999",
    )
    message = str(info.value)
    for part in ("fhv_tripdata_2018-03.csv", "Dispatching_base_number", "'B00222'"):
        assert part in message


def fhv_2018_parquet(tmp_path: Path, **extra: list[str | None]) -> Path:
    """Two trips in the FHV 2018 layout (the base number twice), plus ``extra`` columns."""
    path = tmp_path / "fhv_tripdata_2018-03.parquet"
    columns = {
        "Pickup_DateTime": pa.array([0, 1], pa.timestamp("us")),
        "Dispatching_base_number": ["B1", None],
        "Dispatching_base_num": [None, "B2"],
        **extra,
    }
    pq.write_table(pa.table(columns), path)
    return path


def test_fhv_2018_layout_in_parquet(tmp_path: Path) -> None:
    path = fhv_2018_parquet(tmp_path)
    assert read(path, "fhv")["dispatching_base_num"].to_pylist() == ["B1", "B2"]


def test_base_number_twice_outside_its_layout_is_rejected(tmp_path: Path) -> None:
    text = "dispatching_base_num,pickup_datetime,Dispatching_base_num\nB1,2019-01-01,B1\n"
    with pytest.raises(ContractError, match="both map to contract column"):
        read(write(tmp_path, "fhv_tripdata_2019-01.csv", text), "fhv")


# --- sources and formats -----------------------------------------------------------------


def test_file_object_source_is_left_open(tmp_path: Path) -> None:
    path = write(tmp_path, "y.csv.gz", yellow_csv([YELLOW_ROW] * 5))
    with path.open("rb") as handle:
        table = open_contract_reader(
            handle, file_name="yellow_tripdata_2021-01.csv.gz", contract=CONTRACTS["yellow"]
        ).read_all()
        assert not handle.closed
    assert table.num_rows == 5
    buffer = io.BytesIO(yellow_csv([YELLOW_ROW] * 3).encode())
    assert (
        open_contract_reader(buffer, file_name="y.csv", contract=CONTRACTS["yellow"])
        .read_all()
        .num_rows
        == 3
    )


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


def test_unseekable_source_is_a_contract_error() -> None:
    source = _Unseekable(yellow_csv([YELLOW_ROW]).encode())
    with pytest.raises(ContractError, match="y.csv: source file object is not seekable"):
        open_contract_reader(
            cast(IO[bytes], source), file_name="y.csv", contract=CONTRACTS["yellow"]
        )


def test_unsupported_file_type(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="y.xlsx"):
        read(write(tmp_path, "y.xlsx", "x"))


def test_corrupt_gzip_is_a_contract_error(tmp_path: Path) -> None:
    path = tmp_path / "yellow_tripdata_2021-01.csv.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(ContractError, match="yellow_tripdata_2021-01.csv.gz"):
        read(path)


def _green_parquet_table() -> pa.Table:
    return pa.table(
        {
            "VendorID": pa.array([2, 1, None], pa.int64()),
            "lpep_pickup_datetime": pa.array(
                [1_704_067_200_000_000_000, 0, None], pa.timestamp("ns")
            ),
            "lpep_dropoff_datetime": pa.nulls(3, pa.timestamp("us")),
            "RatecodeID": pa.array([1.0, None, 5.0], pa.float64()),
            "store_and_fwd_flag": pa.array(["N", None, "Y"], pa.large_string()),
            "PULocationID": pa.array([1, 2, 3], pa.int32()),
            "ehail_fee": pa.nulls(3, pa.null()),
            "trip_type": pa.array([1, 2, None], pa.int64()),
            "total_amount": pa.array([1, 2, 3], pa.int64()),
        }
    )


def test_parquet_types_are_cast(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2024-01.parquet"
    pq.write_table(_green_parquet_table(), path)
    table = read(path, "green")
    assert table.num_rows == 3
    assert table["vendor_id"].to_pylist() == [2, 1, None]
    assert table["ratecode_id"].to_pylist() == [1, None, 5]
    assert table["pickup_datetime"].to_pylist() == [
        dt.datetime(2024, 1, 1),
        dt.datetime(1970, 1, 1),
        None,
    ]
    assert table["store_and_fwd_flag"].to_pylist() == ["N", None, "Y"]
    assert table["total_amount"].to_pylist() == [1.0, 2.0, 3.0]
    assert table["ehail_fee"].null_count == 3 and table["dropoff_datetime"].null_count == 3


@pytest.mark.parametrize("spelling", ["Airport_fee", "airport_fee"])
def test_parquet_airport_fee_casing(tmp_path: Path, spelling: str) -> None:
    path = tmp_path / "yellow_tripdata_2023-01.parquet"
    times = {name: [dt.datetime(2023, 1, 1)] for name in YELLOW_TIMES}
    pq.write_table(
        pa.table({"VendorID": pa.array([1], pa.int64()), **times, spelling: [1.75]}), path
    )
    assert read(path)["airport_fee"].to_pylist() == [1.75]


def test_parquet_non_integral_value(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2024-02.parquet"
    times = {name: [dt.datetime(2024, 2, 1)] * 3 for name in GREEN_TIMES}
    pq.write_table(pa.table({**times, "passenger_count": [1.0, 2.0, 2.5]}), path, row_group_size=2)
    with pytest.raises(NonIntegralValueError) as info:
        read(path, "green")
    assert (info.value.row, info.value.column, info.value.value) == (3, "passenger_count", 2.5)
    assert "green_tripdata_2024-02.parquet" in str(info.value)


def test_parquet_sr_flag_double(tmp_path: Path) -> None:
    path = tmp_path / "fhv_tripdata_2023-01.parquet"
    pq.write_table(
        pa.table(
            {
                "dispatching_base_num": ["B1", "B2", "B3"],
                "pickup_datetime": pa.array([0, 1, 2], pa.timestamp("ms")),
                "dropOff_datetime": pa.array([0, 1, 2], pa.timestamp("ms")),
                "PUlocationID": [1.0, None, 3.0],
                "SR_Flag": [1.0, None, None],
            }
        ),
        path,
    )
    table = read(path, "fhv")
    assert table["sr_flag"].to_pylist() == [1, None, None]
    assert table["pu_location_id"].to_pylist() == [1, None, 3]
    assert table["dropoff_datetime"][2].as_py() == dt.datetime(1970, 1, 1, 0, 0, 0, 2000)


def _yellow_parquet(tmp_path: Path, **columns: pa.Array) -> Path:
    """A two-row yellow Parquet file; `columns` replace or add to its base columns."""
    base: dict[str, pa.Array] = {
        "VendorID": pa.array([1, 2], pa.int32()),
        "tpep_pickup_datetime": pa.array([dt.datetime(2024, 1, 1, 8)] * 2, pa.timestamp("us")),
        "tpep_dropoff_datetime": pa.array([dt.datetime(2024, 1, 1, 9)] * 2, pa.timestamp("us")),
        "fare_amount": pa.array([8.5, 12.0]),
    }
    path = tmp_path / "yellow_tripdata_2024-01.parquet"
    pq.write_table(pa.table({**base, **columns}), path)
    return path


# Pairs Arrow casts without complaint and wrongly; each used to load.
@pytest.mark.parametrize(
    ("header", "values", "column", "expected"),
    [
        # int64 epoch counts -> 1970-01-01 00:00:00.0000xx
        ("tpep_pickup_datetime", pa.array([1, 2], pa.int64()), "pickup_datetime", "timestamp[us]"),
        # date32 -> midnight: the time of day was never there
        (
            "tpep_dropoff_datetime",
            pa.array([19723] * 2, pa.date32()),
            "dropoff_datetime",
            "timestamp[us]",
        ),
        ("tpep_pickup_datetime", pa.array([1.5, 2.5]), "pickup_datetime", "timestamp[us]"),
        ("fare_amount", pa.array([True, False]), "fare_amount", "double"),  # 1.0 / 0.0
        ("passenger_count", pa.array([True, True]), "passenger_count", "int32"),
        ("store_and_fwd_flag", pa.array([True, False]), "store_and_fwd_flag", "string"),
        (
            "trip_distance",
            pa.array([dt.datetime(2024, 1, 1)] * 2, pa.timestamp("us")),
            "trip_distance",
            "double",
        ),
        ("fare_amount", pa.array([60, 90], pa.duration("s")), "fare_amount", "double"),
    ],
)
def test_parquet_implausible_types_are_refused(
    tmp_path: Path, header: str, values: pa.Array, column: str, expected: str
) -> None:
    path = _yellow_parquet(tmp_path, **{header: values})
    with pytest.raises(IncompatibleTypeError) as info:
        read(path)
    error = info.value
    assert (error.file_name, error.header, error.column) == (path.name, header, column)
    assert (error.found, error.expected) == (str(values.type), expected)
    assert str(error) == (
        f"{path.name}: column {header!r} (contract column {column!r}) has type {values.type}, "
        f"which is not accepted for the contract's {expected}"
    )


def test_parquet_bool_sr_flag_is_refused(tmp_path: Path) -> None:
    """A coded column too: bool used to become the codes 1/0."""
    path = tmp_path / "fhv_tripdata_2023-01.parquet"
    times = pa.array([dt.datetime(2023, 1, 1)], pa.timestamp("us"))
    pq.write_table(pa.table({"pickup_datetime": times, "SR_Flag": [True]}), path)
    with pytest.raises(IncompatibleTypeError, match="'SR_Flag' .* has type bool"):
        read(path, "fhv")


# Every pair real files (or the readers' own parsing) need keeps loading.
@pytest.mark.parametrize(
    ("header", "values", "column", "loaded"),
    [
        # Timestamps of any unit: ns from other writers, s/ms too.
        *[
            (
                "tpep_pickup_datetime",
                pa.array([dt.datetime(2024, 1, 1, 8, 30)] * 2, pa.timestamp(unit)),
                "pickup_datetime",
                [dt.datetime(2024, 1, 1, 8, 30)] * 2,
            )
            for unit in ("s", "ms", "us", "ns")
        ],
        # Text times: TLC's yellow 2009 Parquet (public schema report).
        (
            "tpep_pickup_datetime",
            pa.array(["2009-01-04 02:52:00"] * 2),
            "pickup_datetime",
            [dt.datetime(2009, 1, 4, 2, 52)] * 2,
        ),
        # Integer widths (int64 RatecodeID in the green 2024-01 sample) and whole doubles.
        ("RatecodeID", pa.array([1, 99], pa.int64()), "ratecode_id", [1, 99]),
        ("passenger_count", pa.array([1.0, None]), "passenger_count", [1, None]),
        ("passenger_count", pa.array([1, 2], pa.uint8()), "passenger_count", [1, 2]),
        # airport_fee: int32 in some months, all-null (type null) in others.
        ("airport_fee", pa.array([0, 1], pa.int32()), "airport_fee", [0.0, 1.0]),
        ("airport_fee", pa.nulls(2), "airport_fee", [None, None]),
        ("fare_amount", pa.array([8.5, 12.0], pa.float32()), "fare_amount", [8.5, 12.0]),
        ("fare_amount", pa.array(["8.5", "12"]), "fare_amount", [8.5, 12.0]),
        ("fare_amount", pa.array([b"8.5", b"12"], pa.binary()), "fare_amount", [8.5, 12.0]),
        (
            "store_and_fwd_flag",
            pa.array(["N", "Y"], pa.large_string()),
            "store_and_fwd_flag",
            ["N", "Y"],
        ),
        # Yellow 2009 Parquet's double store_and_forward (public schema report).
        ("store_and_fwd_flag", pa.array([0.0, 1.0]), "store_and_fwd_flag", ["0", "1"]),
        (
            "store_and_fwd_flag",
            pa.array(["N", "Y"]).dictionary_encode(),
            "store_and_fwd_flag",
            ["N", "Y"],
        ),
    ],
)
def test_parquet_types_real_files_need_are_cast(
    tmp_path: Path, header: str, values: pa.Array, column: str, loaded: list[object]
) -> None:
    path = _yellow_parquet(tmp_path, **{header: values})
    assert read(path)[column].to_pylist() == loaded


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_parquet_zone_labelled_timestamps_keep_wall_clock(tmp_path: Path, tz: str) -> None:
    wall = pa.array([dt.datetime(2024, 1, 1, 8, 15)], pa.timestamp("ns"))
    labelled = pc.assume_timezone(wall, tz)
    path = tmp_path / "green_tripdata_2024-01.parquet"
    pq.write_table(pa.table({name: labelled for name in GREEN_TIMES}), path)
    table = read(path, "green")
    for column in ("pickup_datetime", "dropoff_datetime"):
        assert table[column].to_pylist() == [dt.datetime(2024, 1, 1, 8, 15)]


def test_parquet_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2031-01.parquet"
    pq.write_table(pa.table({"VendorID": [1], "hover_fee": [1.0]}), path)
    with pytest.raises(UnknownColumnsError, match="hover_fee"):
        read(path, "green")


@pytest.mark.parametrize("cut", [0, 8, -10])
def test_parquet_without_footer(tmp_path: Path, cut: int) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(_green_parquet_table(), good)
    data = good.read_bytes()
    path = tmp_path / "green_tripdata_2024-03.parquet"
    path.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(ContractError, match="green_tripdata_2024-03.parquet"):
        read(path, "green")


def test_parquet_empty_table_warns(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2024-04.parquet"
    pq.write_table(_green_parquet_table().slice(0, 0), path)
    warnings: list[str] = []
    assert read(path, "green", warnings).num_rows == 0
    assert warnings


# --- FHVHV: TLC's Parquet types by era, and the course's CSV layouts ---------------------

FHVHV_FLAGS = (
    "shared_request_flag",
    "shared_match_flag",
    "access_a_ride_flag",
    "wav_request_flag",
    "wav_match_flag",
)
FHVHV_MONEY = (
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "congestion_surcharge",
    "airport_fee",
    "tips",
    "driver_pay",
)


def fhvhv_tlc_table(
    *, ids: pa.DataType, text: pa.DataType, null_typed: tuple[str, ...] = (), cbd: bool = False
) -> pa.Table:
    """Three trips with TLC's FHVHV Parquet column names, written with exactly the types
    TLC publishes for an era: ``ids`` for the location IDs, ``text`` for the strings,
    ``null_typed`` columns of type null (no value at all)."""
    ts = pa.timestamp("us")

    def at(hour: int, minute: int) -> dt.datetime:
        return dt.datetime(2021, 1, 1, hour, minute)

    columns: dict[str, pa.Array] = {
        "hvfhs_license_num": pa.array(["HV0003", "HV0005", "HV0003"], text),
        "dispatching_base_num": pa.array(["B02764", "B02510", "B02875"], text),
        "originating_base_num": pa.array(["B02764", None, "B02875"], text),
        "request_datetime": pa.array([at(0, 1), at(0, 20), at(23, 50)], ts),
        "on_scene_datetime": pa.array([at(0, 4), None, at(23, 55)], ts),
        "pickup_datetime": pa.array([at(0, 5), at(0, 28), at(23, 58)], ts),
        "dropoff_datetime": pa.array([at(0, 20), at(0, 41), dt.datetime(2021, 1, 2, 0, 9)], ts),
        "PULocationID": pa.array([174, 132, 265], ids),
        "DOLocationID": pa.array([18, 236, 1], ids),
        "trip_miles": pa.array([2.84, 17.3, 0.0]),
        "trip_time": pa.array([900, 780, 660], pa.int64()),
        **{name: pa.array([10.5, 45.0, 7.25]) for name in FHVHV_MONEY},
        **{name: pa.array(["N", "Y", " "], text) for name in FHVHV_FLAGS},
    }
    if cbd:
        columns["cbd_congestion_fee"] = pa.array([1.5, 0.0, None])
    for name in null_typed:
        columns[name] = pa.nulls(3)
    return pa.table(columns)


@pytest.mark.parametrize(
    ("era", "ids", "text", "null_typed", "cbd"),
    [
        ("2021-01", pa.int64(), pa.string(), ("airport_fee",), False),
        ("2019-06", pa.int64(), pa.string(), ("airport_fee", "wav_match_flag"), False),
        ("2023-02", pa.int32(), pa.large_string(), (), False),
        ("2025-01", pa.int32(), pa.large_string(), (), True),
    ],
)
def test_fhvhv_parquet_types_of_every_era(
    tmp_path: Path,
    era: str,
    ids: pa.DataType,
    text: pa.DataType,
    null_typed: tuple[str, ...],
    cbd: bool,
) -> None:
    source = fhvhv_tlc_table(ids=ids, text=text, null_typed=null_typed, cbd=cbd)
    assert source.num_columns == (25 if cbd else 24)
    path = tmp_path / f"fhvhv_tripdata_{era}.parquet"
    pq.write_table(source, path, row_group_size=3)  # one row group, as TLC writes them
    assert pq.read_schema(path).field("PULocationID").type == ids  # the published types
    assert pq.read_schema(path).field("shared_match_flag").type == text
    table = read(path, "fhvhv")
    assert table.num_rows == 3
    assert table["pu_location_id"].to_pylist() == [174, 132, 265]
    assert table["trip_time"].to_pylist() == [900, 780, 660]
    assert table["request_datetime"][0].as_py() == dt.datetime(2021, 1, 1, 0, 1)
    assert table["originating_base_num"].to_pylist() == ["B02764", None, "B02875"]
    for flag in FHVHV_FLAGS:
        expected = [None] * 3 if flag in null_typed else ["N", "Y", " "]
        assert table[flag].to_pylist() == expected, flag  # as published, blank kept
    for money in FHVHV_MONEY:
        amounts = [None] * 3 if money in null_typed else [10.5, 45.0, 7.25]
        assert table[money].to_pylist() == amounts, money
    assert table["cbd_congestion_fee"].to_pylist() == ([1.5, 0.0, None] if cbd else [None] * 3)
    for course_only in ("sr_flag", "affiliated_base_number"):
        assert table[course_only].null_count == 3


def test_fhvhv_course_csv_layout(tmp_path: Path) -> None:
    text = (
        "hvfhs_license_num,dispatching_base_num,pickup_datetime,dropoff_datetime,"
        "PULocationID,DOLocationID,SR_Flag\n"
        "HV0003,B02682,2021-01-01 00:33:44,2021-01-01 00:49:07,230,166,\n"
        "HV0005,B02510,2021-01-01 00:55:19,2021-01-01 01:18:21,152,167,1\n"
    )
    table = read(write(tmp_path, "fhvhv_tripdata_2021-01.csv.gz", text), "fhvhv")
    assert table["hvfhs_license_num"].to_pylist() == ["HV0003", "HV0005"]
    assert table["sr_flag"].to_pylist() == [None, "1"]
    assert table["dropoff_datetime"][1].as_py() == dt.datetime(2021, 1, 1, 1, 18, 21)
    assert table["base_passenger_fare"].null_count == 2  # the course's files have no fares


def test_fhvhv_non_numeric_fare_names_file_row_and_column(tmp_path: Path) -> None:
    source = fhvhv_tlc_table(ids=pa.int64(), text=pa.string())
    fares = pa.array(["10.50", "45", "n/a"])
    source = source.set_column(
        source.column_names.index("base_passenger_fare"), "base_passenger_fare", fares
    )
    path = tmp_path / "fhvhv_tripdata_2021-01.parquet"
    pq.write_table(source, path)
    with pytest.raises(InvalidValueError) as raised:
        read(path, "fhvhv")
    assert (raised.value.file_name, raised.value.row, raised.value.column) == (
        path.name,
        3,
        "base_passenger_fare",
    )
    assert str(raised.value).startswith(
        f"{path.name}: data row 3, column 'base_passenger_fare': invalid value 'n/a'"
    )


def test_fhvhv_unknown_layout_lists_unknown_and_expected(tmp_path: Path) -> None:
    source = fhvhv_tlc_table(ids=pa.int64(), text=pa.string()).rename_columns(
        ["ride_id", *fhvhv_tlc_table(ids=pa.int64(), text=pa.string()).column_names[1:]]
    )
    path = tmp_path / "fhvhv_tripdata_2021-01.parquet"
    pq.write_table(source, path)
    with pytest.raises(UnknownColumnsError) as raised:
        read(path, "fhvhv")
    assert raised.value.unknown == ["ride_id"]
    assert "hvfhs_license_num" in raised.value.expected and "trip_miles" in raised.value.expected


def test_one_row_group_is_read_in_batches(tmp_path: Path) -> None:
    """TLC's whole month in ONE row group: the reader still hands out 65,536-row batches
    (memory follows the batch; the benchmarks measure it at 20M rows)."""
    rows = 150_000
    table = pa.table(
        {"PULocationID": pa.array(range(rows), pa.int64()), "trip_miles": pa.array([1.0] * rows)}
    )
    for name in ("pickup_datetime", "dropoff_datetime"):
        table = table.append_column(name, pa.array([dt.datetime(2021, 1, 1)] * rows))
    path = tmp_path / "fhvhv_tripdata_2021-01.parquet"
    pq.write_table(table, path, row_group_size=rows)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    reader = open_contract_reader(path, file_name=path.name, contract=CONTRACTS["fhvhv"])
    sizes = [batch.num_rows for batch in reader]
    assert sizes == [65_536, 65_536, rows - 2 * 65_536]


@pytest.mark.parametrize("text", [pa.string(), pa.large_string()])
def test_fhvhv_text_columns_can_stay_dictionary_encoded(tmp_path: Path, text: pa.DataType) -> None:
    """``dictionary_strings`` (the lake's read): TLC's text columns arrive dictionary-encoded
    with the same values; every other column has its contract type."""
    path = tmp_path / "fhvhv_tripdata_2023-02.parquet"
    pq.write_table(fhvhv_tlc_table(ids=pa.int32(), text=text), path)
    contract = CONTRACTS["fhvhv"]
    reader = open_contract_reader(
        path, file_name=path.name, contract=contract, dictionary_strings=True
    )
    encoded = {"hvfhs_license_num", "dispatching_base_num", "originating_base_num", *FHVHV_FLAGS}
    for field, declared in zip(reader.schema, contract.schema, strict=True):
        assert field.metadata == declared.metadata
        assert field.type == (STRING_DICTIONARY if field.name in encoded else declared.type)
    table = reader.read_all()
    assert table.schema.equals(reader.schema, check_metadata=True)
    assert table.to_pylist() == read(path, "fhvhv").to_pylist()


def test_dictionary_strings_leave_merged_and_coded_columns_plain(tmp_path: Path) -> None:
    """A column merged from two header columns, and text codes, are decoded as before; a
    lone text column stays encoded."""
    path = fhv_2018_parquet(tmp_path, SR_Flag=["Y", None], Affiliated_base_number=["B3", "B3"])
    reader = open_contract_reader(
        path, file_name=path.name, contract=CONTRACTS["fhv"], dictionary_strings=True
    )
    encoded = [field.name for field in reader.schema if pa.types.is_dictionary(field.type)]
    assert encoded == ["affiliated_base_number"]
    table = reader.read_all()
    assert table.to_pylist() == read(path, "fhv").to_pylist()
    assert table["dispatching_base_num"].to_pylist() == ["B1", "B2"]
    assert table["sr_flag"].to_pylist() == [1, None]


# --- values the warehouse could not take (D5) ---------------------------------------------

ZONES_HEADER = '"LocationID","Borough","Zone","service_zone"\n'


def test_repeated_zone_id_names_both_rows(tmp_path: Path) -> None:
    text = ZONES_HEADER + '1,"EWR","Newark Airport","EWR"\n2,"Queens","Jamaica Bay","Boro Zone"\n'
    text += '3,"Bronx","Allerton","Boro Zone"\n2,"Queens","Astoria","Boro Zone"\n'
    with pytest.raises(InvalidValueError) as raised:
        read(write(tmp_path, "taxi_zone_lookup.csv", text), "zones")
    assert str(raised.value) == (
        "taxi_zone_lookup.csv: data row 4, column 'location_id': invalid value 2 "
        "(data row 2 holds it too; each must appear once)"
    )


def test_empty_zone_id_is_refused(tmp_path: Path) -> None:
    text = ZONES_HEADER + '1,"EWR","Newark Airport","EWR"\n,"Queens","Jamaica Bay","Boro Zone"\n'
    with pytest.raises(InvalidValueError, match=r"data row 2, column 'location_id': invalid value"):
        read(write(tmp_path, "taxi_zone_lookup.csv", text), "zones")


@pytest.mark.parametrize("bad_row", [1, 2])
def test_nul_byte_in_csv_text_names_its_row(tmp_path: Path, bad_row: int) -> None:
    boroughs = ["EWR", "Queens"]
    boroughs[bad_row - 1] = "Que\x00ens"
    text = ZONES_HEADER + "".join(
        f'{n},"{borough}","Jamaica Bay","Boro Zone"\n' for n, borough in enumerate(boroughs, 1)
    )
    with pytest.raises(InvalidValueError) as raised:
        read(write(tmp_path, "taxi_zone_lookup.csv", text), "zones")
    assert raised.value.row == bad_row and raised.value.column == "borough"
    assert "NUL byte" in str(raised.value) and "PostgreSQL" in str(raised.value)


@pytest.mark.parametrize("dictionary_strings", [False, True])
def test_nul_byte_in_parquet_text_names_its_row(tmp_path: Path, dictionary_strings: bool) -> None:
    path = tmp_path / "taxi_zone_lookup.parquet"
    boroughs = ["EWR", "Queens", "Bronx"] * 30_000 + ["Que\x00ens"]  # beyond the first batch
    table = pa.table(
        {
            "LocationID": pa.array(range(1, len(boroughs) + 1), pa.int64()),
            "Borough": boroughs,
            "Zone": ["z"] * len(boroughs),
            "service_zone": ["Boro Zone"] * len(boroughs),
        }
    )
    pq.write_table(table, path)
    reader = open_contract_reader(
        path,
        file_name=path.name,
        contract=CONTRACTS["zones"],
        dictionary_strings=dictionary_strings,
    )
    with pytest.raises(InvalidValueError) as raised:
        reader.read_all()
    assert (raised.value.row, raised.value.column) == (len(boroughs), "borough")


def test_a_damaged_page_of_a_published_parquet_file_names_the_file(tmp_path: Path) -> None:
    """Writers such as Spark's store a CRC per page: a damaged page fails naming the file."""
    path = tmp_path / "taxi_zone_lookup.parquet"
    ids = pa.array(range(1, 100_001), pa.int64())
    table = pa.table(
        {"LocationID": ids, "Borough": ["B"] * len(ids), "Zone": ["Z"] * len(ids),
         "service_zone": ["S"] * len(ids)}
    )  # fmt: skip
    pq.write_table(table, path, write_page_checksum=True, compression="zstd")
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    damaged = bytearray(path.read_bytes())
    damaged[start + chunk.total_compressed_size - 8] ^= 0xFF
    path.write_bytes(bytes(damaged))
    reader = open_contract_reader(path, file_name=path.name, contract=CONTRACTS["zones"])
    with pytest.raises(ContractError, match=r"taxi_zone_lookup\.parquet: cannot read .*CRC"):
        reader.read_all()


@pytest.mark.parametrize("bad", [1.5, 2.0**63, -(2.0**64), float("nan")])
def test_float_in_an_int64_column_names_its_row(tmp_path: Path, bad: float) -> None:
    """trip_time is int64; TLC writes it as double in a month where nulls force floats.
    A value that is no int64 names its row, not Arrow's comparison with 2**63 - 1."""
    times = pa.array([0] * 3, pa.timestamp("us"))
    path = tmp_path / "fhvhv_tripdata_2022-01.parquet"
    pq.write_table(
        pa.table(
            {
                "pickup_datetime": times,
                "dropoff_datetime": times,
                "trip_time": pa.array([900.0, -(2.0**63), bad]),
            }
        ),
        path,
    )
    with pytest.raises(NonIntegralValueError) as raised:
        read(path, "fhvhv")
    assert (raised.value.row, raised.value.column) == (3, "trip_time")
    assert "expected an integer fitting int64" in str(raised.value)


# 2**53 + 1: the first integer float64 cannot hold (it rounds to 2**53).
BEYOND_FLOAT = 9_007_199_254_740_993


@pytest.mark.parametrize("form", ["csv", "text", "decimal"])
def test_int64_beyond_float_precision_is_kept_exactly(tmp_path: Path, form: str) -> None:
    """trip_time is int64: a value read through float64 would be rounded to a neighbour."""
    values = [str(BEYOND_FLOAT), " 780 ", "660.0", "-9223372036854775807"]
    if form == "csv":
        text = "hvfhs_license_num,pickup_datetime,dropoff_datetime,trip_time\n" + "".join(
            f"HV0003,2021-01-01 00:00:00,2021-01-01 00:10:00,{v}\n" for v in values
        )
        path = write(tmp_path, "fhvhv_tripdata_2021-01.csv", text)
    else:
        times = pa.array([0] * 4, pa.timestamp("us"))
        if form == "text":
            trip_time = pa.array(values)
        else:
            trip_time = pa.array([Decimal(v.strip()) for v in values], pa.decimal128(20, 1))
        table = pa.table(
            {"pickup_datetime": times, "dropoff_datetime": times, "trip_time": trip_time}
        )
        path = tmp_path / "fhvhv_tripdata_2021-01.parquet"
        pq.write_table(table, path)
    assert read(path, "fhvhv")["trip_time"].to_pylist() == [
        BEYOND_FLOAT,
        780,
        660,
        -9223372036854775807,
    ]


def test_int64_text_with_a_fraction_still_names_its_row(tmp_path: Path) -> None:
    text = "hvfhs_license_num,pickup_datetime,dropoff_datetime,trip_time\n" + "".join(
        f"HV0003,2021-01-01 00:00:00,2021-01-01 00:10:00,{v}\n" for v in ("900", "1.5")
    )
    with pytest.raises(NonIntegralValueError) as raised:
        read(write(tmp_path, "fhvhv_tripdata_2021-01.csv", text), "fhvhv")
    assert (raised.value.row, raised.value.column, raised.value.value) == (2, "trip_time", 1.5)


def test_int64_text_of_plain_digits_is_cast_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trip_time in a CSV is read as text and cast exactly. Digits only (every real
    value): no per-value trimming or pattern match, which took 8 times as long as the cast
    (about 1.5 s more per 20M-row month than reading it through float64)."""

    def per_value(*args: object, **kwargs: object) -> None:
        raise AssertionError("plain digits were trimmed or matched value by value")

    monkeypatch.setattr(pc, "match_substring_regex", per_value)
    monkeypatch.setattr(pc, "utf8_trim_whitespace", per_value)
    text = "hvfhs_license_num,pickup_datetime,dropoff_datetime,trip_time\n" + "".join(
        f"HV0003,2021-01-01 00:00:00,2021-01-01 00:10:00,{v}\n"
        for v in (str(BEYOND_FLOAT), "", "0", "0042")
    )
    trip_time = read(write(tmp_path, "fhvhv_tripdata_2021-01.csv", text), "fhvhv")["trip_time"]
    assert trip_time.to_pylist() == [BEYOND_FLOAT, None, 0, 42]


# pyarrow reports the row's UnicodeDecodeError as unraisable before it gives up the row.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("first_has_extra", [True, False])
def test_latin1_in_a_row_of_the_other_trailing_layout_is_decoded(
    tmp_path: Path, first_has_extra: bool
) -> None:
    """A row set aside for its two extra empty fields (or their absence) holding a Latin-1
    byte: pyarrow cannot hand it to the row handler as text, and the file was refused
    ("Expected 20 columns, got 18") instead of decoded as Latin-1 like any other row."""
    rows = [YELLOW_ROW + (",," if first_has_extra else "") for _ in range(3)]
    other = YELLOW_ROW.replace(",N,", ",\xe9,") + ("" if first_has_extra else ",,")
    rows.insert(1, other)
    warnings: list[str] = []
    path = write(tmp_path, "yellow_tripdata_2016-07.csv", yellow_csv(rows).encode("latin-1"))
    table = read(path, warnings=warnings)
    assert table.num_rows == 4
    assert sorted(table["store_and_fwd_flag"].to_pylist()) == ["N", "N", "N", "\xe9"]
    assert any("Latin-1" in w for w in warnings)


def test_parquet_int96_times_outside_the_nanosecond_range_are_kept(tmp_path: Path) -> None:
    """Spark and Hive write INT96 timestamps; read as nanoseconds they wrap around outside
    1677-2262 (a pickup in 3000 became 1830-11-23) instead of arriving as published."""
    pickups = [dt.datetime(3000, 1, 1), dt.datetime(2021, 1, 1, 0, 0, 0, 123456)]
    dropoffs = [dt.datetime(1500, 1, 1, 12), dt.datetime(2021, 1, 1, 0, 10)]
    path = tmp_path / "yellow_tripdata_2021-01.parquet"
    pq.write_table(
        pa.table(
            {
                "tpep_pickup_datetime": pa.array(pickups, pa.timestamp("us")),
                "tpep_dropoff_datetime": pa.array(dropoffs, pa.timestamp("us")),
            }
        ),
        path,
        use_deprecated_int96_timestamps=True,
    )
    assert pq.ParquetFile(path).schema.column(0).physical_type == "INT96"
    table = read(path)
    assert table["pickup_datetime"].to_pylist() == pickups
    assert table["dropoff_datetime"].to_pylist() == dropoffs


def test_parquet_text_in_unannotated_byte_arrays_reads_as_text(tmp_path: Path) -> None:
    """A writer that does not mark byte arrays as UTF-8 (Arrow `binary`): the flags and the
    2009 layout's text times failed (no row named, or "invalid value" for a right one)."""
    path = tmp_path / "fhv_tripdata_2023-01.parquet"
    pickup = pa.array([dt.datetime(2023, 1, 1)] * 3, pa.timestamp("us"))
    flags = pa.array([b"Y", None, b"N"], pa.binary())
    pq.write_table(
        pa.table({"dispatching_base_num": ["B1", "B2", "B3"], "pickup_datetime": pickup,
                  "SR_Flag": flags}),
        path,
    )  # fmt: skip
    assert read(path, "fhv")["sr_flag"].to_pylist() == [1, None, 0]

    path = tmp_path / "yellow_tripdata_2009-01.parquet"

    def yellow_2009(pickups: pa.Array) -> Path:
        dropoffs = ["2009-01-04 03:02:00", "2009-01-04 03:40:00"]
        columns = {"vendor_name": ["VTS", "CMT"], "Trip_Pickup_DateTime": pickups}
        pq.write_table(pa.table({**columns, "Trip_Dropoff_DateTime": dropoffs}), path)
        return path

    times = pa.array([b"2009-01-04 02:52:00", b"2009-01-04 03:31:00"], pa.large_binary())
    assert read(yellow_2009(times))["pickup_datetime"].to_pylist() == [
        dt.datetime(2009, 1, 4, 2, 52),
        dt.datetime(2009, 1, 4, 3, 31),
    ]
    bad = pa.array([b"2009-01-04 02:52:00", b"\xff\xfe"], pa.binary())
    with pytest.raises(InvalidValueError, match=r"data row 2, column 'pickup_datetime'.*UTF-8"):
        read(yellow_2009(bad))


def test_parquet_timestamp_beyond_the_contract_unit_names_its_row(tmp_path: Path) -> None:
    """Seconds that overflow microseconds (a writer's garbage year) name their row."""
    seconds = pa.array([1_700_000_000, 1_700_000_060, 10**15], pa.timestamp("s"))
    path = tmp_path / "green_tripdata_2024-01.parquet"
    pq.write_table(pa.table({name: seconds for name in GREEN_TIMES}), path, row_group_size=2)
    with pytest.raises(InvalidValueError) as info:
        read(path, "green")
    assert (info.value.row, info.value.column) == (3, "pickup_datetime")
    assert "1000000000000000000 ms since 1970-01-01" in str(info.value)
    assert "green_tripdata_2024-01.parquet" in str(info.value)
