"""A warehouse server whose host died or was cut off while data was on its way to it is
given up in 5 minutes, not 16.

TCP keepalives (:mod:`taxi_assets.pg.keepalives`) probe only a connection with nothing in
flight. A load's COPY FROM always has data in flight (so does a statement sent in the
instant the host died): the kernel retransmits it until ``net.ipv4.tcp_retries2`` gives
up. Measured here (a real server cut off mid-COPY, the test's ``dead_peer``): 958 s, and
libpq then said "server closed the connection unexpectedly". ``TCP_USER_TIMEOUT`` would
bound that, but it also ends a connection to a live server that merely stops reading for
that long: with ``tcp_user_timeout=3000`` (Linux 6.18) a COPY whose server process was
stopped (SIGSTOP; its kernel answering every probe) was ended after 3.2 s.

What tells the two apart is the peer's kernel: a live one acknowledges something at least
every 120 s while data waits for it (``TCP_RTO_MAX``, the ceiling of both the
retransmission timer and the zero-window probe timer), whatever its process does. So a
watch thread looks at each connection an engine given to :func:`watch_silent_peers` has
checked out, every :data:`POLL_S`: one whose send queue holds data (``SIOCOUTQ``) and whose
peer has acknowledged nothing for :data:`SILENCE_S` (``TCP_INFO``'s ``tcpi_last_ack_recv``)
is hung up, and says so in the log. What waited on it fails as a lost connection, naming
the server (:mod:`taxi_assets.pg.lost_server`); a load's month keeps its previous rows.
Unix sockets (the embedded server) and systems without Linux's ``TCP_INFO`` are not
watched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa

from taxi_assets.pg.interrupts import hang_up
from taxi_assets.pg.lost_server import note_giving_up

# A live peer's 120 s between acknowledgements at worst, twice over and a half: a lost
# probe (or its answer) is ridden out.
SILENCE_S = 300.0
# How often each checked-out connection is looked at: two system calls, microseconds.
POLL_S = 1.0
# struct tcp_info (linux/tcp.h): tcpi_last_ack_recv, milliseconds since the last ACK.
_LAST_ACK_RECV_OFFSET = 56
_TCP_INFO_BYTES = 104

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    """What the watch reads of a TCP connection."""

    queued_bytes: int  # sent and not yet acknowledged, or not sent yet
    silence_s: float  # since the peer last acknowledged anything


def link_of(driver: psycopg.Connection[Any]) -> Link | None:
    """``driver``'s TCP connection as its kernel sees it; None where that is not known (a
    Unix socket, no ``TCP_INFO``, the connection closed)."""
    if not hasattr(socket, "TCP_INFO"):
        return None
    try:
        # A duplicate descriptor: libpq's own is never closed from this thread.
        with socket.socket(fileno=os.dup(driver.pgconn.socket)) as link:
            if link.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            info = link.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
            queued = fcntl.ioctl(link.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ
    except (OSError, psycopg.Error):
        return None
    if len(info) < _LAST_ACK_RECV_OFFSET + 4:
        return None
    silence_ms = struct.unpack_from("=I", info, _LAST_ACK_RECV_OFFSET)[0]
    return Link(struct.unpack("i", queued)[0], silence_ms / 1000)


def is_silent(link: Link) -> bool:
    return link.queued_bytes > 0 and link.silence_s >= SILENCE_S


class _Watch:
    """The process's one watch thread and the connections it looks at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[psycopg.Connection[Any], str]] = {}
        self._thread_pid: int | None = None  # a forked child starts its own

    def add(self, driver: psycopg.Connection[Any], where: str) -> None:
        with self._lock:
            self._connections[id(driver)] = (driver, where)
            if self._thread_pid != os.getpid():
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="silent-peer-watch", daemon=True).start()

    def remove(self, driver: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._connections.pop(id(driver), None)

    def _run(self) -> None:
        while True:
            time.sleep(POLL_S)
            with self._lock:
                watched = list(self._connections.values())
            for driver, where in watched:
                try:
                    self._look_at(driver, where)
                except Exception:  # noqa: BLE001 - logged; the watch must go on for the others
                    _log.exception("watching the connection to %s failed", where)

    def _look_at(self, driver: psycopg.Connection[Any], where: str) -> None:
        link = link_of(driver)
        if link is not None and is_silent(link):
            self.remove(driver)
            why = (
                f"its host acknowledged nothing for {link.silence_s:.0f} s while "
                f"{link.queued_bytes:,} bytes waited for it (a live server's host "
                "acknowledges within 120 s, even when the server is too busy to read): it "
                "died or the network to it was cut, and this process gave the connection up"
            )
            _log.warning("the warehouse server %s: %s", where, why)
            note_giving_up(where, why)
            hang_up(driver)


_WATCH = _Watch()


def watch_silent_peers(engine: sa.Engine, where: str) -> None:
    """Give up ``engine``'s checked-out connections whose server ``where`` stopped
    acknowledging the data sent to it (the module's docstring)."""

    def checked_out(driver: Any, record: Any, proxy: Any) -> None:
        if isinstance(driver, psycopg.Connection):
            _WATCH.add(driver, where)

    def let_go(driver: Any, *_: Any) -> None:
        if isinstance(driver, psycopg.Connection):
            _WATCH.remove(driver)

    sa.event.listen(engine, "checkout", checked_out)
    # Back in the pool, or closed (an invalidated connection may come back as None).
    for event in ("checkin", "invalidate", "close", "close_detached"):
        sa.event.listen(engine, event, let_go)
