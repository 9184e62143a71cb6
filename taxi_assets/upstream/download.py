"""Stream a published file to local disk with retries, counting and verifying it on the way.

Retries live in exactly one layer, the loop in :func:`download` (and :func:`head`): the
HTTP adapter itself never retries, and urllib3's ``Retry`` supplies the policy (status
codes, attempt budget, exponential backoff with jitter, ``Retry-After``).

A download cut midway goes on from where it stopped: the next attempt asks for the rest
(``Range``) of the same file (``If-Range``: its strong ETag, else its Last-Modified), and
the hash and the line count carry on over the bytes already read. A server that answers
with the whole file instead (the file was replaced meanwhile, or it ignores ranges) starts
the download over, so a copy is never made of two versions. An FHVHV month is ~450 MB: a
cut at 90% no longer costs the whole file again.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from taxi_assets.upstream.line_counter import LineCounter, LineEndingError
from taxi_assets.upstream.shown_url import shown_url

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The resolver's answers that another attempt cannot change: the name does not exist (or
# has no address), or the resolver failed for good. EAI_AGAIN, a resolver that did not
# answer in time, stays transient.
_PERMANENT_DNS_ERRORS = frozenset(
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_FAIL", None),
    )
    if code is not None
)
CHUNK_BYTES = 1 << 20
T = TypeVar("T")


class _Masked(Exception):
    """An error whose message shows no URL's credentials, whatever its text quotes (the
    URL, or an underlying error that holds it)."""

    def __init__(self, message: str) -> None:
        super().__init__(shown_url(message))


class SourceNotFound(_Masked):
    """The file is not published (HTTP 404): retrying will not help."""


class SourceForbidden(_Masked):
    """HTTP 403. TLC's file host (S3 behind CloudFront) answers it, not 404, for a file it
    has not published yet, and for every file when the base URL is wrong: what it means is
    for the caller to decide (see upstream/forbidden.py). Retrying will not help."""

    def __init__(self, url: str) -> None:
        super().__init__(f"HTTP 403 Forbidden at {url}")
        self.url = url


class DownloadError(_Masked):
    """The file could not be fetched or failed verification; the message names URL and cause."""


class _Transient(_Masked):
    """A failure worth another attempt (5xx, 429, reset, timeout, short body)."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    connect_timeout_seconds: float = 15.0
    read_timeout_seconds: float = 60.0

    def new_retry(self) -> Retry:
        return Retry(
            total=max(self.attempts - 1, 0),
            backoff_factor=self.backoff_seconds,
            backoff_max=self.backoff_max_seconds,
            backoff_jitter=self.backoff_seconds / 2,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )


@dataclass(frozen=True)
class RemoteFile:
    """What a HEAD request says about a published file."""

    url: str
    size: int | None
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class DownloadedFile:
    """A verified local copy of a published file, byte for byte."""

    url: str
    name: str
    local_path: Path
    size: int
    sha256: str
    etag: str | None
    last_modified: str | None
    row_count: int | None  # counted independently of any parser
    # (name, type) as the file declares them: CSV header names are text, Parquet has types.
    columns: tuple[tuple[str, str], ...] | None = None
    attempts: int = 1  # GET requests made for it
    received: int | None = None  # body bytes received over all attempts (>= size)


def make_session() -> requests.Session:
    session = requests.Session()
    # Byte-for-byte copies: never let the server or client re-encode the body.
    session.headers.update({"Accept-Encoding": "identity", "User-Agent": "taxi_assets"})
    adapter = requests.adapters.HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _with_retries(
    url: str, method: str, policy: RetryPolicy, attempt: Callable[[], T], log: Callable[[str], None]
) -> T:
    retry = policy.new_retry()
    while True:
        try:
            return attempt()
        except _Transient as failure:
            raw = failure.response.raw if failure.response is not None else None
            try:
                retry = retry.increment(method=method, url=url, response=raw, error=failure)
            except MaxRetryError:
                raise DownloadError(
                    f"{url}: gave up after {policy.attempts} "
                    f"attempt{'s' if policy.attempts != 1 else ''}; last error: {failure}"
                ) from failure
            wait = _wait_before_retry(retry, raw, policy)
            log(
                shown_url(
                    f"{url}: {failure}; retrying in {wait:.1f} s "
                    f"({len(retry.history)}/{policy.attempts - 1})"
                )
            )
            time.sleep(wait)


