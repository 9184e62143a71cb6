"""Is the PostgreSQL warehouse ready for the loads? What ``warehouse check`` reports.

Each finding is something a load would otherwise meet half-way through: a server that
takes no writes (a standby, ``default_transaction_read_only``: fault row 2h), a role that
may not create the schemas, month tables it does not own or a load log it may not write
(a load replaces a month by detaching, dropping and attaching tables), staging tables of
killed loads, tables of an earlier version (``warehouse migrate``), a
``statement_timeout`` shorter than a month's COPY (2g), few free connections (2f), a
server whose messages are not in English (the retry of 2f and the notes of 2g, 2h and 4e
read its English words), a disk with less room than a large month takes (4e), and what an
older server lacks. Every query is a read of the server's settings and catalogues: the
check changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from taxi_assets.pg.migrate import server_free_bytes, tables_to_convert
from taxi_assets.pg.partitions import STAGING_MARK, killed_load_tables

Level = Literal["ok", "warning", "problem"]

PARTITION_COLUMN = "partition_month"
# A run holds a few connections while it loads; two runs load at once by default.
FEW_FREE_CONNECTIONS = 6
# A 20M-row FHVHV month takes ~4 GB with its indexes, beside the month it replaces.
ROOM_FOR_A_LARGE_MONTH = 5 * 10**9
_ENGLISH = ("C", "POSIX", "en")


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


def check_server(
    engine: sa.Engine,
    where: str,
    schemas: tuple[str, ...],
    plain_by_design: Collection[tuple[str, str]] = (),
) -> list[Finding]:
    """What the warehouse server ``where`` (reached through ``engine``) offers the loads
    into ``schemas``; ``plain_by_design``: (schema, table) of tables with a month column
    that are not month tables (a load log), so not of an earlier version."""
    with engine.connect() as connection:
        role, database = connection.exec_driver_sql("SELECT current_user, current_database()").one()
        return [
            *_identity(connection, where, role),
            *_writable(connection),
            *_schemas(connection, schemas, role, database),
            *_earlier_tables(connection, schemas, plain_by_design),
            *_killed_loads(connection, schemas),
            *_ownership(connection, schemas, role, plain_by_design),
            *_statement_timeout(connection, role),
            *_connections(connection),
            *_messages(connection),
            *_disk(connection),
        ]


def _one(connection: sa.Connection, query: str) -> object:
    return connection.exec_driver_sql(query).scalar()


def _identity(connection: sa.Connection, where: str, role: str) -> list[Finding]:
    version = str(_one(connection, "SHOW server_version"))
    number = int(str(_one(connection, "SHOW server_version_num")))
    found = [Finding("ok", f"connected to {where}: PostgreSQL {version}, as role {role}")]
    if number < 140000:
        found.append(
            Finding(
                "warning",
                "PostgreSQL before 14 has no client_connection_check_interval: a killed "
                "run's statement runs on to its end, holding its month's lock",
            )
        )
    if number < 120000:
        found.append(
            Finding(
                "warning",
                "PostgreSQL before 12 has no tcp_user_timeout: a month's reader whose host "
                "died holds the month's lock until the kernel gives up (~16 minutes)",
            )
        )
    return found


def _writable(connection: sa.Connection) -> list[Finding]:
    if _one(connection, "SELECT pg_is_in_recovery()"):
        return [
            Finding(
                "problem",
                "the server is a standby (in recovery): it takes no writes. Point "
                "TAXI_WAREHOUSE_URL at the primary",
            )
        ]
    if _one(connection, "SHOW default_transaction_read_only") == "on":
        return [
            Finding(
                "problem",
                "default_transaction_read_only is on for this session (set for the role, the "
                "database or the server; some managed services set it when the storage is "
                "nearly full): every load would fail",
            )
        ]
    return [Finding("ok", "the server takes writes")]


def _schemas(
    connection: sa.Connection, schemas: tuple[str, ...], role: str, database: str
) -> list[Finding]:
    may_create_schemas = bool(
        _one(connection, "SELECT has_database_privilege(current_database(), 'CREATE')")
    )
    found = []
    for schema in schemas:
        # None: no such schema (has_schema_privilege refuses a name that does not exist).
        usable = connection.execute(
            sa.text(
                "SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') "
                "FROM pg_namespace WHERE nspname = :schema"
            ),
            {"schema": schema},
        ).scalar()
        if usable:
            found.append(Finding("ok", f"schema {schema}: this role may create tables in it"))
        elif usable is None and may_create_schemas:
            found.append(Finding("ok", f"schema {schema}: absent, the first load creates it"))
        elif usable is None:
            found.append(
                Finding(
                    "problem",
                    f"schema {schema}: absent, and role {role} may not create it (GRANT CREATE "
                    f"ON DATABASE {database} TO {role}, or create it and grant USAGE, CREATE "
                    "on it)",
                )
            )
        else:
            found.append(
                Finding(
                    "problem",
                    f"schema {schema}: role {role} may not create tables in it (GRANT USAGE, "
                    f"CREATE ON SCHEMA {schema} TO {role})",
                )
            )
    return found


def _earlier_tables(
    connection: sa.Connection,
    schemas: tuple[str, ...],
    plain_by_design: Collection[tuple[str, str]],
) -> list[Finding]:
    plain = tables_to_convert(connection, schemas, PARTITION_COLUMN, keep_plain=plain_by_design)
    if not plain:
        return []
    names = ", ".join(f"{schema}.{table}" for schema, table in plain)
    return [
        Finding(
            "problem",
            f"tables of an earlier version, which loads refuse: {names}. Run "
            "`python -m taxi_assets.cli warehouse migrate --dry-run`, then without --dry-run",
        )
    ]


def _killed_loads(connection: sa.Connection, schemas: tuple[str, ...]) -> list[Finding]:
    found = killed_load_tables(connection, schemas)
    if not found:
        return []
    names = ", ".join(f"{schema}.{name}" for schema, name, _ in found)
    total = sum(size for *_, size in found)
    return [
        Finding(
            "warning",
            f"staging tables of killed loads, {total / 1e9:.2f} GB: {names}. Each month's next "
            "load drops its own (or DROP TABLE them); they are not tables of an earlier version",
        )
    ]


# Months shown by name in a finding; the rest counted.
SHOWN_TABLES = 5


def _ownership(
    connection: sa.Connection,
    schemas: tuple[str, ...],
    role: str,
    plain_by_design: Collection[tuple[str, str]],
) -> list[Finding]:
    """A load replaces a month by detaching and dropping its table and attaching another
    (ownership of the month tables, theirs and their parent's, directly or through a role
    this one belongs to), and records it in the load log (SELECT, INSERT, DELETE)."""
    found = []
    rows = connection.execute(
        sa.text(
            "SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(:schemas) AND (c.relkind = 'p' OR c.relispartition) "
            "AND strpos(c.relname, :mark) = 0 "
            "AND NOT pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1, 2"
        ),
        {"schemas": list(schemas), "mark": STAGING_MARK},
    ).all()
    if rows:
        owners = sorted({owner for *_, owner in rows})
        shown = ", ".join(f"{schema}.{name}" for schema, name, _ in rows[:SHOWN_TABLES])
        more = f" and {len(rows) - SHOWN_TABLES} more" if len(rows) > SHOWN_TABLES else ""
        found.append(
            Finding(
                "problem",
                f"role {role} does not own these month tables, which a load detaches, drops and "
                f"attaches: {shown}{more} (owned by {', '.join(owners)}). Make it a member of "
                f"the owner (GRANT {owners[0]} TO {role}) or the owner (ALTER TABLE ... OWNER "
                f"TO {role})",
            )
        )
    for schema, table in sorted(plain_by_design):
        if schema not in schemas:
            continue
        missing = connection.execute(
            sa.text(
                "SELECT array_remove(ARRAY["
                "CASE WHEN has_table_privilege(t.oid, 'SELECT') THEN NULL ELSE 'SELECT' END, "
                "CASE WHEN has_table_privilege(t.oid, 'INSERT') THEN NULL ELSE 'INSERT' END, "
                "CASE WHEN has_table_privilege(t.oid, 'DELETE') THEN NULL ELSE 'DELETE' END"
                "], NULL) FROM pg_class AS t JOIN pg_namespace AS n ON n.oid = t.relnamespace "
                "WHERE n.nspname = :schema AND t.relname = :table"
            ),
            {"schema": schema, "table": table},
        ).scalar()
        if missing:
            found.append(
                Finding(
                    "problem",
                    f"role {role} may not {', '.join(missing)} on {schema}.{table}, the load log "
                    f"every load writes (GRANT SELECT, INSERT, DELETE ON {schema}.{table} TO "
                    f"{role})",
                )
            )
    return found


def _statement_timeout(connection: sa.Connection, role: str) -> list[Finding]:
    timeout = str(_one(connection, "SHOW statement_timeout"))
    if timeout == "0":
        return []
    return [
        Finding(
            "warning",
            f"statement_timeout is {timeout} for this role's sessions (set for the role, the "
            "database or the server): a month's load longer than that fails. Lift it for the "
            f"role that loads: ALTER ROLE {role} SET statement_timeout = 0",
        )
    ]


def _connections(connection: sa.Connection) -> list[Finding]:
    row = connection.exec_driver_sql(
        "SELECT current_setting('max_connections')::int "
        "- current_setting('superuser_reserved_connections')::int, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
        "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
        "(SELECT count(*) FROM pg_stat_activity WHERE usename = current_user), "
        "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()), "
        "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())"
    ).one()
    server_limit, server_used, role_limit, role_used, db_limit, db_used = row
    limits = [("the server", server_limit, server_used)]
    if role_limit >= 0:
        limits.append(("this role", role_limit, role_used))
    if db_limit >= 0:
        limits.append(("this database", db_limit, db_used))
    said = "; ".join(f"{name}: {used} of {limit} in use" for name, limit, used in limits)
    free = min(limit - used for _, limit, used in limits)
    if free < FEW_FREE_CONNECTIONS:
        return [
            Finding(
                "warning",
                f"connections: {said}. Only {max(free, 0)} free: loads wait for one "
                "(connect_retry_s) and fail after it; raise the limit or run fewer loads at once",
            )
        ]
    return [Finding("ok", f"connections: {said}")]


def _messages(connection: sa.Connection) -> list[Finding]:
    language = str(_one(connection, "SHOW lc_messages"))
    if language == "" or language.startswith(_ENGLISH):
        return []
    return [
        Finding(
            "warning",
            f"the server's messages are in {language!r}: a connection it refuses for now (at "
            "its connection limit, starting up) is not tried again, and its errors of a full "
            "disk or a statement_timeout get no explanation, since both are told by its "
            "English words (lc_messages = 'C' or 'en_US.UTF-8' for the server or the role)",
        )
    ]


def _disk(connection: sa.Connection) -> list[Finding]:
    folder, free = server_free_bytes(connection)
    if free is None:
        return [
            Finding(
                "ok",
                "the server's free disk is not visible from here: a month's load needs room "
                "for its new table beside the one it replaces (~4 GB for a 20M-row month)",
            )
        ]
    level: Level = "warning" if free < ROOM_FOR_A_LARGE_MONTH else "ok"
    return [
        Finding(
            level,
            f"free disk: {free / 1e9:.1f} GB on {folder} (a 20M-row month takes ~4 GB beside "
            "the month it replaces)",
        )
    ]
