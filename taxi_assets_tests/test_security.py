"""Security: a read-only analyst role, local-only services, safe file permissions."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from taxi_assets.resources.postgres import sqlalchemy_url

REPO = Path(__file__).resolve().parents[1]


def test_analyst_role_reads_but_cannot_write(pg_url: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA warehouse")
        connection.exec_driver_sql("CREATE TABLE warehouse.before (x int)")
        connection.exec_driver_sql("INSERT INTO warehouse.before VALUES (1)")
    env = {**os.environ, "TAXI_WAREHOUSE_URL": pg_url, "TAXI_ANALYST_PASSWORD": "s3cret-analyst"}
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.cli", "warehouse", "analyst-role", "analyst"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "s3cret-analyst" not in done.stdout + done.stderr
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE warehouse.after (y int)")  # default privileges
        connection.exec_driver_sql("INSERT INTO warehouse.after VALUES (2)")
    analyst_url = sa.make_url(sqlalchemy_url(pg_url)).set(
        username="analyst", password="s3cret-analyst"
    )
    analyst = sa.create_engine(analyst_url)
    with analyst.connect() as connection:
        assert connection.exec_driver_sql("SELECT x FROM warehouse.before").scalar() == 1
        assert connection.exec_driver_sql("SELECT y FROM warehouse.after").scalar() == 2
    with (
        analyst.connect() as connection,
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
    ):
        connection.exec_driver_sql("INSERT INTO warehouse.before VALUES (3)")
    analyst.dispose()
    engine.dispose()


def test_the_analyst_password_never_reaches_the_server_as_sql_text(pg_url: str) -> None:
    """Every statement and parameter the engine sends is seen (SQLAlchemy's own hook): the
    password is not among them, only its SCRAM verifier, and the role logs in with it."""
    from taxi_assets.pg.roles import grant_read_only

    password = "n0t-in-any-statement"
    engine = sa.create_engine(sqlalchemy_url(pg_url))
    sent: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # noqa: ANN001
        sent.append(f"{statement} {parameters!r}")

    grant_read_only(engine, "analyst_scram", password)
    assert sent and not [text for text in sent if password in text]
    assert any("SCRAM-SHA-256$" in text for text in sent)
    with engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'analyst_scram'"
        ).scalar()
    assert str(stored).startswith("SCRAM-SHA-256$")
    analyst = sa.create_engine(
        sa.make_url(sqlalchemy_url(pg_url)).set(username="analyst_scram", password=password)
    )
    with analyst.connect() as connection:
        assert connection.exec_driver_sql("SELECT current_user").scalar() == "analyst_scram"
    analyst.dispose()
    engine.dispose()


def test_embedded_postgres_listens_on_a_unix_socket_only(pg_server_url: str) -> None:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL points at an external server")
    engine = sa.create_engine(sqlalchemy_url(pg_server_url))
    with engine.connect() as connection:
        listen = connection.exec_driver_sql("SHOW listen_addresses").scalar()
    engine.dispose()
    assert listen == ""


def test_make_dev_binds_the_webserver_to_loopback() -> None:
    """The command `make dev` runs (make -n prints it without running it)."""
    import subprocess

    printed = subprocess.run(
        ["make", "-n", "-o", "install", "-o", "dagster-home", "dev"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dg dev -h 127.0.0.1 -p" in printed, printed


def test_lake_files_are_not_world_writable(tmp_path: Path) -> None:
    from upath import UPath

    from taxi_assets.storage.publish import publish_file

    source = tmp_path / "staged.bin"
    source.write_bytes(b"x")
    target = UPath(tmp_path / "lake" / "file.bin")
    publish_file(source, target)
    mode = stat.S_IMODE(Path(target.path).stat().st_mode)
    assert not mode & stat.S_IWOTH


def test_renewing_an_analyst_roles_grants_keeps_its_login(pg_url: str) -> None:
    """`analyst-role` run again without TAXI_ANALYST_PASSWORD (to renew the grants) made an
    existing login role NOLOGIN: its users were locked out. Pointed at the role the loads
    connect as, or at a superuser, it is refused, before anything is changed."""
    from taxi_assets.pg.roles import RoleRefused, grant_read_only

    engine = sa.create_engine(sqlalchemy_url(pg_url))
    role = f"alice_{os.getpid()}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'alice-pw'")
        connection.exec_driver_sql(f"CREATE ROLE {role}_su SUPERUSER")
        me = connection.exec_driver_sql("SELECT current_user").scalar_one()
    try:
        assert grant_read_only(engine, role) is False  # existed
        alice = sa.create_engine(
            sa.make_url(sqlalchemy_url(pg_url)).set(username=role, password="alice-pw")
        )
        with alice.connect() as connection:
            assert connection.exec_driver_sql("SELECT current_user").scalar() == role
        alice.dispose()
        with pytest.raises(RoleRefused, match="is the one this command"):
            grant_read_only(engine, me)
        with pytest.raises(RoleRefused, match="is a superuser"):
            grant_read_only(engine, f"{role}_su")
        with engine.connect() as connection:
            assert connection.exec_driver_sql(
                f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{me}'"
            ).scalar()
    finally:
        with engine.begin() as connection:
            for name in (role, f"{role}_su"):
                connection.exec_driver_sql(f"DROP OWNED BY {name}")
                connection.exec_driver_sql(f"DROP ROLE {name}")
        engine.dispose()
