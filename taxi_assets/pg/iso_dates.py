"""Every warehouse session reads and writes dates and times in ISO form.

psycopg parses the times a server sends back (the load log's ``loaded_at``, a month read
as text by ``COPY ... TO STDOUT``) only in the ISO ``DateStyle``; a server, database or
role set to another (``SQL, DMY``, ``German``, ``Postgres``), or ``PGDATESTYLE`` in the
environment, failed every load with "can't parse timestamptz with DateStyle ..." (the
month kept, but never replaced), and read ``03/14/2021 02:30:00`` back as an invalid
value. The day/month order stays as set: only the output form changes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

# ISO output, keeping the configured order for input that is not ISO (none of ours is).
ISO_OUTPUT = (
    "SELECT set_config('DateStyle', 'ISO, ' || "
    "COALESCE(NULLIF(split_part(current_setting('DateStyle'), ', ', 2), ''), 'MDY'), false)"
)


def iso_dates(engine: sa.Engine) -> None:
    """Each session ``engine`` opens sets its output DateStyle to ISO."""

    @sa.event.listens_for(engine, "connect")
    def set_iso(dbapi_connection: Any, record: object) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(ISO_OUTPUT)
        # Committed: a session setting made in a transaction rolled back is undone.
        dbapi_connection.commit()
