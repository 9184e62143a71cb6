"""The offline data generator, the HTTP mirror and the fault-injecting mirror."""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests

from taxi_assets.cli import main as cli_main
from taxi_assets.cli import parse_months
from taxi_assets.devdata import (
    MirrorServer,
    default_crlf,
    generate_mirror,
    iter_trip_chunks,
    tlc_schema,
    trip_table,
    write_month,
)
from taxi_assets.devdata.mirror import AS_EACH_HOST
from taxi_assets_tests.http_faults import Fault, FaultyMirror

# Must match conftest's mirror_root.
MONTHS = ["2021-01", "2021-02"]
ROWS = 2000
YELLOW_CSV = "/yellow/yellow_tripdata_2021-01.csv.gz"
NULL_BLOCK = ("VendorID", "passenger_count", "RatecodeID", "store_and_fwd_flag", "payment_type")

HEADERS = {
    "yellow": "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,"
    "trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,"
    "fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,"
    "congestion_surcharge",
    "green": "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,"
    "RatecodeID,PULocationID,DOLocationID,passenger_count,trip_distance,fare_amount,extra,"
    "mta_tax,tip_amount,tolls_amount,ehail_fee,improvement_surcharge,total_amount,"
    "payment_type,trip_type,congestion_surcharge",
    "fhv": "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,"
    "SR_Flag,Affiliated_base_number",
    "fhvhv": "hvfhs_license_num,dispatching_base_num,pickup_datetime,dropoff_datetime,"
    "PULocationID,DOLocationID,SR_Flag",
}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def all_files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------


def test_layout_and_byte_identical_reruns(mirror_root: Path, tmp_path: Path) -> None:
    paths = generate_mirror(tmp_path, months=MONTHS, rows=ROWS)
    files = all_files(tmp_path)
    assert sorted(files) == sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert sorted(files) == sorted(
        ["misc/taxi_zone_lookup.csv"]
        + [f"{s}/{s}_tripdata_{m}.csv.gz" for s in HEADERS for m in MONTHS]
        + [f"{s}_tripdata_{m}.parquet" for s in HEADERS for m in MONTHS]
    )
    assert files == all_files(mirror_root)  # same seed, another folder: same bytes
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    generate_mirror(tmp_path, months=MONTHS, rows=ROWS)
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes  # unchanged files untouched
    write_month(tmp_path, source="tlc", service="fhv", month="2021-01", rows=ROWS, seed=7)
    fhv = "fhv_tripdata_2021-01.parquet"
    assert all_files(tmp_path)[fhv] != files[fhv]


def test_dtc_only_has_the_course_months(tmp_path: Path) -> None:
    months = ["2018-12", "2021-07", "2021-08"]
    generate_mirror(tmp_path, months=months, services=("green",), rows=20)
    assert sorted(all_files(tmp_path)) == [
        "green/green_tripdata_2021-07.csv.gz",
        "green_tripdata_2018-12.parquet",
        "green_tripdata_2021-07.parquet",
        "green_tripdata_2021-08.parquet",
        "misc/taxi_zone_lookup.csv",
    ]


@pytest.mark.parametrize("service", ["yellow", "green", "fhv", "fhvhv"])
def test_dtc_header_and_line_endings(mirror_root: Path, service: str) -> None:
    path = mirror_root / f"{service}/{service}_tripdata_2021-01.csv.gz"
    raw = gzip.decompress(path.read_bytes())
    eol = b"\r\n" if service == "green" else b"\n"
    assert raw.startswith(HEADERS[service].encode() + eol)
    assert raw.endswith(eol)
    assert raw.count(b"\n") == ROWS + 1
    assert raw.count(b"\r\n") == (ROWS + 1 if service == "green" else 0)


