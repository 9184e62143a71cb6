"""A tiny static HTTP mirror of a folder, standing in for the TLC/CDN upstreams.

It streams files in 1 MiB chunks (700 MB months are fine), answers HEAD with
the same headers, derives a strong-ish ETag from size + mtime_ns (so it
changes when a file is regenerated), supports single byte ranges and
If-None-Match, and resolves every request against the live folder (files may
appear or disappear while it runs). Subclasses (see the tests' FaultyMirror)
hook ``respond`` to inject faults.
"""

from __future__ import annotations

import email.utils
import io
import logging
import os
import posixpath
import re
import stat
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20

# By the last suffix: "x.csv.gz" is gzip, "x.csv" is CSV.
CONTENT_TYPES = {
    ".gz": "application/gzip",
    ".parquet": "application/octet-stream",
    ".csv": "text/csv",
}

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


# missing_status: answer for a missing file as its host would. The course mirror's files
# are in a folder per service (GitHub: 404); TLC's are at the root or in misc/ (S3: 403).
AS_EACH_HOST = 0
COURSE_FOLDERS = frozenset({"yellow", "green", "fhv", "fhvhv"})
S3_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class ForbiddenPath(ValueError):
    """A request path that would escape the mirror root."""


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def etag_for(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


class MirrorRequestHandler(BaseHTTPRequestHandler):
    """Delegates every GET/HEAD to the owning MirrorServer."""

    protocol_version = "HTTP/1.1"  # keep-alive, like a real CDN
    server_version = "taxi-devdata-mirror"
    # Headers and body go out as separate writes: with Nagle's algorithm the body waits for
    # the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.mirror.respond(self)

    def do_HEAD(self) -> None:
        self.server.mirror.respond(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: no stderr line per request


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not block shutdown
    mirror: MirrorServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-response (timeouts, aborted downloads) are
        # routine for a mirror; socketserver would print a traceback each time.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.exception("mirror: error while serving %s", client_address)


class MirrorServer:
    """Serves ``root`` on ``host:port`` (port 0 picks a free one) from a thread."""

    handler_class: type[MirrorRequestHandler] = MirrorRequestHandler

    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, missing_status: int = 404
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        # 404 for a missing file, like the course mirror (GitHub); 403 like TLC's file host
        # (S3 behind CloudFront answers AccessDenied for a key that does not exist);
        # AS_EACH_HOST: each path as its host would (one server standing for both).
        self.missing_status = missing_status
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Set on stop() so handlers sleeping on purpose (fault delays) wake up.
        self.stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("MirrorServer.url is only valid after start()")
        host = self._httpd.server_address[0]
        return (
            f"http://{host if isinstance(host, str) else host.decode()}:{self._httpd.server_port}"
        )

    def start(self) -> MirrorServer:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self.handler_class)
        httpd.mirror = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devdata-mirror",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling --------------------------------------------------

    @staticmethod
    def url_path(handler: BaseHTTPRequestHandler) -> str:
        """The decoded request path, e.g. '/yellow/yellow_tripdata_2021-01.csv.gz'."""
        target = handler.path
        if target.lower().startswith(("http://", "https://")):  # absolute-form target
            target = urlsplit(target).path
        # Not urlsplit for origin-form: it would read "//x/y" as host "x", path "/y".
        return unquote(target.split("?", 1)[0].split("#", 1)[0])

    def resolve(self, url_path: str) -> Path:
        """Map a URL path to a file under root; raises ForbiddenPath on traversal."""
        parts = url_path.split("/")
        if any(p in ("..", ".") or "\\" in p or "\x00" in p for p in parts):
            raise ForbiddenPath(url_path)
        rel = posixpath.normpath(url_path.lstrip("/")) if url_path.strip("/") else ""
        root = self.root.resolve()
        target = (root / rel).resolve()
        if target != root and root not in target.parents:  # e.g. a symlink out of root
            raise ForbiddenPath(url_path)
        return target

    def respond(self, handler: MirrorRequestHandler) -> None:
        """Serve one GET/HEAD normally. Subclasses wrap this to inject faults."""
        self.serve_file(handler)

    def send_simple(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", *,
        content_type: str = "text/plain; charset=utf-8", headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """A small complete response (errors, HTML pages); HEAD gets no body."""
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command != "HEAD" and body:
            handler.wfile.write(body)

    def send_missing(self, handler: BaseHTTPRequestHandler) -> None:
        status = self.missing_status
        if status == AS_EACH_HOST:
            first_folder = self.url_path(handler).lstrip("/").split("/", 1)[0]
            status = (
                HTTPStatus.NOT_FOUND if first_folder in COURSE_FOLDERS else HTTPStatus.FORBIDDEN
            )
        if status == HTTPStatus.FORBIDDEN:
            body = S3_ACCESS_DENIED
            self.send_simple(handler, HTTPStatus.FORBIDDEN, body, content_type="application/xml")
        else:
            self.send_simple(handler, status, b"not found\n")

    def serve_file(
        self,
        handler: BaseHTTPRequestHandler,
        *,
        body_limit: int | None = None,
        mutate: Callable[[int, bytearray], None] | None = None,
    ) -> bool:
        """Send headers and (for GET) the body of the requested file.

        body_limit stops after that many body bytes (for truncation faults);
        mutate(offset, chunk) may alter each chunk in place (corruption faults).
        Returns True if the full body was sent.
        """
        url_path = self.url_path(handler)
        try:
            path = self.resolve(url_path)
        except ForbiddenPath:
            self.send_simple(handler, HTTPStatus.FORBIDDEN, b"forbidden\n")
            return False
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; fstat needs the handle
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            self.send_missing(handler)
            return False
        with f:
            # fstat the open handle: headers and body describe the same file
            # even if it is replaced concurrently (generators use os.replace).
            st = os.fstat(f.fileno())
            if not _is_regular(st):
                self.send_missing(handler)
                return False
            etag = etag_for(st)
            headers = {
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                "Accept-Ranges": "bytes",
            }
            if etag in _etag_list(handler.headers.get("If-None-Match")):
                handler.send_response(HTTPStatus.NOT_MODIFIED)
                for key, value in headers.items():
                    handler.send_header(key, value)
                handler.end_headers()
                return True
            size = st.st_size
            start, length, status = 0, size, HTTPStatus.OK
            byte_range = _parse_range(handler.headers.get("Range"), size)
            if_range = handler.headers.get("If-Range")
            if if_range is not None and if_range not in (etag, headers["Last-Modified"]):
                byte_range = None  # another version than the client's: the whole file (RFC 9110)
            if isinstance(byte_range, str):  # "invalid"
                self.send_simple(handler, 416, b"", headers={"Content-Range": f"bytes */{size}"})
                return False
            if byte_range is not None:
                start, end = byte_range
                length, status = end - start + 1, HTTPStatus.PARTIAL_CONTENT
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            handler.send_response(status)
            handler.send_header("Content-Type", content_type(path))
            handler.send_header("Content-Length", str(length))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            if handler.command == "HEAD":
                return True
            return _copy(f, handler.wfile, start, length, body_limit, mutate)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _etag_list(header: str | None) -> list[str]:
    if not header:
        return []
    return [t.strip().removeprefix("W/") for t in header.split(",")]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single 'bytes=a-b' range -> (start, end inclusive); None = whole file."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # unsupported forms (multi-range): serve the whole file
    if not m.group(1):  # suffix: last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n and size else "invalid"
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        return "invalid"
    return start, end


def _copy(
    f: BinaryIO, out: BinaryIO | io.BufferedIOBase, start: int, length: int,
    limit: int | None, mutate: Callable[[int, bytearray], None] | None,
) -> bool:  # fmt: skip
    """Stream length bytes from offset start; never holds more than one chunk."""
    f.seek(start)
    todo = length if limit is None else min(length, limit)
    offset = start
    try:
        while todo > 0:
            chunk = bytearray(f.read(min(CHUNK_BYTES, todo)))
            if not chunk:
                return False  # file shrank under us
            if mutate is not None:
                mutate(offset, chunk)
            out.write(chunk)
            todo -= len(chunk)
            offset += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return False  # client went away (e.g. timed out): not our problem
    return limit is None or limit >= length
