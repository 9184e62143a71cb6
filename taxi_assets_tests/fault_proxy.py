"""A reverse proxy on 127.0.0.1 that misbehaves on demand in front of an object store
emulator (moto_server, Azurite, the GCS emulator): real HTTP faults for real clients.

    proxy = FaultProxy(emulator_url).start()      # point the client at proxy.url
    proxy.inject(r"partNumber=3", Fault.reset_after(1024), methods=("PUT",))
    proxy.inject(r"^/taxi-lake/", Fault.status(503, body=S3_SLOW_DOWN), methods=("PUT",))
    ...
    proxy.requests_to("PUT", r"partNumber=")     # requests seen so far

The faults are :class:`taxi_assets_tests.http_faults.Fault` values, as for the HTTP
mirror, each consumed by one matching request, in order:

- ``Fault.status(code, body=..., headers=...)``: answered instead of the server (the
  request body is read first), e.g. S3's ``503 SlowDown`` or Azure's ``503 ServerBusy``;
- ``Fault.reset_after(n)``: ``n`` bytes of the request body are read, then the connection
  is reset (RST), as a crashed server or a broken network would;
- ``Fault.delay(seconds)``: the request is forwarded after a pause;
- ``Fault.stall_after(n)``: ``n`` bytes of the request body are read, then nothing more,
  the connection held open (until the proxy is cleared or stopped), as by a stalled server;
- ``Fault.truncate(n)``: the server's answer is passed on with its whole Content-Length
  but only ``n`` bytes of its body, then the connection is closed, as a connection lost
  in the middle of a download;
- ``Fault.stall_answer_after(n)``: the same, but the connection is held open after the
  ``n`` bytes (until the proxy is cleared or stopped), as a download that stalls.

Patterns are searched in ``path?query``. Requests are forwarded with their ``Host``
header unchanged, so S3 signatures (SigV4 signs the host) still validate.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from taxi_assets_tests.http_faults import Fault, abort_connection

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # http.server has already answered 100 Continue
    }
)


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    faults: list[Fault]
    after: int  # matching requests to let through first

    def matches(self, method: str, target: str) -> bool:
        return (self.methods is None or method in self.methods) and bool(
            self.pattern.search(target)
        )


class FaultProxy:
    """Forwards everything to ``upstream`` except the injected faults."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._rules: list[_Rule] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path?query, what happened)
        self.arrived: list[tuple[str, str]] = []  # every request, as it arrives
        self._lock = threading.Lock()
        # Set to wake delayed requests (on clear and stop); replaced by a fresh one on clear.
        self._release = threading.Event()
        self._active = 0  # requests being handled
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(
        self,
        pattern: str,
        *faults: Fault,
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Let ``after`` matching requests through, then answer the next ones with
        ``faults`` (one each)."""
        allowed = frozenset(m.upper() for m in methods) if methods is not None else None
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), allowed, list(faults), after))

    def clear(self) -> None:
        """Forget the faults not yet consumed and the request log; requests still held by
        a delay are dropped (their client is gone: a killed process, an earlier test)."""
        with self._lock:
            self._rules.clear()
            self.log.clear()
            self.arrived.clear()
            self._release.set()
            self._release = threading.Event()
        self.wait_idle()

    def wait_idle(self, timeout: float = 30) -> None:
        """Until no request is being handled (a client that gave up early does not wait
        for the requests it sent in parallel)."""
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)

    def requests_to(self, method: str, pattern: str) -> int:
        """Matching requests answered (or reset) so far."""
        regex = re.compile(pattern)
        with self._lock:
            return sum(1 for m, target, _ in self.log if m == method and regex.search(target))

    def arrivals(self, method: str, pattern: str) -> int:
        """Matching requests received so far, answered or still held (a delay)."""
        regex = re.compile(pattern)
        with self._lock:
            return sum(1 for m, target in self.arrived if m == method and regex.search(target))

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.faults or not rule.matches(method, target):
                    continue
                if rule.after > 0:
                    rule.after -= 1
                    continue
                return rule.faults.pop(0)
        return None

    def _note_arrival(self, method: str, target: str) -> None:
        with self._lock:
            self.arrived.append((method, target))

    def _record(self, method: str, target: str, outcome: str) -> None:
        # Before the client hears the answer: it may count requests as soon as it has.
        with self._lock:
            self.log.append((method, target, outcome))

    def _enter(self) -> threading.Event:
        with self._lock:
            self._active += 1
            return self._release

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; http.server answers Expect: 100-continue
    # Headers and body go out in separate writes: with Nagle's algorithm on, each answer
    # on a kept-alive connection waits for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    owner: FaultProxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _read_body(self, limit: int | None = None) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while limit is None or len(out) < limit:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(limit, length))

    def _handle(self) -> None:
        release = self.owner._enter()
        try:
            self._handle_one(release)
        finally:
            self.owner._leave()

    def _handle_one(self, release: threading.Event) -> None:
        method, target = self.command, self.path
        self.owner._note_arrival(method, target)
        fault = self.owner._take(method, target)
        if fault is not None and fault.kind == "reset_after":
            self._read_body(limit=int(fault.amount))
            self.owner._record(method, target, "reset")
            self.close_connection = True
            abort_connection(self)
            return
        if fault is not None and fault.kind == "stall_after":
            self._read_body(limit=int(fault.amount))
            self.owner._record(method, target, "stalled")
            release.wait(120)
            self.close_connection = True
            abort_connection(self)
            return
        body = self._read_body()
        if fault is not None and fault.kind == "status":
            self.owner._record(method, target, f"injected {int(fault.amount)}")
            self._answer(int(fault.amount), fault)
            return
        if fault is not None and fault.kind == "delay":
            if release.wait(fault.amount):
                self.close_connection = True
                return
        elif fault is not None and fault.kind == "truncate":
            self._forward(method, target, body, answer_limit=int(fault.amount))
            return
        elif fault is not None and fault.kind == "stall_answer_after":
            self._forward(method, target, body, answer_limit=int(fault.amount), hold=release)
            return
        elif fault is not None:
            raise ValueError(f"the proxy cannot inject {fault.kind!r}")
        self._forward(method, target, body)

    def _answer(self, status: int, fault: Fault) -> None:
        payload = b"" if self.command == "HEAD" else (fault.body or b"")
        self.send_response(status)
        headers = {"Content-Type": "application/xml", **fault.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(
        self,
        method: str,
        target: str,
        body: bytes,
        answer_limit: int | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        """Forward the request and its server's answer; with ``answer_limit``, only that
        many bytes of the answer's body (its Content-Length whole), then the connection
        closed, or first held open until ``hold`` is set (at most 120 s)."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(
            self.owner.upstream_host, self.owner.upstream_port, timeout=120
        )
        try:
            upstream.request(method, target, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except OSError as error:
            self.send_error(502, f"upstream: {error}")
            self.owner._record(method, target, f"upstream error {error}")
            return
        finally:
            upstream.close()
        cut = "stalled" if hold is not None else "cut short"
        self.owner._record(method, target, str(response.status) if answer_limit is None else cut)
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if method == "HEAD":  # no body, but the object's length
            length = response.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            if method != "HEAD" and response.status not in (204, 304):
                self.wfile.write(data if answer_limit is None else data[:answer_limit])
            if answer_limit is not None:
                self.wfile.flush()
                if hold is not None:
                    hold.wait(120)
                self.close_connection = True
        except OSError:  # the client went away (timed out, cancelled, killed)
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle


def wait_for_request(
    proxy: FaultProxy, method: str, pattern: str, count: int = 1, timeout: float = 60
) -> None:
    """Block until ``count`` matching requests have reached the proxy (answered or not)."""
    deadline = time.monotonic() + timeout
    while proxy.arrivals(method, pattern) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {method} {pattern} within {timeout:.0f}s: {proxy.log}")
        time.sleep(0.02)
