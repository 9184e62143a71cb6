"""Shared fixtures: a real PostgreSQL server, generated TLC files on a real HTTP mirror."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from taxi_assets.pg.scratch import fresh_database
from taxi_assets_tests.faults_support import restartable_server
from taxi_assets_tests.lake_stores import (  # noqa: F401 - fixtures: the lake on each store
    azure_proxy,
    azure_store,
    azurite_server,
    lake_store,
    moto_server,
    moto_with_auth,
    object_store,
    s3_proxy,
    s3_store,
)
from taxi_assets_tests.postgres_server import throwaway_server

if TYPE_CHECKING:
    from taxi_assets_tests.bq_emulator import BigQueryEmulator, EmulatedProject
    from taxi_assets_tests.gcs_emulator import GcsEmulator
    from taxi_assets_tests.http_faults import FaultyMirror

SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "tlc-samples"
# Environment variables the project reads; tests start from a clean slate.
PROJECT_ENV = (
    "TAXI_SOURCE",
    "TAXI_DTC_URL",
    "TAXI_TLC_URL",
    "TAXI_ZONES_URL",
    "TAXI_LAKE_URL",
    "TAXI_WAREHOUSE_URL",
    "TAXI_FIRST_MONTH",
    "TAXI_PRODUCTION",
    "BIGQUERY_EMULATOR_HOST",
    "TAXI_SENSOR_INTERVAL_SECONDS",
    "TAXI_AUTOMATION_INTERVAL_SECONDS",
)


def pytest_configure(config: pytest.Config) -> None:
    # gcsfs 2026.x stalls a minute per call against an emulator without this; set it before
    # anything imports gcsfs.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    restore_default_interrupt()


def restore_default_interrupt() -> None:
    """Give the processes the tests start Ctrl-C's default meaning, whoever started pytest.

    A non-interactive shell starts a background command with SIGINT ignored, and `make test`
    starts its second pytest process that way. An ignored signal stays ignored across exec,
    so every process that pytest started inherited it: `dg dev` ignored the browser test's
    Ctrl-C and was killed 15 s later with its code server's semaphore tracker, leaving 8
    named semaphores in /dev/shm per run; and Dagster's processes map SIGTERM to SIGINT's
    handler (`setup_interrupt_handlers`), so they ignored SIGTERM as well.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _clean_project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROJECT_ENV:
        monkeypatch.delenv(name, raising=False)
    # Nothing reaches AWS or Azure: no credentials, profiles or endpoints from the
    # developer's environment, no instance metadata service (169.254.169.254).
    for name in [n for n in os.environ if n.startswith(("AWS_", "AZURE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/taxi-tests/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/taxi-tests/aws-credentials")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps,
    # which would delete a running server's data folder.
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="taxi-test-pg-"))
    try:
        with throwaway_server(folder / "data") as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """An empty database of its own for each test."""
    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def login(pg_url: str) -> Iterator[tuple[str, str]]:
    """(URL, name) of a login role of the test's own, with no privilege but CONNECT (roles
    belong to the whole server: dropped after, with what it owns)."""
    import uuid

    import sqlalchemy as sa

    from taxi_assets_tests.faults_support import LOGIN_PASSWORD, as_admin

    role = f"loader_{uuid.uuid4().hex[:10]}"
    as_admin(pg_url, f"CREATE ROLE {role} LOGIN PASSWORD '{LOGIN_PASSWORD}'")
    url = sa.make_url(pg_url).set(username=role, password=LOGIN_PASSWORD)
    try:
        yield url.render_as_string(hide_password=False), role
    finally:
        as_admin(
            pg_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f"DROP OWNED BY {role}",
            f"DROP ROLE {role}",
        )


@pytest.fixture(scope="module")
def stoppable_server() -> Iterator[tuple[str, Path]]:
    """(URL, data folder) of a server of the test module's own, which its tests may stop
    (SIGSTOP) and restart; outside pytest's basetemp (which a concurrent pytest session may
    prune)."""
    with (
        tempfile.TemporaryDirectory(prefix="taxi-test-pg-stoppable-") as folder,
        restartable_server(Path(folder)) as (url, _),
    ):
        yield url, Path(folder) / "pgdata"


@pytest.fixture
def stoppable_database(stoppable_server: tuple[str, Path]) -> Iterator[tuple[str, Path]]:
    """(URL of an empty database of the test's own on ``stoppable_server``, the server's
    data folder): what a test leaves on the server (a backend still sleeping in its query)
    goes with the database."""
    url, data = stoppable_server
    with fresh_database(url) as own:
        yield own, data


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """A data folder (not created yet) for an embedded server of the test's own. Not under
    pytest's basetemp: a pytest session that starts meanwhile (another checkout's) resets
    /tmp/pytest-of-USER to 0700, and a server that runs as pgserver's user (tests run as
    root) then cannot reach its folder ("could not access directory")."""
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="taxi-test-embedded-"))
    try:
        yield parent / "warehouse"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# Events in Dagster's in-memory event log (its SQL event log storage on an in-memory SQLite
