"""Plan a CSV read: open the (optionally gzipped) source, peek at its header and first
rows, and fix the Arrow column names, types and options for the streaming reader.

The header is parsed by us (not by Arrow) because it must be mapped onto the contract
before reading, and because some TLC months carry two more (empty) trailing fields in
every data row than in the header: Arrow can only accept those rows if we give it two
extra column names, which we decide from the first data row.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pv

from .headers import map_header
from .schema import Contract, ContractColumn, ContractError

# 1 MiB blocks: larger blocks do not read faster here but grow memory per batch.
CSV_BLOCK_SIZE = 1 << 20
PEEK_BYTES = 1 << 18
# Names for the two trailing empty fields some months carry beyond the header.
EXTRA_NAMES = ("__extra_1", "__extra_2")


class _Borrowed:
    """Lets Arrow read a caller's file object without closing it.

    pa.PythonFile closes the object it wraps when it is closed or collected; the
    caller owns the file (e.g. an fsspec handle) and may still need it.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self.closed = False

    def read(self, nbytes: int = -1) -> bytes:
        return self._file.read(nbytes)

    def close(self) -> None:
        self.closed = True


class Opener:
    """Opens the source afresh (at its initial position) as a decompressed byte stream."""

    def __init__(self, source: Any, *, gzipped: bool, file_name: str) -> None:
        self.source = source
        self.gzipped = gzipped
        self.is_path = isinstance(source, (str, os.PathLike))
        self.start = 0
        if not self.is_path:
            # The header is peeked, then the file re-read from its start: needs seek().
            try:
                self.start = source.tell()
                source.seek(self.start)
            except (AttributeError, OSError) as exc:
                raise ContractError(f"{file_name}: source file object is not seekable") from exc

    def open(self) -> pa.NativeFile:
        if self.is_path:
            raw: pa.NativeFile = pa.OSFile(os.fspath(self.source), "rb")
        else:
            self.source.seek(self.start)
            raw = pa.PythonFile(_Borrowed(self.source), mode="r")
        return pa.CompressedInputStream(raw, "gzip") if self.gzipped else raw

    def peek(self, nbytes: int = PEEK_BYTES) -> tuple[bytes, bool]:
        """First `nbytes` of the decompressed data and whether that is the whole file."""
        stream = self.open()
        try:
            chunks: list[bytes] = []
            size = 0
            while size < nbytes:
                chunk = stream.read(nbytes - size)
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks), not stream.read(1)
        finally:
            stream.close()


@dataclass(frozen=True)
class CsvPlan:
    file_name: str
    contract: Contract
    header: list[str]  # raw header names, file order
    targets: list[str]  # contract column per header position
    skip_rows: int  # physical rows up to and including the header
    trailing_extra: bool  # data rows carry two empty fields beyond the header

    @property
    def names(self) -> list[str]:
        # Positional names: raw headers can repeat, carry spaces or differ only in case.
        positional = [f"c{i}" for i in range(len(self.header))]
        return positional + list(EXTRA_NAMES) if self.trailing_extra else positional

    def source_columns(self, target: str) -> list[tuple[str, str]]:
        """(Arrow column name, header name) of every header column mapped onto `target`."""
        return [
            (f"c{i}", raw)
            for i, (raw, mapped) in enumerate(zip(self.header, self.targets, strict=True))
            if mapped == target
        ]

    def read_options(self, encoding: str = "utf8") -> pv.ReadOptions:
        # use_threads=False: the streaming reader is no faster with threads here (2 CPUs,
        # measured) and, with threads, invalid rows lose their row number.
        return pv.ReadOptions(
            block_size=CSV_BLOCK_SIZE,
            use_threads=False,
            column_names=self.names,
            skip_rows=self.skip_rows,
            encoding=encoding,
        )

    def convert_options(self) -> pv.ConvertOptions:
        # The two extra trailing names (if any) stay text: they are checked to be empty.
        types = {name: pa.string() for name in self.names}
        for name, target in zip(self.names, self.targets, strict=False):
            types[name] = read_type(self.contract.column(target))
        # Only the empty field is null: Arrow's defaults ("NA", "N/A", "NULL", "nan"...)
        # would turn real zone names into nulls.
        return pv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )


def read_type(col: ContractColumn) -> pa.DataType:
    """Arrow type to parse a column's CSV text as, before conforming to the contract."""
    if col.codes:
        return pa.string()  # text codes such as Y/N are mapped afterwards
    if pa.types.is_integer(col.type) and col.type.bit_width > 32:
        # Text, cast exactly (casting.to_int): float64 holds integers up to 2**53 only.
        return pa.string()
    if pa.types.is_integer(col.type):
        return pa.float64()  # some months write IDs as `1.0`; checked when cast to int
    return col.type


def plan_csv(head: bytes, complete: bool, *, file_name: str, contract: Contract) -> CsvPlan | None:
    """Plan from the peeked bytes; None when the file has no header at all."""
    # A UTF-8 byte order mark (a file saved by Excel) would sit before the first header's
    # opening quote, and the quote would then be read as part of its name.
    head = head.removeprefix(codecs.BOM_UTF8)
    # Latin-1 never fails to decode, and every CSV delimiter/quote/newline is ASCII.
    text = head.decode("latin-1")
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            rows.append(row)
    except csv.Error:
        pass  # a quote cut by the peek: the rows before it are enough
    if not complete and rows:
        rows.pop()  # possibly cut in the middle by the peek
    header_at = next((i for i, r in enumerate(rows) if any(f.strip() for f in r)), None)
    if header_at is None:
        if not complete:
            raise ContractError(f"{file_name}: no header line in the first {len(head)} bytes")
        return None
    header = [h.encode("latin-1").decode("utf-8", errors="replace") for h in rows[header_at]]
    targets = map_header(header, contract, file_name)
    first = next((r for r in rows[header_at + 1 :] if r), None)
    trailing = first is not None and len(first) == len(header) + 2 and first[-2:] == ["", ""]
    return CsvPlan(file_name, contract, header, targets, header_at + 1, trailing)
