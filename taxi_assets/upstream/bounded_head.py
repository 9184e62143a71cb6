"""A HEAD request with a bound on its whole answer, not on each read of it.

requests' timeouts apply to each read from the socket: a server (or a proxy) that sends
its answer's headers a byte at a time never trips them, and held a new-month sensor tick
past Dagster's 60 s (measured: 77 s against a 1 s timeout). Here the connections the
request opens are remembered, and when the bound passes they are shut down, which ends the
read at once (a socket's shutdown wakes a thread blocked on it; closing it does not).

Through an HTTP proxy (``HTTPS_PROXY``) the proxy's connection is not watched: the
per-read timeouts alone bound it there.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from taxi_assets.upstream.download import DownloadError, RetryPolicy, make_session

T = TypeVar("T")


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose pools' connections add their sockets to ``sockets``."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self._sockets = sockets
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        sockets = self._sockets

        class WatchedHTTP(HTTPConnection):
            def connect(self) -> None:
                super().connect()
                sockets.append(self.sock)

        class WatchedHTTPS(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                sockets.append(self.sock)

        class HTTPPool(HTTPConnectionPool):
            ConnectionCls = WatchedHTTP

        class HTTPSPool(HTTPSConnectionPool):
            ConnectionCls = WatchedHTTPS

        self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}


def within(url: str, seconds: float, request: Callable[[requests.Session], T]) -> T:
    """``request(session)`` on a session of its own, its connections shut down once
    ``seconds`` have passed: then :class:`DownloadError` naming the bound."""
    sockets: list[socket.socket] = []
    session = make_session()
    adapter = _WatchedAdapter(sockets)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Set only when a connection was shut down: a bound that passed while the name was
    # resolved (no socket yet) cut nothing, and the answer that came is kept.
    cut_short = threading.Event()

    def cut() -> None:
        for each in list(sockets):
            # Set before the shutdown: the request may return the moment it is done.
            cut_short.set()
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already: the request ended meanwhile

    def too_slow() -> DownloadError:
        return DownloadError(
            f"{url}: no complete answer within {seconds:g} s (connect and answer; not retried)"
        )

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        answer = request(session)
    except DownloadError as error:
        if cut_short.is_set():
            raise too_slow() from error
        raise
    finally:
        timer.cancel()
        timer.join()  # a cut under way has finished (and said so) before it is judged
        session.close()
    if cut_short.is_set():
        # Cut mid-headers, http.client may take what came for a whole answer.
        raise too_slow()
    return answer


def probe_policy(seconds: float) -> RetryPolicy:
    """One attempt, each connect and read bounded by ``seconds`` too."""
    return RetryPolicy(attempts=1, connect_timeout_seconds=seconds, read_timeout_seconds=seconds)
