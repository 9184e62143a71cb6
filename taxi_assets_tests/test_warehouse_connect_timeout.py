"""Connections to a warehouse server that does not answer give up after a bound.

A real server of this test's own (pgserver in a temporary folder, never the session's
shared one), its postmaster stopped with SIGSTOP: it accepts connections on its socket and
answers nothing. ``months status`` and a run's connection (``PostgresResource``) each run
as a process with a time limit, so a hang fails the test; the server is let go on and
stopped whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from taxi_assets.pg.connect_timeout import CONNECT_TIMEOUT_S
from taxi_assets.pg.embedded import embedded_url, stop
from taxi_assets_tests.pipeline import REPO


@pytest.fixture
def tmp_path(embedded_dir: Path) -> Path:
    """This module's servers run in folders outside pytest's basetemp (see ``embedded_dir``
    in conftest.py): a pytest session starting meanwhile closes basetemp's parent to the
    servers' user."""
    return embedded_dir.parent


PASSWORD = "s3cret-never-shown"
# What a run does first with the warehouse: the resource's engine, one connection.
A_RUNS_CONNECTION = """
from taxi_assets.resources.postgres import PostgresResource

with PostgresResource().engine().connect():
    pass
"""


@pytest.fixture
def hung_server_url(tmp_path: Path) -> Iterator[str]:
    """A URL (with a password: the server trusts its socket and ignores it) of a server
    whose postmaster is stopped."""
    from pgserver.utils import PostmasterInfo

    folder = (tmp_path / "hung_warehouse").resolve()
    url = embedded_url(folder)
    info = PostmasterInfo.read_from_pgdata(folder)
    assert info is not None and info.pid is not None
    os.kill(info.pid, signal.SIGSTOP)
    try:
        yield url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    finally:
        os.kill(info.pid, signal.SIGCONT)
        stop(folder)


def socket_folder(url: str) -> str:
    """The server's socket folder: its data folder, or pgserver's runtime folder when the
    data folder's path is too long for a socket (as under the suite's /dev/shm folder)."""
    return parse_qs(urlsplit(url).query)["host"][0]


def run(args: list[str], url: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TAXI_WAREHOUSE_URL": url}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - began


def test_months_status_gives_up_on_a_hung_server_naming_it(
    hung_server_url: str, tmp_path: Path
) -> None:
    """It waited psycopg's default 130 s and said only "connection timeout expired"."""
    done, took = run(
        ["-m", "taxi_assets.cli", "months", "status", "--lake", str(tmp_path / "lake")],
        hung_server_url,
        tmp_path,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(
        "error: cannot read the warehouse's load log: connection timeout expired: the "
        f"warehouse server postgresql://{socket_folder(hung_server_url)}/postgres did not answer "
        f"within {CONNECT_TIMEOUT_S} s (connect_timeout; another bound: "
        "?connect_timeout=SECONDS in the warehouse URL)"
    ), done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert CONNECT_TIMEOUT_S <= took < CONNECT_TIMEOUT_S + 20


def test_a_runs_connection_gives_up_on_a_hung_server_and_the_urls_own_bound_wins(
    hung_server_url: str, tmp_path: Path
) -> None:
    done, took = run(["-c", A_RUNS_CONNECTION], hung_server_url, tmp_path)
    assert done.returncode == 1
    said = done.stderr.strip().splitlines()
    assert (
        f"did not answer within {CONNECT_TIMEOUT_S} s (connect_timeout; another bound: " in said[-2]
    ), done.stderr
    assert said[-2].startswith(
        "sqlalchemy.exc.OperationalError: (psycopg.errors.ConnectionTimeout) connection "
        "timeout expired: the warehouse server postgresql://"
    ), done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert CONNECT_TIMEOUT_S <= took < CONNECT_TIMEOUT_S + 20

    # A bound the URL sets is kept (here a shorter one).
    done, took = run(["-c", A_RUNS_CONNECTION], hung_server_url + "&connect_timeout=3", tmp_path)
    assert done.returncode == 1
    assert "did not answer within 3 s (connect_timeout; " in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert 3 <= took < CONNECT_TIMEOUT_S
