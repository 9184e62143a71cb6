"""A warehouse server cut off while a statement waits on it, for real. Run as root in a
network namespace of its own (``unshare --net``), with a stopped server's data folder made
by :func:`taxi_assets_tests.tcp_postgres.initialised_folder`:

    python -m taxi_assets_tests.dead_peer DATA url|product
    python -m taxi_assets_tests.dead_peer DATA product-server-keepalives|kernel-keepalives LIMIT_S

The server runs in a second namespace, "the server's host", joined to this one by a veth
pair (a cable): 10.41.0.1 here, 10.41.0.2 there. Through the product's engine, with short
keepalives given in the URL (``url``) or the product's own shortened (``product``), this
process runs ``select pg_sleep(600)``. Once the server runs it and has acknowledged all
the client sent, the server's address is deleted from its host: packets still reach it
and are dropped without a word, as by a crashed host or a partition (the server process
lives on, sleeping). Prints one JSON line: how long after the cut the statement failed,
and with what. The server is stopped at the end; the server's host goes with this process.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import sqlalchemy as sa

from taxi_assets.pg import keepalives
from taxi_assets.pg.embedded import stop
from taxi_assets.pg.month_swap import month_lock_key
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.tcp_postgres import start_on_tcp, unix_socket_url

CLIENT, SERVER, PORT = "10.41.0.1", "10.41.0.2", 5432
STATEMENT = "select pg_sleep(600)"
MONTH_LOCK = f"hashtextextended('{month_lock_key('warehouse', 'yellow_tripdata', '2021-01')}', 0)"
# A dead peer found 1 + 1 * 2 s after the last packet.
SHORT = {"keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2}
PR_SET_PDEATHSIG = 1


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def die_with_parent() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def servers_host() -> subprocess.Popen[bytes]:
    """A process in a new network namespace, which the cable's other end joins; killed
    when this process dies, however."""
    holder = subprocess.Popen(
        ["unshare", "--net", "sleep", "300"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    mine = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 10
    # unshare enters the new namespace, then becomes sleep.
    while os.readlink(f"/proc/{holder.pid}/ns/net") == mine or (
        Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep"
    ):
        assert time.monotonic() < deadline, "unshare --net did not start"
        time.sleep(0.01)
    return holder


def on_servers_host(holder: subprocess.Popen[bytes], command: list[str]) -> None:
    run(["nsenter", f"--net=/proc/{holder.pid}/ns/net", *command])


def cable(holder: subprocess.Popen[bytes]) -> None:
    run(["ip", "link", "set", "lo", "up"])
    peer = ["peer", "name", "cable", "netns", str(holder.pid)]
    run(["ip", "link", "add", "cable", "type", "veth", *peer])
    run(["ip", "addr", "add", f"{CLIENT}/24", "dev", "cable"])
    run(["ip", "link", "set", "cable", "up"])
    on_servers_host(holder, ["ip", "link", "set", "lo", "up"])
    on_servers_host(holder, ["ip", "addr", "add", f"{SERVER}/24", "dev", "cable"])
    on_servers_host(holder, ["ip", "link", "set", "cable", "up"])


def unacknowledged(fd: int) -> int:
    """Segments sent on the TCP socket ``fd`` that the peer has not acknowledged yet
    (``tcpi_unacked`` of Linux's ``struct tcp_info``, at offset 24)."""
    with socket.socket(fileno=os.dup(fd)) as link:
        info = link.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("=I", info, 24)[0])


def wait_until_running(data: Path, client_fd: int) -> None:
    """Until the server says the statement runs (asked over its Unix socket, which is no
    network's) and its kernel has acknowledged it: data unacknowledged at the cut would be
    retransmitted for some 15 minutes (tcp_retries2), which keepalives do not bound."""
    deadline = time.monotonic() + 10
    with psycopg.connect(unix_socket_url(data, PORT), autocommit=True) as watcher:
        while (
            watcher.execute(
                "select count(*) from pg_stat_activity where state = 'active' and query = %s",
                (STATEMENT,),
            ).fetchone()
            != (1,)
            or unacknowledged(client_fd) != 0
        ):
            assert time.monotonic() < deadline, "the statement did not start"
            time.sleep(0.05)


