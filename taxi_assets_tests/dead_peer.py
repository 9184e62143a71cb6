"""A warehouse server cut off while a statement waits on it, for real. Run as root in a
network namespace of its own (``unshare --net``), with a stopped server's data folder made
by :func:`taxi_assets_tests.tcp_postgres.initialised_folder`:

    python -m taxi_assets_tests.dead_peer DATA url|product|copy|reader

The server runs in a second namespace, "the server's host", joined to this one by a veth
pair (a cable): 10.41.0.1 here, 10.41.0.2 there. Through the product's engine, with short
keepalives given in the URL (``url``) or the product's own shortened (``product``), this
process runs ``select pg_sleep(600)``. Once the server runs it and has acknowledged all
the client sent, the server's address is deleted from its host: packets still reach it
and are dropped without a word, as by a crashed host or a partition (the server process
lives on, sleeping). Prints one JSON line: how long after the cut the statement failed,
and with what. ``copy``: a COPY FROM sending rows when the server is cut off
(:func:`copy_to_a_cut_off_server`). ``reader``: the other way round, this side's address
deleted while the server sends it a month (:func:`a_reader_cut_off`). The server is
stopped at the end; the server's host goes with this process.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.pg import copy_out, keepalives, silent_peer
from taxi_assets.pg.copy_in import copy_arrow
from taxi_assets.pg.embedded import stop
from taxi_assets.pg.interrupts import dropped_if_interrupted
from taxi_assets.pg.lost_server import naming_lost_server
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.tcp_postgres import start_on_tcp, unix_socket_url

CLIENT, SERVER, PORT = "10.41.0.1", "10.41.0.2", 5432
STATEMENT = "select pg_sleep(600)"
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


def copy_to_a_cut_off_server(holder: subprocess.Popen[bytes], url: str) -> dict[str, object]:
    """A load's COPY FROM as the product sends it (``copy_arrow``: encoded batches handed
    to its sending thread), through the product's engine, rows without end; a second in,
    the server's address is deleted from its host. The silent-peer watch, shortened to
    3 s, must give the connection up (keepalives do not probe a connection with data in
    flight)."""
    silent_peer.SILENCE_S = 3.0
    resource = PostgresResource(url=url)
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(silent_peer.__name__).addHandler(handler)
    cut_at: list[float] = []
    schema = pa.schema([pa.field("line", pa.string())])
    rows = pa.record_batch([pa.array(["x" * 1000] * 1000)], schema=schema)

    def endless() -> Iterator[pa.RecordBatch]:
        started = time.monotonic()
        while time.monotonic() - started < 120:
            if not cut_at and time.monotonic() - started > 1:
                on_servers_host(holder, ["ip", "addr", "del", f"{SERVER}/24", "dev", "cable"])
                cut_at.append(time.monotonic())
            yield rows

    try:
        with (  # as a load's fill runs its COPY (pg/month_swap.py)
            naming_lost_server(resource.describe()),
            resource.engine().connect() as connection,
            connection.begin(),
            dropped_if_interrupted(connection),
        ):
            connection.exec_driver_sql("create temp table sent (line text)")
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            reader = pa.RecordBatchReader.from_batches(schema, endless())
            copy_arrow(driver.cursor(), "sent", reader)
        said = "the COPY went on for 120 s"
    except psycopg.OperationalError as error:
        said = "".join(traceback.format_exception_only(error))
    ended = time.monotonic()
    resource.engine().dispose()
    return {"took": ended - cut_at[0], "error": said, "warnings": warnings}


# Rows without end, one every ~0.1 ms (~1 MB/s): the server always has some in flight.
ENDLESS_ROWS = (
    "create or replace view public.endless_rows as select i, repeat('x', 100) as pad "
    "from (select generate_series(1, 1000000000) as i) as numbers "
    "where pg_sleep(0.0001) is not null"
)


def a_reader_cut_off(data: Path, url: str) -> dict[str, object]:
    """A month read as the IO manager reads one (``copy_out.read_query_arrow``: COPY ...
    TO STDOUT, its ACCESS SHARE lock held to the end) through the product's engine, from
    a view whose rows never end; a second in, this side's own address is deleted: to the
    server its reader's host is gone (its packets dropped without a word, none coming
    back) while rows are in flight, which keepalives do not probe. With the reader's
    bound shortened to 3 s (300 s in the product), how long the server's session lives
    on after the cut (None: still there after 60 s), watched over the Unix socket."""
    copy_out.READER_SILENCE_S = 3.0
    with psycopg.connect(unix_socket_url(data, PORT), autocommit=True) as admin:
        admin.execute(ENDLESS_ROWS)
    engine = PostgresResource(url=url).engine()

    def read() -> None:
        copy_out.read_query_arrow(engine, "public", "endless_rows", "", {})

    threading.Thread(target=read, name="reader", daemon=True).start()
    reading = "select pid from pg_stat_activity where state = 'active' and query like 'COPY%'"
    with psycopg.connect(unix_socket_url(data, PORT), autocommit=True) as watcher:
        deadline = time.monotonic() + 10
        while not (found := watcher.execute(reading).fetchall()):
            assert time.monotonic() < deadline, "the read did not start"
            time.sleep(0.05)
        ((pid,),) = found
        time.sleep(1)
        run(["ip", "addr", "del", f"{CLIENT}/24", "dev", "cable"])
        cut_at = time.monotonic()
        alive = "select count(*) from pg_stat_activity where pid = %s"
        while watcher.execute(alive, (pid,)).fetchone() == (1,):
            if time.monotonic() - cut_at > 60:
                return {"took": None}
            time.sleep(0.1)
        return {"took": time.monotonic() - cut_at}


def main(data: Path, where: str) -> None:
    holder = servers_host()
    try:
        cable(holder)
        url = start_on_tcp(data, SERVER, PORT, netns_of=holder.pid)
        if where == "reader":
            try:
                print(json.dumps(a_reader_cut_off(data, url)), flush=True)
            finally:
                stop(data)
            return
        if where == "copy":
            try:
                result = copy_to_a_cut_off_server(holder, url)
                print(json.dumps({**result, "server": PostgresResource(url=url).describe()}))
            finally:
                stop(data)
            return
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


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
