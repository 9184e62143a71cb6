"""Loading clients whose host is cut off mid-load, for real, and the months' next loads.
Run as root in a network namespace of its own (``unshare --net``), with a stopped server's
data folder made by :func:`taxi_assets_tests.tcp_postgres.initialised_folder`:

    python -m taxi_assets_tests.cut_off_loader DATA product-server-keepalives|kernel-keepalives LIMIT_S

The server runs in a second namespace joined to this one by a veth pair
(:mod:`taxi_assets_tests.dead_peer`). Two months' loads run in this process as the Postgres
IO manager runs them (``replace_months`` on ``PostgresResource``'s engine over TCP, each
holding its month's advisory lock): 2021-01's fill runs ``select pg_sleep(600)`` (a long
statement: an index build, ANALYZE), 2021-02's is a COPY whose source stalls after its
first chunk, so that the server waits for more rows. Once the server runs both, has taken
rows of the COPY, and has had everything it sent acknowledged, this process's address is
deleted: the server's packets reach this host and are dropped without a word, as for a
crashed machine. At once, each month's next load starts over the server's Unix socket (a
path the cut does not touch) and waits for the month's lock. With the product's
server-side keepalives (shortened: 1 + 1 * 2 s) and lost-client check (1 s), or with the
server's keepalives left at the kernel's (``kernel-keepalives``: the URL's options set
them), prints one JSON line: for each month, how long after the cut its next load was
done (``null``: still not after ``LIMIT_S``), its rows then, and what the next loads
still waited on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.pg import keepalives, lost_client
from taxi_assets.pg.copy_in import COPY_CHUNK_ROWS, copy_arrow
from taxi_assets.pg.ddl import driver_cursor
from taxi_assets.pg.embedded import stop
from taxi_assets.pg.month_swap import MonthBounds, Staging, replace_months
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.dead_peer import (
    CLIENT,
    PORT,
    SERVER,
    SHORT,
    STATEMENT,
    cable,
    run,
    servers_host,
)
from taxi_assets_tests.tcp_postgres import start_on_tcp, unix_socket_url
from taxi_assets_tests.warehouse_client import MONTH, MONTHS_TABLE, SCHEMA

MID_STATEMENT, MID_COPY = MONTH, MonthBounds("2021-02", date(2021, 2, 1), date(2021, 3, 1))
NEXT_ROWS = 2


def month_rows(month: MonthBounds, rows: int) -> pa.RecordBatch:
    return pa.record_batch(
        {"n": pa.array(range(rows), pa.int64()), "m": pa.array([month.start] * rows)}
    )


def rows_of(month: MonthBounds, rows: int) -> pa.RecordBatchReader:
    batch = month_rows(month, rows)
    return pa.RecordBatchReader.from_batches(batch.schema, [batch])


def stalled_rows(month: MonthBounds) -> pa.RecordBatchReader:
    """One COPY chunk of the month and a row more, then nothing, ever: the load's COPY is
    under way and the server waits for more rows, as while a slow source is read."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield month_rows(month, COPY_CHUNK_ROWS + 1)
        threading.Event().wait()

    return pa.RecordBatchReader.from_batches(month_rows(month, 0).schema, batches())


def load(engine: sa.Engine, month: MonthBounds, reader: pa.RecordBatchReader | None) -> None:
    """The month's load as the IO manager's (``reader`` None: its fill runs
    ``STATEMENT``)."""

    def fill(connection: sa.Connection, staging: Staging) -> int:
        if reader is None:
            connection.exec_driver_sql(STATEMENT)
            return 0
        return copy_arrow(driver_cursor(connection), staging.target, reader, freeze=staging.freeze)

    replace_months(engine, SCHEMA, MONTHS_TABLE, "m", [month], fill)


