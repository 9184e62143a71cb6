"""deploy/dagster.yaml against a real PostgreSQL: a job runs, Postgres has it, the step's
output is in the compute-logs folder.

Local development keeps SQLite under DAGSTER_HOME (the repository's dagster.yaml).
"""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from taxi_assets.pg.embedded import stop
from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets_tests.emulators import free_port
from taxi_assets_tests.pipeline import dagster_home
from taxi_assets_tests.tcp_postgres import start_on_tcp, stopped_folder, tcp_options

REPO = Path(__file__).resolve().parents[1]
PRODUCTION_YAML = REPO / "deploy" / "dagster.yaml"
LOCAL_YAML = REPO / "dagster.yaml"


@dg.op
def say_hello(context: dg.OpExecutionContext) -> int:
    context.log.info("hello from the production instance")
    print("printed by the step")  # captured by the compute log manager
    return 1


@dg.job
def hello_job() -> None:
    say_hello()


def compose_storage_query() -> dict[str, str]:
    """The query deploy/docker-compose.yaml gives Dagster's storage URL (libpq's bounds)."""
    text = (REPO / "deploy" / "docker-compose.yaml").read_text()
    (url,) = re.findall(r"DAGSTER_POSTGRES_URL: (.+)", text)
    # After the password's ${...} (whose own "?" is Compose's, not the URL's).
    query = dict(parse_qsl(urlsplit(url.rsplit("}", 1)[-1]).query))
    assert query, url  # connect_timeout and keepalives: checked to work below
    return query


def storage_url(pg_url: str) -> str:
    """The test database as Dagster's storage URL (psycopg2 driver), with the production
    URL's query."""
    url = sa.make_url(pg_url).set(drivername="postgresql+psycopg2")
    url = url.update_query_dict(compose_storage_query())
    return url.render_as_string(hide_password=False)


def test_a_job_runs_on_postgres_storage(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    home = dagster_home(tmp_path, PRODUCTION_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url(pg_url))
    compute_logs = tmp_path / "compute-logs"
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(compute_logs))

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.compute_log_manager, LocalComputeLogManager)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        run_queue = instance.get_concurrency_config().run_queue_config
        assert run_queue is not None and run_queue.max_concurrent_runs == 4

        # A real run: run worker and step in subprocesses, events through Postgres.
        result = dg.execute_job(dg.reconstructable(hello_job), instance=instance)
        assert result.success
        run_id = result.run_id
        finished = instance.get_run_by_id(run_id)
        assert finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS

    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        status = connection.exec_driver_sql(
            "SELECT status FROM runs WHERE run_id = %(run_id)s", {"run_id": run_id}
        ).scalar()
        messages = connection.exec_driver_sql(
            "SELECT count(*) FROM event_logs WHERE run_id = %(run_id)s", {"run_id": run_id}
        ).scalar()
    engine.dispose()
    assert status == "SUCCESS"
    assert messages is not None and messages > 5
    # The step's stdout went to the compute-logs folder (a volume in docker-compose.yaml).
    logs = [path for path in compute_logs.rglob("*") if path.is_file()]
    assert any(b"printed by the step" in path.read_bytes() for path in logs), logs


def test_local_development_keeps_sqlite_under_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.storage.runs import SqliteRunStorage

    home = dagster_home(tmp_path, LOCAL_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert dg.materialize([dg.asset(lambda: 1, name="one")], instance=instance).success
    assert list(home.rglob("*.db"))


# libpq's bounds on Dagster's storage connections, as the Compose file and the Helm values
# give them: keepalives of 60 + 10 x 6 s (an idle connection to a host that died is given
# up in ~2 minutes, not the kernel's 2 hours) and TCP_USER_TIMEOUT of 120 s (a statement sent
# as the host died is given up as soon, not after the kernel's ~16 minutes of
# retransmissions: keepalives probe only a connection with nothing in flight). The
# storage's statements are small and the server reads each one whole, so the timeout only
# ever ends a connection to a host that is gone.
STORAGE_SOCKET_BOUNDS = {
    "SO_KEEPALIVE": 1,
    "TCP_KEEPIDLE": 60,
    "TCP_KEEPINTVL": 10,
    "TCP_KEEPCNT": 6,
    "TCP_USER_TIMEOUT": 120_000,
}


def storage_socket_options(storage_url_over_tcp: str) -> dict[str, int]:
    """The socket options of a connection of Dagster's run storage (psycopg2 through
    dagster-postgres) made from ``storage_url_over_tcp``."""
    from dagster_postgres import PostgresRunStorage

    storage = PostgresRunStorage(storage_url_over_tcp)
    try:
        with storage.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            return tcp_options(raw.fileno())
    finally:
        storage.dispose()


@pytest.fixture(scope="module")
def tcp_pg_url() -> Iterator[str]:
    """A server of this module's own listening on 127.0.0.1 (socket options are TCP's)."""
    with stopped_folder() as data:
        try:
            yield start_on_tcp(data, "127.0.0.1", free_port())
        finally:
            stop(data)


def test_dagsters_storage_connections_carry_the_compose_files_bounds(tcp_pg_url: str) -> None:
    """The Compose file's ``DAGSTER_POSTGRES_URL`` (:data:`STORAGE_SOCKET_BOUNDS`)."""
    assert storage_socket_options(storage_url(tcp_pg_url)) == STORAGE_SOCKET_BOUNDS


def test_dagsters_storage_connections_carry_the_helm_values_bounds(tcp_pg_url: str) -> None:
    """The Helm values' ``postgresql.postgresqlParams``, as the chart passes them: its
    ``dagsterYaml.postgresql.config`` (helm/dagster/templates/helpers/instance/
    _postgresql.tpl in dagster-io/dagster, read at commit 0bd187e4) writes them to the
    instance's ``postgres_db.params``, from which Dagster builds the URL (the chart itself
    cannot be rendered offline). The same bounds as the Compose file's URL."""
    from dagster_postgres.utils import pg_url_from_config

    postgresql = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())[
        "postgresql"
    ]
    params = postgresql["postgresqlParams"]
    assert {name: str(value) for name, value in params.items()} == compose_storage_query()
    server = sa.make_url(tcp_pg_url)
    url = pg_url_from_config(
        {
            "postgres_db": {
                "username": server.username,
                "password": server.password or "",
                "hostname": server.host,
                "db_name": server.database,
                "port": str(server.port),
                "params": params,
                "scheme": postgresql["postgresqlScheme"],
            }
        }
    )
    assert storage_socket_options(url) == STORAGE_SOCKET_BOUNDS
