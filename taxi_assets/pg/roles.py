"""A read-only role for analysts on the ``warehouse`` (and ``analytics``) schemas.

``python -m taxi_assets.cli warehouse analyst-role ROLE`` creates (or updates) ``ROLE`` on the
warehouse configured for the project (``TAXI_WAREHOUSE_URL`` or the embedded server), with
the password from ``TAXI_ANALYST_PASSWORD`` when set (a login role) or none (a group role
to grant to existing users). It may read every table, now and later, and change none.
"""

import sqlalchemy as sa

from taxi_assets.pg.ddl import create_schema, ident

READ_SCHEMAS = ("warehouse", "analytics")


def password_verifier(connection: sa.Connection, role: str, password: str) -> str:
    """``password`` for ``role`` hashed by libpq with the server's ``password_encryption``
    (SCRAM-SHA-256 by default), as the server stores it: what ALTER ROLE may be sent."""
    # The warehouse's engines are psycopg 3's (resources.postgres.sqlalchemy_url).
    pgconn = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
    return bytes(pgconn.encrypt_password(password.encode(), role.encode())).decode()


class RoleRefused(ValueError):
    """The role cannot be made a read-only analysts' role; the message says why."""


def grant_read_only(engine: sa.Engine, role: str, password: str | None = None) -> bool:
    """Give ``role`` (created when missing) read access; True when it was created. An
    existing role keeps its login setting unless a password is given: run again to renew
    the grants, it must not lock out users who log in with it."""
    name = ident(role)
    with engine.begin() as connection:
        found = connection.execute(
            sa.text("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = :role"),
            {"role": role},
        ).one_or_none()
        if found is not None and found[1]:
            raise RoleRefused(
                f"role {role} is the one this command (and the loads) connect as: "
                "name a role for analysts"
            )
        if found is not None and found[0]:
            raise RoleRefused(
                f"role {role} is a superuser: it reads and changes everything whatever is "
                "granted to it, so it cannot be a read-only role; name another role"
            )
        if found is None:
            connection.exec_driver_sql(f"CREATE ROLE {name} {'LOGIN' if password else 'NOLOGIN'}")
        elif password:
            connection.exec_driver_sql(f"ALTER ROLE {name} LOGIN")
        if password:
            # Only the password's verifier leaves this process, hashed here with the
            # server's algorithm (as psql's \\password does): an ALTER ROLE carrying the
            # password itself would sit in the server's log (log_statement = ddl, or any
            # error) and in the text of an exception.
            verifier = password_verifier(connection, role, password)
            statement = connection.execute(
                sa.text(
                    "SELECT format('ALTER ROLE %I PASSWORD %L', CAST(:r AS text), CAST(:v AS text))"
                ),
                {"r": role, "v": verifier},
            ).scalar_one()
            connection.exec_driver_sql(statement)
        for schema in READ_SCHEMAS:
            quoted = ident(schema)
            create_schema(connection, schema)
            connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quoted} TO {name}")
            connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {quoted} TO {name}")
            connection.exec_driver_sql(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT SELECT ON TABLES TO {name}"
            )
    return found is None
