"""The Dagster instance of a CLI command (``$DAGSTER_HOME``), the one way the CLI opens it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg


def dagster_instance() -> dg.DagsterInstance:
    """``DagsterInstance.get()`` (a context manager), its PostgreSQL storage's waits made
    interruptible first. Production keeps the instance on PostgreSQL through psycopg2, whose
    blocking libpq calls let no Ctrl-C through while the server holds a read up: against a
    stopped server a command waited for ever. The wait callback is process-wide, so it is
    installed here, in the CLI's process, and not in Dagster's runs or daemon (psycopg2
    refuses COPY and large objects under it; nothing here uses them). Here, not in
    ``cli.main``: a command that never opens the instance does not import psycopg2."""
    import os

    import dagster as dg

    from taxi_assets.pg.psycopg2_wait import let_interruptions_through_psycopg2

    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit(
            "error: DAGSTER_HOME is not set: the runs and their pool slots are in the Dagster "
            "instance it names (export DAGSTER_HOME=$PWD/data/dagster_home, as `make dev` does)"
        )
    let_interruptions_through_psycopg2()
    return dg.DagsterInstance.get()