def test_csv_values_are_written_like_tlc(mirror_root: Path) -> None:
    rows = csv_rows(mirror_root / YELLOW_CSV.lstrip("/"))
    assert all(re.fullmatch(r"\d*\.\d\d", r["trip_distance"]) for r in rows)
    assert any(r["trip_distance"].startswith(".") for r in rows)  # ".20", not "0.20"
    money = [r[c] for r in rows for c in ("fare_amount", "extra", "tip_amount", "total_amount")]
    assert all(re.fullmatch(r"-?\d+(\.\d\d?)?", v) for v in money)
    assert {"0.5", "0.3", "2.5"} <= {r["mta_tax"] for r in rows} | {
        r["improvement_surcharge"] for r in rows
    } | {r["congestion_surcharge"] for r in rows}
    assert any("." not in r["fare_amount"] for r in rows)  # "8", like TLC
    assert any(re.fullmatch(r"\d+\.\d", r["total_amount"]) for r in rows)  # "11.8"
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["tpep_pickup_datetime"]) for r in rows
    )
    codes = [r[c] for r in rows for c in ("passenger_count", "RatecodeID", "payment_type")]
    assert all(re.fullmatch(r"\d*", v) for v in codes)
    # The float-code month writes the same codes as "1.0".
    floats = csv_rows(mirror_root / "yellow/yellow_tripdata_2021-02.csv.gz")
    codes = [r[c] for r in floats for c in ("passenger_count", "RatecodeID", "payment_type")]
    assert all(re.fullmatch(r"(\d+\.0)?", v) for v in codes) and "1.0" in codes
    green = csv_rows(mirror_root / "green/green_tripdata_2021-02.csv.gz")
    assert {r["ehail_fee"] for r in green} == {""}
    assert "1.0" in {r["trip_type"] for r in green}


def test_fhv_csv_quirks(mirror_root: Path) -> None:
    rows = csv_rows(mirror_root / "fhv/fhv_tripdata_2021-01.csv.gz")
    sr = [r["SR_Flag"] for r in rows]
    assert set(sr) == {"", "1"} and sr.count("") > 0.9 * len(sr)
    assert "" in {r["Affiliated_base_number"] for r in rows}
    assert all(re.fullmatch(r"B\d{5}", r["dispatching_base_num"]) for r in rows)
    assert all(re.fullmatch(r"\d{0,3}", r["PUlocationID"]) for r in rows)


def test_tlc_parquet_types(mirror_root: Path) -> None:
    yellow = pq.read_schema(mirror_root / "yellow_tripdata_2021-01.parquet")
    expected = {
        "VendorID": pa.int32(),
        "tpep_pickup_datetime": pa.timestamp("us"),
        "passenger_count": pa.int64(),
        "RatecodeID": pa.int64(),
        "payment_type": pa.int64(),
        "PULocationID": pa.int32(),
        "store_and_fwd_flag": pa.string(),
        "total_amount": pa.float64(),
    }
    assert {k: yellow.field(k).type for k in expected} == expected
    assert yellow.names[:18] == HEADERS["yellow"].split(",")
    assert yellow.names[-2:] == ["congestion_surcharge", "Airport_fee"]
    floats = pq.read_schema(mirror_root / "yellow_tripdata_2021-02.parquet")
    assert floats.field("passenger_count").type == pa.float64()
    green = pq.read_table(mirror_root / "green_tripdata_2021-01.parquet")
    assert green.schema.names == HEADERS["green"].split(",")
    assert green.schema.field("trip_type").type == pa.int64()
    assert green.column("ehail_fee").null_count == ROWS
    fhv = pq.read_schema(mirror_root / "fhv_tripdata_2021-01.parquet")
    assert fhv.names == HEADERS["fhv"].split(",")
    assert [fhv.field(c).type for c in ("PUlocationID", "DOlocationID", "SR_Flag")] == [
        pa.float64()
    ] * 3


def test_yellow_parquet_columns_drift_by_year(tmp_path: Path) -> None:
    assert tlc_schema("yellow", "2019-06").names[-1] == "Airport_fee"
    assert tlc_schema("yellow", "2023-06").names[-1] == "airport_fee"
    path = write_month(tmp_path, source="tlc", service="yellow", month="2025-01", rows=50)
    assert pq.read_schema(path).names[-2:] == ["Airport_fee", "cbd_congestion_fee"]
    assert tlc_schema("green", "2025-02").names[-1] == "cbd_congestion_fee"


def test_both_sources_carry_the_same_rows(mirror_root: Path) -> None:
    from_csv = pd.read_csv(mirror_root / YELLOW_CSV.lstrip("/"))
    from_parquet = pq.read_table(mirror_root / "yellow_tripdata_2021-01.parquet").to_pandas()
    for column in ("trip_distance", "fare_amount", "total_amount", "PULocationID"):
        assert (from_csv[column].to_numpy() == from_parquet[column].to_numpy()).all(), column
    assert (
        pd.to_datetime(from_csv["tpep_pickup_datetime"]).to_numpy()
        == from_parquet["tpep_pickup_datetime"].to_numpy()
    ).all()


