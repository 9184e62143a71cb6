"""The measured cases, each run in a process of its own: ``python -m benchmarks.cases CASE ARGS``.

ARGS is a JSON object (raw file, month, database URL, work folder). A case prints one
line ``BENCH_RESULT {json}`` with its in-process phase timings; the parent measures the
whole process (wall time from start to exit, peak RSS from the OS).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
SERVICE = "yellow"
DATASET = "yellow_tripdata"
COURSE_TABLE = "yellow_taxi_data"
COURSE_CHUNK_ROWS = 100_000


def course(args: dict[str, Any]) -> dict[str, Any]:
    """The course method: pandas read_csv + to_parquet(gzip), then read_csv(chunksize)
    + to_sql through SQLAlchemy and psycopg2, as in the DataTalksClub notebook."""
    import pandas as pd
    import sqlalchemy as sa

    raw, work = args["raw"], Path(args["work"])
    started = time.perf_counter()
    frame = pd.read_csv(raw)
    frame.to_parquet(work / "course.parquet", compression="gzip")
    rows = len(frame)
    del frame
    lake_done = time.perf_counter()

    url = sa.make_url(args["url"]).set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url)
    loaded = 0
    for index, chunk in enumerate(pd.read_csv(raw, iterator=True, chunksize=COURSE_CHUNK_ROWS)):
        chunk.tpep_pickup_datetime = pd.to_datetime(chunk.tpep_pickup_datetime)
        chunk.tpep_dropoff_datetime = pd.to_datetime(chunk.tpep_dropoff_datetime)
        if index == 0:
            chunk.head(n=0).to_sql(name=COURSE_TABLE, con=engine, if_exists="replace")
        chunk.to_sql(name=COURSE_TABLE, con=engine, if_exists="append")
        loaded += len(chunk)
    engine.dispose()
    done = time.perf_counter()
    return {
        "rows": rows,
        "rows_loaded": loaded,
        "lake_s": lake_done - started,
        "warehouse_s": done - lake_done,
        "work_s": done - started,
    }


def core(args: dict[str, Any]) -> dict[str, Any]:
    """The project's own path without Dagster's run machinery: the lake and warehouse IO
    managers on the contract stream, called with hand-built contexts. ``args["service"]``
    (default yellow) picks the contract; the raw file's suffix picks CSV or Parquet."""
    # First, as in a run process: the package picks pyarrow's allocator before pyarrow loads.
    import taxi_assets  # noqa: F401

    imported = time.perf_counter()
    import dagster as dg
    import pyarrow as pa

    from taxi_assets.assets.contract_stream import (
        lake_row_count,
        lake_schema,
        warehouse_constant_columns,
        warehouse_schema,
        warehouse_stream_schema,
        with_lineage,
    )
    from taxi_assets.assets.trips import warehouse_metadata
    from taxi_assets.contracts import CONTRACTS, open_contract_reader
    from taxi_assets.io_managers.parquet_lake import EXPECTED_ROWS_KEY, ParquetLakeIOManager
    from taxi_assets.io_managers.postgres import PostgresIOManager, TableLoad
    from taxi_assets.partitions import monthly_partitions, parse_month
    from taxi_assets.pg.partitions import tree_bytes
    from taxi_assets.resources import LakeResource, PostgresResource
    from taxi_assets.services import SERVICES

    imports_s = time.perf_counter() - imported
    peak_after_imports = peak_rss_mb()
    raw, month, lake_root = args["raw"], args["month"], Path(args["work"]) / "lake"
    service = args.get("service", SERVICE)
    contract = CONTRACTS[service]
    partitions = monthly_partitions(month)
    lake_key = dg.AssetKey(["lake", f"{service}_tripdata"])
    warehouse_key = dg.AssetKey(["warehouse", f"{service}_tripdata"])
    log = _stderr_log

    started = time.perf_counter()
    lake = ParquetLakeIOManager(lake=LakeResource(url=str(lake_root))).create_io_manager(
        dg.build_init_resource_context()
    )
    with open(raw, "rb") as handle:
        parsed = open_contract_reader(
            handle,
            file_name=Path(raw).name,
            contract=contract,
            warn=log,
            dictionary_strings=True,  # as the lake asset reads (contract_stream)
        )
        # The lineage the lake asset records (no raw revision here, so no sha256): the
        # warehouse step fills every row's source_file from it.
        lineage = lake_schema(parsed.schema, Path(raw).name, None, month)
        reader = pa.RecordBatchReader.from_batches(lineage, parsed)
        output = dg.build_output_context(
            asset_key=lake_key,
            partition_key=month,
            asset_partitions_def=partitions,
            definition_metadata={"time_column": contract.time_column},
            output_metadata={EXPECTED_ROWS_KEY: args.get("expected_rows")},
        )
        lake.handle_output(output, reader)
    lake_done = time.perf_counter()
    peak_after_lake = peak_rss_mb()

    upstream = dg.build_output_context(
        asset_key=lake_key, partition_key=month, asset_partitions_def=partitions
    )
    loaded = lake.load_input(
        dg.build_input_context(
            asset_key=lake_key,
            partition_key=month,
            asset_partitions_def=partitions,
            upstream_output=upstream,
        )
    )
    months = loaded if isinstance(loaded, dict) else {month: loaded}
    schema = warehouse_stream_schema(warehouse_schema(contract))

    def batches():  # noqa: ANN202 - the warehouse asset's body, as in assets/trips.py
        for key, data in months.items():
            yield from with_lineage(data, parse_month(key), schema)

    expected = sum(lake_row_count(data) for data in months.values())
    database = PostgresResource(url=args["url"])
    warehouse = PostgresIOManager(database=database)
    warehouse.handle_output(
        dg.build_output_context(
            asset_key=warehouse_key,
            partition_key=month,
            asset_partitions_def=partitions,
            # The warehouse asset's own metadata: the same partitioning and indexes.
            definition_metadata=warehouse_metadata(SERVICES[service]),
        ),
        TableLoad(
            pa.RecordBatchReader.from_batches(schema, batches()),
            expected,
            constant_columns=warehouse_constant_columns(
                {parse_month(key): data for key, data in months.items()}, schema
            ),
        ),
    )
    done = time.perf_counter()
    with database.engine().connect() as connection:
        table_bytes = tree_bytes(connection, "warehouse", warehouse_key.path[-1])
    database.engine().dispose()
    return {
        "rows": expected,
        "warehouse_bytes": table_bytes,  # the month's table with its indexes
        "peak_rss_after_imports_mb": peak_after_imports,
        "peak_rss_after_lake_mb": peak_after_lake,
        "imports_s": imports_s,
        "lake_s": lake_done - started,
        "warehouse_s": done - lake_done,
        "work_s": done - started,
    }


