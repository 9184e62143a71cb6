"""Downloads against a real HTTP server on 127.0.0.1, with faults injected for real."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import time
from functools import partial
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxi_assets.upstream.download import DownloadError, RetryPolicy, SourceNotFound, download, head
from taxi_assets_tests.http_faults import HTML_ERROR_PAGE, Fault, FaultyMirror
from taxi_assets_tests.pipeline import pipeline_resources, run

FAST = RetryPolicy(attempts=4, backoff_seconds=0.01, read_timeout_seconds=5)
YELLOW = "/yellow/yellow_tripdata_2021-01.csv.gz"
PARQUET = "/green_tripdata_2021-01.parquet"


def fetch(mirror: FaultyMirror, path: str, dest: Path, policy: RetryPolicy = FAST):  # noqa: ANN201
    return download(f"{mirror.url}{path}", path.rsplit("/", 1)[-1], dest, policy)


def published(mirror: FaultyMirror, path: str) -> bytes:
    return (Path(mirror.root) / path.lstrip("/")).read_bytes()


def test_download_is_byte_identical_and_counts_rows(mirror: FaultyMirror, tmp_path: Path) -> None:
    result = fetch(mirror, YELLOW, tmp_path)
    data = published(mirror, YELLOW)
    assert result.local_path.read_bytes() == data
    assert result.size == len(data)
    text = gzip.decompress(data).decode()
    assert result.row_count == len([line for line in text.splitlines() if line.strip()]) - 1
    assert result.etag and result.last_modified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yellow_tripdata_2021-01.csv.gz"]
    header = text.splitlines()[0].split(",")
    assert result.columns == tuple((name, "text") for name in header)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(500),
        Fault.status(503),
        Fault.status(429),
        Fault.truncate(1000),
        Fault.reset_after(1000),
        Fault.delay(1.5),
    ],
    ids=["500", "503", "429", "short-body", "reset-mid-body", "timeout"],
)
def test_transient_failures_are_retried(mirror: FaultyMirror, tmp_path: Path, fault: Fault) -> None:
    mirror.inject(YELLOW, fault)
    policy = RetryPolicy(attempts=3, backoff_seconds=0.01, read_timeout_seconds=0.5)
    result = fetch(mirror, YELLOW, tmp_path, policy)
    assert result.local_path.read_bytes() == published(mirror, YELLOW)
    assert mirror.requests_seen(YELLOW) == ["GET", "GET"]


def test_a_download_cut_midway_goes_on_from_where_it_stopped(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    """The second attempt asks for the rest of the same file (Range, If-Range) and the hash
    and the row count carry on: the copy is byte for byte, its rows counted once. Before,
    every attempt downloaded the whole file again (an FHVHV month: ~450 MB). (A reset
    may discard what the client had not read yet: it resumes from what it had, or anew.)"""
    mirror.inject(YELLOW, Fault.truncate(5000), methods=("GET",))
    result = fetch(mirror, YELLOW, tmp_path)
    data = published(mirror, YELLOW)
    assert result.local_path.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    text = gzip.decompress(data).decode()
    assert result.row_count == len([line for line in text.splitlines() if line.strip()]) - 1
    assert mirror.ranges_seen(YELLOW) == [None, "bytes=5000-"]
    assert (result.attempts, result.received) == (2, len(data))  # nothing read twice


def test_a_file_replaced_between_attempts_is_downloaded_whole_again(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    """The file is republished while the download waits to resume: the server sends the new
    version whole (its ETag no longer matches If-Range), and the copy is all of it, never
    the old file's start with the new file's end."""
    target = Path(own_mirror.root) / YELLOW.lstrip("/")
    old = target.read_bytes()
    text = gzip.decompress(old)
    new = gzip.compress(text + text.split(b"\n", 1)[1])  # republished with more rows

    def republish(_: str) -> None:  # said between the attempts, before the pause
        target.write_bytes(new)

    own_mirror.inject(YELLOW, Fault.truncate(5000), methods=("GET",))
    result = download(
        f"{own_mirror.url}{YELLOW}", YELLOW.rsplit("/", 1)[-1], tmp_path, FAST, log=republish
    )
    assert result.local_path.read_bytes() == new != old
    assert result.sha256 == hashlib.sha256(new).hexdigest()
    lines = gzip.decompress(new).decode().splitlines()
    assert result.row_count == len([line for line in lines if line.strip()]) - 1
    assert own_mirror.ranges_seen(YELLOW) == [None, "bytes=5000-"]  # asked; sent whole
    assert (result.attempts, result.received) == (2, 5000 + len(new))


def test_a_server_ignoring_if_range_never_joins_two_versions(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    """Republished at the same size while the download waits to resume, and the server
    answers the Range from the new file (it ignores If-Range): the copy was the old start
    and the new end, its sha256 that of neither, and stored as verified."""
    path = "/trip-data/fhvhv_tripdata_2021-01.parquet"
    target = Path(own_mirror.root) / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)

    def version(first: int) -> bytes:
        sink = io.BytesIO()
        fares = pa.array(range(first, first + 1000), pa.int64())
        pq.write_table(pa.table({"fare": fares}), sink, compression="NONE")
        return sink.getvalue()

    old, new = version(0), version(5000)
    assert len(old) == len(new) and old != new
    target.write_bytes(old)
    os.utime(target, (1_600_000_000, 1_600_000_000))

    def republish(_: str) -> None:  # said between the attempts, before the pause
        target.write_bytes(new)

    own_mirror.inject(path, Fault.truncate(len(old) // 2), Fault.ignore_if_range())
    result = download(f"{own_mirror.url}{path}", target.name, tmp_path, FAST, log=republish)
    assert result.local_path.read_bytes() == new
    assert result.sha256 == hashlib.sha256(new).hexdigest()
    assert own_mirror.ranges_seen(path) == [None, f"bytes={len(old) // 2}-", None]
    assert result.attempts == 3


def test_retries_give_up_with_the_url_and_leave_nothing(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    mirror.inject(YELLOW, *[Fault.status(500)] * 4)
    with pytest.raises(DownloadError, match=r"gave up after 4 attempts.*HTTP 500") as error:
        fetch(mirror, YELLOW, tmp_path)
    assert mirror.url + YELLOW in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("asked", ["soon", "3600"], ids=["unparsable", "an-hour"])
def test_a_retry_after_header_never_fails_nor_stalls_the_download(
    mirror: FaultyMirror, tmp_path: Path, asked: str
) -> None:
    """urllib3's own sleep raised InvalidHeader (no URL, no retry) on "soon", and slept the
    hour a server asked for, per attempt, holding a download slot."""
    mirror.inject(YELLOW, Fault.status(503, retry_after=asked))
    policy = RetryPolicy(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.3)
    said: list[str] = []
    started = time.monotonic()
    result = download(f"{mirror.url}{YELLOW}", "y.csv.gz", tmp_path, policy, log=said.append)
    assert time.monotonic() - started < 5
    assert result.local_path.read_bytes() == published(mirror, YELLOW)
    assert mirror.requests_seen(YELLOW) == ["GET", "GET"]
    waited = float(said[0].split("retrying in ", 1)[1].split(" s", 1)[0])
    assert (waited == 0.3) if asked == "3600" else (waited < 0.3)


def test_the_sources_longest_wait_is_a_setting_of_the_resource() -> None:
    """The README names the source's `backoff_max_seconds`: the resource had no such
    field, and pydantic's leniency took the value without using it."""
    from taxi_assets.resources import TaxiSourceResource

    assert TaxiSourceResource(backoff_max_seconds=10).retry_policy().backoff_max_seconds == 10