def _wait_before_retry(retry: Retry, raw: object, policy: RetryPolicy) -> float:
    """The backoff, or the server's Retry-After (429, 503) when it asks for longer, at most
    ``backoff_max_seconds``: urllib3's own sleep honours any Retry-After up to 6 hours (each
    attempt then held a download slot for as long) and raises on one it cannot parse
    ("soon"). A Retry-After past the bound costs an attempt early, not the run's hours."""
    wait = retry.get_backoff_time()
    status = getattr(raw, "status", None)
    if raw is not None and status in Retry.RETRY_AFTER_STATUS_CODES:
        try:
            asked = retry.get_retry_after(raw)  # type: ignore[arg-type]
        except InvalidHeader:
            asked = None  # not a number of seconds nor an HTTP date: the backoff applies
        if asked is not None:
            wait = max(wait, asked)
    return min(wait, policy.backoff_max_seconds)


def _get(
    session: requests.Session,
    url: str,
    method: str,
    policy: RetryPolicy,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    timeout = (policy.connect_timeout_seconds, policy.read_timeout_seconds)
    try:
        response = session.request(
            method, url, stream=True, timeout=timeout, allow_redirects=True, headers=headers
        )
    except requests.TooManyRedirects:
        raise DownloadError(
            f"{url}: more than {session.max_redirects} redirects (a loop?): check the source's "
            "TAXI_*_URL setting (not retried)"
        ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, ValueError) as error:
        # The parser's own words quote pieces of the URL it refused, password included:
        # never shown.
        if _sendable(url) and requests.utils.get_environ_proxies(url):
            raise DownloadError(
                f"{url}: the proxy the environment names for it (HTTPS_PROXY, HTTP_PROXY or "
                f"ALL_PROXY) is not a URL that can be used ({type(error).__name__}): write a "
                "/, ?, # or @ in its user name or password as %2F, %3F, %23 or %40 (not "
                "retried)"
            ) from None
        if _sendable(url):
            # The URL is fine: a redirect led to one that is not (ftp://, a bad port).
            raise DownloadError(
                f"{url}: redirected to a URL that cannot be fetched ({type(error).__name__}) "
                "(not retried)"
            ) from None
        # Not a URL requests can send (a port that is no number, a password holding "/" or
        # "#" unescaped).
        raise DownloadError(
            f"{shown_url(url)} is not a URL that can be fetched ({type(error).__name__}): check "
            "the source's TAXI_*_URL setting, and write a /, ?, # or @ in its user name or "
            "password as %2F, %3F, %23 or %40 (not retried)"
        ) from None
    except (requests.ConnectionError, requests.Timeout) as error:
        host = urlsplit(url).hostname
        dns = _permanent_dns_error(error)
        if dns is not None:
            raise DownloadError(
                f"{url}: the host {host!r} is unknown to DNS ({dns.strerror}); "
                "check the URL (not retried)"
            ) from error
        untrusted = _found_in_chain(error, ssl.SSLCertVerificationError)
        if untrusted is not None:
            # Another attempt meets the same certificate. Most often a proxy or gateway
            # that re-signs TLS with its own authority (a company network).
            raise DownloadError(
                f"{url}: the TLS certificate of {host!r} could not be verified "
                f"({untrusted.verify_message or untrusted}); behind a proxy that re-signs "
                "TLS, give its CA certificate in REQUESTS_CA_BUNDLE (not retried)"
            ) from error
        raise _Transient(f"{type(error).__name__}: {error}") from error
    except requests.RequestException as error:
        # Anything else requests raises before an answer: not worth another attempt.
        raise DownloadError(f"{url}: {type(error).__name__}: {error} (not retried)") from None
    if response.status_code == 404:
        response.close()
        raise SourceNotFound(f"not published at {url} (HTTP 404)")
    if response.status_code == 403:
        response.close()
        raise SourceForbidden(url)
    if response.status_code in RETRY_STATUSES:
        response.close()
        raise _Transient(f"HTTP {response.status_code} {response.reason}", response)
    ranged = headers is not None and "Range" in headers
    # The rest of the file (206), or no such rest (416: the file is shorter now).
    if response.status_code != 200 and not (ranged and response.status_code in (206, 416)):
        response.close()
        raise DownloadError(f"{url}: unexpected HTTP {response.status_code} {response.reason}")
    return response


def _sendable(url: str) -> bool:
    """Whether requests can send ``url`` itself (http or https, a valid host and port)."""
    try:
        prepared = requests.Request("HEAD", url).prepare()
        parts = urlsplit(prepared.url or "")
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except (requests.RequestException, ValueError):
        return False
    return parts.scheme in ("http", "https")


def head(
    url: str,
    policy: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> RemoteFile:
    """HEAD ``url`` (no download). Raises :class:`SourceNotFound` on 404 and
    :class:`SourceForbidden` on 403."""
    session = session or make_session()

    def attempt() -> RemoteFile:
        with _get(session, url, "HEAD", policy) as response:
            length = response.headers.get("Content-Length")
            return RemoteFile(
                url=url,
                size=int(length) if length and length.isdigit() else None,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )

    return _with_retries(url, "HEAD", policy, attempt, log)


def download(
    url: str,
    name: str,
    dest_dir: Path,
    policy: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> DownloadedFile:
    """Stream ``url`` to ``dest_dir/name``, verified; nothing is left behind on failure."""
    session = session or make_session()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / name
    partial = dest_dir / f".{name}.part"
    progress = _Progress(name)
    try:
        result = _with_retries(
            url,
            "GET",
            policy,
            lambda: _fetch_once(session, url, name, partial, policy, progress),
            log,
        )
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    return DownloadedFile(**{**result.__dict__, "local_path": final})


class _Progress:
    """What the attempts of one download have read so far: the bytes in the partial file,
    their hash and line count, and what names that version of the file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts = 0
        self.received = 0  # over every attempt, never reset
        self.start_over()

    def start_over(self) -> None:
        self.size = 0
        self.digest = hashlib.sha256()
        self.counter = (
            LineCounter(gzipped=self.name.endswith(".gz")) if ".csv" in self.name else None
        )
        self.total: int | None = None  # the whole file's length, as the server said it
        self.validator: str | None = None  # If-Range: a strong ETag, else Last-Modified
        self.etag: str | None = None
        self.last_modified: str | None = None

    def resume_headers(self) -> dict[str, str] | None:
        if self.size == 0 or self.validator is None:
            return None
        return {"Range": f"bytes={self.size}-", "If-Range": self.validator}

    def began(self, response: requests.Response) -> None:
        """A whole file's answer (200): what names this version of it."""
        length = response.headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.etag = response.headers.get("ETag")
        self.last_modified = response.headers.get("Last-Modified")
        strong = self.etag is not None and not self.etag.startswith("W/")
        self.validator = self.etag if strong else self.last_modified


def _fetch_once(
    session: requests.Session,
    url: str,
    name: str,
    partial: Path,
    policy: RetryPolicy,
    progress: _Progress,
) -> DownloadedFile:
    progress.attempts += 1
    response = _get(session, url, "GET", policy, progress.resume_headers())
    with response:
        if response.status_code == 416:
            asked = progress.size
            progress.start_over()
            raise _Transient(
                f"HTTP 416 for the rest of the file (from byte {asked}): starting over"
            )
        if response.status_code == 206:
            _check_rest(url, response, progress)
            mode = "ab"
        else:
            content_type = response.headers.get("Content-Type", "")
            # Media types are case-insensitive ("Text/HTML; charset=utf-8").
            html = content_type.strip().lower().startswith("text/html")
            if html and not name.endswith((".html", ".htm")):
                raise DownloadError(
                    f"{url}: the server answered HTTP 200 with an HTML page instead of {name}"
                )
            progress.start_over()  # the whole file: a first attempt, or another version
            progress.began(response)
            mode = "wb"
        counter = progress.counter
        try:
            with partial.open(mode) as out:
                for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                    out.write(chunk)
                    progress.digest.update(chunk)
                    progress.size += len(chunk)
                    progress.received += len(chunk)
                    if counter is not None:
                        counter.feed(chunk)
        except zlib.error as error:
            raise DownloadError(f"{url}: {name} is not a complete gzip stream: {error}") from error
        except (requests.RequestException, OSError) as error:
            if isinstance(error, OSError) and not _is_network_error(error):
                raise DownloadError(f"{url}: cannot write {partial}: {error}") from error
            raise _Transient(_cut(progress, error)) from error
        except Exception as error:  # urllib3 ProtocolError / ReadTimeoutError mid-body
            if type(error).__module__.startswith("urllib3"):
                raise _Transient(_cut(progress, error)) from error
            raise
    if progress.total is not None and progress.size != progress.total:
        if progress.size > progress.total:
            progress.start_over()  # more than the file holds: nothing of it to keep
        raise _Transient(
            f"body has {progress.size} bytes, Content-Length says {progress.total}"
            + _resumes(progress)
        )
    row_count, columns = _verify(url, name, partial, counter)
    return DownloadedFile(
        url=url,
        name=name,
        local_path=partial,
        size=progress.size,
        sha256=progress.digest.hexdigest(),
        etag=progress.etag,
        last_modified=progress.last_modified,
        row_count=row_count,
        columns=columns,
        attempts=progress.attempts,
        received=progress.received,
    )


def _check_rest(url: str, response: requests.Response, progress: _Progress) -> None:
    """A 206 must be the rest of the same file: from the byte we stopped at, to its end,
    of the version whose start we hold (the same strong ETag, else Last-Modified). A
    server that ignores If-Range answers with the rest of whatever it has now: a file
    republished at the same size would have been stored as the old start and the new end."""
    content_range = response.headers.get("Content-Range", "")
    expected = f"bytes {progress.size}-"
    total = content_range.rpartition("/")[2]
    if not content_range.startswith(expected) or (
        progress.total is not None and total != str(progress.total)
    ):
        # Not what was asked for: drop what was read and take the whole file next time.
        progress.start_over()
        raise _Transient(f"HTTP 206 with Content-Range {content_range!r}, not {expected}...")
    header = "ETag" if progress.validator == progress.etag else "Last-Modified"
    if response.headers.get(header) != progress.validator:
        said = response.headers.get(header)
        progress.start_over()
        raise _Transient(
            f"HTTP 206 of another version ({header} {said!r}, the start held is "
            f"{progress.validator!r}): starting over"
        )


def _cut(progress: _Progress, error: BaseException) -> str:
    return f"connection failed mid-body after {progress.size} bytes: {error}" + _resumes(progress)


def _resumes(progress: _Progress) -> str:
    return " (the next attempt asks for the rest)" if progress.resume_headers() else ""


def _permanent_dns_error(error: BaseException) -> socket.gaierror | None:
    """The resolver's final "no such host" somewhere in the chain requests and urllib3 wrap
    around it (ConnectionError -> MaxRetryError -> NameResolutionError -> gaierror)."""
    found = _found_in_chain(error, socket.gaierror)
    return found if found is not None and found.errno in _PERMANENT_DNS_ERRORS else None


E = TypeVar("E", bound=BaseException)


def _found_in_chain(error: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in the chain requests and urllib3 wrap around a failure (causes,
    contexts, urllib3's ``reason``, exceptions among the arguments)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [each for each in linked if isinstance(each, BaseException)]
    return None


def _is_network_error(error: OSError) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError))


def _verify(
    url: str, name: str, path: Path, counter: LineCounter | None
) -> tuple[int | None, tuple[tuple[str, str], ...] | None]:
    """Integrity before the file becomes visible: complete gzip stream, readable Parquet footer.

    Returns the row count and the declared columns (header or footer schema)."""
    if counter is not None:
        try:
            rows = counter.finish()
        except (zlib.error, EOFError) as error:
            raise DownloadError(f"{url}: {name} is not a complete gzip stream: {error}") from error
        except LineEndingError as error:
            raise DownloadError(f"{url}: {name}: {error}") from error
        header = counter.header
        return rows, None if header is None else tuple((column, "text") for column in header)
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            footer = pq.ParquetFile(path)
            schema = footer.schema_arrow
            return footer.metadata.num_rows, tuple((f.name, str(f.type)) for f in schema)
        except Exception as error:  # pyarrow raises ArrowInvalid/OSError variants for bad footers
            raise DownloadError(f"{url}: {name} has no readable Parquet footer: {error}") from error
    return None, None
