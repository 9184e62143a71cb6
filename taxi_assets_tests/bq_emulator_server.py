"""A local BigQuery for the tests: ``bqemulator`` (REST API over DuckDB), offline, on 127.0.0.1.

Run as a subprocess by :mod:`taxi_assets_tests.bq_emulator` (a thread in the test process
would leak DuckDB's warnings into it)::

    python -m taxi_assets_tests.bq_emulator_server --gcs-root DIR --staging-dir DIR

It prints one JSON line, ``{"rest_url": "http://127.0.0.1:PORT", "pid": N}``, once it
accepts requests, then serves until SIGTERM/SIGINT or until its stdin closes, so it never
outlives the pytest process that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading


def _stay_offline() -> None:
    # DuckDBEngine.start() runs `INSTALL spatial; LOAD spatial`, which downloads DuckDB's
    # spatial extension and fails the start without network. Only GEOGRAPHY and ST_*
    # functions need it, and the taxi warehouse uses neither.
    from bqemulator.storage import engine

    engine.DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]


def _load_parquet_as_bigquery_does() -> None:
    # A Parquet load job reads the file's own columns; BigQuery adds Hive partition keys
    # (year=2021/month=01 in the path) only when the job sets hivePartitioningOptions.
    # The emulator's loader calls DuckDB's read_parquet(?), which adds them whenever the
    # path holds key=value folders: a gs:// lake month would load with two extra columns.
    import duckdb
    from bqemulator.storage import engine

    execute = engine.DuckDBEngine.execute
    loader_sql = "SELECT * FROM read_parquet(?)"

    def execute_without_hive_columns(
        self: engine.DuckDBEngine, sql: str, parameters: list | None = None
    ) -> duckdb.DuckDBPyConnection:
        if sql.endswith(loader_sql):
            sql = (
                sql.removesuffix(loader_sql)
                + "SELECT * FROM read_parquet(?, hive_partitioning = false)"
            )
        return execute(self, sql, parameters)

    engine.DuckDBEngine.execute = execute_without_hive_columns  # type: ignore[method-assign]


async def serve(args: argparse.Namespace) -> None:
    # Logging first: until it is configured, structlog prints a debug line to stdout,
    # which would come before the JSON line the parent reads.
    from bqemulator.config import LogFormat, LogLevel, PersistenceMode, Settings
    from bqemulator.observability.logging_ import configure_logging

    configure_logging(level=LogLevel.WARNING, fmt=LogFormat.CONSOLE)
    _stay_offline()
    _load_parquet_as_bigquery_does()
    from bqemulator.server import EmulatorServer

    settings = Settings(
        persistence_mode=PersistenceMode.EPHEMERAL,
        rest_host="127.0.0.1",
        rest_port=0,  # a free port, read back from the server
        grpc_host="127.0.0.1",
        grpc_port=0,
        default_project_id=args.project,
        # gs://BUCKET/OBJECT in load jobs is read from GCS_ROOT/BUCKET/OBJECT.
        gcs_local_root=args.gcs_root,
        upload_staging_dir=args.staging_dir,
        enable_format_extensions=False,  # else `INSTALL avro` at start (network)
        log_level=LogLevel.WARNING,
        log_format=LogFormat.CONSOLE,
    )
    server = EmulatorServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def stop_when_parent_goes() -> None:  # the parent closed our stdin, or died
        try:
            sys.stdin.read()
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=stop_when_parent_goes, daemon=True).start()
    print(json.dumps({"rest_url": server.rest_url, "pid": os.getpid()}), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gcs-root", required=True)
    parser.add_argument("--staging-dir", required=True)
    parser.add_argument("--project", default="test")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
