"""Streaming CSV / CSV.gz reader onto a contract (see csv_plan for the read plan).

Every row is kept. A row whose field count differs from the planned layout is either
the other accepted layout (header width, or header width + two empty trailing fields),
set aside by Arrow's invalid-row handler and emitted right after its batch, or a
MalformedRowError. Row numbers in errors are data rows (1-based, header excluded).
"""

from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from .casting import conform, from_sources
from .csv_plan import CsvPlan, Opener, plan_csv
from .schema import (
    Contract,
    ContractError,
    InvalidValueError,
    MalformedRowError,
    NonIntegralValueError,
)

# Arrow's conversion errors; "Row #" counts the file's rows up to the header and the data
# rows (blank lines after the header not), when parsing serially. The reason varies
# ("invalid value '1.5x'", "expected no zone offset in '2021-01-01 00:15:56Z'"); it ends
# with the value, quoted.
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (.+?): (.*)$", re.S
)
# Arrow's error for a row with another number of fields than the columns'.
_PARSE_ERROR = "CSV parse error"
_QUOTED_VALUE = re.compile(r"'(.*)'$", re.S)
# What a TLC timestamp looks like: New York wall-clock time, no zone (see casting.conform).
TIMESTAMP_FORM = "a naive local timestamp YYYY-MM-DD HH:MM:SS, without a zone offset"


def open_csv_reader(
    source: Any, *, file_name: str, contract: Contract, gzipped: bool, warn: Callable[[str], None]
) -> pa.RecordBatchReader:
    """Peek and map the header eagerly (so header errors raise here), stream lazily."""
    opener = Opener(source, gzipped=gzipped, file_name=file_name)
    try:
        head, complete = opener.peek()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ContractError(f"{file_name}: cannot read ({exc})") from exc
    plan = plan_csv(head, complete, file_name=file_name, contract=contract)
    if plan is None:
        warn(f"{file_name}: file is empty ({len(head)} bytes, no header); 0 rows")
        return pa.RecordBatchReader.from_batches(contract.schema, iter(()))
    return pa.RecordBatchReader.from_batches(contract.schema, _stream(plan, opener, warn))


@dataclass
class _Progress:
    """Rows already handed to the consumer, so a Latin-1 restart does not repeat them."""

    main: int = 0  # rows from Arrow's batches
    fixed: int = 0  # rows set aside by the invalid-row handler and re-parsed


class _RowNumbers:
    """Data rows of the rows in Arrow's batches, which lack the rows set aside.

    Arrow parses a block ahead of the batch it hands out, so the set-aside rows known
    when a batch arrives may lie beyond it: they are placed by their data row numbers.
    """

    def __init__(self) -> None:
        self.main = 0  # rows in the batches placed so far
        self.passed = 0  # set-aside rows before the end of the last batch placed
        self.aside: deque[int] = deque()  # data rows of later set-aside rows, ascending

    def place(self, rows: int) -> tuple[int, list[int]]:
        """The next batch's first data row and the set-aside data rows among its rows."""
        first = self.main + self.passed + 1
        while self.aside and self.aside[0] <= first:
            self.aside.popleft()
            self.passed += 1
            first += 1
        inside: list[int] = []
        last = first + rows - 1
        while self.aside and self.aside[0] <= last:
            inside.append(self.aside.popleft())
            self.passed += 1
            last += 1
        self.main += rows
        return first, inside


class _NotUtf8(Exception):
    pass


def _stream(plan: CsvPlan, opener: Opener, warn: Callable[[str], None]) -> Iterator[pa.RecordBatch]:
    done = _Progress()
    try:
        yield from _read_pass(plan, opener, "utf8", done)
    except _NotUtf8:
        # Rare (TLC files are ASCII): re-read from the start, skipping what was emitted.
        warn(f"{plan.file_name}: not valid UTF-8; decoding as Latin-1")
        yield from _read_pass(plan, opener, "latin-1", done)
    if done.main + done.fixed == 0:
        warn(f"{plan.file_name}: header only, no data rows; 0 rows")


