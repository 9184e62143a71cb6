"""Count CSV data rows from raw bytes, independently of the CSV parser.

Used while downloading, so the raw file's row count can be reconciled with the rows the
parser produced. Blank lines (some TLC files have one after the header) are not rows.
The header line is kept on the way (the raw file's column names, for its metadata).
"""

from __future__ import annotations

import csv
import re
import zlib
from collections.abc import Iterable

_BLANK_LINE_AHEAD = re.compile(rb"\n(?=\r?\n)")
_LINE_END = re.compile(rb"[\r\n]")
# A header longer than this is not a TLC header; the count goes on without it.
_MAX_HEADER_BYTES = 1 << 16


class LineEndingError(ValueError):
    """The file's lines end with a lone CR, which the count (and TLC) does not use."""


def _new_inflater() -> zlib._Decompress:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


class LineCounter:
    """Feed chunks of a CSV (optionally gzip, any number of members); ``finish()`` gives rows."""

    def __init__(self, gzipped: bool) -> None:
        self._inflater = _new_inflater() if gzipped else None
        self._members_done = 0
        self._inside_member = False
        self._newlines = 0
        self._carriage_returns = 0
        self._blank_lines = 0
        # As if a newline came before the file: a blank first line is then a blank line.
        self._tail = b"\n"
        self._last_byte = b""
        self._head = b""  # the start of the text, until the header line is complete
        self._header: list[str] | None = None
        self._header_done = False

    @property
    def header(self) -> list[str] | None:
        """Column names of the first non-blank line, once it has been fed in full."""
        return self._header

    def feed(self, chunk: bytes) -> None:
        if self._inflater is None:
            self._count(chunk)
            return
        while chunk:
            self._count(self._inflater.decompress(chunk))
            if not self._inflater.eof:
                self._inside_member = True
                return
            # A gzip file may hold several members back to back: go on with the next one.
            self._members_done += 1
            self._inside_member = False
            chunk = self._inflater.unused_data
            self._inflater = _new_inflater()

    def _count(self, text: bytes) -> None:
        if not text:
            return
        if not self._header_done:
            self._keep_header(text)
        self._newlines += text.count(b"\n")
        self._carriage_returns += text.count(b"\r")
        window = self._tail + text
        if b"\n\n" in window or b"\n\r\n" in window:
            # Matches wholly inside the carried tail were counted with the previous chunk.
            found = len(_BLANK_LINE_AHEAD.findall(window))
            self._blank_lines += found - len(_BLANK_LINE_AHEAD.findall(self._tail))
        self._tail = window[-2:]
        self._last_byte = text[-1:]

    def _keep_header(self, text: bytes) -> None:
        self._head += text
        first = self._head.lstrip(b"\r\n")
        found = _LINE_END.search(first)  # LF, CRLF, or a lone CR (refused by finish)
        if found is None and len(self._head) <= _MAX_HEADER_BYTES:
            return
        self._header_done = True
        if found is not None:
            line = first[: found.start()].decode("utf-8", errors="replace")
            self._header = next(csv.reader([line.lstrip("\ufeff")]), None)
        self._head = b""

    def finish(self) -> int:
        """Data rows (non-blank lines less the header). Raises EOFError on a truncated gzip,
        LineEndingError when the lines end with a lone CR (no LF anywhere)."""
        if self._inflater is not None:
            if self._inside_member:
                raise EOFError("the stream ends inside a gzip member (truncated file)")
            if self._members_done == 0:
                raise EOFError("the file holds no gzip member")
        if not self._header_done and self._head.strip():
            self._keep_header(b"\n")  # a header-only file without a final newline
        if not self._last_byte:
            return 0
        if self._newlines == 0 and self._carriage_returns > 0:
            raise LineEndingError(
                f"its lines end with a lone carriage return (CR, classic Mac OS line endings; "
                f"{self._carriage_returns} of them, no line feed): only LF and CRLF line "
                "endings are read; convert the file (for example: tr '\\r' '\\n')"
            )
        lines = self._newlines + (0 if self._last_byte == b"\n" else 1)
        return max(lines - self._blank_lines - 1, 0)


_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')


def first_quoted_line_break(chunks: Iterable[bytes]) -> int | None:
    """The 1-based line on which the first quoted field holding a line break opens, if any.

    Such a value makes one row span several lines, so the line count above no longer
    gives the rows. Only read to explain a count that did not match (TLC files carry no
    quoted line breaks): chunks without a quote, all of a TLC file's, are only counted.
    A doubled quote inside a quoted field toggles twice, so needs no special case.
    """
    line = 1
    quoted = False
    opened_on = 0
    for chunk in chunks:
        if not quoted and b'"' not in chunk:
            line += chunk.count(b"\n")
            continue
        for found in _QUOTE_OR_NEWLINE.finditer(chunk):
            if found.group() == b'"':
                quoted = not quoted
                opened_on = line
            elif quoted:
                return opened_on
            else:
                line += 1
    return None