def test_zone_lookup(mirror_root: Path) -> None:
    raw = (mirror_root / "misc/taxi_zone_lookup.csv").read_bytes()
    lines = raw.decode().split("\r\n")
    assert lines[0] == '"LocationID","Borough","Zone","service_zone"'
    assert lines[-1] == "" and len(lines) == 267 and b"\n" not in raw.replace(b"\r\n", b"")
    assert lines[264] == '264,"Unknown","NV","N/A"'
    assert lines[265] == '265,"Unknown","NA","N/A"'
    zones = pd.read_csv(io.BytesIO(raw), keep_default_na=False)
    assert zones["LocationID"].tolist() == list(range(1, 266))
    assert set(zones["Borough"]) == {
        "EWR", "Queens", "Bronx", "Manhattan", "Staten Island", "Brooklyn", "Unknown",
    }  # fmt: skip
    names = zones["Zone"][:263]
    assert names.is_unique and names.str.fullmatch(r"[A-Za-z ]+ Zone \d+").all()
    naive = pd.read_csv(io.BytesIO(raw))  # the quirk: "NA" / "N/A" become nulls
    assert naive["Zone"].isna().sum() == 1 and naive["service_zone"].isna().sum() == 2


def test_trip_quirks_are_present() -> None:
    rows = 20_000
    t = trip_table("yellow", "2021-03", rows)
    assert t.num_rows == rows
    pickup = t.column("tpep_pickup_datetime").to_numpy()
    dropoff = t.column("tpep_dropoff_datetime").to_numpy()
    start, end = np.datetime64("2021-03-01"), np.datetime64("2021-04-01")
    before, after = pickup < start, pickup >= end
    assert 1 <= before.sum() <= rows * 0.002 and (pickup[before] >= start - 28).all()
    assert 1 <= after.sum() <= rows * 0.001 and (pickup[after] < end + 30).all()
    assert 1 <= (dropoff < pickup).sum() <= 10
    minutes = (dropoff - pickup)[dropoff >= pickup] / np.timedelta64(1, "m")
    assert 5 < np.median(minutes) < 25 and np.quantile(minutes, 0.99) < 180
    hours = pickup.astype("datetime64[h]").astype(np.int64) % 24
    assert np.isin(hours, [17, 18, 19]).sum() > 3 * np.isin(hours, [3, 4, 5]).sum()

    # The null block: the last 1-3% of rows, in exactly these columns.
    nulls = t.column("VendorID").null_count
    assert rows * 0.01 <= nulls <= rows * 0.03
    for column in NULL_BLOCK:
        assert t.column(column).slice(rows - nulls).null_count == nulls
        assert t.column(column).slice(0, rows - nulls).null_count == 0
    assert t.column("total_amount").null_count == 0

    def values(column: str) -> np.ndarray:
        return t.column(column).to_numpy(zero_copy_only=False)

    assert (values("total_amount") < 0).sum() >= 1 and (values("fare_amount") < 0).sum() >= 1
    assert 0 in values("passenger_count") and 99 in values("RatecodeID")
    locations = values("PULocationID")
    assert locations.min() >= 1 and locations.max() == 265 and (locations == 264).sum() > 10
    amounts = [c for c in t.column_names if c.endswith(("amount", "fee", "tax", "surcharge"))]
    amounts.append("extra")
    for column in amounts:
        cents = values(column) * 100
        assert np.allclose(cents, np.round(cents)), column
    parts = sum(values(c) for c in amounts if c != "total_amount")
    assert np.allclose(parts, values("total_amount"))


def test_green_and_fhv_quirks() -> None:
    green = trip_table("green", "2020-12", 5000)
    nulls = green.column("VendorID").null_count
    assert nulls > 0 and green.column("trip_type").slice(5000 - nulls).null_count == nulls
    fhv = trip_table("fhv", "2020-12", 5000)
    assert fhv.column("SR_Flag").null_count > 4500
    assert pc.min(fhv.column("pickup_datetime")).as_py().month == 11  # out-of-month rows


