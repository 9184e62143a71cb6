"""Connections a real server refuses for now (at its connection limit) are tried again for
a bound; every other failure to connect fails at once (taxi_assets.pg.refused_for_now).

The limit is a real one: a role of the test's own with ``CONNECTION LIMIT`` (or the test
database's), its connections taken by the test, then given back while the product waits.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.faults_support import as_admin, wait_for
from taxi_assets_tests.http_faults import FaultyMirror
from taxi_assets_tests.pipeline import (
    REPO,
    cli_env,
    engine_for,
    pipeline_resources,
    run,
    warehouse_counts,
)

PASSWORD = "s3cret-never-shown"
MONTH = "2021-01"
ROWS = 2000  # rows of every generated month on the shared mirror (conftest.ROWS)


@dataclass
class LimitedLogin:
    url: str  # the login's URL (holds PASSWORD)
    limit: int

    def take_every_slot(self) -> list[psycopg.Connection]:
        """Connections of the login until the server refuses one (a database's limit
        counts the test's own superuser sessions too)."""
        plain = sa.make_url(self.url).set(drivername="postgresql")
        held: list[psycopg.Connection] = []
        while True:
            try:
                held.append(psycopg.connect(plain.render_as_string(hide_password=False)))
            except psycopg.OperationalError as refused:
                assert "too many connections for" in str(refused), refused
                return held
            assert len(held) <= self.limit, "the limit is not enforced"


@pytest.fixture(params=["role", "database"])
def limited_login(request: pytest.FixtureRequest, pg_url: str) -> Iterator[LimitedLogin]:
    """A login of its own on ``pg_url``'s database, owning it, with a connection limit of
    3 on the role or on the database (superusers are exempt from both)."""
    role = f"loader_{uuid.uuid4().hex[:10]}"
    database = sa.make_url(pg_url).database
    limit = 3
    role_limit = limit if request.param == "role" else -1
    as_admin(
        pg_url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT {role_limit}",
        f'ALTER DATABASE "{database}" OWNER TO {role}',
        f'ALTER DATABASE "{database}" CONNECTION LIMIT {limit if request.param == "database" else -1}',
    )
    url = sa.make_url(pg_url).set(username=role, password=PASSWORD)
    try:
        yield LimitedLogin(url.render_as_string(hide_password=False), limit)
    finally:
        as_admin(
            pg_url,
            f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER',
            f'ALTER DATABASE "{database}" CONNECTION LIMIT -1',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f"DROP OWNED BY {role}",
            f"DROP ROLE {role}",
        )


def give_back_after(seconds: float, held: list[psycopg.Connection]) -> threading.Thread:
    def close() -> None:
        time.sleep(seconds)
        for connection in held:
            connection.close()

    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread


def failed_connect(resource: PostgresResource) -> tuple[sa.exc.OperationalError, float]:
    """The error of a connection of ``resource``'s engine, and the seconds it took."""
    engine = resource.engine()
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError) as raised, engine.connect():
            pass
        return raised.value, time.monotonic() - started
    finally:
        engine.dispose()


def test_a_connection_refused_at_the_limit_waits_for_a_free_slot(
    limited_login: LimitedLogin, caplog: pytest.LogCaptureFixture
) -> None:
    held = limited_login.take_every_slot()
    resource = PostgresResource(url=limited_login.url, connect_retry_s=60)
    engine = resource.engine()
    try:
        started = time.monotonic()
        giver = give_back_after(2.0, held)
        with caplog.at_level(logging.WARNING), engine.connect() as connection:
            waited = time.monotonic() - started
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
        giver.join()
    finally:
        engine.dispose()
    assert 1.5 < waited < 30, waited
    said = caplog.text
    assert f"the warehouse server {resource.describe()} refuses new connections" in said, said
    assert PASSWORD not in said


def test_a_server_still_at_its_limit_fails_after_the_bound_naming_it(
    limited_login: LimitedLogin,
) -> None:
    held = limited_login.take_every_slot()
    resource = PostgresResource(url=limited_login.url, connect_retry_s=2)
    try:
        error, elapsed = failed_connect(resource)
    finally:
        for connection in held:
            connection.close()
    said = str(error)
    assert "too many connections for" in said, said  # the server's own words
    assert f"the warehouse server {resource.describe()} still refused" in said, said
    assert "connect_retry_s" in said and "max_connections" in said
    assert PASSWORD not in said
    assert 1.0 < elapsed < 10, elapsed


def test_other_failures_to_connect_are_not_tried_again(pg_url: str) -> None:
    missing = sa.make_url(pg_url).set(database="no_such_database")
    error, elapsed = failed_connect(
        PostgresResource(url=missing.render_as_string(hide_password=False))
    )
    assert 'database "no_such_database" does not exist' in str(error)
    assert "still refused" not in str(error)
    assert elapsed < 1.0, elapsed


