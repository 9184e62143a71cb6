"""Reading a lake month holds one row group at a time, however many the file has; its
footers tell which columns are null in every row, and each is read once per load; a month
written from dictionary-encoded text is the same file to its readers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import fsspec.implementations.local
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from taxi_assets.assets.contract_stream import (
    LINEAGE_COLUMNS,
    lake_row_count,
    lineage_constants,
    warehouse_constant_columns,
    with_lineage,
)
from taxi_assets.assets.load_records import lake_lineage
from taxi_assets.contracts.parquet_reader import STRING_DICTIONARY
from taxi_assets.io_managers.arrow_stats import StreamStats, decoded_schema
from taxi_assets.io_managers.lake_files import LakeFiles, null_columns_of
from taxi_assets.io_managers.parquet_lake import (
    ROW_GROUP_ROWS,
    GuardedOutput,
    ParquetLakeIOManager,
    write_parquet_stream,
)
from taxi_assets.partitions import monthly_partitions
from taxi_assets.resources.lake import LakeResource

GROUPS, GROUP_ROWS = 40, 25_000


def month_file(path: Path) -> int:
    """A month-like file: GROUPS row groups of random doubles (barely compressible)."""
    rng = np.random.default_rng(7)
    table = pa.table({f"c{i}": rng.random(GROUPS * GROUP_ROWS) for i in range(4)})
    pq.write_table(table, path, row_group_size=GROUP_ROWS, compression="zstd")
    return path.stat().st_size


def peak_arrow_bytes(batches: Iterator[pa.RecordBatch]) -> int:
    """The most Arrow memory allocated while ``batches`` is read (each batch dropped)."""
    base = pa.total_allocated_bytes()
    peak = 0
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert rows == GROUPS * GROUP_ROWS
    return peak


def test_lake_files_read_a_month_row_group_by_row_group(tmp_path: Path) -> None:
    path = tmp_path / "month.parquet"
    size = month_file(path)
    lake = LakeFiles.at(pafs.LocalFileSystem(), str(path))
    held = peak_arrow_bytes(lake.to_batches(["c0", "c1", "c2"], batch_size=64 * 1024))
    assert held < size / 4, (held, size)
    # What the checks did before: pyarrow's ParquetFile pre-buffers every selected column
    # chunk of the file by default (held ~400 MB on a 20M-row FHVHV month).
    default = pq.ParquetFile(path)
    try:
        prebuffered = peak_arrow_bytes(
            default.iter_batches(batch_size=64 * 1024, columns=["c0", "c1", "c2"])
        )
    finally:
        default.close()
    assert prebuffered > size / 2, (prebuffered, size)


def test_null_columns_come_from_every_files_footer(tmp_path: Path) -> None:
    nulls = pa.nulls(4, pa.float64())
    values = pa.array([1.0, None, None, None])
    first = pa.table({"empty": nulls, "late": values, "no_stats": nulls, "only_here": nulls})
    # "late" is null in the first row group only: it has a value, so it is not null.
    late_first = pa.table({"empty": nulls, "late": pa.nulls(4, pa.float64()), "no_stats": nulls})
    second = pa.concat_tables([late_first, late_first.set_column(1, "late", values)])
    folder = tmp_path / "month"
    folder.mkdir()
    pq.write_table(first.set_column(1, "late", nulls), folder / "a.parquet")
    pq.write_table(
        second, folder / "b.parquet", row_group_size=4, write_statistics=["empty", "late"]
    )
    lake = LakeFiles.at(pafs.LocalFileSystem(), str(folder))
    assert len(lake.paths) == 2
    asked = pa.schema(
        [(name, pa.float64()) for name in ("empty", "late", "no_stats", "only_here", "nowhere")]
    )

    def null_columns(data: LakeFiles) -> set[str]:
        found = warehouse_constant_columns({date(2021, 1, 1): data}, asked)
        assert all(value is None for value in found.values())  # no lineage column asked
        return set(found)

    # only_here: all null where present, missing from b; nowhere: in no file.
    assert null_columns(lake) == {"empty", "only_here", "nowhere"}
    assert null_columns(LakeFiles.at(pafs.LocalFileSystem(), str(folder / "a.parquet"))) == {
        "empty",
        "late",
        "no_stats",
        "only_here",
        "nowhere",
    }


def test_a_month_written_from_dictionaries_is_the_file_plain_strings_give(tmp_path: Path) -> None:
    """The lake asset hands the writer dictionary-encoded text columns; the file records
    the decoded schema (types, field and file metadata), so readers cannot tell the two
    apart, and the footers keep the null counts the warehouse load relies on."""
    rows = 3 * ROW_GROUP_ROWS // 2  # two row groups
    flags = pa.array(["N", "Y", None, " "] * (rows // 4))
    plain = pa.schema(
        [
            pa.field("flag", pa.string(), metadata={"description": "Y/N"}),
            pa.field("unused", pa.string()),
            pa.field("miles", pa.float64()),
        ],
        metadata={"source_file": "fhvhv_tripdata_2025-01.parquet"},
    )
    encoded = plain.set(0, plain.field(0).with_type(STRING_DICTIONARY)).set(
        1, plain.field(1).with_type(STRING_DICTIONARY)
    )
    miles = pa.array(np.arange(rows, dtype=np.float64))
    unused = pa.nulls(rows, pa.string())
    written = {}
    for name, schema, columns in (
        ("plain", plain, [flags, unused, miles]),
        ("encoded", encoded, [flags.dictionary_encode(), unused.dictionary_encode(), miles]),
    ):
        table = pa.Table.from_arrays(columns, schema=schema)
        path = tmp_path / f"{name}.parquet"
        write_parquet_stream(
            table.to_reader(max_chunksize=65_536),
            path,
            compression="zstd",
            stats=StreamStats(),
        )
        written[name] = pq.ParquetFile(path)
    assert decoded_schema(encoded) == plain
    for parquet in written.values():
        assert parquet.schema_arrow.equals(plain, check_metadata=True)
        assert parquet.metadata.num_row_groups == 2
        assert null_columns_of(parquet.metadata) == {"unused"}
        assert parquet.read().equals(pa.Table.from_arrays([flags, unused, miles], schema=plain))
    assert written["encoded"].metadata.metadata == written["plain"].metadata.metadata


class OpenCounting(pafs.FSSpecHandler):
    """Local disk through fsspec, as an object store is reached, counting file opens: on
    GCS, S3 or Azure each open of a Parquet file costs a footer request or two."""

    def __init__(self) -> None:
        super().__init__(fsspec.implementations.local.LocalFileSystem())
        self.opened: list[str] = []

    def open_input_file(self, path: str) -> pa.NativeFile:
        self.opened.append(path)
        return super().open_input_file(path)


def test_a_warehouse_load_reads_each_lake_footer_once(tmp_path: Path) -> None:
    """Everything the warehouse step asks a month's files before and while it loads them
    (rows, lineage, null columns, schema, the data): each file opened once for its footer
    and once for its data (a PostgreSQL load opened each file four times before: three
    footer reads and the data)."""
    folder = tmp_path / "month"
    folder.mkdir()
    table = pa.table({"miles": [1.0, 2.0, 3.0], "unused": pa.nulls(3, pa.float64())})
    for name in ("a", "b"):
        table = table.replace_schema_metadata({"source_file": f"{name}.csv"})
        pq.write_table(table, folder / f"{name}.parquet")
    handler = OpenCounting()
    lake = LakeFiles.at(pafs.PyFileSystem(handler), str(folder))
    schema = table.schema.remove_metadata().append(pa.field(LINEAGE_COLUMNS[0], pa.date32()))
    month = date(2021, 1, 1)

    assert lake_row_count(lake) == 6
    assert lake_lineage(lake).source_file == "a.csv, b.csv"
    assert warehouse_constant_columns({month: lake}, schema) == {
        "unused": None,
        LINEAGE_COLUMNS[0]: month,
    }
    assert [lineage_constants(month)(lake, path)[LINEAGE_COLUMNS[1]] for path in lake.paths] == [
        "a.csv",
        "b.csv",
    ]
    assert lake.schema.names == ["miles", "unused"]
    rows = pa.Table.from_batches(list(with_lineage(lake, month, schema)))
    assert rows["miles"].to_pylist() == [1.0, 2.0, 3.0] * 2
    assert sorted(handler.opened) == sorted(lake.paths * 2)


def test_a_guarded_output_is_published_inside_its_guard_or_not_at_all(tmp_path: Path) -> None:
    """The lake IO manager writes a guarded output's data whole to its staging file, then
    publishes it inside the guard; a guard that raises leaves the month's file as it was."""
    partitions = monthly_partitions("2021-01")
    key = dg.AssetKey(["lake", "things"])
    lake = ParquetLakeIOManager(lake=LakeResource(url=str(tmp_path))).create_io_manager(
        dg.build_init_resource_context()
    )
    path = lake.month_path(key, "2021-02")

    def write(obj: object) -> None:
        lake.handle_output(
            dg.build_output_context(
                asset_key=key, partition_key="2021-02", asset_partitions_def=partitions
            ),
            obj,
        )

    def rows() -> list[int]:
        return pq.read_table(str(path)).column("n").to_pylist()

    write(pa.table({"n": [1, 2, 3]}))
    seen: list[tuple[list[int], list[int]]] = []

    @contextmanager
    def watching() -> Iterator[None]:
        (staging,) = [p for p in Path(path.path).parent.iterdir() if p.name.startswith(".")]
        seen.append((rows(), pq.read_table(staging).column("n").to_pylist()))
        yield
        seen.append((rows(), []))

    write(GuardedOutput(pa.table({"n": [4, 5]}), watching))
    # On entering: the month still the old file, the new one staged whole; on leaving, published.
    assert seen == [([1, 2, 3], [4, 5]), ([4, 5], [])]

    @contextmanager
    def refusing() -> Iterator[None]:
        raise RuntimeError("the source changed meanwhile")
        yield

    with pytest.raises(RuntimeError, match="the source changed meanwhile"):
        write(GuardedOutput(pa.table({"n": [6]}), refusing))
    assert rows() == [4, 5]
    assert [p.name for p in Path(path.path).parent.iterdir()] == [path.name]


