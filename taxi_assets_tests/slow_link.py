"""A proxy (TCP on 127.0.0.1, or between Unix sockets) that passes what clients send on
at a fixed rate: a slow network link, for real, in front of a real server.

    with SlowLink(("127.0.0.1", server_port), bytes_per_s=2_000_000) as link:
        ...  # point the client at link.address
    with SlowLink("/run/server/socket", bytes_per_s=2_000_000, listen="/tmp/x/socket"):
        ...  # the same between Unix sockets (PostgreSQL's local connections)

Only the client-to-server direction is slowed (a COPY's rows, not the server's answers).
When either side closes or resets its connection, the proxy closes the other side at
once, as a broken link would: what it still held for the server is dropped.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

CHUNK = 16 * 1024
Address = tuple[str, int] | str  # (host, port) on TCP, or a Unix socket's path


class SlowLink:
    def __init__(
        self,
        upstream: Address,
        bytes_per_s: float,
        listen: Address = ("127.0.0.1", 0),
        receive_buffer: int | None = None,
    ) -> None:
        """``receive_buffer``: the size of the kernel's buffer for what clients send (TCP
        only; the kernel's own by default, several MB on loopback, which a client fills at
        its own speed before the link's rate holds it back)."""
        self.upstream = upstream
        self.bytes_per_s = bytes_per_s
        if isinstance(listen, str):
            self._listener = socket.socket(socket.AF_UNIX)
            self._listener.bind(listen)
            self._listener.listen()
        else:
            self._listener = socket.socket(socket.AF_INET)
            if receive_buffer is not None:
                # Before listen(): accepted sockets inherit it, window scaling included.
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self._listener.bind(listen)
            self._listener.listen()
        self.address: Address = self._listener.getsockname()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> SlowLink:
        threading.Thread(target=self._accept, name="slow-link-accept", daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._closed = True
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            try:
                server = _connect(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._closed:
                    _close(client)
                    _close(server)
                    return
                self._sockets += [client, server]
            for source, target, rate in ((client, server, self.bytes_per_s), (server, client, 0)):
                threading.Thread(
                    target=self._pump, args=(source, target, rate), daemon=True
                ).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, bytes_per_s: float) -> None:
        """Copy ``source`` to ``target``, at most ``bytes_per_s`` (0: unlimited). The rate
        holds from the first byte of each burst: an idle connection earns no credit."""
        free_at = time.monotonic()  # when the link has carried everything sent so far
        try:
            while data := source.recv(CHUNK):
                target.sendall(data)
                if bytes_per_s:
                    free_at = max(free_at, time.monotonic()) + len(data) / bytes_per_s
                    time.sleep(max(0.0, free_at - time.monotonic()))
        except OSError:
            pass  # the other pump closed the pair, or a side reset: the link is down
        finally:
            _close(source)
            _close(target)


def _connect(address: Address) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
        return sock
    return socket.create_connection(address)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected (a listener, or already reset)
    sock.close()
