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
    import dagster as dg

    from taxi_assets.pg.psycopg2_wait import let_interruptions_through_psycopg2

    require_dagster_home("the runs and their pool slots are in the Dagster instance it names")
    let_interruptions_through_psycopg2()
    return dg.DagsterInstance.get()


def require_dagster_home(why: str) -> None:
    """Exit with one line unless ``$DAGSTER_HOME`` names an existing folder by an absolute
    path, as Dagster requires (else a traceback of Dagster's or dagster-graphql's)."""
    import os

    setting = os.environ.get("DAGSTER_HOME")
    fix = "export DAGSTER_HOME=$PWD/data/dagster_home, as `make dev` does"
    if not setting:
        raise SystemExit(f"error: DAGSTER_HOME is not set: {why} ({fix})")
    home = os.path.expanduser(setting)  # "~/dh" from an env file: Dagster expands it too
    if not os.path.isabs(home):
        raise SystemExit(
            f"error: DAGSTER_HOME={home} is not an absolute path, as Dagster needs ({fix})"
        )
    if not os.path.isdir(home):
        raise SystemExit(
            f"error: DAGSTER_HOME={home} is not a folder: a typo, or an instance not made yet "
            f"({fix}; `make dev` creates it)"
        )