def test_a_redirect_loop_or_a_redirect_to_no_url_fails_at_once_naming_the_url(
    mirror: FaultyMirror, tmp_path: Path
) -> None:
    url = f"{mirror.url}{YELLOW}"
    mirror.inject(YELLOW, *[Fault.status(302, headers={"Location": url})] * 40)
    with pytest.raises(DownloadError, match=r"more than 30 redirects .*\(not retried\)") as error:
        fetch(mirror, YELLOW, tmp_path)
    assert url in str(error.value)
    assert len(mirror.requests_seen(YELLOW)) == 31  # one attempt: requests' 30 redirects
    mirror.clear()
    mirror.inject(YELLOW, Fault.status(302, headers={"Location": "ftp://127.0.0.1/file"}))
    with pytest.raises(DownloadError, match="redirected to a URL that cannot be fetched"):
        head(url, FAST)
    assert list(tmp_path.iterdir()) == []


def test_404_is_not_retried(mirror: FaultyMirror, tmp_path: Path) -> None:
    path = "/yellow/yellow_tripdata_2031-01.csv.gz"
    with pytest.raises(SourceNotFound, match=r"not published at http://127\.0\.0\.1:\d+/yellow"):
        fetch(mirror, path, tmp_path)
    assert mirror.requests_seen(path) == ["GET"]
    with pytest.raises(SourceNotFound):
        head(f"{mirror.url}{path}", FAST)