def test_chunks_keep_month_level_quotas() -> None:
    whole = pa.concat_tables(iter_trip_chunks("yellow", "2021-01", 3500, chunk_rows=40))
    nulls = whole.column("VendorID").null_count
    assert whole.num_rows == 3500 and nulls >= 35
    assert whole.column("VendorID").slice(3500 - nulls).null_count == nulls  # one tail block
    pickup = whole.column("tpep_pickup_datetime").to_numpy()
    assert (pickup < np.datetime64("2021-01-01")).sum() == 4  # round(0.1% of 3500)
    base = trip_table("yellow", "2021-01", 300)
    assert base.equals(trip_table("yellow", "2021-01", 300))
    assert not trip_table("yellow", "2021-01", 300, seed=1).equals(base)


# --------------------------------------------------------------------------
# Mirror
# --------------------------------------------------------------------------


def test_mirror_get_head_and_404(mirror_root: Path) -> None:
    with MirrorServer(mirror_root) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        for path, ctype in [
            (YELLOW_CSV, "application/gzip"),
            ("/green_tripdata_2021-01.parquet", "application/octet-stream"),
            ("/misc/taxi_zone_lookup.csv", "text/csv"),
        ]:
            data = (mirror_root / path.lstrip("/")).read_bytes()
            got = requests.get(server.url + path, timeout=5)
            assert got.status_code == 200 and got.content == data
            assert got.headers["Content-Type"] == ctype
            assert got.headers["Content-Length"] == str(len(data))
            assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', got.headers["ETag"])
            assert got.headers["Last-Modified"].endswith("GMT")
            head = requests.head(server.url + path, timeout=5)
            assert head.status_code == 200 and head.content == b""
            for key in ("Content-Type", "Content-Length", "ETag", "Last-Modified"):
                assert head.headers[key] == got.headers[key]
        for missing in ("/yellow/yellow_tripdata_2031-01.csv.gz", "/yellow", "/"):
            assert requests.get(server.url + missing, timeout=5).status_code == 404
            assert requests.head(server.url + missing, timeout=5).status_code == 404


def test_mirror_sees_live_changes(tmp_path: Path) -> None:
    with MirrorServer(tmp_path) as server:
        url = f"{server.url}/green_tripdata_2021-03.parquet"
        assert requests.head(url, timeout=5).status_code == 404
        path = write_month(tmp_path, source="tlc", service="green", month="2021-03", rows=100)
        first = requests.get(url, timeout=5)
        assert first.status_code == 200 and first.content == path.read_bytes()
        etag = first.headers["ETag"]
        again = requests.get(url, headers={"If-None-Match": etag}, timeout=5)
        assert again.status_code == 304 and again.content == b""
        ranged = requests.get(url, headers={"Range": "bytes=4-9"}, timeout=5)
        assert ranged.status_code == 206 and ranged.content == path.read_bytes()[4:10]
        write_month(tmp_path, source="tlc", service="green", month="2021-03", rows=100, seed=1)
        changed = requests.head(url, timeout=5)
        assert changed.headers["ETag"] != etag
        assert changed.headers["Content-Length"] == str(path.stat().st_size)
        path.unlink()
        assert requests.get(url, timeout=5).status_code == 404


def test_mirror_streams_big_files(tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    with open(big, "wb") as f:
        f.truncate(64 << 20)  # sparse: cheap to create
        f.seek(32 << 20)
        f.write(b"middle")
    with MirrorServer(tmp_path) as server:
        with requests.get(f"{server.url}/big.parquet", stream=True, timeout=5) as got:
            size = 0
            for chunk in got.iter_content(1 << 20):
                if size <= 32 << 20 < size + len(chunk):
                    assert chunk[(32 << 20) - size :].startswith(b"middle")
                size += len(chunk)
        assert size == 64 << 20


def test_mirror_refuses_path_traversal(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "escape").symlink_to(tmp_path / "secret.txt")
    with MirrorServer(root) as server:
        conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=5)
        for path in ("/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
                     "/sub/..%2f..%2fsecret.txt", "/sub/escape"):  # fmt: skip
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            assert response.status in (403, 404), path
            assert b"secret" not in body.replace(b"secret.txt", b""), path


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------


def test_status_faults_then_normal_service(mirror: FaultyMirror) -> None:
    url = mirror.url + YELLOW_CSV
    mirror.inject(YELLOW_CSV, Fault.status(500), Fault.status(503), Fault.status(429))
    mirror.inject(YELLOW_CSV, Fault.status(404))
    codes = [requests.get(url, timeout=5) for _ in range(5)]
    assert [r.status_code for r in codes] == [500, 503, 429, 404, 200]
    assert codes[2].headers["Retry-After"] == "0"
    assert mirror.requests_seen(YELLOW_CSV) == ["GET"] * 5
    assert mirror.requests_seen("yellow/yellow_tripdata_2021-02.csv.gz") == []


