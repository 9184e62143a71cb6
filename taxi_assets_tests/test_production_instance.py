"""deploy/dagster.yaml against a real PostgreSQL: a job runs, Postgres has it, the step's
output is in the compute-logs folder.

Local development keeps SQLite under DAGSTER_HOME (the repository's dagster.yaml).
"""

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import pytest
import sqlalchemy as sa

from taxi_assets.resources.postgres import sqlalchemy_url
from taxi_assets_tests.pipeline import dagster_home

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