def in_background(name: str, work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def cut_off_load(
    engine: sa.Engine, month: MonthBounds, reader: pa.RecordBatchReader | None
) -> None:
    try:
        load(engine, month, reader)
    except sa.exc.DBAPIError:
        pass  # this side's own keepalives end it: not what is measured


def server_sent_all(holder_pid: int) -> bool:
    """The server's kernel has had everything it sent to this host acknowledged (no
    ``tx_queue`` on its TCP sockets to us, read from its namespace's ``/proc/net/tcp``):
    data still to deliver at the cut would be retransmitted for some 15 minutes
    (``tcp_retries2``), which keepalives do not bound."""
    ours = "".join(f"{int(part):02X}" for part in reversed(CLIENT.split(".")))
    lines = Path(f"/proc/{holder_pid}/net/tcp").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        remote, state, queues = fields[2], fields[3], fields[4]
        if remote.startswith(ours + ":") and state == "01" and queues.split(":")[0] != "00000000":
            return False
    return True


def wait_until_mid_load(watcher: psycopg.Connection, holder_pid: int) -> None:
    """Until the server runs the first month's statement, has taken rows of the second's
    COPY and waits for more, and has had all it sent to this host acknowledged."""
    deadline = time.monotonic() + 20
    while True:
        states: dict[str, str] = dict(
            watcher.execute(
                "SELECT a.application_name, a.wait_event FROM pg_stat_activity AS a "
                "LEFT JOIN pg_stat_progress_copy AS p USING (pid) WHERE a.state = 'active' "
                "AND (a.query = %s OR p.tuples_processed > 0)",
                (STATEMENT,),
            ).fetchall()
        )
        wanted = {"cut-off-statement": "PgSleep", "cut-off-copy": "ClientRead"}
        if states == wanted and server_sent_all(holder_pid):
            return
        assert time.monotonic() < deadline, f"the loads did not get under way: {states}"
        time.sleep(0.05)


def outcome(watcher: psycopg.Connection, done: dict[str, float]) -> dict[str, object]:
    """For each month: seconds from the cut until its next load was done (None: not yet),
    its rows now, and what its next load still waits on."""
    waits = watcher.execute(
        "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity "
        "WHERE application_name = 'next-load' AND state = 'active' ORDER BY 1"
    ).fetchall()
    rows = {
        month.key: watcher.execute(
            f"SELECT count(*) FROM {SCHEMA}.{MONTHS_TABLE} WHERE m >= %s AND m < %s",
            (month.start, month.end),
        ).fetchone()
        for month in (MID_STATEMENT, MID_COPY)
    }
    return {
        "next_load_s": {key: done.get(key) for key in rows},
        "rows": {key: row[0] if row else None for key, row in rows.items()},
        "next_loads_wait_on": [wait for (wait,) in waits],
    }


def main(data: Path, where: str, limit_s: float) -> None:
    holder = servers_host()
    try:
        cable(holder)
        url = start_on_tcp(data, SERVER, PORT, netns_of=holder.pid)
        local = unix_socket_url(data, PORT)
        keepalives.KEEPALIVES.update(SHORT)
        lost_client.CHECK_INTERVAL = "1s"
        options = {"options": "-c tcp_keepalives_idle=0"} if where == "kernel-keepalives" else {}
        try:
            with psycopg.connect(local, autocommit=True) as watcher:
                # The data folder is the test module's: an earlier case's table goes.
                watcher.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{MONTHS_TABLE}")
                watcher.execute(
                    f"CREATE TABLE {SCHEMA}.{MONTHS_TABLE} (n bigint, m date NOT NULL) "
                    "PARTITION BY RANGE (m)"
                )
                for name, month, reader in (
                    ("statement", MID_STATEMENT, None),
                    ("copy", MID_COPY, stalled_rows(MID_COPY)),
                ):
                    query = urlencode({"application_name": f"cut-off-{name}", **options})
                    engine = PostgresResource(url=f"{url}?{query}").engine()
                    in_background(name, partial(cut_off_load, engine, month, reader))
                wait_until_mid_load(watcher, holder.pid)
                run(["ip", "addr", "del", f"{CLIENT}/24", "dev", "cable"])
                cut_at = time.monotonic()
                done: dict[str, float] = {}
                failed: dict[str, str] = {}
                next_engine = PostgresResource(url=f"{local}&application_name=next-load").engine()

                def next_load(month: MonthBounds) -> None:
                    try:
                        load(next_engine, month, rows_of(month, NEXT_ROWS))
                    except sa.exc.DBAPIError as error:
                        failed[month.key] = str(error)  # shown if before the outcome
                        return
                    done[month.key] = time.monotonic() - cut_at

                nexts = [
                    in_background(f"next {month.key}", partial(next_load, month))
                    for month in (MID_STATEMENT, MID_COPY)
                ]
                for thread in nexts:
                    thread.join(max(0.0, cut_at + limit_s - time.monotonic()))
                print(json.dumps({**outcome(watcher, done), "failed": failed}), flush=True)
        finally:
            stop(data)
    finally:
        holder.kill()
        holder.wait()
    # The cut-off loads' threads wait on their sockets or their stalled source for ever, and
    # so do the next loads' when the test expects them to.
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