def test_a_preview_tells_a_null_from_a_nan_in_every_column() -> None:
    """Through pandas a null showed as `nan` in a number or dictionary column (like a real
    NaN, which the quality signals count) and blank in a text column."""
    table = pa.table(
        {
            "fare_amount": [None, float("nan"), 1.5],
            "store_and_fwd_flag": pa.array(["Y", None, "N"]).dictionary_encode(),
            "vendor_name": ["VTS", None, "CMT"],
            "pickup_datetime": [datetime(2021, 1, 1, 0, 30), None, datetime(2021, 1, 2)],
        }
    )
    stats = StreamStats("pickup_datetime")  # as the warehouse load shows the month
    for batch in table.to_batches():
        stats.add(batch)
    lines = stats.preview_markdown().splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert cells == [
        ["null", "Y", "VTS", "2021-01-01 00:30:00"],
        ["nan", "null", "null", "null"],
        ["1.5", "N", "CMT", "2021-01-02 00:00:00"],
    ]
    assert StreamStats().preview_markdown() == "(no rows)"


def test_rows_outside_the_month_count_both_edges_and_not_nulls() -> None:
    """The month is [first midnight, next month's first midnight): its first instant is in,
    the next month's first instant is out, a null time is neither (hand-counted: 3)."""
    times = [
        datetime(2020, 12, 31, 23, 59, 59),  # before: out
        datetime(2021, 1, 1),  # the first instant: in
        datetime(2021, 1, 31, 23, 59, 59, 999999),  # the last instant: in
        datetime(2021, 2, 1),  # the next month's first instant: out
        None,
        datetime(2021, 3, 5),  # after: out
    ]
    stats = StreamStats("pickup_datetime", (datetime(2021, 1, 1), datetime(2021, 2, 1)))
    table = pa.table({"pickup_datetime": pa.array(times, pa.timestamp("us"))})
    for batch in table.to_batches(max_chunksize=4):
        stats.add(batch)
    assert stats.rows_outside_window == 3
    assert (stats.time_min, stats.time_max) == (times[0], times[-1])