def test_html_error_page_with_status_200_is_rejected(mirror: FaultyMirror, tmp_path: Path) -> None:
    mirror.inject(YELLOW, Fault.html_200())
    with pytest.raises(DownloadError, match="HTML page instead of yellow_tripdata_2021-01.csv.gz"):
        fetch(mirror, YELLOW, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_gzip_is_rejected(mirror: FaultyMirror, tmp_path: Path) -> None:
    mirror.inject(YELLOW, Fault.corrupt())
    with pytest.raises(DownloadError, match="not a complete gzip stream"):
        fetch(mirror, YELLOW, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_truncated_gzip_file_is_rejected(own_mirror: FaultyMirror, tmp_path: Path) -> None:
    target = Path(own_mirror.root) / YELLOW.lstrip("/")
    target.write_bytes(target.read_bytes()[:-100])  # published truncated: sizes agree
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="not a complete gzip stream"):
        fetch(own_mirror, YELLOW, dest)
    assert list(dest.iterdir()) == []


def test_a_file_whose_lines_end_with_a_lone_cr_is_refused_naming_it(
    own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    """Classic Mac OS line endings: the row count cannot be taken, so the file is refused
    by name at once (it used to fail with the csv module's bare 'new-line character seen
    in unquoted field')."""
    import gzip

    target = Path(own_mirror.root) / YELLOW.lstrip("/")
    text = gzip.decompress(target.read_bytes()).replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    target.write_bytes(gzip.compress(text))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=r"yellow_tripdata_2021-01.csv.gz: its lines end "):
        fetch(own_mirror, YELLOW, dest)
    assert list(dest.iterdir()) == []


def test_parquet_without_footer_is_rejected(own_mirror: FaultyMirror, tmp_path: Path) -> None:
    target = Path(own_mirror.root) / PARQUET.lstrip("/")
    target.write_bytes(target.read_bytes()[:-64])
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="no readable Parquet footer"):
        fetch(own_mirror, PARQUET, dest)
    assert list(dest.iterdir()) == []


def test_parquet_row_count_comes_from_the_footer(mirror: FaultyMirror, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    result = fetch(mirror, PARQUET, tmp_path)
    footer = pq.ParquetFile(result.local_path)
    assert result.row_count == footer.metadata.num_rows > 0
    assert result.columns == tuple((f.name, str(f.type)) for f in footer.schema_arrow)


def test_head_reports_etag_and_size(mirror: FaultyMirror) -> None:
    remote = head(f"{mirror.url}{YELLOW}", FAST)
    assert remote.size == len(published(mirror, YELLOW))
    assert remote.etag


# A resolver's answers cannot be caused on loopback alone (the machine's resolver is not
# ours to configure), so these two tests replace socket.getaddrinfo for one made-up host
# only: the one fault in this file that is simulated, not caused.
UNKNOWN_HOST = "no-such-host.invalid"


def fail_resolving(monkeypatch: pytest.MonkeyPatch, code: int, message: str) -> list[str]:
    """getaddrinfo fails with ``code`` for UNKNOWN_HOST; the hosts it was asked for."""
    import socket

    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if host == UNKNOWN_HOST:
            asked.append(host)
            raise socket.gaierror(code, message)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_an_unknown_host_fails_at_once_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    asked = fail_resolving(monkeypatch, socket.EAI_NONAME, "Name or service not known")
    url = f"http://{UNKNOWN_HOST}/trip-data/yellow_tripdata_2021-01.parquet"
    expected = (
        rf"{url}: the host '{UNKNOWN_HOST}' is unknown to DNS \(Name or service not known\); "
        r"check the URL \(not retried\)"
    )
    with pytest.raises(DownloadError, match=expected):
        download(url, "yellow_tripdata_2021-01.parquet", tmp_path, FAST)
    assert asked == [UNKNOWN_HOST]  # one attempt, not FAST's four
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="unknown to DNS"):
        head(url, FAST)
    assert len(asked) == 2