def dagster(args: dict[str, Any]) -> dict[str, Any]:
    """The lake and warehouse assets materialized by Dagster (in-process executor, a
    SQLite instance), the raw file already stored by the raw asset's IO manager."""
    imported = time.perf_counter()
    import dagster as dg

    from taxi_assets.definitions import build_definitions, build_resources
    from taxi_assets.resources import LakeResource, PostgresResource, TaxiSourceResource

    imports_s = time.perf_counter() - imported
    month, work = args["month"], Path(args["work"])
    lake_root = work / "lake"
    raw_folder = lake_root / "raw" / DATASET
    raw_folder.mkdir(parents=True, exist_ok=True)
    stored = raw_folder / Path(args["raw"]).name
    _link_or_copy(args["raw"], stored)
    # Adopt it into the versioned raw zone now (hash + rename, once), so the timed run
    # reads a stored revision as every run after an upgrade does.
    from taxi_assets.storage.revision_updates import repair
    from taxi_assets.storage.revisions import slot_for
    from taxi_assets.storage.roots import resolve_root

    repair(slot_for(resolve_root(str(lake_root)), ("raw", DATASET), month), lambda _: None)
    resources = build_resources(
        source=TaxiSourceResource(dtc_url="http://127.0.0.1:9", tlc_url="http://127.0.0.1:9"),
        lake=LakeResource(url=str(lake_root)),
        warehouse=PostgresResource(url=args["url"]),
    )
    started = time.perf_counter()
    definitions = build_definitions(args.get("first_month", "2019-01"))
    selection = dg.AssetSelection.assets(
        dg.AssetKey(["lake", DATASET]), dg.AssetKey(["warehouse", DATASET])
    ).without_checks()
    home = work / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        result = dg.materialize(
            [a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition)],
            selection=selection,
            partition_key=month,
            resources=resources,
            instance=instance,
        )
    done = time.perf_counter()
    if not result.success:
        raise RuntimeError("the Dagster run failed")
    rows = None
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(["warehouse", DATASET]):
            rows = event.materialization.metadata["rows_written"].value
    return {"rows": rows, "imports_s": imports_s, "work_s": done - started}