def _read_pass(
    plan: CsvPlan, opener: Opener, encoding: str, done: _Progress
) -> Iterator[pa.RecordBatch]:
    skip_main, skip_fixed = done.main, done.fixed
    seen_main = seen_fixed = 0
    set_aside: list[tuple[int, str]] = []  # (file row, text rewritten to the plan's layout)
    numbers = _RowNumbers()
    errors: list[ContractError] = []
    width = len(plan.header)

    def set_aside_rows() -> Iterator[pa.RecordBatch]:
        # Arrow may be parsing the next block on its own thread and setting rows aside
        # meanwhile: take (and remove) only the rows there now, never clear the list.
        nonlocal seen_fixed
        count = len(set_aside)
        if count == 0:
            return
        fixed = _conform_set_aside(plan, set_aside[:count])
        del set_aside[:count]
        start = max(0, skip_fixed - seen_fixed)
        seen_fixed += fixed.num_rows
        if start < fixed.num_rows:
            yield fixed.slice(start)
            done.fixed += fixed.num_rows - start

    def on_invalid_row(row: pv.InvalidRow) -> str:
        # Called by Arrow, which swallows exceptions raised here: record them instead.
        text, number = row.text or "", row.number or 0
        if plan.trailing_extra and row.actual_columns == width:
            set_aside.append((number, text + ",,"))
            numbers.aside.append(number - plan.skip_rows)
            return "skip"
        if not plan.trailing_extra and row.actual_columns == width + 2 and text.endswith(",,"):
            set_aside.append((number, text[:-2]))
            numbers.aside.append(number - plan.skip_rows)
            return "skip"
        errors.append(
            MalformedRowError(
                plan.file_name,
                # Arrow's number counts the lines up to the header, not blank lines after it.
                number - plan.skip_rows if number > plan.skip_rows else None,
                width,
                row.actual_columns,
                f"the header has {width} fields; rows may also carry exactly two extra empty "
                "trailing fields",
            )
        )
        return "error"

    stream = opener.open()
    try:
        reader = pv.open_csv(
            stream,
            read_options=plan.read_options(encoding),
            parse_options=pv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=plan.convert_options(),
        )
        for batch in reader:
            start = max(0, skip_main - seen_main)
            first, aside = numbers.place(batch.num_rows)
            seen_main += batch.num_rows
            if start < batch.num_rows:
                first = _data_row(first, start, aside)
                yield _conform(plan, batch.slice(start), first, [r for r in aside if r > first])
                done.main += batch.num_rows - start
            yield from set_aside_rows()
        yield from set_aside_rows()  # rows set aside after the last batch
    except (pa.ArrowException, OSError) as exc:  # any of Arrow's errors: ArrowInvalid, ...
        if errors:
            raise errors[0] from exc
        message = str(exc)
        if encoding == "utf8" and ("invalid UTF8" in message or _PARSE_ERROR in message):
            # A parse error whose row the handler did not record: pyarrow could not hand
            # the row over, as it decodes the row's text as UTF-8 first (a row of the
            # other accepted layout holding a Latin-1 byte): read as Latin-1 too.
            raise _NotUtf8() from exc
        raise _arrow_error(plan, exc) from exc
    finally:
        stream.close()


