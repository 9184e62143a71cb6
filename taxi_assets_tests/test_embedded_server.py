"""The embedded warehouse server runs with PostgreSQL's bulk-load settings.

Real servers (pgserver) in temporary folders: one started by ``embedded_url`` and one
started the way an older version of the project did, still running when this version
arrives.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from taxi_assets.pg.embedded import (
    BULK_LOAD_SETTINGS,
    embedded_url,
    pending_bulk_load_settings,
    stop,
)
from taxi_assets.pg.embedded import bulk_load_settings_in_use as running


def wal_bytes_of_a_month_load(url: str) -> int:
    """WAL written by a month-style load: a table created and COPYed in one transaction."""
    with psycopg.connect(url) as connection:
        before = connection.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        with connection.transaction():
            connection.execute("CREATE TABLE month_load (id bigint, note text)")
            with connection.cursor().copy("COPY month_load FROM STDIN (FREEZE)") as copy:
                for row in range(200_000):
                    copy.write_row((row, "a trip of some length"))
        assert before is not None
        written = connection.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before[0],)
        ).fetchone()
    assert written is not None
    return int(written[0])


def test_a_new_embedded_server_writes_no_wal_for_a_month_load(tmp_path: Path) -> None:
    folder = tmp_path / "warehouse"
    url = embedded_url(folder)
    try:
        assert running(url) == BULK_LOAD_SETTINGS
        assert pending_bulk_load_settings(url) == {}
        # ~9 MB of rows; with wal_level=replica the same load writes more than that in WAL.
        assert wal_bytes_of_a_month_load(url) < 1_000_000
        with psycopg.connect(url) as connection:
            started = connection.execute("SELECT pg_postmaster_start_time()").fetchone()
        # A second caller finds the server as it is: no restart.
        assert embedded_url(folder) == url
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT pg_postmaster_start_time()").fetchone() == started
    finally:
        assert stop(folder)


def test_a_running_server_without_the_settings_is_not_restarted_under_its_users(
    tmp_path: Path,
) -> None:
    import pgserver

    folder = (tmp_path / "warehouse").resolve()
    # Started as the project's earlier versions did: pgserver's defaults (wal_level replica).
    old_url = pgserver.get_server(folder, cleanup_mode=None).get_uri()
    try:
        with psycopg.connect(old_url) as in_use:
            assert running(old_url) != BULK_LOAD_SETTINGS
            url = embedded_url(folder)
            # The connection a run holds survives; the settings wait for the next start.
            assert in_use.execute("SELECT 1").fetchone() == (1,)
            # PostgreSQL's defaults (replica, 10 senders) until the next start.
            assert pending_bulk_load_settings(url) == BULK_LOAD_SETTINGS
        assert wal_bytes_of_a_month_load(url) > 5_000_000
        assert stop(folder)
        url = embedded_url(folder)
        assert running(url) == BULK_LOAD_SETTINGS
    finally:
        stop(folder)


def test_is_running_while_another_process_starts_the_server(tmp_path: Path) -> None:
    """``months status`` asks whether the server runs while a run's process may be starting
    it: PostgreSQL writes ``postmaster.pid`` line by line, and pgserver's reader raised an
    AssertionError on a file not yet whole. The answer waits for the start instead."""
    import subprocess
    import sys

    from taxi_assets.pg.embedded import is_running

    folder = (tmp_path / "warehouse").resolve()
    embedded_url(folder)  # created once (initdb), then stopped: the next start is quicker
    assert stop(folder)
    start = (
        "import sys; from taxi_assets.pg.embedded import embedded_url; embedded_url(sys.argv[1])"
    )
    starter = subprocess.Popen([sys.executable, "-c", start, str(folder)])
    try:
        answers = set()
        while starter.poll() is None:
            answers.add(is_running(folder))
        assert starter.returncode == 0
        assert is_running(folder)
        assert True in answers
    finally:
        starter.kill()
        starter.wait()
        stop(folder)
