"""A warehouse server that dies or is cut off while a run waits on it fails the run in
minutes, not hours.

Real servers (pgserver's binaries, data folders of the tests' own) listening on TCP: on
127.0.0.1, where the socket options of the resource's connections are read back; and in a
network namespace of their own joined to the client's by a veth pair, whose address is
then deleted (``taxi_assets_tests.dead_peer``; the client's address, mid-load, in
``taxi_assets_tests.cut_off_loader``): a real silent peer, found dead by the real
kernel's keepalives. Nothing simulated.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taxi_assets.pg import copy_out
from taxi_assets.pg.copy_out import read_query_arrow
from taxi_assets.pg.embedded import stop
from taxi_assets.pg.keepalives import KEEPALIVES
from taxi_assets.pg.lost_server import lost_server_says
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.emulators import free_port
from taxi_assets_tests.pipeline import REPO
from taxi_assets_tests.tcp_postgres import (
    start_on_tcp,
    stopped_folder,
    tcp_options,
    trust_clients,
)


@pytest.fixture(scope="module")
def tcp_url() -> Iterator[str]:
    """The URL of a server listening on 127.0.0.1."""
    with stopped_folder() as data:
        yield start_on_tcp(data, "127.0.0.1", free_port())


@pytest.fixture(scope="module")
def cut_off_folder() -> Iterator[Path]:
    """A stopped server's data folder for ``taxi_assets_tests.dead_peer``."""
    with stopped_folder() as data:
        trust_clients(data, "10.41.0.0/24")
        yield data


def socket_options(connection: sa.Connection) -> dict[str, int]:
    """The keepalive options of the connection's socket, as the kernel applies them."""
    driver = connection.connection.driver_connection
    assert driver is not None
    return tcp_options(driver.pgconn.socket)


def options_of(url: str) -> dict[str, int]:
    engine = PostgresResource(url=url).engine()
    try:
        with engine.connect() as connection:
            return socket_options(connection)
    finally:
        engine.dispose()


def test_a_tcp_connection_finds_a_silent_server_dead_in_two_minutes(tcp_url: str) -> None:
    """The kernel's defaults (first probe after 7200 s idle, 9 probes 75 s apart) kept a
    run waiting 2 h 11 min on a dead server. Never a TCP_USER_TIMEOUT: a slow server that
    takes its time to acknowledge data is not cut off."""
    assert options_of(tcp_url) == {
        "SO_KEEPALIVE": 1,
        "TCP_KEEPIDLE": 60,
        "TCP_KEEPINTVL": 10,
        "TCP_KEEPCNT": 6,
        "TCP_USER_TIMEOUT": 0,
    }


def test_keepalives_the_url_sets_win(tcp_url: str) -> None:
    said = options_of(f"{tcp_url}?keepalives_idle=5&keepalives_count=3")
    assert said["TCP_KEEPIDLE"] == 5 and said["TCP_KEEPCNT"] == 3
    assert said["TCP_KEEPINTVL"] == 10  # not set by the URL: the product's
    assert options_of(f"{tcp_url}?keepalives=0")["SO_KEEPALIVE"] == 0


def test_a_unix_socket_connection_takes_the_parameters_and_works(pg_url: str) -> None:
    """The embedded server's Unix socket has no keepalives: libpq ignores the parameters."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL points at an external server, not the embedded one")
    engine = PostgresResource(url=pg_url).engine()
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 41 + 1").scalar() == 42
            driver = connection.connection.driver_connection
            assert driver is not None
            with socket.socket(fileno=os.dup(driver.pgconn.socket)) as link:
                assert link.family == socket.AF_UNIX
            parameters = driver.info.get_parameters()
            assert {name: parameters.get(name) for name in KEEPALIVES} == {
                name: str(value) for name, value in KEEPALIVES.items()
            }
    finally:
        engine.dispose()


def namespaces_unavailable() -> str | None:
    """Why this machine cannot join two network namespaces with a veth pair (None: it
    can)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "network namespaces need Linux and root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    veth = ["name", "probe0", "type", "veth", "peer", "name", "probe1"]
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", *veth], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"no veth pair in a new network namespace: {probe.stderr.strip()}"
    return None


