"""Generated TLC Parquet months are paged like TLC's real files (devdata/tlc_writer.py).

Page sizes are not cosmetic: the Parquet reader's buffered stream grows for pages under
16 KiB, so a generator with a different writer would measure a different reader.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

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


def test_generated_tlc_month_is_paged_like_the_real_files(tmp_path: Path) -> None:
    rows = 60_000
    for single in (False, True):
        path = write_month(
            tmp_path / str(single), source="tlc", service="green", month="2024-01", rows=rows,
            single_row_group=single,
        )  # fmt: skip
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_columns):
            column = meta.row_group(0).column(i)
            assert column.compression == "ZSTD", column.path_in_schema
            pages = data_pages(path, column.path_in_schema)
            assert sum(p.values for p in pages) == rows
            # Dictionary indices of 60,000 values are far under 1 MiB: one page, as TLC's.
            if column.path_in_schema in ("VendorID", "PULocationID", "tip_amount"):
                assert [p.values for p in pages] == [rows], column.path_in_schema
            assert max(p.values for p in pages) > PYARROW_23_PAGE_ROW_CAP


def test_one_row_group_month_has_no_page_row_cap(tmp_path: Path) -> None:
    """The one-row-group writer (bench months of 20M rows) uses the same page layout."""
    path = write_month(
        tmp_path, source="tlc", service="fhvhv", month="2025-01", rows=120_000,
        single_row_group=True,
    )  # fmt: skip
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    for column in ("tips", "dispatching_base_num", "access_a_ride_flag"):
        pages = data_pages(path, column)
        assert [p.values for p in pages] == [120_000], column