def main(data: Path, where: str) -> None:
    holder = servers_host()
    try:
        cable(holder)
        url = start_on_tcp(data, SERVER, PORT, netns_of=holder.pid)
        if where == "url":
            url += "?" + urlencode(SHORT)
        else:
            keepalives.KEEPALIVES.update(SHORT)
        try:
            resource = PostgresResource(url=url)
            cut_at: list[float] = []
            with resource.engine().connect() as connection:
                fd = connection.connection.driver_connection.pgconn.socket  # type: ignore[union-attr]

                def cut() -> None:
                    wait_until_running(data, fd)
                    on_servers_host(holder, ["ip", "addr", "del", f"{SERVER}/24", "dev", "cable"])
                    cut_at.append(time.monotonic())

                cutter = threading.Thread(target=cut, name="cut", daemon=True)
                cutter.start()
                try:
                    connection.exec_driver_sql(STATEMENT)
                    said, named = "the statement ended", ""
                except sa.exc.DBAPIError as error:
                    said, named = f"{type(error.orig).__name__}: {error.orig}", str(error)
                ended = time.monotonic()
                cutter.join()
            resource.engine().dispose()
            result = {"took": ended - cut_at[0], "error": said, "named": named}
            print(json.dumps({**result, "server": resource.describe()}), flush=True)
        finally:
            stop(data)
    finally:
        holder.kill()
        holder.wait()


def session_gone_after_cut(data: Path, name: str, limit_s: float) -> float | None:
    """Seconds from now until the server has no session named ``name`` (asked over its
    Unix socket); None if it still had one after ``limit_s``."""
    cut_at = time.monotonic()
    with psycopg.connect(unix_socket_url(data, PORT), autocommit=True) as watcher:
        while time.monotonic() - cut_at < limit_s:
            row = watcher.execute(
                "select count(*) from pg_stat_activity where application_name = %s", (name,)
            ).fetchone()
            if row == (0,):
                return time.monotonic() - cut_at
            time.sleep(0.05)
    return None


def month_lock_free(data: Path) -> bool:
    """Another session can take the month's lock now (asked over the Unix socket)."""
    with psycopg.connect(unix_socket_url(data, PORT), autocommit=True) as other:
        row = other.execute(f"SELECT pg_try_advisory_lock({MONTH_LOCK})").fetchone()
        return row == (True,)


def main_client_cut(data: Path, where: str, limit_s: float) -> None:
    """The client's host cut off instead: this process's address is deleted while the
    server runs its statement, so the server's keepalive probes reach this host and are
    dropped without a word. With the product's server-side keepalives and check
    (shortened: 1 + 1 * 2 s, 1 s), or with the server's keepalives left at the kernel's
    (``where`` = ``kernel-keepalives``: the URL's options set them), prints how long after
    the cut the server still had the session (``null``: past ``limit_s``)."""
    from taxi_assets.pg import lost_client

    holder = servers_host()
    try:
        cable(holder)
        url = start_on_tcp(data, SERVER, PORT, netns_of=holder.pid)
        keepalives.KEEPALIVES.update(SHORT)
        lost_client.CHECK_INTERVAL = "1s"
        name = "cut-off-client"
        query = {"application_name": name}
        if where == "kernel-keepalives":
            query["options"] = "-c tcp_keepalives_idle=0"
        try:
            engine = PostgresResource(url=f"{url}?{urlencode(query)}").engine()
            connection = engine.connect()
            fd = connection.connection.driver_connection.pgconn.socket  # type: ignore[union-attr]
            # The month's lock, as a load holds it (pg.month_swap) while its statements run.
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MONTH_LOCK})")

            def run_statement() -> None:
                try:
                    connection.exec_driver_sql(STATEMENT)
                except sa.exc.DBAPIError:
                    pass  # this side's own keepalives end it: not what is measured

            threading.Thread(target=run_statement, name="statement", daemon=True).start()
            wait_until_running(data, fd)
            run(["ip", "addr", "del", f"{CLIENT}/24", "dev", "cable"])
            took = session_gone_after_cut(data, name, limit_s)
            print(json.dumps({"took": took, "lock_free": month_lock_free(data)}), flush=True)
        finally:
            stop(data)
    finally:
        holder.kill()
        holder.wait()
    # The statement's thread may still wait on its socket: nothing to clean up after it.
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[2] in ("product-server-keepalives", "kernel-keepalives"):
        main_client_cut(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
    else:
        main(Path(sys.argv[1]), sys.argv[2])
