"""A stopped embedded server that does not start, or not as a warehouse, fails in bounded
time with an error naming its folder and its log's last lines.

Real servers (pgserver) in temporary folders, made unstartable through their own
configuration; ``warehouse start`` run as a process (``make demo`` and every run start
the server the same way).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from taxi_assets.pg.embedded import (
    BULK_LOAD_SETTINGS,
    bulk_load_settings_in_use,
    embedded_url,
    is_running,
    stop,
)
from taxi_assets_tests.test_embedded_server import command_env, run_command

START = ["-m", "taxi_assets.cli", "warehouse", "start"]


def warehouse_start(folder: Path) -> subprocess.CompletedProcess[str]:
    return run_command([*START, str(folder)], command_env())


def test_a_server_that_exits_at_start_fails_naming_its_folder_and_log(embedded_dir: Path) -> None:
    """A module in shared_preload_libraries that is not installed: the server exits at
    once. The start failed with pgserver's ``CalledProcessError`` naming pg_ctl's command
    line, in a traceback; the reason was in the server's log only."""
    folder = embedded_dir.resolve()
    embedded_url(folder)
    assert stop(folder)
    config = folder / "postgresql.conf"
    original = config.read_text()
    config.write_text(original + "shared_preload_libraries = 'no_such_library'\n")
    try:
        start = warehouse_start(folder)
        assert start.returncode == 1
        said = start.stderr
        assert said.startswith(
            f"error: the embedded PostgreSQL server of {folder} did not start"
        ), said
        assert "pg_ctl said: waiting for server to start" in said and "could not start" in said
        assert f"The last lines of its log ({folder / 'log'}):" in said
        assert 'FATAL:  could not access file "no_such_library"' in said
        assert "Traceback" not in said
        assert not is_running(folder)

        config.write_text(original)
        assert warehouse_start(folder).returncode == 0
        assert is_running(folder)
    finally:
        stop(folder)


def test_a_folder_that_starts_as_a_standby_fails_instead_of_waiting_for_ever(
    embedded_dir: Path,
) -> None:
    """A data folder holding standby.signal (a restored base backup) with hot_standby off:
    pg_ctl reports the server started ("standby"), and pgserver then waited for it to say
    "ready", polling once a second for ever, holding the start locks. Now the start fails
    at once, stops that server and says why; without standby.signal the folder starts."""
    import pgserver

    folder = embedded_dir.resolve()
    # pgserver's defaults (wal_level replica): a standby needs more than minimal WAL.
    pgserver.get_server(folder, cleanup_mode=None)
    assert stop(folder)
    with open(folder / "postgresql.conf", "a") as config:
        config.write("hot_standby = off\n")
    signal_file = folder / "standby.signal"
    signal_file.touch()
    try:
        try:
            start = warehouse_start(folder)
        except subprocess.TimeoutExpired as timeout:  # before: for ever
            raise AssertionError("warehouse start still waiting after 30 s") from timeout
        assert start.returncode == 1
        said = start.stderr
        assert said.startswith(
            f"error: the embedded PostgreSQL server of {folder} started as a standby, which "
            f"accepts no writes ({signal_file} is there, with hot_standby off): stopped again."
        ), said
        assert "LOG:  entering standby mode" in said
        assert "Traceback" not in said
        assert not is_running(folder)

        signal_file.unlink()
        start = warehouse_start(folder)
        assert start.returncode == 0, start.stderr
        url = embedded_url(folder)
        assert bulk_load_settings_in_use(url) == BULK_LOAD_SETTINGS
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE written (id int)")
    finally:
        stop(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
def test_a_folder_whose_parent_was_closed_to_other_users_starts_again(
    embedded_dir: Path,
) -> None:
    """Run as root, the server runs as pgserver's user, which must reach its folder.
    pgserver opened the folder's parents to other users at each of its starts; the start
    of an existing folder does so too (a parent closed meanwhile: a mkdir under umask
    077, or pytest resetting its temporary root to 0700)."""
    folder = embedded_dir.resolve()
    embedded_url(folder)
    try:
        assert stop(folder)
        folder.parent.chmod(0o700)
        start = warehouse_start(folder)
        assert start.returncode == 0, start.stderr
        assert is_running(folder)
    finally:
        stop(folder)
