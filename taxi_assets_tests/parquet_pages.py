"""Read a Parquet column chunk's page headers, which pyarrow does not expose.

The tests compare how TLC's real files and the generated ones are paged: page sizes decide
how much the Parquet reader buffers (taxi_assets/devdata/tlc_writer.py). A page header is a
Thrift struct in the compact protocol; only the fields read below are decoded, the rest
are skipped by type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3


@dataclass(frozen=True)
class Page:
    kind: int
    compressed_bytes: int
    values: int


def column_pages(path: Path, column: str, row_group: int = 0) -> list[Page]:
    """Every page of ``column`` in ``row_group``, in file order."""
    meta = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column
    )
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(chunk.total_compressed_size)
    pages, pos = [], 0
    while pos < len(data):
        header, pos = _struct(data, pos)
        # PageHeader: 1 type, 3 compressed_page_size, 5/7/8 data/dictionary/v2 header (1 num_values)
        body = header.get(5) or header.get(7) or header.get(8) or {}
        pages.append(Page(kind=header[1], compressed_bytes=header[3], values=body.get(1, 0)))
        pos += header[3]
    return pages


def data_pages(path: Path, column: str) -> list[Page]:
    return [p for p in column_pages(path, column) if p.kind in (DATA_PAGE, DATA_PAGE_V2)]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _struct(data: bytes, pos: int) -> tuple[dict[int, Any], int]:
    fields: dict[int, Any] = {}
    last = 0
    while True:
        head = data[pos]
        pos += 1
        if head == 0:
            return fields, pos
        kind, delta = head & 0x0F, head >> 4
        if delta:
            field = last + delta
        else:
            raw, pos = _varint(data, pos)
            field = _zigzag(raw)
        last = field
        fields[field], pos = _value(data, pos, kind)


def _value(data: bytes, pos: int, kind: int) -> tuple[Any, int]:
    if kind in (1, 2):  # boolean true / false, in the type nibble
        return kind == 1, pos
    if kind == 3:  # byte
        return data[pos], pos + 1
    if kind in (4, 5, 6):  # i16, i32, i64
        raw, pos = _varint(data, pos)
        return _zigzag(raw), pos
    if kind == 7:  # double
        return None, pos + 8
    if kind == 8:  # binary
        size, pos = _varint(data, pos)
        return data[pos : pos + size], pos + size
    if kind in (9, 10):  # list, set
        head = data[pos]
        pos += 1
        count, item_kind = head >> 4, head & 0x0F
        if count == 15:
            count, pos = _varint(data, pos)
        items = []
        for _ in range(count):
            item, pos = _value(data, pos, item_kind)
            items.append(item)
        return items, pos
    if kind == 12:
        return _struct(data, pos)
    raise ValueError(f"Thrift compact type {kind} is not expected in a page header")
