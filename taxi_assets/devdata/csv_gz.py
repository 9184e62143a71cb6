"""A month as the course mirror publishes it: CSV text formatted like TLC's (two-decimal
distances without the leading zero, codes as "1" or "1.0", money in its shortest form),
gzip-compressed on every core into one reproducible gzip member."""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# gzip's default (9) is ~8x slower than 5 for ~5% smaller files, and 6 is 2x slower
# for ~3%: 5 keeps a 1.37M-row month at a few seconds.
GZIP_LEVEL = 5
# Integer codes TLC sometimes writes as floats ("1.0" in CSV, double in Parquet).
CODE_COLUMNS = ("passenger_count", "RatecodeID", "payment_type", "trip_type")
_MONEY = (
    "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "ehail_fee",
    "improvement_surcharge", "total_amount", "congestion_surcharge",
    "airport_fee", "Airport_fee", "cbd_congestion_fee",
)  # fmt: skip


def _fmt_distance(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """2.10 / .20 / .00: fixed two decimals without the leading zero, like TLC."""
    cents = np.rint(arr.to_numpy(zero_copy_only=False) * 100).astype(np.int64)
    whole, frac = pa.array(cents // 100), pa.array(cents % 100)
    whole_s = pc.if_else(pc.equal(whole, 0), "", pc.cast(whole, pa.string()))
    frac_s = pc.utf8_lpad(pc.cast(frac, pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole_s, frac_s, ".")


def _fmt_column(name: str, arr: pa.ChunkedArray, float_codes: bool) -> pa.Array | pa.ChunkedArray:
    t = arr.type
    if pa.types.is_timestamp(t):  # "2021-01-01 00:30:10"
        return pc.cast(pc.cast(arr, pa.timestamp("s")), pa.string())
    if name == "trip_distance":
        return _fmt_distance(arr)
    if name in CODE_COLUMNS:
        s = pc.cast(arr, pa.string())
        return pc.binary_join_element_wise(s, ".0", "") if float_codes else s
    if pa.types.is_floating(t) and name not in _MONEY:
        # FHV location ids / SR_Flag are doubles in Parquet but "264" / "1" in CSV.
        return pc.cast(pc.cast(arr, pa.int64()), pa.string())
    # Money: shortest repr of a 2-decimal double gives "8", "0.5", "11.8", "1.65".
    return pc.cast(arr, pa.string())


def csv_chunk_bytes(
    table: pa.Table, header: Sequence[str], *, float_codes: bool, eol: str
) -> memoryview:
    """The CSV body (no header) for a chunk, built as one Arrow string buffer."""
    if table.num_rows == 0:
        return memoryview(b"")
    cols = [_fmt_column(name, table.column(name), float_codes) for name in header]
    line = pc.binary_join_element_wise(*cols, ",", null_handling="replace", null_replacement="")
    line = pc.binary_join_element_wise(line, eol, "")
    if isinstance(line, pa.ChunkedArray):
        line = line.combine_chunks()
    offsets = np.frombuffer(
        line.buffers()[1], dtype=np.int32, count=len(line) + 1, offset=line.offset * 4
    )
    return memoryview(line.buffers()[2])[offsets[0] : offsets[-1]]


class ParallelGzip:
    """A single-member gzip stream deflated in parallel pieces, like pigz.

    Each piece is raw-deflated with the previous piece's tail as dictionary and
    ends with a sync flush, so the pieces concatenate into one valid stream with
    nearly gzip's ratio; zlib releases the GIL, so this uses every core and
    overlaps with generating the next chunk. Output depends only on the bytes
    written, not on thread timing.
    """

    PIECE = 4 << 20
    WINDOW = 32 << 10

    def __init__(self, raw: BinaryIO, inner_name: str, level: int = GZIP_LEVEL) -> None:
        self._raw, self._level = raw, level
        self._workers = max(1, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=self._workers)
        self._pending: deque[Future[bytes]] = deque()
        self._crc, self._size, self._tail = 0, 0, b""
        # magic, deflate, FNAME flag, mtime 0 (reproducible), xfl 0, OS 255.
        raw.write(
            b"\x1f\x8b\x08\x08" + b"\x00" * 4 + b"\x00\xff" + inner_name.encode("latin-1") + b"\x00"
        )

    def _deflate(self, piece: memoryview, zdict: bytes) -> bytes:
        # wbits -15: raw deflate; gzip framing is written by this class.
        if zdict:
            comp = zlib.compressobj(
                self._level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict
            )
        else:
            comp = zlib.compressobj(self._level, zlib.DEFLATED, -15)
        return comp.compress(piece) + comp.flush(zlib.Z_SYNC_FLUSH)

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._crc = zlib.crc32(view, self._crc)
        self._size += len(view)
        for pos in range(0, len(view), self.PIECE):
            piece = view[pos : pos + self.PIECE]
            self._pending.append(self._pool.submit(self._deflate, piece, self._tail))
            self._tail = (self._tail + bytes(piece[-self.WINDOW :]))[-self.WINDOW :]
            while len(self._pending) > 2 * self._workers:  # bound memory
                self._raw.write(self._pending.popleft().result())

    def close(self) -> None:
        try:
            while self._pending:
                self._raw.write(self._pending.popleft().result())
            self._raw.write(zlib.compressobj(self._level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
            self._raw.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(cancel_futures=True)