# database, as DagsterInstance.ephemeral uses); runs and schedules in SQLite files.
IN_MEMORY_EVENTS = {
    "event_log_storage": {
        "module": "dagster._core.storage.event_log",
        "class": "InMemoryEventLogStorage",
    }
}


@pytest.fixture(scope="session")
def empty_instance_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of a new, empty instance, made once: creating the SQLite run and schedule
    databases (schema and migration stamps) took ~0.2 s a test, copying them ~0.06 s."""
    home = tmp_path_factory.mktemp("empty_dagster_home")
    with dg.instance_for_test(temp_dir=str(home), overrides=IN_MEMORY_EVENTS):
        pass
    return home


@pytest.fixture
def instance(tmp_path: Path, empty_instance_home: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance of this test's own for in-process runs, with events in memory.
    The on-disk SQLite event log opens a new engine for every event it stores, and a
    database for every run: that was a third of these tests' time (docs/performance.md).
    The CLI, daemon, UI and demo tests keep the repository's dagster.yaml (all on disk),
    as `make dev` runs it. The project's loggers go to the run's log, as that file says."""
    import yaml

    home = tmp_path / "dagster_home"
    shutil.copytree(empty_instance_home, home)
    shipped = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
    overrides = {**IN_MEMORY_EVENTS, "python_logs": shipped["python_logs"]}
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as test_instance:
        yield test_instance


@pytest.fixture
def schedule_context(
    instance: dg.DagsterInstance,
) -> Iterator[Callable[[datetime, Path], dg.ScheduleEvaluationContext]]:
    """Schedule contexts on this test's instance, for a tick at a time, with the lake at a
    path; closed after the test. A schedule that reads ``context.instance`` opens it, and
    a context left open leaves that instance's state storage set for the tests after,
    which then fail on its dead weakref."""
    from taxi_assets import defs
    from taxi_assets.resources import LakeResource

    with ExitStack() as contexts:

        def make(when: datetime, lake: Path) -> dg.ScheduleEvaluationContext:
            return contexts.enter_context(
                dg.build_schedule_context(
                    instance=instance,
                    scheduled_execution_time=when,
                    repository_def=defs.get_repository_def(),
                    resources={"lake": LakeResource(url=str(lake))},
                )
            )

        yield make


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """A GCS emulator with bucket ``taxi-lake``, which this process's GCS clients use."""
    from taxi_assets_tests.gcs_emulator import emulated_gcs

    with emulated_gcs(monkeypatch) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def bq_emulator() -> Iterator[BigQueryEmulator]:
    """bqemulator in a subprocess, started once per session (about 1 s)."""
    import tempfile

    from taxi_assets_tests.bq_emulator import session_emulator

    folder = Path(tempfile.mkdtemp(prefix="taxi-test-bq-"))
    try:
        with session_emulator(folder) as emulator:
            yield emulator
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def bq_project(
    bq_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatedProject]:
    """A BigQuery project of this test's own on the emulator, which this process's
    BigQuery clients use (``BIGQUERY_EMULATOR_HOST``); its datasets are dropped after."""
    from taxi_assets_tests.bq_emulator import emulated_project

    with emulated_project(bq_emulator, monkeypatch) as project:
        yield project


@pytest.fixture
def shared_samples() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"real TLC samples not available at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


DEMO_MONTHS = ["2021-01", "2021-02"]
ROWS = 2000


@pytest.fixture(scope="session")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated months in both upstream layouts (read-only: copy it before changing it)."""
    from taxi_assets.devdata import generate_mirror

    root = tmp_path_factory.mktemp("mirror")
    generate_mirror(root, months=DEMO_MONTHS, rows=ROWS)
    return root


@pytest.fixture
def mirror(mirror_root: Path) -> Iterator[FaultyMirror]:
    from taxi_assets_tests.http_faults import FaultyMirror

    with FaultyMirror(mirror_root) as server:
        yield server


@pytest.fixture
def own_mirror(mirror_root: Path, tmp_path: Path) -> Iterator[FaultyMirror]:
    """A mirror over a private copy of the generated files, for tests that change them."""
    from taxi_assets_tests.http_faults import FaultyMirror

    root = tmp_path / "own_mirror"
    shutil.copytree(mirror_root, root)
    with FaultyMirror(root) as server:
        yield server
