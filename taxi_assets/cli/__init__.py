"""The project's command line, ``python -m taxi_assets.cli GROUP COMMAND ...``:

- ``warehouse start|stop [DATA_DIR]``: the embedded PostgreSQL server (``make stop``).
- ``warehouse check``: whether the warehouse is ready for loads: writable, privileges,
  limits (PostgreSQL; reads only).
- ``warehouse analyst-role ROLE``: a read-only role on the warehouse (password from
  ``TAXI_ANALYST_PASSWORD``).
- ``warehouse migrate``: convert month tables of an earlier version (plain tables) into
  partitioned ones, month by month, resumable (README, "Upgrading the warehouse").
- ``lake check [URL]``: the lake's bucket (``gs://``, ``s3://``), container (``az://``)
  or local folder is reachable and writable with the configured credentials.
- ``lake sweep [URL] [--dry-run]``: remove what killed runs left untouched for 3 hours:
  staging files and download folders, in a local lake and the temporary folder; in an
  object store's bucket, S3 multipart uploads, Azure blobs of uncommitted blocks and
  ``lake check`` probes.
- ``source check [--month YYYY-MM]``: each service's file (by default its first month,
  long published) and the zone lookup can be fetched from this machine: one HEAD each, as
  a run would meet DNS, TLS, a wrong URL.
- ``raw list SERVICE [MONTH]``, ``raw pin SERVICE MONTH REVISION``, ``raw unpin SERVICE
  MONTH``: the stored revisions of raw files, and pins (a unique sha256 prefix is enough;
  SERVICE ``zones`` with MONTH ``-`` for the zone lookup; ``--lake URL``, default
  ``$TAXI_LAKE_URL``, else ``./data/lake``).
- ``months backfill FIRST [--to LAST]``: every service for one month (or a range), as one
  asset backfill that the daemon runs (each service over its own months).
- ``months status [FIRST [--to LAST]]``: each month's raw revision and rows in raw, lake
  and warehouse, and whether the layers agree (``--check``: exit 1 when one does not).
- ``runs slots [--check]``: runs holding a ``downloads`` or ``warehouse`` pool slot, and
  those that never will free it (ended, or their process is gone); ``runs release RUN_ID
  [--force]`` frees such a run's slots, marking it failed if it still shows STARTED.
- ``devdata generate|serve ...``: synthetic TLC months in each upstream's layout, and a
  local HTTP mirror serving them (also ``python -m taxi_assets.devdata ...``).

Each command imports only what it needs: only ``months backfill`` (each service's
partitions, and ``dagster-graphql`` to submit the backfill) and ``months status`` (where
the definitions' lake IO manager keeps each month) load the Dagster definitions.
The ``runs`` commands open the Dagster instance through ``cli.instance.dagster_instance``
(Ctrl-C let through its PostgreSQL storage's waits).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from taxi_assets.cli import devdata, lake, months, raw, runs, source, warehouse
from taxi_assets.cli.arguments import parse_months

__all__ = ["build_parser", "main", "parse_months"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taxi_assets.cli",
        # The module's docstring as written (its list kept), without reST's literal marks.
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", required=True)
    for group in (warehouse, lake, source, raw, months, runs, devdata):
        group.add_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from taxi_assets.pg.ctrl_c import ctrl_c_let_through_psycopg

    args = build_parser().parse_args(argv)
    # Ctrl-C while a query waits for a warehouse server that answers nothing: out at once,
    # not after psycopg's cancel request and wait for the query's end (10 s), whichever
    # command's query it is.
    with ctrl_c_let_through_psycopg():
        return int(args.func(args))