def test_faults_can_be_limited_to_a_method(mirror: FaultyMirror) -> None:
    mirror.inject(YELLOW_CSV, Fault.status(500), methods=["GET"])
    assert requests.head(mirror.url + YELLOW_CSV, timeout=5).status_code == 200
    assert requests.get(mirror.url + YELLOW_CSV, timeout=5).status_code == 500
    assert mirror.requests_seen(YELLOW_CSV) == ["HEAD", "GET"]


def test_truncated_body_is_shorter_than_content_length(mirror: FaultyMirror) -> None:
    size = (mirror.root / YELLOW_CSV.lstrip("/")).stat().st_size
    mirror.inject(YELLOW_CSV, Fault.truncate(1000), Fault.truncate(1000))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(mirror.url + YELLOW_CSV, timeout=5)
    conn = http.client.HTTPConnection("127.0.0.1", int(mirror.url.rsplit(":", 1)[1]), timeout=5)
    conn.request("GET", YELLOW_CSV)
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(size)
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    assert len(short.value.partial) == 1000
    conn.close()
    assert len(requests.get(mirror.url + YELLOW_CSV, timeout=5).content) == size


def test_reset_mid_body(mirror: FaultyMirror) -> None:
    mirror.inject(YELLOW_CSV, Fault.reset_after(1000))
    broken = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    with pytest.raises(broken):
        requests.get(mirror.url + YELLOW_CSV, timeout=5)
    assert requests.get(mirror.url + YELLOW_CSV, timeout=5).status_code == 200


def test_delay_makes_clients_time_out(mirror: FaultyMirror) -> None:
    mirror.inject(YELLOW_CSV, Fault.delay(3))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(mirror.url + YELLOW_CSV, timeout=0.3)
    assert time.monotonic() - started < 2
    assert requests.get(mirror.url + YELLOW_CSV, timeout=5).status_code == 200


def test_html_200_and_corrupt_bodies(mirror: FaultyMirror) -> None:
    data = (mirror.root / YELLOW_CSV.lstrip("/")).read_bytes()
    mirror.inject(YELLOW_CSV, Fault.html_200(), Fault.corrupt())
    page = requests.get(mirror.url + YELLOW_CSV, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.content.lstrip().lower().startswith(b"<!doctype html")
    bad = requests.get(mirror.url + YELLOW_CSV, timeout=5)
    assert bad.status_code == 200 and len(bad.content) == len(data) and bad.content != data
    assert bad.content[:100] == data[:100] and bad.content[-100:] == data[-100:]
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(bad.content)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_months("2020-11..2021-01,2021-03") == ["2020-11", "2020-12", "2021-01", "2021-03"]
    argv = ["generate", "--out", str(tmp_path), "--months", "2021-01..2021-02"]
    argv += ["--services", "green", "--sources", "dtc", "--rows", "30", "--seed", "3"]
    assert cli_main(["devdata", *argv]) == 0
    assert sorted(all_files(tmp_path)) == [
        "green/green_tripdata_2021-01.csv.gz",
        "green/green_tripdata_2021-02.csv.gz",
        "misc/taxi_zone_lookup.csv",
    ]
    assert "wrote 3 files" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["devdata", "generate", "--out", str(tmp_path), "--months", "2021-13"])


