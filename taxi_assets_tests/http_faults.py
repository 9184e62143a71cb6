"""A MirrorServer that misbehaves on demand, for testing download robustness.

    with FaultyMirror(root) as m:
        m.inject("/yellow_tripdata_2021-01.parquet", Fault.status(503), Fault.truncate(100))
        ...  # 1st request -> 503, 2nd -> truncated body, 3rd+ -> normal
        assert m.requests_seen("/yellow_tripdata_2021-01.parquet") == ["GET", "GET", "GET"]

Each injected fault is consumed by exactly one request, in order. The same ``Fault`` values
drive :class:`taxi_assets_tests.fault_proxy.FaultProxy` in front of object store emulators.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from taxi_assets.devdata.mirror import MirrorRequestHandler, MirrorServer

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    b"<body><h1>We'll be right back</h1><p>The site is under maintenance.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    kind: str
    amount: float = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # of a status fault; None: a short text
    content_type: str | None = None  # of a status or html_200 fault; None: the usual one

    @staticmethod
    def status(
        code: int,
        retry_after: str | None = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Fault:
        """An error status with a short text body (or ``body``, e.g. a provider's XML
        error); 429 carries Retry-After: 0."""
        if retry_after is None and code == 429:
            retry_after = "0"
        extra = {"Retry-After": retry_after} if retry_after is not None else {}
        return Fault("status", code, {**extra, **(headers or {})}, body, content_type)

    @staticmethod
    def truncate(n_bytes: int) -> Fault:
        """Full Content-Length header, only n_bytes of body, then a clean close."""
        return Fault("truncate", n_bytes)

    @staticmethod
    def reset_after(n_bytes: int) -> Fault:
        """n_bytes of body, then an abortive close (RST via SO_LINGER 0)."""
        return Fault("reset_after", n_bytes)

    @staticmethod
    def stall_after(n_bytes: int) -> Fault:
        """n_bytes of body, then nothing more read, the connection held open until the
        proxy is cleared or stopped: a server that stops taking an upload, its kernel
        still acknowledging the client's window probes (so TCP itself never gives up).
        The proxy's only (:class:`taxi_assets_tests.fault_proxy.FaultProxy`)."""
        return Fault("stall_after", n_bytes)

    @staticmethod
    def stall_answer_after(n_bytes: int) -> Fault:
        """The server's answer with its whole Content-Length but only n_bytes of its body,
        then nothing more sent, the connection held open until the proxy is cleared or
        stopped: a download whose server or network stalled. The proxy's only."""
        return Fault("stall_answer_after", n_bytes)

    @staticmethod
    def delay(seconds: float) -> Fault:
        """Sleep before responding (normally), so a client with a shorter timeout gives up."""
        return Fault("delay", seconds)

    @staticmethod
    def html_200(content_type: str = "text/html; charset=utf-8") -> Fault:
        """200 OK with an HTML maintenance page instead of the file."""
        return Fault("html_200", content_type=content_type)

    @staticmethod
    def ignore_if_range() -> Fault:
        """Served as a server that ignores If-Range does: a Range is answered from the file
        as it is now, whatever version the client holds the start of."""
        return Fault("ignore_if_range")

    @staticmethod
    def corrupt(n_bytes: int = 4096) -> Fault:
        """Correct status and length, but n_bytes in the middle bit-flipped."""
        return Fault("corrupt", n_bytes)


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")


class FaultyMirror(MirrorServer):
    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, missing_status: int = 404
    ) -> None:
        super().__init__(root, host, port, missing_status)
        self._lock = threading.Lock()
        self._faults: dict[str, deque[tuple[Fault, frozenset[str] | None]]] = defaultdict(deque)
        self._seen: dict[str, list[str]] = defaultdict(list)
        self._ranges: dict[str, list[str | None]] = defaultdict(list)

    def inject(self, path: str, *faults: Fault, methods: Iterable[str] | None = None) -> None:
        """Queue faults for path; methods=("GET",) lets HEADs pass untouched."""
        allowed = frozenset(m.upper() for m in methods) if methods is not None else None
        with self._lock:
            self._faults[_norm(path)].extend((f, allowed) for f in faults)

    def requests_seen(self, path: str) -> list[str]:
        """Methods of every request to path so far, in arrival order."""
        with self._lock:
            return list(self._seen.get(_norm(path), []))

    def ranges_seen(self, path: str) -> list[str | None]:
        """The Range header of every request to path so far (None: the whole file)."""
        with self._lock:
            return list(self._ranges.get(_norm(path), []))

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._faults.get(_norm(path), ()))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()
            self._ranges.clear()

    def _take(self, method: str, path: str, range_header: str | None = None) -> Fault | None:
        with self._lock:
            self._seen[path].append(method)
            self._ranges[path].append(range_header)
            queue = self._faults.get(path)
            if queue and (queue[0][1] is None or method in queue[0][1]):
                return queue.popleft()[0]
        return None

    def respond(self, handler: MirrorRequestHandler) -> None:
        path = self.url_path(handler)
        fault = self._take(handler.command, path, handler.headers.get("Range"))
        if fault is None:
            self.serve_file(handler)
        elif fault.kind == "status":
            body = fault.body or f"{int(fault.amount)} injected fault\n".encode()
            kind = {"content_type": fault.content_type} if fault.content_type else {}
            self.send_simple(handler, int(fault.amount), body, headers=fault.headers, **kind)
        elif fault.kind == "html_200":
            self.send_simple(handler, 200, HTML_ERROR_PAGE, content_type=str(fault.content_type))
        elif fault.kind == "delay":
            if self.stopping.wait(fault.amount):
                handler.close_connection = True
                return
            self.serve_file(handler)
        elif fault.kind == "truncate":
            # Closing is what makes the short body detectable (keep-alive would hang).
            handler.close_connection = True
            self.serve_file(handler, body_limit=int(fault.amount))
        elif fault.kind == "reset_after":
            handler.close_connection = True
            self.serve_file(handler, body_limit=int(fault.amount))
            abort_connection(handler)
        elif fault.kind == "ignore_if_range":
            del handler.headers["If-Range"]
            self.serve_file(handler)
        elif fault.kind == "corrupt":
            self.serve_file(handler, mutate=self._flipper(path, int(fault.amount)))
        else:  # pragma: no cover - Fault constructors are the only source
            raise ValueError(fault.kind)

    def _flipper(self, path: str, n_bytes: int):  # noqa: ANN202
        try:
            size = self.resolve(path).stat().st_size
        except (OSError, ValueError):
            return None
        lo = max(0, size // 2 - n_bytes // 2)
        hi = min(size, lo + n_bytes)

        def mutate(offset: int, chunk: bytearray) -> None:
            a, b = max(lo, offset), min(hi, offset + len(chunk))
            for i in range(a - offset, b - offset):  # at most n_bytes iterations
                chunk[i] ^= 0xFF

        return mutate


def abort_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close with SO_LINGER 0 so the kernel sends RST instead of FIN."""
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()  # drop makefile refs, else close() is deferred
        sock.close()
    except OSError:
        pass
