"""Object-store connections that give up on a server that stops taking what they send.

The GCS, S3 and Azure clients all go through aiohttp, whose timeouts bound each read of an
answer (``sock_read``) but no send. An upload whose server stops reading its body (a
stalled front end, its kernel still acknowledging the window probes) waited for ever
(measured: a PUT to a server that accepts and never reads still waited 40 s later with
``sock_read=2``); one whose server's host died waits for the kernel's
``net.ipv4.tcp_retries2`` (~16 minutes). Each of their sockets gets ``TCP_USER_TIMEOUT``
instead: the kernel ends a connection whose data has waited :data:`SILENCE_S` for an
acknowledgement, window probes included, and the upload fails as a timed-out connection
(``[Errno 110] Connection timed out``), which the upload's retries treat as transient.
A server that is slow but reads is never cut off by it: each acknowledgement restarts the
clock. (The clients' read bound starts once an upload's last bytes are in the kernel's send
buffer, a few MB: a link too slow to drain that within it is cut, measured: a 5 MB PUT to
a server reading 1 MB/s timed out 2.2 s in with ``sock_read=1``.)
Where the system has no ``TCP_USER_TIMEOUT`` (not Linux) nothing is set.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    from aiohappyeyeballs import AddrInfoType

# As long as the warehouse's silent-peer watch waits (pg/silent_peer.py) and an upload's
# wait for its answer (below): a server that takes nothing for 5 minutes is gone.
SILENCE_S = 300.0
# How long an S3 or Azure upload waits for each read of its answer (GCS: every request,
# ``gcs.REQUEST_READ_S``). The wait starts once the body's last bytes are in the kernel's
# send buffer (up to 4 MiB, Linux's default ``tcp_wmem``), so a link too slow to drain
# that within the bound is cut at every attempt: below ~13 KB/s at 300 s. The clients'
# own bounds, which their reads and listings keep, cut uploads much sooner: s3fs's 15 s
# (its ``read_timeout``) below ~270 KB/s, Azure Storage's 60 s below ~70 KB/s.
UPLOAD_ANSWER_S = 300.0


def user_timeout_option() -> tuple[int, int, int] | None:
    """``TCP_USER_TIMEOUT`` at :data:`SILENCE_S` as a ``setsockopt`` triple (read when
    called), or None where the system has no such option. Also BigQuery's client
    (``bq/client.py``), through urllib3's ``socket_options``."""
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        return None
    return (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(SILENCE_S * 1000))


def socket_giving_up_on_silence(addr_info: AddrInfoType) -> socket.socket:
    """aiohttp's ``socket_factory``: the socket it would make, with
    :func:`user_timeout_option`."""
    family, kind, proto, _, _ = addr_info
    made = socket.socket(family=family, type=kind, proto=proto)
    option = user_timeout_option()
    if option is not None and family in (socket.AF_INET, socket.AF_INET6):
        made.setsockopt(*option)
    return made


def connector_giving_up_on_silence() -> aiohttp.TCPConnector:
    """An aiohttp connector whose sockets give up on a silent server. Call it in the event
    loop that will use it (aiohttp binds a connector to the running loop)."""
    import aiohttp

    return aiohttp.TCPConnector(socket_factory=socket_giving_up_on_silence)


_shared: dict[tuple[int, int], aiohttp.TCPConnector] = {}
_shared_lock = threading.Lock()


def shared_connector() -> aiohttp.TCPConnector:
    """One such connector per process, made in fsspec's event loop, for a client that
    takes a connector but makes its sessions itself (gcsfs's ``session_kwargs``): its
    sessions share it and none owns it (``connector_owner=False``), so closing one
    leaves it to the others."""
    from fsspec.asyn import get_loop, sync

    loop = get_loop()
    key = (os.getpid(), id(loop))
    with _shared_lock:
        if key not in _shared:

            async def make() -> aiohttp.TCPConnector:
                return connector_giving_up_on_silence()

            _shared[key] = sync(loop, make)
        return _shared[key]
