"""Contracts whose key must be unique in a file (the zone lookup: one row per zone).

A duplicated key would pass the lake and fail the warehouse load on its primary key,
with the driver's message and after the lake had replaced its file. Checked here, while
the file is read, naming both rows. Only for small reference tables: the keys seen are
kept in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from .schema import Contract, InvalidValueError


def check_unique(
    reader: pa.RecordBatchReader, contract: Contract, file_name: str
) -> pa.RecordBatchReader:
    """``reader``'s batches, unchanged; raises InvalidValueError at the first row whose
    ``contract.unique`` key is empty, or held by an earlier row of the file."""
    if not contract.unique:
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        first_row_of: dict[tuple[object, ...], int] = {}
        row = 1
        for batch in reader:
            keys = zip(*(batch.column(name).to_pylist() for name in contract.unique), strict=True)
            for key in keys:
                if None in key:
                    raise InvalidValueError(
                        file_name,
                        row,
                        ", ".join(contract.unique),
                        None,
                        "empty; every row needs its key",
                    )
                earlier = first_row_of.setdefault(key, row)
                if earlier != row:
                    shown = key[0] if len(key) == 1 else key
                    raise InvalidValueError(
                        file_name,
                        row,
                        ", ".join(contract.unique),
                        shown,
                        f"data row {earlier} holds it too; each must appear once",
                    )
                row += 1
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