def cut_off_in_a_namespace(folder: Path, mode: str, what: str, timeout_s: float) -> dict[str, Any]:
    """``python -m taxi_assets_tests.dead_peer FOLDER MODE`` in a network namespace of its
    own: its JSON result (skips where namespaces cannot be made; fails when ``what`` still
    waited ``timeout_s`` after the cut)."""
    why_not = namespaces_unavailable()
    if why_not:
        pytest.skip(why_not)
    command = ["unshare", "--net", "--fork", "--kill-child", sys.executable]
    command += ["-m", "taxi_assets_tests.dead_peer", str(folder), mode]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{what} still waited {timeout_s:.0f} s after its server was cut off: {expired}"
        )
    finally:
        stop(folder)  # started in the server's namespace; still running if killed
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("where", ["url", "product"], ids=["url-keepalives", "product-keepalives"])
def test_a_statement_waiting_on_a_server_cut_off_fails_within_seconds(
    cut_off_folder: Path, where: str
) -> None:
    """``select pg_sleep(600)`` through the resource's engine; the server is then cut off
    (its address deleted: packets reach its host and are dropped without a word). With
    keepalives of 1 + 1 * 2 s, given in the URL or the product's own shortened, the
    statement fails within seconds, as it does in ~2 minutes with the product's values.
    The URL's case proves that the engine lets the failure through (nothing retries or
    waits on; it passed before the product had values of its own); with the product's own
    values the statement waited for the kernel's 2 hours before (here: the test's 60 s)."""
    result = cut_off_in_a_namespace(cut_off_folder, where, "the statement", timeout_s=60)
    assert result["error"] == (
        "OperationalError: consuming input failed: could not receive data from server: "
        "Connection timed out"
    ), result
    # 1 s idle, then 2 probes 1 s apart: 3 s at most after the last packet before the cut.
    assert result["took"] < 10, result
    # The error names the server it lost (pg/lost_server.py), beside libpq's text.
    assert lost_server_says(result["server"]) in result["named"], result


def test_each_tcp_session_probes_its_client_as_the_client_probes_the_server(tcp_url: str) -> None:
    """The server's side of each session keeps alive as the client's does (a Unix socket
    reads 0: no keepalives there), unless the URL sets it."""

    def server_side(url: str) -> dict[str, str]:
        engine = PostgresResource(url=url).engine()
        try:
            with engine.connect() as connection:
                return {
                    name: str(connection.exec_driver_sql(f"SHOW tcp_{name}").scalar_one())
                    for name in ("keepalives_idle", "keepalives_interval", "keepalives_count")
                }
        finally:
            engine.dispose()

    assert server_side(tcp_url) == {"keepalives_idle": "60", "keepalives_interval": "10",
                                    "keepalives_count": "6"}  # fmt: skip
    assert server_side(f"{tcp_url}?options=-c%20tcp_keepalives_idle%3D5")["keepalives_idle"] == "5"


def test_a_month_read_bounds_the_servers_wait_for_its_reader_for_that_read_only(
    tcp_url: str,
) -> None:
    """Within a month's read (``read_query_arrow``) the server waits at most
    ``READER_SILENCE_S`` (5 min) for its reader's acknowledgements; the same session has
    its usual value (0, the kernel's own) back for what it runs next; a value the URL sets
    wins."""

    def seen(url: str) -> tuple[str, str]:
        engine = PostgresResource(url=url).engine()
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "create or replace view public.user_timeout_seen as select "
                    "current_setting('tcp_user_timeout') as value, pg_backend_pid() as pid"
                )
            (during,) = read_query_arrow(engine, "public", "user_timeout_seen", "", {}).to_pylist()
            with engine.connect() as connection:
                after = connection.exec_driver_sql("SHOW tcp_user_timeout").scalar_one()
                pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            assert pid == during["pid"], "not the read's own session: nothing shown"
            return during["value"], after
        finally:
            engine.dispose()

    assert copy_out.READER_SILENCE_S == 300
    assert seen(tcp_url) == ("300000", "0")  # milliseconds, as the server shows it
    assert seen(f"{tcp_url}?options=-c%20tcp_user_timeout%3D1234") == ("1234", "1234")