def floor(args: dict[str, Any]) -> dict[str, Any]:
    """The serial floor: a bare pyarrow CSV -> Parquet (zstd) stream for the lake (no
    contract; the lake's row-group size and encodings), and PostgreSQL's own COPY of a
    binary file on the server's disk for the warehouse."""
    from datetime import date

    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from taxi_assets.contracts import CONTRACTS, open_contract_reader
    from taxi_assets.io_managers import parquet_lake
    from taxi_assets.partitions import parse_month
    from taxi_assets.pg import copy_in as pg_copy
    from taxi_assets.pg.ddl import ensure_table, qualified
    from taxi_assets.pg.month_swap import INDEX_BUILD_MEMORY
    from taxi_assets.resources.postgres import PostgresResource

    raw, work, month = args["raw"], Path(args["work"]), args["month"]
    started = time.perf_counter()
    # Arrow's own type inference, no contract; the lake's row groups and encodings.
    with pacsv.open_csv(raw) as reader:
        options = parquet_lake._encodings(reader.schema)
        with pq.ParquetWriter(
            work / "floor.parquet", reader.schema, compression="zstd", **options
        ) as out:
            pending: list[pa.RecordBatch] = []
            for batch in reader:
                pending.append(batch)
                if sum(b.num_rows for b in pending) >= parquet_lake.ROW_GROUP_ROWS:
                    out.write_table(pa.Table.from_batches(pending))
                    pending = []
            if pending:
                out.write_table(pa.Table.from_batches(pending))
    lake_floor_s = time.perf_counter() - started

    # Not timed: the month's warehouse rows as a binary COPY file the server can read.
    contract = CONTRACTS[SERVICE]
    schema = contract.schema.append(pa.field("partition_month", pa.date32())).append(
        pa.field("source_file", pa.string())
    )
    public = Path(args["public_dir"])
    binary_file = public / f"floor-{os.getpid()}.bin"
    first_day: date = parse_month(month)
    rows = 0
    with open(binary_file, "wb") as sink, open(raw, "rb") as handle:
        sink.write(pg_copy._BINARY_HEADER)
        for batch in open_contract_reader(handle, file_name=Path(raw).name, contract=contract):
            columns = [*batch.columns]
            columns.append(pa.repeat(pa.scalar(first_day, pa.date32()), batch.num_rows))
            columns.append(pa.repeat(pa.scalar(Path(raw).name), batch.num_rows))
            for data in pg_copy._encode_binary(pa.RecordBatch.from_arrays(columns, schema=schema)):
                sink.write(data)
            rows += batch.num_rows
        sink.write(pg_copy._BINARY_TRAILER)
    binary_file.chmod(0o644)
    engine = PostgresResource(url=args["url"]).engine()
    # A table shaped like one month's child of the warehouse table, loaded as a month is:
    # emptied in the transaction (so COPY may FREEZE), then the child's indexes built.
    ensure_table(engine, "warehouse", DATASET, schema)
    engine.dispose()
    table = qualified("warehouse", DATASET)
    try:
        with psycopg.connect(args["url"]) as connection:
            connection.execute("CHECKPOINT")
            copy_started = time.perf_counter()
            with connection.transaction():
                connection.execute(f"TRUNCATE {table}")
                connection.execute(f"COPY {table} FROM '{binary_file}' (FORMAT binary, FREEZE)")
                connection.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                connection.execute(f"CREATE INDEX ON {table} USING brin (pickup_datetime)")
            copy_floor_s = time.perf_counter() - copy_started
    finally:
        binary_file.unlink(missing_ok=True)
    return {
        "rows": rows,
        "lake_floor_s": lake_floor_s,
        "copy_floor_s": copy_floor_s,
        "serial_floor_s": lake_floor_s + copy_floor_s,
    }


CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "course": course,
    "core": core,
    "dagster": dagster,
    "floor": floor,
}


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _link_or_copy(source: str, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)


def peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM, kept by the kernel for the process's own
    memory since exec; unlike ru_maxrss it never includes the parent's, which a child
    inherits when it is started by vfork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    case, args = argv[0], json.loads(argv[1])
    result = CASES[case](args)
    result["vm_hwm_mb"] = peak_rss_mb()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
