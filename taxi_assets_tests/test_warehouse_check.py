"""``warehouse check``: what a real server offers the loads, read from its settings and
catalogues (taxi_assets.pg.server_check). Each case sets the server up as an operator
would (a read-only database, a role's statement_timeout or connection limit, a role
without CREATE, a table of an earlier version) and reads the finding back.

Not caused here: a standby (``pg_is_in_recovery``), a server before PostgreSQL 14, and
messages in another language (this machine has no locale but C and POSIX).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from taxi_assets.cli.warehouse import DEFAULT_SCHEMAS, plain_by_design_tables
from taxi_assets.pg.server_check import Finding, check_server
from taxi_assets.resources.postgres import PostgresResource
from taxi_assets_tests.faults_support import LOGIN_PASSWORD as PASSWORD
from taxi_assets_tests.faults_support import as_admin
from taxi_assets_tests.pipeline import REPO, engine_for


def findings(url: str) -> list[Finding]:
    resource = PostgresResource(url=url)
    engine = resource.engine()
    try:
        return check_server(
            engine, resource.describe(), DEFAULT_SCHEMAS, plain_by_design=plain_by_design_tables()
        )
    finally:
        engine.dispose()


def levels(found: list[Finding], level: str) -> list[str]:
    """The texts of ``found`` at ``level``, but the free disk's: the test server's folder
    is on this machine's disk (or tmpfs), whose free space is not the test's to set."""
    return [f.text for f in found if f.level == level and not f.text.startswith("free disk:")]


def cli_check(pg_url: str) -> subprocess.CompletedProcess[str]:
    """``python -m taxi_assets.cli warehouse check`` against ``pg_url``."""
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "warehouse", "check"],
        cwd=REPO, env={**os.environ, "TAXI_WAREHOUSE_URL": pg_url},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_check_creates_no_embedded_warehouse(tmp_path: Path) -> None:
    """Without TAXI_WAREHOUSE_URL, where no embedded warehouse exists (another folder than
    the one it was made in): said, and none is created (it made a new empty server and
    called it ready)."""
    env = {k: v for k, v in os.environ.items() if k != "TAXI_WAREHOUSE_URL"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "warehouse", "check"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "warehouse"
    assert done.stdout.splitlines() == [
        f"ok: no embedded warehouse at {folder} yet (TAXI_WAREHOUSE_URL is not set): the first "
        "load creates it; nothing was created",
        "ready for loads",
    ]
    assert not (tmp_path / "data").exists()


def test_the_cli_says_a_fresh_database_is_ready(pg_url: str) -> None:
    done = cli_check(pg_url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok: connected to postgresql://") and "PostgreSQL " in lines[0]
    assert "ok: the server takes writes" in lines
    assert "ok: schema warehouse: absent, the first load creates it" in lines
    assert lines[-1] == "ready for loads"
    assert any("free disk" in line for line in lines), lines  # its size, or why not shown
    assert not [
        line
        for line in lines
        if line.startswith(("warning", "problem")) and not line.startswith("warning: free disk:")
    ], lines


def test_a_server_that_refuses_or_is_not_there_is_one_line_not_a_traceback(pg_url: str) -> None:
    from taxi_assets_tests.emulators import free_port

    # The throwaway server trusts its socket's users: a role it does not have is refused.
    unknown = sa.make_url(pg_url).set(username="no_such_role", password="not-the-password-42")
    nobody = f"postgresql://someone:pw-9@127.0.0.1:{free_port()}/db"
    # A URL parameter libpq refuses (psycopg's ProgrammingError: it was a traceback).
    bad_parameter = f"{pg_url}{'&' if '?' in pg_url else '?'}connect_timeout=abc"
    for url in (unknown.render_as_string(hide_password=False), nobody, bad_parameter):
        done = cli_check(url)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("error: cannot use the warehouse: "), done.stderr
        assert "not-the-password-42" not in done.stderr and "pw-9" not in done.stderr


def test_a_read_only_database_is_a_problem_and_the_cli_exits_1(pg_url: str) -> None:
    database = sa.make_url(pg_url).database
    as_admin(pg_url, f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    (problem,) = levels(findings(pg_url), "problem")
    assert problem.startswith("default_transaction_read_only is on"), problem
    done = cli_check(pg_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "1 problem(s)"


def test_a_role_without_create_is_a_problem_naming_the_grant(login: tuple[str, str]) -> None:
    url, role = login
    found = findings(url)
    problems = levels(found, "problem")
    assert len(problems) == 2, found  # both schemas
    database = sa.make_url(url).database
    assert f"GRANT CREATE ON DATABASE {database} TO {role}" in problems[0], problems
    assert all(PASSWORD not in f.text for f in found)


def test_existing_schemas_without_create_are_a_problem(pg_url: str, login: tuple[str, str]) -> None:
    url, role = login
    as_admin(pg_url, "CREATE SCHEMA warehouse", "CREATE SCHEMA analytics")
    as_admin(pg_url, f"GRANT USAGE, CREATE ON SCHEMA analytics TO {role}")
    found = findings(url)
    assert levels(found, "problem") == [
        f"schema warehouse: role {role} may not create tables in it (GRANT USAGE, CREATE ON "
        f"SCHEMA warehouse TO {role})"
    ]
    assert "schema analytics: this role may create tables in it" in levels(found, "ok")


def test_a_roles_statement_timeout_is_a_warning(pg_url: str, login: tuple[str, str]) -> None:
    url, role = login
    database = sa.make_url(pg_url).database
    as_admin(
        pg_url,
        f'GRANT CREATE ON DATABASE "{database}" TO {role}',
        f"ALTER ROLE {role} SET statement_timeout = '30s'",
    )
    found = findings(url)
    (warning,) = levels(found, "warning")
    assert warning.startswith("statement_timeout is 30s"), warning
    assert f"ALTER ROLE {role} SET statement_timeout = 0" in warning
    assert levels(found, "problem") == []


def test_a_roles_connection_limit_near_its_use_is_a_warning(
    pg_url: str, login: tuple[str, str]
) -> None:
    url, role = login
    database = sa.make_url(pg_url).database
    as_admin(
        pg_url,
        f'GRANT CREATE ON DATABASE "{database}" TO {role}',
        f"ALTER ROLE {role} CONNECTION LIMIT 3",
    )
    (warning,) = levels(findings(url), "warning")
    # The check's own session is one of the three.
    assert "this role: 1 of 3 in use" in warning and "Only 2 free" in warning, warning


def test_a_table_of_an_earlier_version_is_a_problem_naming_migrate(pg_url: str) -> None:
    as_admin(
        pg_url,
        "CREATE SCHEMA warehouse",
        "CREATE TABLE warehouse.yellow_tripdata (partition_month date, fare_amount float8)",
    )
    (problem,) = levels(findings(pg_url), "problem")
    assert "warehouse.yellow_tripdata" in problem and "warehouse migrate --dry-run" in problem


def test_month_tables_the_role_does_not_own_and_a_load_log_it_may_not_write_are_problems(
    pg_url: str, login: tuple[str, str]
) -> None:
    """Every load detaches, drops and attaches month tables (ownership) and writes the load
    log: a role with USAGE, CREATE and every table privilege but no ownership was "ready
    for loads", then each load failed with "must be owner of table"."""
    from datetime import date

    from taxi_assets.pg.ddl import TableLayout, ensure_table
    from taxi_assets.pg.month_swap import MonthBounds, Staging, replace_months

    url, role = login
    admin = engine_for(pg_url)
    schema = pa.schema([("trip_id", pa.int64()), ("partition_month", pa.date32())])
    ensure_table(admin, "warehouse", "trips", schema, TableLayout(partition_by="partition_month"))

    def fill(connection: sa.Connection, staging: Staging) -> int:
        insert = f"INSERT INTO {staging.target} VALUES (1, DATE '2021-01-01')"
        return connection.exec_driver_sql(insert).rowcount

    january = MonthBounds("2021-01", date(2021, 1, 1), date(2021, 2, 1))
    replace_months(admin, "warehouse", "trips", "partition_month", [january], fill)
    admin.dispose()
    owner = sa.make_url(pg_url).username
    as_admin(
        pg_url,
        "CREATE SCHEMA analytics",
        "CREATE TABLE warehouse.loads (table_name text, partition_month date)",
        f"GRANT USAGE, CREATE ON SCHEMA warehouse, analytics TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA warehouse TO {role}",
        f"REVOKE DELETE ON warehouse.loads FROM {role}",
    )
    problems = levels(findings(url), "problem")
    assert problems == [
        f"role {role} does not own these month tables, which a load detaches, drops and "
        f"attaches: warehouse.trips, warehouse.trips_2021_01 (owned by {owner}). Make it a "
        f"member of the owner (GRANT {owner} TO {role}) or the owner (ALTER TABLE ... OWNER "
        f"TO {role})",
        f"role {role} may not DELETE on warehouse.loads, the load log every load writes "
        f"(GRANT SELECT, INSERT, DELETE ON warehouse.loads TO {role})",
    ]
    as_admin(pg_url, f"GRANT {owner} TO {role}", f"GRANT DELETE ON warehouse.loads TO {role}")
    assert levels(findings(url), "problem") == []