# The cut-off loads' server ends their sessions 1 + 1 * 2 s after the cut, the check 1 s
# later: their months' next loads are done within this; without the server's keepalives
# they still wait for the months' locks at its end.
NEXT_LOAD_LIMIT_S = 10


@pytest.mark.parametrize("where", ["product-server-keepalives", "kernel-keepalives"])
def test_a_load_whose_clients_host_is_cut_off_frees_its_month_for_the_next_load(
    cut_off_folder: Path, where: str
) -> None:
    """Two months' loads (``replace_months`` on the resource's engine over TCP, each
    holding its month's advisory lock), one running a long statement, one mid-COPY (its
    source stalled after the first rows), when their client's host is cut off (its address
    deleted: the server's probes reach it and are dropped without a word, as for a crashed
    machine; ``taxi_assets_tests.cut_off_loader``). Each month's next load starts at the
    cut over a path the cut does not touch (the server's Unix socket). With the product's
    server-side keepalives (shortened to 1 + 1 * 2 s, the lost-client check to 1 s) the
    server ends both sessions and both next loads are done within seconds, each month
    holding exactly the next load's rows; with the server's keepalives left at the
    kernel's (2 hours: before the product set them, every session's) both still wait for
    their month's lock at the limit: the statement's session never reads its socket, the
    COPY's reads it and is told nothing. (The lost-client check off, the statement's month
    stays locked and the COPY's is freed, whose session reads: checked by hand.)"""
    why_not = namespaces_unavailable()
    if why_not:
        pytest.skip(why_not)
    command = ["unshare", "--net", "--fork", "--kill-child", sys.executable]
    command += ["-m", "taxi_assets_tests.cut_off_loader", str(cut_off_folder), where]
    command += [str(NEXT_LOAD_LIMIT_S)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        stop(cut_off_folder)  # started in the server's namespace; still running if killed
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    took = result["next_load_s"]
    assert result["failed"] == {}, result
    if where == "kernel-keepalives":
        assert took == {"2021-01": None, "2021-02": None}, result
        assert result["next_loads_wait_on"] == ["Lock:advisory", "Lock:advisory"], result
        assert result["rows"] == {"2021-01": 0, "2021-02": 0}, result
    else:
        assert all(s is not None and s < NEXT_LOAD_LIMIT_S for s in took.values()), result
        assert result["rows"] == {"2021-01": 2, "2021-02": 2}, result


def test_a_copy_sending_to_a_server_cut_off_fails_within_seconds(cut_off_folder: Path) -> None:
    """A COPY FROM sending rows through the resource's engine; the server is then cut off.
    Keepalives never probe a connection with data in flight: the kernel retransmitted it
    for 958 s before (measured), and libpq then said "server closed the connection
    unexpectedly". The silent-peer watch, shortened to 3 s (300 s in the product), gives
    the connection up: the COPY fails within seconds, naming the server, and the log
    says why."""
    result = cut_off_in_a_namespace(cut_off_folder, "copy", "the COPY", timeout_s=90)
    assert "OperationalError" in result["error"], result
    # 3 s of silence after the last acknowledgement, then the next poll (1 s).
    assert result["took"] < 10, result
    # Why, in the error and the log: the watch gave the connection up (not libpq's "server
    # closed the connection unexpectedly" alone).
    (warning,) = result["warnings"]
    assert f"the warehouse server {result['server']}: its host acknowledged nothing" in warning
    lost = f"the connection to the warehouse server {result['server']} was lost: "
    assert f"{lost}its host acknowledged nothing for" in result["error"], result


def test_a_month_reader_cut_off_mid_copy_frees_its_month_within_seconds(
    cut_off_folder: Path,
) -> None:
    """A month read by COPY TO (the IO manager's ``load_input``), its reader's host then cut
    off while the server has rows in flight: keepalives never probe that, and the
    server's session went on retransmitting, holding the month's ACCESS SHARE lock (a
    reload of the month waits for it, then fails naming it). The server's own
    ``tcp_user_timeout``, set for the read (3 s here, 300 s in the product), ends the
    session within seconds. Before: still there 60 s after the cut."""
    result = cut_off_in_a_namespace(cut_off_folder, "reader", "the server's session", 90)
    assert result["took"] is not None, f"the session still read 60 s after the cut: {result}"
    assert result["took"] < 10, result