def test_a_resolver_that_did_not_answer_is_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    asked = fail_resolving(monkeypatch, socket.EAI_AGAIN, "Temporary failure in name resolution")
    url = f"http://{UNKNOWN_HOST}/yellow_tripdata_2021-01.parquet"
    with pytest.raises(DownloadError, match=r"gave up after 4 attempts.*Temporary failure"):
        download(url, "yellow_tripdata_2021-01.parquet", tmp_path, FAST)
    assert len(asked) == 4


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by nobody anyone trusts, and its key (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a re-signing proxy")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_certificate_nobody_trusts_fails_at_once_saying_what_to_set(
    mirror: FaultyMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source reached over TLS with a certificate the system does not trust, as behind
    a company proxy that re-signs TLS (a real HTTPS server on 127.0.0.1 with a self-signed
    certificate). It was retried like a dropped connection, 5 attempts over ~15 s, and
    failed with urllib3's chain; now it fails at once, saying what to set, and setting it
    works."""
    import ssl
    import threading
    import time
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    cert, key = self_signed_certificate(tmp_path)
    handler = partial(SimpleHTTPRequestHandler, directory=str(mirror.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}{YELLOW}"
    slow = RetryPolicy(attempts=5, backoff_seconds=1.0, read_timeout_seconds=5)
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError) as raised:
            download(url, "yellow_tripdata_2021-01.csv.gz", tmp_path / "dest", slow)
        assert time.monotonic() - started < 1.0  # no second attempt
        said = str(raised.value)
        assert "TLS certificate of '127.0.0.1' could not be verified" in said, said
        assert "REQUESTS_CA_BUNDLE" in said and "not retried" in said
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        result = download(url, "yellow_tripdata_2021-01.csv.gz", tmp_path / "dest", slow)
        assert result.local_path.read_bytes() == published(mirror, YELLOW)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:S3CRET-pw@127.0.0.1:99999/yellow_tripdata_2021-01.parquet",  # no port
        "http://alice:S3C/RET-pw@127.0.0.1:9/yellow_tripdata_2021-01.parquet",  # "/" unescaped
        "http://alice:S3C#RET-pw@127.0.0.1:9/yellow_tripdata_2021-01.parquet",  # "#" unescaped
    ],
)
def test_a_source_url_requests_cannot_send_names_no_password(url: str, tmp_path: Path) -> None:
    """requests' InvalidURL escaped raw, its text quoting the URL or a piece of it with the
    password; and the mask stopped at a "/" in a password, leaving it whole."""
    with pytest.raises(DownloadError) as error:
        download(url, "yellow_tripdata_2021-01.parquet", tmp_path, FAST)
    said = str(error.value)
    assert "S3C" not in said and "RET-pw" not in said, said
    assert "is not a URL that can be fetched" in said and "%2F" in said
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_a_proxy_url_requests_cannot_use_names_the_setting_and_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy password holding an unescaped "/": the error said "redirected" (no
    redirect happened) and quoted requests' parser, "'bob:SEC' is not a valid host"."""
    monkeypatch.setenv("HTTP_PROXY", "http://bob:SEC/RETpw@proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(DownloadError) as error:
        download("http://example.invalid/f.parquet", "f.parquet", tmp_path, FAST)
    said = str(error.value)
    assert "SEC" not in said and "RETpw" not in said, said
    assert "the proxy the environment names for it" in said and "redirected" not in said


ZONES_PATH = "/misc/taxi_zone_lookup.csv"


def step_failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's dg.Failure description (no traceback in the run's summary)."""
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    return data.user_failure_data.description or ""


def test_a_zone_lookup_that_is_no_csv_of_zones_is_not_stored(
    own_mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The zone lookup is a plain CSV: no gzip stream or Parquet footer to fail on. An error
    page served as text/plain (or as "Text/HTML"), or an empty body, became the current
    raw revision and the run succeeded; the lake step then failed on it."""
    lake = tmp_path / "lake"
    resources = pipeline_resources(own_mirror.url, lake)
    html_as_text = Fault.status(200, body=HTML_ERROR_PAGE)
    html_in_capitals = Fault.html_200(content_type="Text/HTML; charset=utf-8")
    messages = []
    for fault in (html_as_text, html_in_capitals):
        own_mirror.inject(ZONES_PATH, fault, methods=["GET"])
        result = run("raw/taxi_zone_lookup", resources, instance, raise_on_error=False)
        messages.append(step_failure_message(result))
    zones = Path(own_mirror.root) / ZONES_PATH.lstrip("/")
    published_zones = zones.read_bytes()
    zones.write_bytes(b"")
    result = run("raw/taxi_zone_lookup", resources, instance, raise_on_error=False)
    messages.append(step_failure_message(result))
    url = f"{own_mirror.url}{ZONES_PATH}"
    assert messages[0] == (
        f"{url}: the answer is not taxi_zone_lookup.csv: its first line ('<!DOCTYPE html>') "
        "names none of the zones contract's columns (an error page?); nothing was stored"
    )
    assert "HTML page instead of taxi_zone_lookup.csv" in messages[1]
    assert messages[2] == (
        f"{url}: the server answered HTTP 200 with an empty body instead of "
        "taxi_zone_lookup.csv; nothing was stored"
    )
    assert not (lake / "raw" / "taxi_zone_lookup").exists()
    zones.write_bytes(published_zones)
    assert run("raw/taxi_zone_lookup", resources, instance).success


def test_a_probe_of_a_server_answering_a_byte_at_a_time_ends_at_its_bound() -> None:
    """requests' timeouts bound each read: headers sent a byte every 0.2 s never trip a 1 s
    timeout, and a new-month sensor tick sat through such a server for 77 s (Dagster ends a
    tick at 60 s). The probe's whole answer is bounded now."""
    import socket
    import threading

    from taxi_assets.resources import TaxiSourceResource

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for byte in b"X-Slow: " + b"a" * 10_000:
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client hung up

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/fhvhv_tripdata_2026-10.parquet"
    source = TaxiSourceResource(source="tlc", tlc_url=url, probe_timeout_seconds=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(
            DownloadError, match=r"no complete answer within 1 s \(connect and answer"
        ):
            source.probe(url)
        took = time.monotonic() - started
    finally:
        stop.set()
        server.join(timeout=10)
        listener.close()
    assert took < 3, took


def test_a_probe_whose_time_went_to_a_slow_resolver_keeps_the_answer(
    mirror: FaultyMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound passed while the name was resolved (no connection to cut): the answer
    that came was thrown away as "too slow". A slow resolver cannot be had on loopback:
    ``getaddrinfo`` is made to take 1.2 s (a mock, for that fault alone)."""
    import socket

    from taxi_assets.resources import TaxiSourceResource

    resolve = socket.getaddrinfo

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(1.2)
        return resolve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    url = f"{mirror.url}{YELLOW}"
    source = TaxiSourceResource(source="dtc", dtc_url=mirror.url, probe_timeout_seconds=1.0)
    answer = source.probe(url)
    assert answer.size == len(published(mirror, YELLOW))
