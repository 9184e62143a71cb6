"""How TLC's own Parquet writer lays out a file, so generated months read like real ones.

TLC's files are written by ``parquet-cpp-arrow`` 14.0.2 (the real sample
``green_tripdata_2024-01.parquet``): ZSTD for every column, and data pages bounded by size
only (1 MiB, the writer's default), so a column's page holds tens or hundreds of thousands
of values (the sample: 56,551 values, its whole month, in one data page per column).
pyarrow 23 and later cap a page at 20,000 rows by default. That is not cosmetic: the
Parquet reader's buffered stream grows for columns whose pages are under 16 KiB (its page
header peek extends the buffer instead of refilling it), so a month written with small
pages costs the reader up to those columns' compressed size until the row group ends
(``docs/performance.md``, "Small pages").
"""

from __future__ import annotations

from typing import Any

# Parquet counts a page's values in an int32: this is "no row limit", as in Arrow 14.
_NO_ROW_LIMIT = 2**31 - 1

TLC_PARQUET_WRITER_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "max_rows_per_page": _NO_ROW_LIMIT,
}
# Names this layout where generated months are cached (the benchmarks): change it with the
# options above, so that months written the old way are generated again, not reused.
TLC_LAYOUT_TAG = "zstd-1mib-pages"