def test_cli_serve_until_sigterm(mirror_root: Path, tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    cmd = [sys.executable, "-m", "taxi_assets.devdata", "serve", "--root", str(mirror_root)]
    proc = subprocess.Popen(
        [*cmd, "--url-file", str(url_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        url = url_file.read_text().strip()
        assert requests.head(url + YELLOW_CSV, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.decode().strip() == url
    assert not url_file.exists()


# --------------------------------------------------------------------------
# FHVHV
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "columns", "ids", "text", "null_typed"),
    [
        ("2019-05", 24, pa.int64(), pa.string(), {"airport_fee", "wav_match_flag"}),
        ("2021-01", 24, pa.int64(), pa.string(), {"airport_fee"}),
        ("2023-02", 24, pa.int32(), pa.large_string(), set()),
        ("2025-01", 25, pa.int32(), pa.large_string(), set()),
    ],
)
def test_fhvhv_tlc_schema_by_era(
    month: str, columns: int, ids: pa.DataType, text: pa.DataType, null_typed: set[str]
) -> None:
    schema = tlc_schema("fhvhv", month)
    assert len(schema) == columns
    assert schema.names[:3] == ["hvfhs_license_num", "dispatching_base_num", "originating_base_num"]
    assert (schema.field("PULocationID").type, schema.field("shared_match_flag").type) == (
        ids,
        text,
    )
    assert {f.name for f in schema if pa.types.is_null(f.type)} == null_typed
    assert ("cbd_congestion_fee" in schema.names) == (columns == 25)


def test_fhvhv_trips_are_consistent() -> None:
    table = trip_table("fhvhv", "2021-01", 20_000)
    assert table.schema == tlc_schema("fhvhv", "2021-01")
    assert set(table["hvfhs_license_num"].to_pylist()) <= {"HV0002", "HV0003", "HV0004", "HV0005"}
    assert all(re.fullmatch(r"B\d{5}", b) for b in set(table["dispatching_base_num"].to_pylist()))
    seconds = {
        name: table[name].cast(pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000
        for name in ("request_datetime", "pickup_datetime", "dropoff_datetime")
    }
    assert (seconds["request_datetime"] <= seconds["pickup_datetime"]).all()
    on_scene = table.filter(pc.is_valid(table["on_scene_datetime"]))
    assert pc.all(pc.less_equal(on_scene["on_scene_datetime"], on_scene["pickup_datetime"])).as_py()
    assert pc.all(
        pc.greater_equal(on_scene["on_scene_datetime"], on_scene["request_datetime"])
    ).as_py()
    trip_time = table["trip_time"].to_numpy()
    assert (trip_time == seconds["dropoff_datetime"] - seconds["pickup_datetime"]).all()
    assert 0 < (trip_time < 0).sum() < 20  # a few "dropoff before pickup" rows
    assert 0 < (table["driver_pay"].to_numpy() < 0).sum() < 50  # a few adjustments
    fares = table["base_passenger_fare"].to_numpy()
    assert (fares > 0).all() and np.allclose(np.round(fares * 100), fares * 100)
    assert set(table["shared_match_flag"].to_pylist()) == {"N", "Y"}


def test_fhvhv_course_layouts(tmp_path: Path) -> None:
    months = ["2019-01", "2019-02", "2021-06"]
    generate_mirror(tmp_path, months=months, services=("fhvhv",), sources=("dtc",), rows=300)
    # The course mirror's FHVHV months start with the service, 2019-02.
    assert sorted(p.name for p in (tmp_path / "fhvhv").iterdir()) == [
        "fhvhv_tripdata_2019-02.csv.gz",
        "fhvhv_tripdata_2021-06.csv.gz",
    ]
    seven = csv_rows(tmp_path / "fhvhv/fhvhv_tripdata_2019-02.csv.gz")
    assert list(seven[0]) == HEADERS["fhvhv"].split(",")
    assert {r["SR_Flag"] for r in seven} <= {"", "1"}
    fhv_layout = csv_rows(tmp_path / "fhvhv/fhvhv_tripdata_2021-06.csv.gz")
    assert list(fhv_layout[0]) == (
        "dispatching_base_num,pickup_datetime,dropoff_datetime,PULocationID,DOLocationID,"
        "SR_Flag,Affiliated_base_number"
    ).split(",")
    assert {r["SR_Flag"] for r in fhv_layout} <= {"N", "Y"}
    assert 0 < sum(r["Affiliated_base_number"] == "" for r in fhv_layout) < len(fhv_layout)


def test_one_row_group_month_has_the_same_rows(tmp_path: Path) -> None:
    """TLC's layout (the month in ONE row group) holds exactly the rows of the chunked file."""
    chunked = write_month(
        tmp_path / "a", source="tlc", service="fhvhv", month="2025-01", rows=600_000
    )
    single = write_month(
        tmp_path / "b", source="tlc", service="fhvhv", month="2025-01", rows=600_000,
        single_row_group=True,
    )  # fmt: skip
    assert pq.ParquetFile(chunked).metadata.num_row_groups == 2  # 500,000-row chunks
    footer = pq.ParquetFile(single).metadata
    assert (footer.num_row_groups, footer.num_rows) == (1, 600_000)
    assert pq.read_table(single).equals(pq.read_table(chunked))
    assert pq.read_schema(single).field("wav_match_flag").type == pa.large_string()
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]  # no spool left


def test_generated_line_endings_follow_the_real_files(shared_samples: Path) -> None:
    """The real CSV heads whose bytes are as published (schema_heads: every yellow and green
    month's first lines as TLC published them; the course's yellow 2021-01; yellow 2020-01)
    end their lines as the generator does. green_tripdata_2019-01.head1000.csv is LF, but
    SOURCES.md does not say it kept the published bytes (a repository may have normalised
    its line endings), against 83 green heads as published, all CRLF: not used here."""
    heads = sorted((shared_samples / "schema_heads").glob("*_tripdata_*.head.csv"))
    heads += [
        shared_samples / "yellow_tripdata_2021-01.head20k.csv",
        shared_samples / "yellow_tripdata_2020-01.head999.csv",
    ]
    checked = 0
    for head in heads:
        match = re.match(r"(yellow|green|fhv|fhvhv)_tripdata_(\d{4}-\d{2})", head.name)
        assert match, head.name
        service, month = match.groups()
        crlf = b"\r\n" in head.read_bytes()[:4096]
        assert default_crlf("dtc", service, month) == crlf, head.name
        checked += 1
    assert checked > 200


def test_generated_green_parquet_types_are_the_real_files(shared_samples: Path) -> None:
    """The generator's TLC schema for green 2024-01 is the real file's, column for column."""
    real = pq.read_schema(shared_samples / "green_tripdata_2024-01.parquet")
    generated = tlc_schema("green", "2024-01")
    assert [(f.name, f.type) for f in generated] == [(f.name, f.type) for f in real]


def test_ctrl_c_ends_generate_in_one_line(tmp_path: Path) -> None:
    """``python -m taxi_assets.devdata generate``, given Ctrl-C (a real SIGINT) while it
    writes a large month: one line, ``interrupted``, not a traceback, and the process ends
    by SIGINT, as a CLI command does."""
    out = tmp_path / "mirror"
    process = subprocess.Popen(
        [sys.executable, "-m", "taxi_assets.devdata", "generate", "--out", str(out),
         "--months", "2021-01", "--services", "yellow", "--sources", "dtc",
         "--rows", "5000000"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not out.exists():  # it writes: past its imports and argument parsing
        assert process.poll() is None and time.monotonic() < deadline, "nothing written"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (-signal.SIGINT, "interrupted\n")


def test_one_mirror_answers_a_missing_file_as_its_host_would(mirror_root: Path) -> None:
    """`devdata serve` (and the demo) stand for both hosts at once: a course month that
    is not there is GitHub's 404 ("not published"), a TLC file S3's 403 AccessDenied. With
    403 for every file, a course month missing read as "the source refuses access"."""
    with MirrorServer(mirror_root, missing_status=AS_EACH_HOST) as server:
        for path, status in (
            ("/yellow/yellow_tripdata_2031-01.csv.gz", 404),
            ("/fhvhv/fhvhv_tripdata_2031-01.csv.gz", 404),
            ("/yellow_tripdata_2031-01.parquet", 403),
            ("/misc/no_such_lookup.csv", 403),
        ):
            got = requests.get(server.url + path, timeout=5)
            assert got.status_code == status, path
            assert requests.head(server.url + path, timeout=5).status_code == status, path
            assert (b"<Code>AccessDenied</Code>" in got.content) == (status == 403), path


def test_the_mirror_names_a_month_source_check_finds_on_it(
    mirror_root: Path, tmp_path: Path
) -> None:
    """`source check` alone asks for each service's first month (2019-01), which a local
    mirror of the demo's months does not hold: 4 of 5 "could not be fetched", blaming
    right URLs. `devdata serve` names the month to ask for, and with it all pass."""
    from taxi_assets.cli.devdata import month_every_service_has
    from taxi_assets_tests.conftest import DEMO_MONTHS
    from taxi_assets_tests.pipeline import REPO

    month = month_every_service_has(mirror_root)
    assert month == min(DEMO_MONTHS)
    assert month_every_service_has(tmp_path) is None
    with FaultyMirror(mirror_root, missing_status=403) as server:
        env = {
            **os.environ,
            "TAXI_DTC_URL": server.url,
            "TAXI_TLC_URL": server.url,
            "TAXI_ZONES_URL": f"{server.url}/misc/taxi_zone_lookup.csv",
        }
        checked = subprocess.run(
            [sys.executable, "-m", "taxi_assets.cli", "source", "check", "--month", month],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