def test_a_run_that_finds_the_warehouse_at_its_limit_loads_once_a_slot_frees(
    limited_login: LimitedLogin, mirror: FaultyMirror, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A month's run started while every connection of its login is taken: its steps wait,
    and it loads the month once they are given back (before: the step failed at once)."""
    resources = pipeline_resources(mirror.url, tmp_path / "lake", limited_login.url)
    assert run(["raw/yellow_tripdata", "lake/yellow_tripdata"], resources, instance, MONTH).success
    held = limited_login.take_every_slot()
    giver = give_back_after(3.0, held)
    result = run("warehouse/yellow_tripdata", resources, instance, MONTH, False)
    giver.join()
    assert result.success
    said = [entry.user_message for entry in instance.all_logs(result.run_id)]
    waits = [message for message in said if "refuses new connections for now" in message]
    assert waits, said  # in the run's own log, where the UI shows it
    assert all(PASSWORD not in message for message in said)
    assert warehouse_counts(limited_login.url, "yellow_tripdata") == {MONTH: ROWS}


@pytest.fixture
def starting_server() -> Iterator[tuple[str, Path]]:
    """(URL, data folder) of a real server of the test's own that is starting: stopped,
    then started again (``pg_ctl -W``, not waiting) in archive recovery whose
    ``restore_command`` takes 2 s to find nothing, each time it is asked. Until the
    checkpoint is read it answers every connection "the database system is starting up";
    then it accepts read-only ones (hot standby) and, once recovery ends, every one."""
    import pgserver

    from taxi_assets.pg import embedded, embedded_start

    folder = Path(tempfile.mkdtemp(prefix="taxi-test-pg-starting-")) / "pgdata"
    try:
        url = pgserver.get_server(folder, cleanup_mode=None).get_uri()
        assert embedded.stop(folder)
        with open(folder / "postgresql.auto.conf", "a") as settings:
            settings.write("restore_command = 'sleep 2; exit 1'\n")
        (folder / "recovery.signal").write_text("")
        socket_dir = embedded_start.socket_folder(folder)
        (socket_dir / ".s.PGSQL.5432").unlink(missing_ok=True)
        start = ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(folder / "log"), "-W", "start"]
        embedded_start._pg_ctl(folder, embedded._server_user(folder), start, "start")
        deadline = time.monotonic() + 10
        while not (socket_dir / ".s.PGSQL.5432").exists():  # the postmaster listens
            assert time.monotonic() < deadline, "the server did not open its socket"
            time.sleep(0.01)
        yield url, folder
    finally:
        embedded.stop(folder)
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_a_connection_refused_while_the_server_starts_waits_for_it(
    starting_server: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, folder = starting_server
    resource = PostgresResource(url=url, connect_retry_s=60)
    engine = resource.engine()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING), engine.connect() as connection:
            waited = time.monotonic() - started
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
    assert "FATAL:  the database system is starting up" in (folder / "log").read_text()
    assert "refuses new connections for now (starting or recovering)" in caplog.text
    assert 1.0 < waited < 30, waited


def test_a_cli_run_waiting_for_a_free_slot_exits_when_marked_failed_elsewhere(
    limited_login: LimitedLogin, own_mirror: FaultyMirror, tmp_path: Path
) -> None:
    """A `dagster asset materialize` run whose warehouse login stays at its limit waits in
    the connection's retry (120 s); marked failed elsewhere (as run monitoring's
    max_runtime does), its process exits within the run watch's polls, not at the end of
    the retry."""
    from taxi_assets_tests.test_run_watch import (
        DAGSTER,
        POLL_S,
        end_as_run_monitoring_does,
        instance_home,
    )

    lake = tmp_path / "lake"
    env = cli_env(tmp_path, own_mirror.url, lake, limited_login.url)
    home = instance_home(Path(env["DAGSTER_HOME"]))
    resources = pipeline_resources(own_mirror.url, lake, limited_login.url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert run(
            ["raw/yellow_tripdata", "lake/yellow_tripdata"], resources, instance, MONTH
        ).success
    held = limited_login.take_every_slot()
    output = tmp_path / "cli.log"
    try:
        with output.open("w") as out:
            cli = subprocess.Popen(
                [DAGSTER, "asset", "materialize", "-m", "taxi_assets", "--select",
                 "warehouse/yellow_tripdata", "--partition", MONTH],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(
                "the run to wait for a connection",
                lambda: "refuses new connections for now" in output.read_text(),
                120,
                every=0.2,
            )
            with dg.DagsterInstance.from_config(str(home)) as instance:
                (waiting,) = instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
                )
                end_as_run_monitoring_does(instance, waiting)
            ended = time.monotonic()
            cli.wait(timeout=2 * POLL_S + 30)
            took = time.monotonic() - ended
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    finally:
        for connection in held:
            connection.close()
    said = output.read_text()
    assert cli.returncode != 0, said
    assert took < 2 * POLL_S + 10, (took, said)
    assert "interrupting it" in said and waiting.run_id in said, said
    engine = engine_for(limited_login.url)
    try:  # nothing loaded: the run never had a connection
        with engine.connect() as reading:
            found = reading.exec_driver_sql("SELECT to_regclass('warehouse.yellow_tripdata')")
            assert found.scalar() is None
    finally:
        engine.dispose()
