"""Generated TLC Parquet months are paged like TLC's real files (devdata/tlc_writer.py).

Page sizes are not cosmetic: the Parquet reader's buffered stream grows for pages under
16 KiB, so a generator with a different writer would measure a different reader.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taxi_assets.devdata import write_month
from taxi_assets_tests.parquet_pages import DICTIONARY_PAGE, column_pages, data_pages

PYARROW_23_PAGE_ROW_CAP = 20_000  # the default that newer writers apply and TLC's does not


def test_the_real_sample_is_zstd_with_pages_bounded_by_size_only(shared_samples: Path) -> None:
    sample = shared_samples / "green_tripdata_2024-01.parquet"
    meta = pq.ParquetFile(sample).metadata
    assert meta.created_by == "parquet-cpp-arrow version 14.0.2"
    rows = meta.num_rows
    for i in range(meta.num_columns):
        column = meta.row_group(0).column(i)
        assert column.compression == "ZSTD", column.path_in_schema
        pages = data_pages(sample, column.path_in_schema)
        # 56,551 rows and every column's values fit one 1 MiB page: no row cap per page.
        assert [p.values for p in pages] == [rows], column.path_in_schema
    kinds = [p.kind for p in column_pages(sample, "VendorID")]
    assert kinds[0] == DICTIONARY_PAGE


# Columns whose dictionary indices of these few rows are far under 1 MiB: one page each, as
# in TLC's files. FHVHV's are the ones whose small pages grew the reader's buffer.
ONE_PAGE_COLUMNS = {
    ("green", "2024-01"): ("VendorID", "PULocationID", "tip_amount"),
    ("fhvhv", "2025-01"): ("tips", "dispatching_base_num", "access_a_ride_flag"),
}


@pytest.mark.parametrize("single_row_group", [False, True], ids=["chunked", "one-row-group"])
@pytest.mark.parametrize(("service", "month"), list(ONE_PAGE_COLUMNS))
def test_generated_tlc_month_is_paged_like_the_real_files(
    tmp_path: Path, service: str, month: str, single_row_group: bool
) -> None:
    rows = 60_000
    path = write_month(
        tmp_path, source="tlc", service=service, month=month, rows=rows,
        single_row_group=single_row_group,
    )  # fmt: skip
    meta = pq.ParquetFile(path).metadata
    for i in range(meta.num_columns):
        column = meta.row_group(0).column(i)
        assert column.compression == "ZSTD", column.path_in_schema
        pages = data_pages(path, column.path_in_schema)
        assert sum(p.values for p in pages) == rows
        assert max(p.values for p in pages) > PYARROW_23_PAGE_ROW_CAP
    for name in ONE_PAGE_COLUMNS[service, month]:
        assert [p.values for p in data_pages(path, name)] == [rows], name
