"""LineCounter: data rows and the header from raw bytes, fed in any chunking."""

from __future__ import annotations

import gzip

import pytest

from taxi_assets.upstream.line_counter import (
    LineCounter,
    LineEndingError,
    first_quoted_line_break,
)

CASES = {
    "plain": b"a,b\n1,2\n3,4\n",
    "no-final-newline": b"a,b\n1,2\n3,4",
    "crlf": b"a,b\r\n1,2\r\n3,4\r\n",
    "blank-after-header": b"a,b\n\n1,2\n3,4\n",
    "blank-after-header-crlf": b"a,b\r\n\r\n1,2\r\n3,4\r\n",
    "blank-first-line": b"\na,b\n1,2\n3,4\n",
    "blank-first-line-crlf": b"\r\na,b\r\n1,2\r\n",
    "header-only": b"a,b\n",
    "header-only-no-newline": b"a,b",
    "empty": b"",
}


def expected_rows(data: bytes) -> int:
    lines = [line for line in data.replace(b"\r\n", b"\n").split(b"\n") if line.strip()]
    return max(len(lines) - 1, 0)


def count(data: bytes, chunk: int, gzipped: bool) -> LineCounter:
    counter = LineCounter(gzipped=gzipped)
    payload = gzip.compress(data) if gzipped else data
    for start in range(0, len(payload), chunk):
        counter.feed(payload[start : start + chunk])
    return counter


@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "gzip"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 16])
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_and_header_in_any_chunking(name: str, chunk: int, gzipped: bool) -> None:
    data = CASES[name]
    counter = count(data, chunk, gzipped)
    assert counter.finish() == expected_rows(data)
    assert counter.header == (["a", "b"] if data.strip() else None)


def test_gzip_with_several_members_counts_them_all() -> None:
    data = gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n5,6\n")
    counter = LineCounter(gzipped=True)
    counter.feed(data)
    assert counter.finish() == 3


def test_truncated_or_missing_gzip_is_an_error() -> None:
    truncated = LineCounter(gzipped=True)
    truncated.feed(gzip.compress(b"a,b\n" + b"1,2\n" * 1000)[:-20])
    with pytest.raises(EOFError, match="truncated"):
        truncated.finish()
    with pytest.raises(EOFError, match="no gzip member"):
        LineCounter(gzipped=True).finish()


@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "gzip"])
@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_lines_ending_with_a_lone_cr_are_refused(chunk: int, gzipped: bool) -> None:
    counter = count(b"a,b\r1,2\r3,4\r", chunk, gzipped)
    with pytest.raises(LineEndingError, match=r"lone carriage return .*3 of them"):
        counter.finish()
    assert counter.header == ["a", "b"]


def test_a_cr_only_header_longer_than_the_header_limit_is_not_a_crash() -> None:
    counter = count(b"a,b\r" + b"1,2\r" * 40_000, 1 << 16, False)
    with pytest.raises(LineEndingError):
        counter.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_first_quoted_line_break_names_the_line_its_quote_opens_on(chunk: int) -> None:
    data = b'a,b\n1,"x ""y"""\r\n2,"two\nlines"\n3,4\n'
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert first_quoted_line_break(chunks) == 3


@pytest.mark.parametrize("data", [b"a,b\n1,2\n", b'a,b\r\n1,"x,y"\r\n"2",3\r\n', b""])
def test_no_quoted_line_break(data: bytes) -> None:
    assert first_quoted_line_break([data]) is None