def _arrow_error(plan: CsvPlan, exc: Exception, rows: list[int] | None = None) -> ContractError:
    """Arrow's error -> ContractError; conversion errors name contract column and row.

    `rows` maps Arrow's 1-based row (no header) to file rows, for set-aside rows.
    Arrow's own text is kept in the message whenever it says more than we do.
    """
    match = _CONVERSION.search(str(exc))
    if match is None or int(match.group(1)) >= len(plan.targets):
        return ContractError(f"{plan.file_name}: cannot read CSV ({exc})")
    column = plan.contract.column(plan.targets[int(match.group(1))])
    row = int(match.group(2)) if match.group(2) else None
    if row is not None:
        # Arrow counts the rows skipped up to the header, not blank lines after it.
        row = (rows[row - 1] if rows is not None else row) - plan.skip_rows
    arrow_type, reason = match.group(3), match.group(4)
    value = _QUOTED_VALUE.search(reason)
    if value is None:
        where = "an unknown data row" if row is None else f"data row {row}"
        return ContractError(f"{plan.file_name}: {where}, column {column.name!r}: {exc}")
    detail = f"cannot parse as {arrow_type}"
    if not reason.startswith("invalid value"):
        detail += f": {reason}"  # e.g. Arrow's "expected no zone offset in '...'"
    if pa.types.is_timestamp(column.type):
        detail = f"expected {TIMESTAMP_FORM}; {detail}"
    kind = NonIntegralValueError if pa.types.is_integer(column.type) else InvalidValueError
    return kind(plan.file_name, row, column.name, value.group(1), detail)


def _data_row(first_row: int, index: int, aside: list[int]) -> int:
    """Data row of a batch's `index`-th row, the batch starting at data row `first_row`
    with the data rows `aside` (ascending, all >= first_row) missing from it."""
    row = first_row + index
    for missing in aside:
        if missing > row:
            break
        row += 1
    return row


def _conform(
    plan: CsvPlan, batch: pa.RecordBatch, first_row: int, aside: list[int] | None = None
) -> pa.RecordBatch:
    """Arrow batch (positional columns) -> contract batch; checks the extra fields.

    `first_row` is the data row of the batch's first row; `aside` the later data rows
    (ascending) that are not in the batch, which rows after them are numbered past.
    """
    if aside:
        try:
            return _conform(plan, batch, first_row)
        except InvalidValueError as exc:
            row = _data_row(first_row, exc.row - first_row, aside) if exc.row else None
            raise type(exc)(exc.file_name, row, exc.column, exc.value, exc.detail) from exc
        except MalformedRowError as exc:
            row = _data_row(first_row, exc.row - first_row, aside) if exc.row else None
            raise MalformedRowError(
                exc.file_name, row, exc.expected, exc.actual, exc.detail
            ) from exc
    for name in plan.names[len(plan.header) :]:
        extra = batch.column(name)
        if extra.null_count != len(extra):
            idx = pc.index(pc.is_valid(extra), True).as_py()
            raise MalformedRowError(
                plan.file_name,
                first_row + idx,
                len(plan.header),
                len(plan.names),
                f"a trailing field beyond the header holds {extra[idx].as_py()!r}; only "
                "empty extra fields are accepted",
            )
    arrays = []
    for col in plan.contract.columns:
        sources = [
            (
                header,
                conform(batch.column(name), col, file_name=plan.file_name, first_row=first_row),
            )
            for name, header in plan.source_columns(col.name)
        ]
        arrays.append(
            from_sources(
                sources, col, file_name=plan.file_name, first_row=first_row, rows=len(batch)
            )
        )
    return pa.RecordBatch.from_arrays(arrays, schema=plan.contract.schema)


def _conform_set_aside(plan: CsvPlan, lines: list[tuple[int, str]]) -> pa.RecordBatch:
    """Parse and conform the set-aside rows, naming their own file rows in errors."""
    rows = [number for number, _ in lines]
    data = ("\n".join(text for _, text in lines) + "\n").encode("utf-8")
    options = plan.read_options()  # the text is UTF-8 now, whatever the file's encoding
    options.skip_rows = 0
    try:
        table = pv.read_csv(
            io.BytesIO(data), read_options=options, convert_options=plan.convert_options()
        )
        return _conform(plan, table.combine_chunks().to_batches()[0], 1)
    except pa.ArrowException as exc:
        raise _arrow_error(plan, exc, rows) from exc
    except InvalidValueError as exc:
        row = rows[exc.row - 1] - plan.skip_rows if exc.row else None
        raise type(exc)(exc.file_name, row, exc.column, exc.value, exc.detail) from exc