def test_a_killed_loads_staging_table_is_no_table_of_an_earlier_version(pg_url: str) -> None:
    """A load killed between its COPY's commit and its swap leaves its staging table: the
    check called it a table of an earlier version, and `warehouse migrate` made it a
    partitioned table no load ever dropped (a whole month kept for good)."""
    from taxi_assets.pg.migrate import tables_to_convert
    from taxi_assets.pg.month_swap import month_lock_key

    staging = "trips_2021_01__load_0123abcd"
    as_admin(
        pg_url,
        "CREATE SCHEMA warehouse",
        f"CREATE TABLE warehouse.{staging} (trip_id bigint, partition_month date)",
    )
    found = findings(pg_url)
    assert levels(found, "problem") == []
    (warning,) = [w for w in levels(found, "warning") if "killed loads" in w]
    assert warning.startswith(f"staging tables of killed loads, 0.00 GB: warehouse.{staging}.")
    engine = engine_for(pg_url)
    with engine.connect() as connection:
        assert tables_to_convert(connection, ("warehouse",), "partition_month") == []
        # A load under way holds its month's lock around its staging table: not killed,
        # and not to be dropped (the warning's advice would fail that load).
        connection.execute(
            sa.text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
            {"key": month_lock_key("warehouse", "trips", "2021-01")},
        )
        assert not [w for w in levels(findings(pg_url), "warning") if "killed loads" in w]
        connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    engine.dispose()
