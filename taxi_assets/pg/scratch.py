"""Throwaway databases on a server: one per test or benchmark run, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from taxi_assets.pg.ddl import ident
from taxi_assets.resources.postgres import sqlalchemy_url


@contextmanager
def fresh_database(server_url: str, prefix: str = "t", checkpoint: bool = False) -> Iterator[str]:
    """A new empty database on ``server_url`` (its URL); dropped afterwards, even while
    connections remain. ``checkpoint``: flush the server's dirty pages first, so that a
    timed run does not pay for the previous one's writes."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {ident(name)}")
            if checkpoint:
                connection.exec_driver_sql("CHECKPOINT")
        url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
    finally:
        admin.dispose()
