"""``python -m taxi_assets.cli source check``: one HEAD per service's file and the zone
lookup, against a real HTTP mirror on 127.0.0.1 (TLC's layout and the course's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_assets import cli
from taxi_assets_tests.http_faults import FaultyMirror


def source_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = cli.main(["source", "check", *args])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


def point_at(monkeypatch: pytest.MonkeyPatch, mirror_url: str, tlc_url: str | None = None) -> None:
    monkeypatch.setenv("TAXI_DTC_URL", mirror_url)
    monkeypatch.setenv("TAXI_TLC_URL", tlc_url or mirror_url)
    monkeypatch.setenv("TAXI_ZONES_URL", f"{mirror_url}/misc/taxi_zone_lookup.csv")
    monkeypatch.setenv("TAXI_FIRST_MONTH", "2021-01")  # the mirror's first month


def test_every_service_and_the_zones_are_found(
    mirror: FaultyMirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(monkeypatch, mirror.url)
    status, printed = source_check(capsys)
    assert status == 0, printed
    lines = [line for line in printed.splitlines() if line.startswith("ok ")]
    assert [line.split(":")[0].split(None, 1)[1] for line in lines] == [
        "yellow 2021-01 (dtc)",
        "green 2021-01 (dtc)",
        "fhv 2021-01 (dtc)",
        "fhvhv 2021-01 (tlc)",  # `auto` reads FHVHV from TLC for every month
        "zone lookup",
    ]
    assert all(" MB at http://127.0.0.1:" in line for line in lines)
    # One HEAD each, no GET: nothing downloaded.
    assert mirror.requests_seen("/yellow/yellow_tripdata_2021-01.csv.gz") == ["HEAD"]


def test_a_wrong_tlc_url_is_said_to_refuse_access_not_to_be_unpublished(
    mirror_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TLC's host answers 403 for a file it does not have: for a month published long ago
    that means a wrong base URL; for a month asked for by hand, perhaps not yet."""
    with FaultyMirror(mirror_root, missing_status=403) as tlc_like:
        point_at(monkeypatch, tlc_like.url, tlc_url=f"{tlc_like.url}/wrong-folder")
        status, printed = source_check(capsys)
        assert status == 1
        (fhvhv,) = [line for line in printed.splitlines() if "fhvhv" in line]
        assert fhvhv.startswith("PROBLEM  fhvhv 2021-01 (tlc): HTTP 403 at "), fhvhv
        assert "refuses access" in fhvhv and "check TAXI_TLC_URL" in fhvhv
        assert "1 of 5 file(s) could not be fetched" in printed

        point_at(monkeypatch, tlc_like.url)
        status, printed = source_check(capsys, "--month", "2031-01")
        assert status == 1
        (fhvhv,) = [line for line in printed.splitlines() if "fhvhv" in line]
        assert "not published yet" in fhvhv, fhvhv


def test_a_month_before_a_service_is_skipped_and_passwords_are_not_shown(
    mirror_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """FHVHV starts 2019-02: TLC has no 2019-01 file of it, so `--month 2019-01` failed
    for every real source. A private mirror's password printed in the first line."""
    from taxi_assets.devdata import write_month

    for service in ("yellow", "green", "fhv"):
        write_month(mirror_root, source="dtc", service=service, month="2019-01", rows=10)
    with FaultyMirror(mirror_root) as own:
        with_password = own.url.replace("http://", "http://bob:Hunter2pw@")
        point_at(monkeypatch, with_password)
        monkeypatch.setenv("TAXI_FIRST_MONTH", "2019-01")
        status, printed = source_check(capsys, "--month", "2019-01")
    assert status == 0, printed
    assert "skipped  fhvhv 2019-01: the service starts at 2019-02" in printed
    assert "Hunter2pw" not in printed and "bob" not in printed and "http://***@127.0.0.1" in printed


def test_a_host_that_does_not_listen_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taxi_assets_tests.emulators import free_port

    point_at(monkeypatch, f"http://127.0.0.1:{free_port()}")
    status, printed = source_check(capsys, "--month", "2021-01")
    assert status == 1
    assert printed.count("Connection refused") == 5, printed
    assert "gave up after 1 attempt;" in printed  # the sensor's one short HEAD, no retries


def test_a_month_that_is_not_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, printed = source_check(capsys, "--month", "2021-13")
    assert status == 1 and printed.startswith("error: ")
